"""The simulated world: determinism, contract, proportions, and an oracle consistent with it."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from nextbest.contract import load_world, validate_tables
from nextbest.settings import DEFAULT_CONFIG_DIR, load_settings
from nextbest.vocabulary import CHANNELS
from simulator.oracle import Oracle
from simulator.world import World, simulate

START = date(2025, 1, 1)
DAYS = 365
T_START = pd.Timestamp(START, tz="UTC")
T_END = T_START + pd.Timedelta(days=DAYS)
SETTINGS = load_settings(DEFAULT_CONFIG_DIR, environ={})


@pytest.fixture(scope="module")
def world() -> World:
    return simulate(SETTINGS, customers=4000, days=DAYS, seed=11, start=START)


@pytest.fixture(scope="module")
def oracle(world: World) -> Oracle:
    return world.oracle()


@pytest.fixture(scope="module")
def catalogue():
    return SETTINGS.actions


def _local_hours(events: pd.DataFrame, customers: pd.DataFrame) -> np.ndarray:
    tz = customers.set_index("customer_id")["timezone"].astype(str)
    zones = events["customer_id"].astype(str).map(tz).to_numpy()
    out = np.zeros(len(events), int)
    for z in np.unique(zones):
        m = zones == z
        out[m] = events["event_timestamp"][m].dt.tz_convert(z).dt.hour.to_numpy()
    return out


def _purchases(world: World) -> pd.DataFrame:
    return world.events[world.events["event_type"] == "purchase"]


# --- determinism -------------------------------------------------------------------
def test_same_seed_same_world_and_other_seed_differs():
    a = simulate(SETTINGS, 1500, 120, seed=5, start=START)
    b = simulate(SETTINGS, 1500, 120, seed=5, start=START)
    c = simulate(SETTINGS, 1500, 120, seed=6, start=START)
    for name in ("customers", "events", "truth", "targets"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert len(a.events) != len(c.events) or not a.events["event_timestamp"].equals(c.events["event_timestamp"])
    assert not a.truth["purchase_rate"].equals(c.truth["purchase_rate"])


# --- the contract --------------------------------------------------------------------
def test_tables_pass_the_contract_and_round_trip(world: World, tmp_path):
    _, _, violations = validate_tables(world.customers, world.events)
    assert violations == [], [v.describe() for v in violations]

    small = simulate(SETTINGS, 800, 60, seed=2, start=START, out_dir=tmp_path)
    for f in ("customers.parquet", "events.parquet", "truth.parquet", "world.json", "targets.parquet"):
        assert (tmp_path / f).exists(), f
    customers, events = load_world(tmp_path)
    assert len(customers) == 800 and len(events) == len(small.events)
    assert (events["customer_id"].to_numpy() == small.events["customer_id"].astype(str).to_numpy()).all()
    assert (events["event_timestamp"].to_numpy() == small.events["event_timestamp"].to_numpy()).all()
    assert str(events["event_timestamp"].dt.tz) == "UTC"
    # the loaded oracle answers like the in-memory one
    ids = small.customers["customer_id"].to_numpy()
    as_of = T_START + pd.Timedelta(days=30)
    loaded = Oracle.load(tmp_path)
    np.testing.assert_allclose(loaded.p_churn(ids, as_of, 60), small.oracle().p_churn(ids, as_of, 60), equal_nan=True)
    np.testing.assert_allclose(loaded.p_activation(ids, as_of, 30), small.oracle().p_activation(ids, as_of, 30),
                               equal_nan=True)


def test_events_stay_between_registration_and_the_end(world: World):
    ev = world.events
    reg = ev["customer_id"].astype(str).map(world.customers.set_index("customer_id")["registered_at"])
    assert (ev["event_timestamp"] >= reg).all()
    assert (ev["event_timestamp"] < T_END).all()
    assert (ev["event_timestamp"] < T_START).any()  # history before day one
    pre = (world.customers["registered_at"] < T_START).mean()
    assert 0.35 < pre < 0.45
    assert world.customers["customer_id"].iloc[0] == "C0000001"


# --- proportions ----------------------------------------------------------------------
def test_about_thirty_percent_never_buy(world: World):
    buyers = set(_purchases(world)["customer_id"].astype(str))
    never = 1 - world.customers["customer_id"].isin(buyers).mean()
    assert 0.22 < never < 0.38
    assert world.truth["first_purchase_at"].isna().mean() == pytest.approx(never)


def test_attributes_and_consent(world: World):
    c = world.customers
    assert 0.65 < (c["segment"] == "b2c").mean() < 0.75
    assert c["region"].nunique() == 5
    assert (c.loc[c["segment"] == "b2c", "company_size"] == "none").all()
    assert set(c.loc[c["segment"] == "b2b", "company_size"]) <= {"micro", "small", "medium", "large"}
    assert c["timezone"].astype(str).str.startswith("Europe/").mean() > 0.7
    no_email = ~c["reachable_email"]
    assert 0.08 < no_email.mean() < 0.18
    # nobody without an address or consent gets an e-mail
    sent = world.events[(world.events["event_type"] == "message_sent") & (world.events["channel"] == "email")]
    closed = set(c.loc[no_email, "customer_id"])
    assert not sent["customer_id"].astype(str).isin(closed).any()


def test_b2b_buys_more_often(world: World):
    t = world.truth.merge(world.customers[["customer_id", "segment"]], on="customer_id")
    rate = t.groupby("segment", observed=True)["purchase_rate"].median()
    assert rate["b2b"] > 1.5 * rate["b2c"]


def test_click_rate_is_single_digit_percent(world: World):
    ev = world.events
    msg = ev[ev["event_type"].isin(["message_sent", "message_clicked"])]
    counts = msg.groupby(["channel", "event_type"], observed=True).size().unstack()
    rates = counts["message_clicked"] / counts["message_sent"]
    assert set(rates.index) == set(CHANNELS)
    assert ((rates > 0.005) & (rates < 0.10)).all(), rates.to_dict()
    overall = counts["message_clicked"].sum() / counts["message_sent"].sum()
    assert 0.01 < overall < 0.10


def test_legacy_campaigns_pressure_hours_and_actions(world: World):
    ev = world.events
    sent = ev[ev["event_type"] == "message_sent"]
    reg = world.customers["registered_at"].clip(lower=T_START)
    customer_years = ((T_END - reg).dt.total_seconds() / 86400 / 365).sum()
    assert 20 < len(sent) / customer_years <= 60
    # calendar campaigns go out at their rotating local hour
    cal = world.campaigns[world.campaigns["kind"] == "calendar"]
    assert set(cal["local_hour"].astype(int)) == {8, 10, 12, 15, 18, 20}
    email = sent[sent["channel"] == "email"]
    hours = _local_hours(email, world.customers)
    planned = email["campaign_id"].astype(str).map(cal.set_index("campaign_id")["local_hour"]).to_numpy()
    assert (hours == planned).mean() > 0.99
    # the action follows the lifecycle stage
    tg = world.targets
    by_stage = tg.groupby("stage", observed=True)["action_id"].agg(lambda s: set(s.astype(str)))
    assert by_stage["lapsed"] == {"win_back"}
    assert by_stage["activating"] <= {"second_use_nudge", "contact_enrichment"}
    assert "anti_attrition_offer" in by_stage["at_risk"]
    assert by_stage["registered"] <= {"welcome", "activation_nudge", "activation_nudge_incentive", "contact_enrichment"}


def test_control_share_gets_nothing(world: World):
    tg = world.targets
    cal = tg[tg["campaign_id"].astype(str).str.match(r"^(email|push|sms|print)-")]
    share = cal.groupby("campaign_id", observed=True)["control"].mean()
    assert cal["control"].mean() == pytest.approx(0.10, abs=0.015)
    assert share.between(0.03, 0.2).mean() > 0.9
    sent = world.events[world.events["event_type"] == "message_sent"]
    pairs = set(zip(sent["customer_id"].astype(str), sent["campaign_id"].astype(str)))
    control = cal[cal["control"]]
    held_out = zip(control["customer_id"].astype(str), control["campaign_id"].astype(str))
    assert not any(pair in pairs for pair in held_out)
    treated = cal[~cal["control"]].head(2000)
    assert all((c, k) in pairs for c, k in zip(treated["customer_id"].astype(str), treated["campaign_id"].astype(str)))
    a = world.assignments  # a control says which action it was held out from; a send does not
    held = a["action_id"].eq("no_action") & a["holdout_action"].notna()
    assert held.sum() == tg["control"].sum() and a.loc[~a["action_id"].eq("no_action"), "holdout_action"].isna().all()
    assert set(a.loc[held, "holdout_action"]) <= set(tg.loc[tg["control"], "action_id"].astype(str))


def test_second_purchase_inside_window_lowers_dropout(world: World):
    t = world.truth
    closed = t[t["second_purchase_in_window"].notna()]
    habit = closed["second_purchase_in_window"].astype(bool)
    eff = closed.groupby(habit)["dropout_hazard_effective"].mean()
    assert eff[True] < 0.6 * eff[False]
    ratio = closed["dropout_hazard_effective"] / closed["dropout_hazard"]
    np.testing.assert_allclose(ratio[habit], 0.4)
    np.testing.assert_allclose(ratio[~habit], 1.0)
    # and it shows in the realised dropouts: within 150 days of the window's end
    early = closed[closed["first_purchase_at"] < T_END - pd.Timedelta(days=170)]
    window_end = early["first_purchase_at"] + pd.Timedelta(days=11)
    gone = (early["dropout_at"] - window_end) < pd.Timedelta(days=150)
    g = gone.groupby(early["second_purchase_in_window"].astype(bool)).mean()
    assert g[True] < g[False]
    # the flag matches the observable purchases
    ts = early["second_purchase_at"] - early["first_purchase_at"]
    assert (ts[early["second_purchase_in_window"].astype(bool)] <= pd.Timedelta(days=11)).all()


# --- the oracle -------------------------------------------------------------------------
def test_p_response_peaks_near_the_preferred_hour(world: World, oracle: Oracle):
    ids = world.customers["customer_id"].to_numpy()[:500]
    grid = np.tile(np.arange(24), (len(ids), 1))
    p = oracle.p_response(ids, "email", grid)
    assert p.shape == (500, 24)
    pref = world.truth.set_index("customer_id").loc[ids, "preferred_hour"].to_numpy()
    gap = np.abs(p.argmax(axis=1) - pref)
    assert (np.minimum(gap, 24 - gap) <= 1.0).all()
    assert (p.max(axis=1) <= 0.6).all() and (p > 0).all()
    # one hour per customer gives the matching diagonal
    one = oracle.p_response(ids, "email", np.full(len(ids), 10))
    np.testing.assert_allclose(one, p[:, 10])


def test_hour_distribution_rows_sum_to_one_and_match_engagement(world: World, oracle: Oracle):
    ids = world.customers["customer_id"].to_numpy()[:1000]
    hd = oracle.hour_distribution(ids)
    assert hd.shape == (1000, 24)
    np.testing.assert_allclose(hd.sum(axis=1), 1.0)
    assert np.isnan(oracle.hour_distribution(["nobody"])).all()
    ev = world.events
    eng = ev[ev["event_type"].isin(["visit", "message_opened"]) & ev["customer_id"].isin(ids)]
    hours = _local_hours(eng, world.customers)
    row = pd.Index(ids).get_indexer(eng["customer_id"].astype(str))
    # the hours observed are as likely under the truth as they should be
    observed = hd[row, hours].mean()
    expected = (hd[row] ** 2).sum(axis=1).mean()
    assert observed == pytest.approx(expected, rel=0.05)


def test_oracle_is_consistent_with_what_happens(world: World, oracle: Oracle):
    """Without any message (customers no channel reaches), what the oracle expects is what happens."""
    ids = world.customers["customer_id"].to_numpy()
    sent = set(world.events.loc[world.events["event_type"] == "message_sent", "customer_id"].astype(str))
    quiet = ~np.isin(ids, list(sent))
    buys = _purchases(world)
    as_of = T_START + pd.Timedelta(days=120)
    before = buys[buys["event_timestamp"] < as_of].groupby("customer_id", observed=False).size().reindex(ids)
    nxt = buys[buys["event_timestamp"] >= as_of].groupby("customer_id", observed=False)["event_timestamp"].min()
    wait = ((nxt.reindex(ids) - as_of).dt.total_seconds() / 86400).to_numpy()
    after = buys[(buys["event_timestamp"] >= as_of) & (buys["event_timestamp"] < as_of + pd.Timedelta(days=30))]
    count = after.groupby("customer_id", observed=False).size().reindex(ids).fillna(0).to_numpy()

    pa = oracle.p_activation(ids, as_of, 30)
    never = before.to_numpy() == 0
    registered = (world.customers["registered_at"] < as_of).to_numpy()
    assert (~np.isnan(pa[never & registered])).all() and np.isnan(pa[~registered]).all()
    m = never & registered & quiet
    assert m.sum() > 50
    hit = (wait[m] <= 30).mean()
    assert abs(pa[m].mean() - hit) < 3 * np.sqrt(hit * (1 - hit) / m.sum()) + 0.01

    pc = oracle.p_churn(ids, as_of, 60)
    bought = before.to_numpy() >= 1
    assert (~np.isnan(pc[bought])).all() and np.isnan(pc[~bought]).all()
    m = bought & quiet
    real = ~(wait[m] <= 60)
    assert pc[m].mean() == pytest.approx(real.mean(), abs=0.04)
    hi, lo = pc[m] > 0.5, pc[m] < 0.1
    assert real[hi].mean() > 0.7 and real[lo].mean() < 0.15

    # expected purchases over 30 days without a message, whatever the customer's state
    i, _ = oracle._idx(ids)
    t = np.full(len(ids), oracle_days(as_of))
    expected = oracle.natural_purchases(i, t, 30)
    m = registered & quiet
    assert abs(expected[m].mean() - count[m].mean()) < 3 * count[m].std() / np.sqrt(m.sum())


def oracle_days(ts: pd.Timestamp) -> float:
    return ts.value / 86400e9


def test_messages_convert_as_the_oracle_says(world: World, oracle: Oracle, catalogue):
    """Randomised survey sends: conversions per send match the oracle's increment (value x P(seen) x persuasion)."""
    a = world.assignments
    # e-mail campaigns (one campaign a day): each assignment is one message
    survey = a[(a["action_id"] == "satisfaction_survey") & (a["channel"] == "email")
               & (a["assigned_at"] < T_END - pd.Timedelta(days=20))]
    survey = survey.sample(min(len(survey), 6000), random_state=0)
    conv = world.events[(world.events["event_type"] == "message_converted")
                        & (world.events["action_id"].astype(str) == "satisfaction_survey")]
    key = set(zip(conv["customer_id"].astype(str), conv["campaign_id"].astype(str)))
    real = np.array([(c, k) in key for c, k in zip(survey["customer_id"], survey["campaign_id"])]).mean()
    act = catalogue["satisfaction_survey"]
    tz = world.customers.set_index("customer_id")["timezone"].astype(str)
    expected = []
    for day, g in survey.groupby(survey["assigned_at"].dt.floor("D")):
        hours = np.array([t.tz_convert(tz[c]).hour for t, c in zip(g["assigned_at"], g["customer_id"])], float)
        v = oracle.incremental_value(g["customer_id"].to_numpy(), "satisfaction_survey", g["channel"].to_numpy(),
                                     hours, g["assigned_at"].iloc[0], catalogue)
        cost = g["channel"].map(act.cost).to_numpy()
        expected.append((v + cost) / act.value)
    expected = np.concatenate(expected)
    expected = expected[np.isfinite(expected)]  # channels closed since (an unsubscribe) are not valued
    assert real == pytest.approx(expected.mean(), rel=0.15)


def test_the_causal_truth_of_an_option(world: World, oracle: Oracle, catalogue):
    c = world.customers
    as_of = T_START + pd.Timedelta(days=200)
    no_email = c.loc[~(c["consent_email"] & c["reachable_email"]), "customer_id"].to_numpy()[:200]
    v = oracle.incremental_value(no_email, "cross_sell", "email", 18, as_of, catalogue)
    assert (np.isneginf(v) | np.isnan(v)).all()
    ok = c.loc[c["consent_email"] & c["reachable_email"], "customer_id"].to_numpy()
    closed = oracle.incremental_value(ok[:50], "cross_sell", "print", 18, as_of, catalogue)
    assert (np.isneginf(closed) | np.isnan(closed)).all() and np.isneginf(closed).any()
    assert (oracle.incremental_value(ok[:50], "no_action", "email", 18, as_of, catalogue) == 0).all()
    assert np.isnan(oracle.incremental_value(["nobody"], "cross_sell", "email", 18, as_of, catalogue)).all()
    truth = world.truth.set_index("customer_id").loc[ok]
    value = oracle.incremental_value(ok, "cross_sell", "email", 18, as_of, catalogue)
    registered = np.isfinite(value)
    # lost causes are not moved: a message only costs (and, for buying customers, risks a lapse)
    lost = registered & (truth["persuadability"].to_numpy() == 0) & ~truth["sleeping_dog"].to_numpy()
    keen = registered & (truth["persuadability"].to_numpy() > 0.6) & ~truth["sleeping_dog"].to_numpy()
    assert lost.sum() > 20 and keen.sum() > 20
    assert np.median(value[lost]) < 0.01 < np.median(value[keen])
    # sleeping dogs who are buying lose more than they gain on average
    i, _ = oracle._idx(ok)
    alive = oracle.alive(i, np.full(len(ok), oracle_days(as_of))) & truth["sleeping_dog"].to_numpy() & registered
    assert alive.sum() >= 10 and np.median(value[alive]) < 0
    # a voucher to sure things: customers certain to buy soon pay the incentive for nothing more
    inc = oracle.incremental_value(ok, "loyalty_reward", "email", 18, as_of, catalogue)
    q = oracle.p_natural_purchase(i, np.full(len(ok), oracle_days(as_of)), 14)
    persuaded = truth["persuasion_loyalty_reward"].to_numpy()
    sure = registered & (q > 0.9) & (persuaded < 0.05)
    assert sure.sum() > 10 and (inc[sure] < 0).all()


def test_best_channel_is_never_closed(world: World, oracle: Oracle):
    c = world.customers
    # best channel never picks a closed one
    best = oracle.best_channel(c["customer_id"].to_numpy(), np.ones(5, bool))
    open_ = oracle.reachable(c["customer_id"].to_numpy())
    for k, ch in enumerate(CHANNELS):
        assert open_[best == ch, k].all()
    assert (best == None).sum() == (~open_.any(axis=1)).sum()  # noqa: E711
