"""The engine in process, with its stores failing: never an empty feature store created in place of a
missing one, no send recommended while contact pressure cannot be reserved, health says which store."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest

from features.names import CONTEXT, customer_features
from nextbest.clock import Clock
from nextbest.vocabulary import NO_ACTION
from serving.engine import Engine
from serving.errors import ApiError
from serving.history import ContactHistory
from serving.policy import compile_policy
from serving.pressure import Limits, SqlitePressure
from serving.schemas import FeedbackRequest, NextActionRequest
from serving.scoring import Scorer
from tests.serving.test_policy import customer
from tests.support import settings_for

NOW = datetime(2025, 6, 3, 7, 17, tzinfo=timezone.utc)


class ActiveCustomers:
    """An online store whose every customer is active, consented and reachable everywhere, never contacted."""

    def __init__(self, actions):
        self.names = [*customer_features(tuple(actions)), *CONTEXT]
        self.row = customer("active")

    def read(self, ids, context=None):
        X = np.full((len(ids), len(self.names)), np.nan, np.float32)
        for k, v in self.row.items():
            X[:, self.names.index(k)] = v
        return X, np.ones(len(ids), bool), ["Europe/Paris"] * len(ids)

    def read_customer(self, ids):
        return self.read(ids)


@pytest.fixture
def parts(tmp_path):
    s = settings_for(tmp_path, NEXTBEST__SERVING__CONTROL_SHARE="0")
    pressure = SqlitePressure(tmp_path / "pressure.db", Limits.from_policy(compile_policy(s)), create=True)
    return s, pressure, ContactHistory(tmp_path / "history.db")


def engine(s, pressure, history, online=None) -> Engine:
    names = online.names if online else [*customer_features(tuple(s.actions)), *CONTEXT]
    return Engine(s, online=online, scorer=Scorer(list(names)), history=history, clock=Clock(NOW), pressure=pressure)


def test_a_missing_online_store_is_reported_and_never_created(parts):
    from features.store import online_store_path

    s, pressure, history = parts
    e = engine(s, pressure, history)
    path = online_store_path(s)
    assert "missing" in e.feature_error and not path.exists()
    checks = e.checks()
    assert checks["feature_store"].startswith("unavailable") and "missing" in checks["feature_store"]
    assert checks["pressure_store"] == checks["decision_log"] == checks["models"] == "ok"
    assert e.health()["status"] == "unavailable"
    d = e.decide(NextActionRequest(customer_ids=["a"]))[0]
    assert d["action"] == NO_ACTION and "feature_store" in d["fallbacks"]  # rules-only, flagged
    assert not path.exists()


def test_no_send_while_the_pressure_store_is_missing(parts):
    s, pressure, history = parts
    e = engine(s, pressure, history, online=ActiveCustomers(s.actions))
    sent = e.decide(NextActionRequest(customer_ids=["a", "b"], request_id="r1"))
    assert all(d["action"] != NO_ACTION for d in sent)
    pressure.path.rename(pressure.path.with_suffix(".away"))
    pressure.close()  # a new connection finds the file gone
    held = e.decide(NextActionRequest(customer_ids=["c", "d"], request_id="r2"))
    assert all(d["action"] == NO_ACTION and "pressure_store" in d["fallbacks"] for d in held)
    assert all("fallback:pressure_store" in {r["code"] for r in d["reasons"]} for d in held)
    assert e.checks()["pressure_store"].startswith("unavailable")
    fb = FeedbackRequest(decision_id=sent[0]["decision_id"], customer_id="a", event="sent",
                         channel=sent[0]["channel"], action_id=sent[0]["action"], timestamp=NOW)
    with pytest.raises(ApiError) as err:
        e.feedback(fb)
    assert err.value.status == 503 and "retry" in err.value.message


def test_a_retried_request_is_answered_from_the_log(parts):
    s, pressure, history = parts
    e = engine(s, pressure, history, online=ActiveCustomers(s.actions))
    first = e.decide(NextActionRequest(customer_ids=["a"], request_id="same"))
    again = e.decide(NextActionRequest(customer_ids=["a", "b"], request_id="same"))
    assert again[0] == first[0]  # not decided again: its own reservation would otherwise change nothing anyway
    assert again[1]["customer_id"] == "b" and again[1]["decision_id"] != first[0]["decision_id"]
    twice = e.decide(NextActionRequest(customers=[{"customer_id": "z"}, {"customer_id": "z"}], request_id="dup"))
    assert twice[0]["decision_id"] != twice[1]["decision_id"]  # a customer listed twice: two decisions
    assert (twice[0]["action"], twice[0]["channel"]) != (twice[1]["action"], twice[1]["channel"])


def test_requests_decided_together_are_answered_as_each_would_be_alone(parts, tmp_path):
    s, pressure, history = parts
    together = engine(s, pressure, history, online=ActiveCustomers(s.actions))
    (tmp_path / "alone").mkdir()
    alone_history = ContactHistory(tmp_path / "alone" / "history.db")
    alone = engine(s, SqlitePressure(tmp_path / "alone" / "pressure.db", pressure.limits, create=True), alone_history,
                   online=ActiveCustomers(s.actions))
    reqs = [NextActionRequest(customer_ids=["a", "b"], request_id="r1"),
            NextActionRequest(customer_ids=["c"], context={"restrict_actions": ["free_money"]}),
            NextActionRequest(customers=[{"customer_id": "d", "context": {"trigger_event": "cart_abandoned"}}],
                              request_id="r3"),
            NextActionRequest(customer_ids=["e"]),
            NextActionRequest(customer_ids=["a", "b"], request_id="r1")]  # a retry racing its original
    answers = together.answer_many(reqs, NOW)
    assert isinstance(answers[1], ApiError) and answers[1].status == 400
    assert answers[1].message.startswith("context.restrict_actions: unknown action(s) ['free_money']")
    for k in (0, 2):
        records, texts = answers[k]
        assert records == alone.decide(reqs[k], NOW)
        assert [json.loads(t) for t in texts] == records
    assert answers[3][0][0]["customer_id"] == "e" and answers[3][0][0]["action"] != NO_ACTION
    assert answers[4] == answers[0]  # the retry gets the very same decisions
    log = history.decisions_frame().set_index("decision_id")
    assert len(log) == 4  # a, b, d, e: each decided and logged once
    assert log.loc[answers[0][0][0]["decision_id"], "request_id"] == "r1"
    assert log.loc[answers[2][0][0]["decision_id"], "request_id"] == "r3"
    assert log.loc[answers[3][0][0]["decision_id"], "request_id"] is None
