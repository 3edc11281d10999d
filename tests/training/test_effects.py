"""What each action changes, learned from randomised assignments: the outcomes measured, a campaign with two
competing e-mails learned and decided on customers it never saw."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.support import copy_configs, settings_for
from tests.training.campaign import ACTION, campaign, group_of
from training.outcomes import outcomes


# --------------------------------------------------------------------------- outcomes


def test_outcomes_value_the_objective_net_of_the_incentive():
    from nextbest.settings import Objective

    t = pd.Timestamp("2025-03-01", tz="UTC")
    act = lambda **kw: type("A", (), {"objective": Objective(**kw.pop("objective", {})), **kw})  # noqa: E731
    catalogue = {
        "offer": act(value=0.3, incentive=5.0, objective={"horizon_days": 10}),
        "survey": act(value=2.0, incentive=0.0, objective={"event": "message_converted", "measure": "count",
                                                           "horizon_days": 10}),
    }
    assignments = pd.DataFrame({
        "customer_id": ["a", "b", "c"], "assigned_at": [t, t, t], "action_id": ["offer", "no_action", "survey"],
        "channel": ["email", None, "email"], "propensity": [0.5, 0.2, 0.3], "campaign_id": ["k1", "k1", "k1"]})
    d = lambda n: t + pd.Timedelta(days=n)  # noqa: E731
    events = pd.DataFrame({
        "customer_id": ["a", "a", "a", "b", "b", "c", "c"],
        "event_timestamp": [d(1), d(2), d(12), d(3), d(-1), d(1), d(2)],
        "event_type": ["purchase", "message_converted", "purchase", "purchase", "purchase", "message_converted",
                       "message_converted"],
        "amount": [100.0, np.nan, 50.0, 40.0, 999.0, np.nan, np.nan],
        "action_id": [None, "offer", None, None, None, "survey", "survey"],
        "campaign_id": [None, "k1", None, None, None, "k1", "k2"]})
    out = outcomes(assignments, events, catalogue, d(30)).set_index("customer_id")
    assert out.loc["a", "y"] == pytest.approx(0.3 * 100 - 5.0)  # the purchase after 10 days is outside
    assert np.isnan(out.loc["b", "y"]) and out.loc["b", "y_offer"] == pytest.approx(0.3 * 40)  # not the earlier one
    assert out.loc["b", "y_survey"] == 0  # a control converts nothing
    assert out.loc["c", "y"] == pytest.approx(2.0)  # only its own campaign's conversion
    assert len(outcomes(assignments, events, catalogue, d(5))) == 0  # horizons not observed yet


def test_a_control_speaks_for_the_actions_whose_horizon_it_has_seen():
    from nextbest.settings import Objective

    t = pd.Timestamp("2025-03-01", tz="UTC")
    act = lambda days: type("A", (), {"objective": Objective(horizon_days=days), "value": 1.0,  # noqa: E731
                                      "incentive": 0.0})
    catalogue = {"short": act(7), "long": act(30)}
    assignments = pd.DataFrame({
        "customer_id": ["a", "b"], "assigned_at": [t, t], "action_id": ["no_action", "short"],
        "channel": [None, "email"], "propensity": [0.1, 0.9], "campaign_id": ["k", "k"]})
    events = pd.DataFrame({"customer_id": ["a", "b"], "event_timestamp": [t + pd.Timedelta(days=2)] * 2,
                           "event_type": ["purchase", "purchase"], "amount": [20.0, 30.0],
                           "action_id": [None, None], "campaign_id": [None, None]})
    end = t + pd.Timedelta(days=10)  # the short horizon is over, the long one is not
    assert list(outcomes(assignments, events, catalogue, end)["customer_id"]) == ["b"]  # controls wait for both
    out = outcomes(assignments, events, catalogue, end, partial_controls=True).set_index("customer_id")
    assert out.loc["a", "y_short"] == pytest.approx(20.0) and np.isnan(out.loc["a", "y_long"])
    assert out.loc["b", "y"] == pytest.approx(30.0)


def test_an_outcome_window_stops_at_another_messages_conversion():
    """What another campaign's message wins - its converted purchase and everything after - is not counted for
    an assignment; the assignment's own conversion does not stop its window, and the incentive its message paid
    is counted to the horizon."""
    from nextbest.settings import Objective

    t = pd.Timestamp("2025-03-01", tz="UTC")
    d = lambda n: t + pd.Timedelta(days=n)  # noqa: E731
    catalogue = {"offer": type("A", (), {"objective": Objective(horizon_days=30), "value": 1.0, "incentive": 5.0})}
    assignments = pd.DataFrame({
        "customer_id": ["a", "b", "c"], "assigned_at": [t, t, t], "action_id": ["offer", "no_action", "offer"],
        "channel": ["email", None, "email"], "propensity": [0.8, 0.2, 0.8], "campaign_id": ["k1", "k1", "k1"]})
    rows = [("a", 1, "message_converted", np.nan, "offer", "k1"), ("a", 1, "purchase", 10.0, None, None),
            ("a", 3, "purchase", 20.0, None, None), ("a", 6, "message_converted", np.nan, "offer", "k2"),
            ("a", 9, "purchase", 40.0, None, None),
            ("b", 2, "purchase", 5.0, None, None), ("b", 5, "message_converted", np.nan, "offer", "k3"),
            ("b", 8, "purchase", 50.0, None, None),
            ("c", 1, "purchase", 8.0, None, None), ("c", 2, "message_converted", np.nan, "offer", "k9"),
            ("c", 4, "message_converted", np.nan, "offer", "k1"), ("c", 4, "purchase", 30.0, None, None)]
    events = pd.DataFrame(rows, columns=["customer_id", "event_timestamp", "event_type", "amount", "action_id",
                                         "campaign_id"])
    events["event_timestamp"] = events["event_timestamp"].map(d)
    cut = outcomes(assignments, events, catalogue, d(40), stop_at_other_conversion=True).set_index("customer_id")
    assert cut.loc["a", "y"] == pytest.approx(30.0 - 5.0)  # own conversion at day 1 kept; k2 converts at day 6
    assert cut.loc["b", "y_offer"] == pytest.approx(5.0)  # a control: any conversion (k3 at day 5) ends it
    assert cut.loc["c", "y"] == pytest.approx(8.0 - 5.0)  # k9 ends the purchases; its own voucher still cost 5
    whole = outcomes(assignments, events, catalogue, d(40)).set_index("customer_id")
    assert whole.loc["a", "y"] == pytest.approx(65.0) and whole.loc["b", "y_offer"] == pytest.approx(55.0)
    assert whole.loc["c", "y"] == pytest.approx(33.0)


def _targeted_on_what_features_miss(n: int = 12000, seed: int = 3):
    """Effect data of two actions a campaign sent by a trait the features do not show (say a purchase an hour
    ago): `near` to the customers who spend 3x more without any message, `far` to the others; a quarter of
    each held out. Both truly add 6 (currency)."""
    from training.effects import EffectData

    rng = np.random.default_rng(seed)
    hidden = rng.random(n) < 0.5
    action = np.where(hidden, "near", "far")
    control = rng.random(n) < 0.25
    y = 0.3 * (np.where(hidden, 300.0, 100.0) + rng.normal(0, 30, n) + np.where(control, 0.0, 20.0))
    t = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.uniform(0, 300, n)), unit="D")
    frame = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)], "assigned_at": t,
        "action_id": np.where(control, "no_action", action), "channel": np.where(control, None, "email"),
        "propensity": np.where(control, 0.25, 0.75), "campaign_id": "k", "stage": 2,
        "holdout_action": np.where(control, action, None),
        "y": np.where(control, np.nan, y), "y_near": np.where(control, y, np.nan), "y_far": np.where(control, y, np.nan),
        "split": np.select([np.arange(n) < 0.6 * n, np.arange(n) < 0.8 * n], ["train", "valid"], "test")})
    features = ["monetary_365d", "frequency_365d", "noise"]
    X = np.column_stack([np.full(n, 200.0), np.full(n, 2.0), rng.normal(size=n)]).astype(np.float32)
    half = np.full(n, 0.5, np.float32)
    return EffectData(features, ["near", "far"], frame, X, half, half, np.full((n, 5), 0.1, np.float32), 100.0)


@pytest.mark.parametrize("told", [True, False])
def test_a_control_is_compared_with_the_sends_of_the_action_it_was_held_out_from(tmp_path, told):
    """When the log says which action each control was held out from, each action's increment is read against
    its own controls and comes out right; without it, the pooled controls make the action sent to the big
    spenders look hugely profitable and the other harmful."""
    from nextbest.settings import DEFAULT_CONFIG_DIR, load_settings
    from training.effects import fit_effects, predict_increments

    defaults = list(load_settings(DEFAULT_CONFIG_DIR, environ={}).actions)
    s = settings_for(tmp_path, copy_configs(tmp_path / "configs", drop_actions=defaults,
                                            add_actions={"near": ACTION, "far": ACTION}))
    data = _targeted_on_what_features_miss()
    if not told:
        data.frame["holdout_action"] = None
    fit = fit_effects(s, data)
    f = data.frame
    for a, name in enumerate(data.actions):
        rows = np.flatnonzero(f["action_id"].eq(name).to_numpy() & f["split"].eq("test").to_numpy())
        learned = predict_increments(s, fit.effect, data, rows, a, np.zeros(len(rows), int)).mean()
        if told:
            assert learned == pytest.approx(6.0, abs=2.5), (name, learned)
        else:
            assert abs(learned - 6.0) > 15, (name, learned)


# --------------------------------------------------------------------------- a campaign


@pytest.fixture(scope="module")
def ab_campaign(tmp_path_factory):
    """The campaign imported through the contract, everything learned, the held-out customers scored."""
    from features import pipeline, store
    from nextbest.contract import write_world
    from nextbest.settings import DEFAULT_CONFIG_DIR, load_settings
    from serving.batch import score
    from training.train import train_all

    root = tmp_path_factory.mktemp("ab")
    defaults = list(load_settings(DEFAULT_CONFIG_DIR, environ={}).actions)
    configs = copy_configs(root / "configs", drop_actions=defaults,
                           add_actions={"email_x": ACTION, "email_y": ACTION})
    s = settings_for(root, configs)
    customers, events, assignments, held_out = campaign(n=2400, held_out=600)
    write_world(s.world_dir, customers, events, assignments)
    pipeline.build(s)
    store.apply(s)
    store.materialize(s)
    results = {r.head: r for r in train_all(s)}
    ids = root / "held_out.txt"
    ids.write_text("\n".join(held_out) + "\n")
    score(s, None, root / "decisions.parquet", ids=ids)
    decisions = pd.read_parquet(root / "decisions.parquet")
    decisions["group"] = group_of(customers.set_index("customer_id").loc[decisions["customer_id"]].reset_index())
    return s, results, decisions


def test_an_actions_controls_are_those_its_campaigns_would_have_sent_it_to():
    """A retention offer sent only to at-risk customers is compared with the at-risk controls of its campaigns,
    not with the active customers of another campaign (who spend far more without any message)."""
    from training.effects import control_weights

    frame = pd.DataFrame({
        "campaign_id": ["k1"] * 6 + ["k2"] * 4 + [None] * 3,
        "stage": [3, 3, 3, 3, 2, 2, 3, 3, 2, 2, 1, 1, 1],
        "action_id": ["offer", "offer", "mail", "no_action", "mail", "no_action",  # k1: at risk 2:1, active mail
                      "mail", "no_action", "mail", "no_action",  # k2: only mail
                      "nudge", "no_action", "no_action"]})  # the product's own log: no campaign, one cell per stage
    w = control_weights(frame, ["offer", "mail", "nudge"])
    assert w.shape == (13, 3)
    assert np.allclose(w[3], [2 / 3, 1 / 3, 0])  # at-risk control of k1: offer twice as often as mail
    assert np.allclose(w[5], [0, 1, 0]) and np.allclose(w[7], [0, 1, 0]) and np.allclose(w[9], [0, 1, 0])
    assert np.allclose(w[[11, 12]], [[0, 0, 1]] * 2)
    assert (w[frame["action_id"].ne("no_action").to_numpy()] == 0).all()  # treated rows are not controls


def test_a_control_that_says_what_it_was_held_out_from_speaks_for_that_action_alone():
    """Within one campaign and stage the action can follow what the cells do not see (tenure, a missing e-mail
    address): a control held out from the offer is compared with the offer's customers only."""
    from training.effects import control_weights

    frame = pd.DataFrame({
        "campaign_id": ["k1"] * 5, "stage": [3] * 5,
        "action_id": ["offer", "mail", "no_action", "no_action", "no_action"],
        "holdout_action": [None, None, "offer", "mail", None]})
    w = control_weights(frame, ["offer", "mail"])
    assert np.allclose(w[2], [1, 0]) and np.allclose(w[3], [0, 1])
    assert np.allclose(w[4], [0.5, 0.5])  # the log does not say: the cell's mix
    assert (w[:2] == 0).all()


def test_the_uplift_curve_weighs_each_control_by_how_much_it_speaks_for_the_action():
    from training.effects import _curve

    y = np.array([10.0, 0.0, 100.0, 0.0, 0.0])
    is_t = np.array([True, True, False, False, False])
    score = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    # the control who spent 100 belongs to a cell the action was never sent to: weight 0
    pts, _, top = _curve(score, y, is_t, np.array([1, 1, 0, 1, 1.0]))
    assert np.isnan(top)  # the top 30% (two rows) holds no control: no uplift to show
    assert pts[-1] == pytest.approx(5.0 - 0.0)  # everyone: treated mean 5, weighted controls' mean 0
    assert _curve(score, y, is_t)[0][-1] == pytest.approx(5.0 - 100 / 3)


@pytest.mark.slow
def test_both_emails_are_learned_from_the_assignments(ab_campaign):
    from nextbest.model_contract import load_version
    from nextbest.vocabulary import CHAMPION, EFFECT_MODEL

    s, results, _ = ab_campaign
    assert results[EFFECT_MODEL].status == "trained", results[EFFECT_MODEL].message
    contract = load_version(s, EFFECT_MODEL, CHAMPION).contract
    assert set(contract["learned"]) == {"email_x", "email_y"}
    assert results[EFFECT_MODEL].metrics["qini"] > results[EFFECT_MODEL].metrics["prior_qini"]


@pytest.mark.slow
@pytest.mark.parametrize("group, action", [("north_b2c", "email_x"), ("b2b", "email_y"), ("south_b2c", "no_action")])
def test_each_customer_gets_the_email_that_works_for_them_or_nothing(ab_campaign, group, action):
    """On customers the campaign never reached, the e-mail that truly works for their segment, and nothing for
    those whom every e-mail puts off."""
    _, _, d = ab_campaign
    mine = d[(d["group"] == group) & ~d["control_group"]]
    assert len(mine) > 50
    share = (mine["action"].astype(str) == action).mean()
    assert share >= 0.75, mine["action"].value_counts()  # a third by chance
    if action != "no_action":
        sent = mine[mine["action"].astype(str) == action]
        assert sent["reasons"].astype(str).str.contains("best_ev").all()
        assert not sent["fallbacks"].astype(str).str.contains("effect_model").any()  # learned, not the prior
