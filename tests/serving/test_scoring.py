"""The effect model's increments valued together (one evaluation for every option of a request) equal the same
increments valued one option at a time, and the policy decides the same either way."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import numpy as np
import pytest

from features.message import OPTION_INPUTS
from features.names import CONTEXT, customer_features
from nextbest.model_contract import Head, LoadedModel
from nextbest.vocabulary import CHANNELS, EFFECT_MODEL
from serving.policy import DecisionInputs, compile_policy, decide
from serving.scoring import EffectIncrements
from tests.serving.test_policy import customer
from tests.support import settings_for


class OneAtATime:
    """The same increments without the batched path."""

    def __init__(self, inner):
        self.inner = inner

    def learned(self, action):
        return self.inner.learned(action)

    def __call__(self, *args):
        return self.inner(*args)


@pytest.fixture
def parts(tmp_path):
    import lightgbm as lgb

    s = settings_for(tmp_path, NEXTBEST__SERVING__CONTROL_SHARE="0")
    names = [*customer_features(tuple(s.actions)), *CONTEXT]
    features = ["monetary_365d", "frequency_365d", "days_since_last_purchase", *OPTION_INPUTS]
    rng = np.random.default_rng(0)
    X = rng.random((3000, len(features))).astype(np.float32)
    X[:, features.index("opt_action_code")] = rng.integers(0, len(s.actions), 3000)
    X[:, features.index("opt_channel_code")] = rng.integers(0, len(CHANNELS), 3000)
    y = X[:, features.index("opt_action_code")] * 0.3 - X[:, features.index("opt_channel_code")] + X[:, 2]
    booster = lgb.train({"objective": "regression", "verbosity": -1, "num_leaves": 15, "seed": 1},
                        lgb.Dataset(X, y, feature_name=features), num_boost_round=30)
    contract = {"actions": list(s.actions), "assignments": {a: 10_000 for a in s.actions},
                "scaled_actions": [a for a in s.actions if s.actions[a].objective.measure == "amount"],
                "scale_default": 40.0}
    model = LoadedModel(Head(EFFECT_MODEL, booster, features, None), "1", contract)
    n = 300
    index = {f: i for i, f in enumerate(names)}
    Xc = np.full((n, len(names)), np.nan, np.float32)
    for k, v in customer("active").items():
        Xc[:, index[k]] = v
    Xc[:, index["monetary_365d"]] = rng.uniform(10, 500, n)
    Xc[:, index["frequency_365d"]] = rng.integers(1, 9, n)
    Xc[:, index["days_since_last_purchase"]] = rng.uniform(0, 60, n)
    return s, model, Xc, index


def test_batched_increments_equal_one_option_at_a_time(parts):
    import serving.scoring as scoring

    s, model, X, index = parts
    inc = EffectIncrements(model, X, index, min_assignments=1)
    rng = np.random.default_rng(1)
    calls = [(np.sort(rng.choice(len(X), k, replace=False)), a, c, rng.random(k), rng.random(k), rng.random(k),
              np.full(k, 10.0)) for k, a, c in ((5, "cross_sell", 0), (120, "loyalty_reward", 1), (1, "win_back", 4))]
    single = [inc(*call) for call in calls]
    for cap in (scoring.MANY_ROWS, 100):  # one evaluation, and several when the rows exceed the cap
        scoring.MANY_ROWS = cap
        try:
            batched = inc.many(calls)
        finally:
            scoring.MANY_ROWS = 65_536
        assert [len(b) for b in batched] == [5, 120, 1]
        for b, one in zip(batched, single):
            np.testing.assert_allclose(b, one, rtol=1e-6)


def test_the_policy_decides_the_same_with_batched_increments(parts):
    s, model, X, index = parts
    pol = dataclasses.replace(compile_policy(s), exploration_share=0.2)  # explored rows are valued too
    n = len(X)
    inputs = DecisionInputs(customer_ids=np.array([f"c{i}" for i in range(n)], dtype=object), X=X,
                            feature_index=index, found=np.ones(n, bool), timezones=["Europe/Paris"] * n,
                            now=datetime(2025, 6, 3, 7, 17, tzinfo=timezone.utc), request_id="r1")
    inc = EffectIncrements(model, X, index, min_assignments=1)
    a = decide(dataclasses.replace(inputs, effects=inc), pol)
    b = decide(dataclasses.replace(inputs, effects=OneAtATime(inc)), pol)
    assert (a.action_idx >= 0).sum() > 0 and a.exploration.any()
    np.testing.assert_array_equal(a.action_idx, b.action_idx)
    np.testing.assert_array_equal(a.channel_idx, b.channel_idx)
    np.testing.assert_allclose(a.expected_value, b.expected_value, rtol=1e-6)


class RowScores:
    """Scores computed row by row from the features (so a subset scores the same), recording what it was asked."""

    versions: dict = {}

    def __init__(self, index):
        self.index, self.asked = index, []

    def increments(self, X):
        return None

    def score(self, X, policy=None, channels=None):
        from serving.scoring import Scores

        self.asked.append(len(X))
        self.channels = channels
        m = np.nan_to_num(X[:, self.index["monetary_365d"]], nan=0.0)
        p = (m % 97) / 97
        hours = np.tile(np.linspace(0.01, 0.1, 24, dtype=np.float32), (len(X), 1))
        response = np.repeat(p[:, None], len(CHANNELS), axis=1)
        if channels is not None:  # as the channel head: nothing on the channels not asked about
            response = np.where(channels, response, np.nan)
        return Scores(p, 1 - p, response, hours)


def test_only_customers_with_an_option_left_are_scored_and_decisions_do_not_change(parts):
    from serving.engine import decide_arrays
    from tests.serving.test_policy import customer as row_of

    s, _, X, index = parts
    pol = dataclasses.replace(compile_policy(s), exploration_share=0.2)
    n = len(X)
    X = X.copy()
    rows = {"no consent": row_of("active", channels=()), "capped": row_of("active", channels=("sms",)),
            "cooling": row_of("active", days_since_action_cross_sell=1, days_since_action_loyalty_reward=1,
                              days_since_action_satisfaction_survey=1, days_since_action_anti_attrition_offer=1),
            "e-mail only": row_of("active", channels=("email",))}
    rows["capped"]["sent_7d_sms"] = rows["capped"]["sent_30d_sms"] = 99
    for i, r in enumerate(rows.values()):  # rows 0-2 have nothing open, row 3 only e-mail; row 4 is unknown
        X[i, :] = np.nan
        for k, v in r.items():
            X[i, index[k]] = v
    X[3, index["monetary_365d"]] = 120.0
    found = np.ones(n, bool)
    found[4] = False
    ids = np.array([f"c{i}" for i in range(n)], dtype=object)
    now = datetime(2025, 6, 3, 7, 17, tzinfo=timezone.utc)
    scorer = RowScores(index)
    got = decide_arrays(pol, scorer, index, ids, X, found, ["Europe/Paris"] * n, now, request_id="r1")
    assert scorer.asked == [n - 4]  # the four without an option were never scored
    asked_email_only = scorer.channels[0]  # the e-mail-only customer is the first one scored
    assert asked_email_only.tolist() == [c == "email" for c in CHANNELS]
    assert scorer.channels.sum() < (n - 4) * len(CHANNELS)  # the channel head is not asked about closed channels

    full = scorer.score(X)
    want = decide(DecisionInputs(customer_ids=ids, X=X, feature_index=index, found=found,
                                 timezones=["Europe/Paris"] * n, now=now, request_id="r1",
                                 p_activation=full.p_activation, p_churn=full.p_churn, p_response=full.p_response,
                                 hour_dist=full.hour_dist), pol)
    assert (got.action_idx >= 0).sum() > 100 and got.exploration.any()
    for name in ("action_idx", "channel_idx", "propensity", "exploration", "control_group", "n_options", "send_at"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(got.expected_value, want.expected_value, rtol=1e-6)
    np.testing.assert_array_equal(got.p_activation[5:], want.p_activation[5:])

    records = got.to_records()
    for i in range(3):
        assert records[i]["action"] == "no_action" and records[i]["fallbacks"] == []
        assert records[i]["scores"]["activation"] is None and records[i]["scores"]["churn"] is None
        assert set(records[i]["scores"]["response"].values()) == {None}
    response = records[3]["scores"]["response"]  # P(click) is reported where the channel head was asked
    assert response["email"] is not None and all(v is None for c, v in response.items() if c != "email")
    assert records[3]["action"] == "no_action" or records[3]["channel"] == "email"
    assert "response_model" not in records[3]["fallbacks"]
    codes = [[r["code"] for r in rec["reasons"]] for rec in records[:3]]
    assert "no_consented_channel" in codes[0] and "cap_reached:sms" in codes[1] and "no_eligible_action" in codes[2]
    assert records[5]["scores"]["activation"] == pytest.approx(float(want.p_activation[5]), abs=1e-6)
    from serving.schemas import CustomerDecision

    for rec in records[:6]:
        CustomerDecision.model_validate(rec)  # the response schema says an unscored score is null
    frame = got.to_frame()
    assert frame["p_activation"].iloc[:3].isna().all() and frame["p_activation"].iloc[4:].notna().all()


class _Head:
    """A head stand-in: fixed outputs, recording the rows it was asked about."""

    def __init__(self, features, out):
        self.features, self.out, self.asked = features, out, []

    def predict(self, X, n_jobs=1):
        self.asked.append(X.copy())
        return self.out(X)


def test_the_channel_head_is_asked_at_the_hour_the_policy_sends(parts):
    """P(click) is predicted for the hour the decision schedules: the send-time distribution read with its
    neighbours, outside quiet hours — not the distribution's raw peak."""
    from types import SimpleNamespace

    from features.message import MESSAGE_INPUTS, message_stat_features
    from serving.engine import decide_arrays
    from serving.scoring import Scorer

    s, _, X, index = parts
    pol = compile_policy(s)
    n = len(X)
    dist = np.full((n, 24), 0.01, np.float32)
    dist[:, 14] = 0.3                    # a lone spike: the raw peak
    dist[:, 17:20] = 0.2                 # a broad evening: the best hour once neighbours count
    dist[: n // 2, 22] = dist[: n // 2, 21] = dist[: n // 2, 23] = 0.4  # peaks in the quiet hours
    assert not pol.allowed_hours[22] and pol.allowed_hours[14] and pol.allowed_hours[18]
    stats = message_stat_features()
    channel = _Head([*stats, *MESSAGE_INPUTS], lambda Xc: np.full(len(Xc), 0.05, np.float32))
    send_time = _Head(["tenure_days"], lambda Xc: dist[: len(Xc)].ravel())
    models = {h: SimpleNamespace(head=head, version="1") for h, head in (("channel", channel), ("send_time", send_time))}
    scorer = Scorer(list(index), models, None, {})
    ids = np.array([f"c{i}" for i in range(n)], dtype=object)
    now = datetime(2025, 6, 3, 7, 17, tzinfo=timezone.utc)
    got = decide_arrays(pol, scorer, index, ids, X, np.ones(n, bool), ["Europe/Paris"] * n, now, request_id="r1")

    asked = channel.asked[0][:, len(stats) + MESSAGE_INPUTS.index("msg_local_hour")].reshape(n, len(CHANNELS))
    assert (asked == 18).all()
    np.testing.assert_array_equal(got.best_hours[:, 0], asked[:, 0])

    no_policy = scorer.score(X[:4], None)  # without a policy every hour is allowed
    assert (channel.asked[-1][:, len(stats) + MESSAGE_INPUTS.index("msg_local_hour")] == 22).all()
    assert no_policy.p_response.shape == (4, len(CHANNELS))
