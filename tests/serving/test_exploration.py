"""Exploration: a share of decisions drawn at random among the options every contact rule left open, each
decision carrying the probability of the option it returned; the same request gives the same draw."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone

import numpy as np
import pytest

from nextbest.clock import Clock
from nextbest.vocabulary import CHANNELS, NO_ACTION, STAGES
from serving.engine import Engine
from serving.history import ContactHistory
from serving.policy import DecisionInputs, compile_policy, decide
from serving.pressure import Limits, SqlitePressure
from serving.schemas import NextActionRequest, NextActionResponse
from serving.scoring import Scorer
from tests.serving.test_engine import ActiveCustomers
from tests.serving.test_policy import FI, NOW, SETTINGS, customer, inputs, with_control
from tests.support import settings_for

SHARE, CONTROL = 0.30, 0.10  # a large exploration share, so that every rule is exercised by explored options


@pytest.fixture(scope="module")
def policy():
    return compile_policy(with_control(SETTINGS, CONTROL, exploration=SHARE))


def random_customers(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Feature rows drawn at random over everything a contact rule reads: stage, tenure, consent and
    reachability, sends in every cap window, ignored e-mails, days since each action, dropped RFM segment."""
    rng = np.random.default_rng(seed)
    cols = {"stage_code": rng.integers(0, len(STAGES), n), "tenure_days": rng.integers(0, 400, n),
            "rfm_dropped": rng.random(n) < 0.3}
    for c in CHANNELS:
        cols[f"consent_{c}"] = rng.random(n) < 0.7
        cols[f"reachable_{c}"] = rng.random(n) < 0.7
        cols[f"sent_7d_{c}"] = rng.integers(0, 5, n)
        cols[f"sent_30d_{c}"] = cols[f"sent_7d_{c}"] + rng.integers(0, 3, n)
        cols[f"consecutive_ignores_{c}"] = rng.integers(0, 7, n)
    cols["sent_7d_total"] = rng.integers(0, 4, n)
    cols["sent_30d_total"] = cols["sent_7d_total"] + rng.integers(0, 5, n)
    for a in SETTINGS.actions:
        cols[f"days_since_action_{a}"] = np.where(rng.random(n) < 0.5, np.nan, rng.integers(0, 120, n))
    X = np.full((n, len(FI)), np.nan, np.float32)
    for k, v in cols.items():
        X[:, FI[k]] = v
    return X, cols


def many(X: np.ndarray, seed: int, request_id="explore", ids=None) -> DecisionInputs:
    rng = np.random.default_rng(seed)
    n = len(X)
    hour = rng.random((n, 24)).astype(np.float32)
    return DecisionInputs(
        customer_ids=ids if ids is not None else [f"c{i}" for i in range(n)], X=X, feature_index=FI,
        timezones=["Europe/Paris"] * n, now=NOW, p_activation=rng.random(n), p_churn=rng.random(n),
        p_response=rng.random((n, len(CHANNELS))) * 0.4, hour_dist=hour / hour.sum(axis=1, keepdims=True),
        day_part="afternoon", request_id=request_id)


def test_exploration_never_opens_what_a_rule_closes(policy):
    """100,000 decisions, 30% exploring: no send on a channel without consent and reachability, over its cap or
    the overall cap, relayed e-mail, an action in cooldown, outside its stage, tenure or condition, or in quiet
    hours; explored and greedy alike."""
    n = 100_000
    X, f = random_customers(n, seed=5)
    inp = many(X, seed=6)
    d = decide(inp, policy)
    sends = np.flatnonzero(d.action_idx >= 0)
    explored = d.exploration
    assert explored.sum() > 0.25 * n and (explored & (d.action_idx >= 0)).sum() > 5_000  # the test means something
    assert not (explored & d.control_group).any()
    cp, acts = SETTINGS.contact_policy, list(SETTINGS.actions)
    a, c = d.action_idx[sends], d.channel_idx[sends]
    chan = np.array(CHANNELS)[c]
    col = lambda name: np.array([f[name.format(ch=x)][i] for i, x in zip(sends, chan)])  # noqa: E731
    assert col("consent_{ch}").all() and col("reachable_{ch}").all()
    for j, ch in enumerate(CHANNELS):
        on = c == j
        cap = cp.caps.per_channel[ch]
        window = f"sent_{'7d' if cap.days <= 7 else '30d'}_{ch}"
        assert (f[window][sends[on]] < cap.max).all(), ch
    overall = cp.caps.overall
    assert (f[f"sent_{'7d' if overall.days <= 7 else '30d'}_total"][sends] < overall.max).all()
    relay = cp.ignore_relay
    on_relay = chan == relay.channel
    assert (f[f"consecutive_ignores_{relay.channel}"][sends[on_relay]] < relay.after_ignored).all()
    for k, name in enumerate(acts):
        act = SETTINGS.actions[name]
        rows = sends[a == k]
        since = f[f"days_since_action_{name}"][rows]
        assert not (since < act.cooldown_days).any(), name
        assert np.isin(np.array(STAGES)[f["stage_code"][rows]], act.stages).all(), name
        assert set(chan[a == k]) <= set(act.cost), name
        if act.max_tenure_days:
            assert (f["tenure_days"][rows] <= act.max_tenure_days).all(), name
        if act.requires == "missing_email":
            assert (~f["reachable_email"][rows] & f["consent_sms"][rows] & f["reachable_sms"][rows]).all()
        if act.requires == "churn_or_rfm_drop":
            assert ((inp.p_churn[rows] >= cp.churn_offer_threshold) | f["rfm_dropped"][rows]).all()
    local_hour = np.array([int(s[11:13]) for s in d.send_at[sends]])
    quiet = (local_hour >= cp.quiet_hours.start) | (local_hour < cp.quiet_hours.end)
    assert not quiet.any()
    # explored no_action and explored sends both happen; the control group still gets nothing
    assert (explored & (d.action_idx < 0)).any()
    assert (d.action_idx[d.control_group] < 0).all()


def test_propensities_are_the_probabilities_of_the_options(policy):
    """20 customer profiles x 5,000 customers each: how often each option is returned matches the propensity
    the decisions carry (control group and exploration together), and the options' propensities sum to 1."""
    profiles, per = 20, 5_000
    rng = np.random.default_rng(12)
    X0 = np.full((profiles, len(FI)), np.nan, np.float32)
    for p in range(profiles):  # every stage, with two to five open channels and an action in cooldown
        open_ = [c for c in CHANNELS if rng.random() < 0.6] or ["email", "sms"]
        row = customer(STAGES[p % len(STAGES)], channels=open_, rfm_dropped=float(p % 3 == 0),
                       tenure_days=float(rng.integers(1, 300)))
        row[f"days_since_action_{list(SETTINGS.actions)[p % len(SETTINGS.actions)]}"] = 1.0
        for k, v in row.items():
            X0[p, FI[k]] = v
    X = np.repeat(X0, per, axis=0)
    p_resp = np.repeat(rng.random((profiles, len(CHANNELS))) * 0.4, per, axis=0)
    n = len(X)
    inp = DecisionInputs(customer_ids=[f"p{i}" for i in range(n)], X=X, feature_index=FI,
                         timezones=["Europe/Paris"] * n, now=NOW, p_activation=np.repeat(rng.random(profiles), per),
                         p_churn=np.repeat(rng.random(profiles), per), p_response=p_resp, day_part="afternoon",
                         request_id="freq")
    d = decide(inp, policy)
    assert ((d.propensity > 0) & (d.propensity <= 1)).all()
    option = d.action_idx.astype(np.int64) * len(CHANNELS) + d.channel_idx
    profile = np.arange(n) // per
    checked = 0
    for p in range(profiles):
        rows = profile == p
        seen, counts = np.unique(option[rows], return_counts=True)
        total = 0.0
        for o, cnt in zip(seen, counts):
            prop = d.propensity[rows][option[rows] == o]
            assert np.ptp(prop) < 1e-12  # one probability per option and customer profile
            q = float(prop[0])
            total += q
            assert abs(cnt / per - q) < 4.5 * np.sqrt(q * (1 - q) / per) + 1e-9, (p, o)
            checked += 1
        assert total == pytest.approx(1.0, abs=1e-9)  # every option (each has p >= 1%) was drawn
    assert checked > 80  # options compared, over all profiles


def test_greedy_explored_and_control_propensities(policy):
    """The documented formula: greedy (1 - c)(1 - e + e/k), explored (1 - c) e/k, no_action adds c."""
    row = customer("active", channels=("email",))
    n = 4000
    d = decide(inputs([row] * n, response={"email": 0.3}, customer_ids=[f"g{i}" for i in range(n)],
                      request_id="formula"), policy)
    e, c = SHARE, CONTROL
    acted = d.action_idx >= 0
    k = 1 + int(d.n_options[0])  # the eligible (action, channel) pairs and no_action
    greedy = acted & ~d.exploration
    assert greedy.any() and (d.exploration & acted).any()
    assert np.allclose(d.propensity[greedy], (1 - c) * (1 - e + e / k))
    drawn = d.exploration & acted & ~((d.action_idx == d.holdout_action_idx) & (d.channel_idx == d.holdout_channel_idx))
    assert drawn.any() and np.allclose(d.propensity[drawn], (1 - c) * e / k)
    assert np.allclose(d.propensity[~acted], c + (1 - c) * e / k)  # the greedy option sends here
    rec = d.to_records()[int(np.flatnonzero(drawn)[0])]
    reason = next(r for r in rec["reasons"] if r["code"] == "exploration")
    assert rec["exploration"] is True and "best_ev" not in [r["code"] for r in rec["reasons"]]
    assert f"{rec['action']} by {rec['channel']}" in reason["text"] and "probability" in reason["text"]
    NextActionResponse.model_validate({"decisions": d.to_records()})


def test_no_exploration_when_the_share_is_zero():
    pol = compile_policy(with_control(SETTINGS, CONTROL, exploration=0.0))
    X, _ = random_customers(5000, seed=3)
    d = decide(many(X, seed=4), pol)
    assert not d.exploration.any()
    acted = d.action_idx >= 0
    assert np.allclose(d.propensity[acted], 1 - CONTROL) and np.allclose(d.propensity[~acted & ~d.control_group
                                                                                       & (d.holdout_action_idx < 0)], 1)


def take(inp: DecisionInputs, rows: np.ndarray, request_id: str) -> DecisionInputs:
    """The same customers' inputs (features and scores) for `rows`, in that order, under `request_id`."""
    return DecisionInputs(customer_ids=inp.customer_ids[rows], X=inp.X[rows], feature_index=FI,
                          timezones=list(inp.timezones[rows]), now=NOW, p_activation=inp.p_activation[rows],
                          p_churn=inp.p_churn[rows], p_response=inp.p_response[rows], hour_dist=inp.hour_dist[rows],
                          day_part="afternoon", request_id=request_id)


def test_a_retried_request_draws_the_same_option_and_propensity(policy):
    X, _ = random_customers(3000, seed=8)
    inp = many(X, seed=9, request_id="retry")
    first = decide(inp, policy)
    order = np.random.default_rng(0).permutation(3000)[:1000]  # a retry of part of the request, in another order
    again = decide(take(inp, order, "retry"), policy)
    for field in ("action_idx", "channel_idx", "propensity", "exploration", "decision_id"):
        assert np.array_equal(getattr(again, field), getattr(first, field)[order]), field
    other = decide(take(inp, np.arange(3000), "another"), policy)
    assert not np.array_equal(other.exploration, first.exploration)  # another request draws anew


NOW_ENGINE = datetime(2025, 6, 3, 7, 17, tzinfo=timezone.utc)


def test_the_engine_logs_propensity_and_exploration_and_answers_a_retry_alike(tmp_path):
    s = settings_for(tmp_path, NEXTBEST__SERVING__EXPLORATION_SHARE="0.5")
    pressure = SqlitePressure(tmp_path / "pressure.db", Limits.from_policy(compile_policy(s)), create=True)
    history = ContactHistory(tmp_path / "history.db")
    online = ActiveCustomers(s.actions)
    e = Engine(s, online=online, scorer=Scorer(list(online.names)), history=history, clock=Clock(NOW_ENGINE),
               pressure=pressure)
    ids = [f"x{i}" for i in range(40)]
    first = e.decide(NextActionRequest(customer_ids=ids, request_id="engine-retry"))
    assert any(d["exploration"] for d in first) and not all(d["exploration"] for d in first)
    assert all(0 < d["propensity"] <= 1 for d in first)
    again = e.decide(NextActionRequest(customer_ids=ids, request_id="engine-retry"))
    assert again == first
    logged = history.decisions_frame().set_index("decision_id")
    for d in first:
        row = logged.loc[d["decision_id"]]
        assert row["propensity"] == pytest.approx(d["propensity"]) and bool(row["exploration"]) == d["exploration"]
    # a fresh engine (another worker, an empty log) draws the same options for the same request
    history2 = ContactHistory(tmp_path / "history2.db")
    pressure2 = SqlitePressure(tmp_path / "pressure2.db", Limits.from_policy(compile_policy(s)), create=True)
    e2 = Engine(s, online=online, scorer=Scorer(list(online.names)), history=history2, clock=Clock(NOW_ENGINE),
                pressure=pressure2)
    fresh = e2.decide(NextActionRequest(customer_ids=ids, request_id="engine-retry"))
    key = lambda ds: [(d["action"], d["channel"], d["propensity"], d["exploration"]) for d in ds]  # noqa: E731
    assert key(fresh) == key(first)


def test_a_decision_log_written_before_propensities_is_migrated(tmp_path):
    path = tmp_path / "history.db"
    with sqlite3.connect(path) as conn:
        conn.executescript("""
        CREATE TABLE decisions (decision_id TEXT PRIMARY KEY, customer_id TEXT, decided_at TEXT, request_id TEXT,
          action TEXT, channel TEXT, send_at TEXT, stage TEXT, expected_value REAL, control_group INTEGER,
          holdout_action TEXT, cold_start INTEGER, fallback INTEGER, model_versions TEXT, record TEXT);
        CREATE TABLE feedback (decision_id TEXT, customer_id TEXT, event TEXT, channel TEXT, action_id TEXT,
          amount REAL, event_timestamp TEXT);
        INSERT INTO decisions VALUES ('old', 'c1', '2025-01-01T00:00:00+00:00', NULL, 'no_action', NULL, NULL,
          'active', 0.0, 0, NULL, 0, 0, '{}', '{}');""")
    h = ContactHistory(path)
    rec = {"decision_id": "new", "customer_id": "c2", "action": NO_ACTION, "propensity": 0.25, "exploration": True}
    h.log_decisions([rec], [json.dumps(rec)], "2025-01-02T00:00:00+00:00", "r")
    df = h.decisions_frame().set_index("decision_id")
    assert np.isnan(df.loc["old", "propensity"]) and df.loc["new", "propensity"] == 0.25
    assert df.loc["new", "exploration"] == 1
    h.close()
