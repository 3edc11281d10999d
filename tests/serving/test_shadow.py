"""Shadow mode: the @challenger decides for the same live customers, its would-be decisions are logged beside the
live ones and compared by `nextbest shadow`; the live answer is never changed by it, even when it fails."""

from __future__ import annotations

import numpy as np

from analysis.shadow import shadow_summary
from nextbest.clock import Clock
from nextbest.vocabulary import NO_ACTION
from serving.engine import Engine
from serving.history import ContactHistory
from serving.schemas import NextActionRequest
from serving.scoring import Scorer
from tests.serving.test_engine import NOW, ActiveCustomers, parts  # noqa: F401  (fixture)


class Believes:
    """A challenger's effect model that believes one action is worth a lot and every other one nothing."""

    def __init__(self, action: str, fail: bool = False):
        self.action, self.fail = action, fail

    def learned(self, action: str) -> bool:
        return True

    def __call__(self, rows, action, channel, p_response, p_activation, p_churn, hour):
        if self.fail:
            raise RuntimeError("challenger broke")
        return np.full(len(rows), 50.0 if action == self.action else -50.0)


class Challenger(Scorer):
    def __init__(self, names, believes: Believes):
        super().__init__(list(names))
        self.believes = believes

    def increments(self, X):
        return self.believes

    @property
    def versions(self):
        return {"effect": "2"}


def make(s, pressure, history, shadow=None) -> Engine:
    online = ActiveCustomers(s.actions)
    return Engine(s, online=online, scorer=Scorer(list(online.names)), history=history, clock=Clock(NOW),
                  pressure=pressure, shadow=shadow)


def test_the_challenger_decides_in_shadow_and_is_logged_never_returned(parts, tmp_path):  # noqa: F811
    from serving.policy import compile_policy
    from serving.pressure import Limits, SqlitePressure

    s, pressure, history = parts
    online = ActiveCustomers(s.actions)
    ids = [f"c{i}" for i in range(40)]
    # what a service without shadow answers
    plain_pressure = SqlitePressure(tmp_path / "p2.db", Limits.from_policy(compile_policy(s)), create=True)
    plain = make(s, plain_pressure, ContactHistory(tmp_path / "h2.db"))
    expected = plain.decide(NextActionRequest(customer_ids=ids, request_id="r1"))
    # a challenger that believes in an action of active customers the champion does not pick
    other = next(a for a in ("cross_sell", "loyalty_reward", "satisfaction_survey")
                 if all(d["action"] != a for d in expected))
    live = make(s, pressure, history, Challenger(online.names, Believes(other)))
    answered = live.decide(NextActionRequest(customer_ids=ids, request_id="r1"))
    assert answered == expected  # the shadow changes nothing in the answer
    assert live.health()["shadow"] == {"effect": "2"}

    rows = history.shadow_frame().set_index("decision_id")
    assert set(rows.index) == {d["decision_id"] for d in answered}
    assert (rows["action"] == other).all()
    r = shadow_summary(history.path)
    assert r["shadowed"] == r["compared"] == 40 and r["agreement"] == 0.0
    assert r["actions"][other] == {"champion": 0, "challenger": 40}
    assert r["challenger"] == {"effect": "2"} and r["send_rate"]["challenger"] == 1.0


def test_a_failing_shadow_never_touches_the_live_answer(parts):  # noqa: F811
    s, pressure, history = parts
    online = ActiveCustomers(s.actions)
    e = make(s, pressure, history, Challenger(online.names, Believes("win_back", fail=True)))
    answered = e.decide(NextActionRequest(customer_ids=["a", "b"], request_id="r1"))
    assert all(d["action"] != NO_ACTION for d in answered)
    assert set(history.decisions_frame()["decision_id"]) == {d["decision_id"] for d in answered}
    assert history.shadow_frame().empty
    assert shadow_summary(history.path) == {"shadowed": 0, "compared": 0}


def test_no_shadow_without_a_challenger_that_differs(parts):  # noqa: F811
    s, pressure, history = parts
    on = s.model_copy(update={"serving": s.serving.model_copy(update={"shadow": True})})
    e = make(on, pressure, history)  # an empty registry: nothing differs from the champions
    assert e.shadow is None and e.health()["shadow"] is None


def test_shadow_is_off_by_default(parts):  # noqa: F811
    s, pressure, history = parts
    assert s.serving.shadow is False and make(s, pressure, history).shadow is None


def test_the_command_compares_the_shadow_with_the_champion(parts, monkeypatch):  # noqa: F811
    from typer.testing import CliRunner

    from nextbest.cli import app
    from tests.support import settings_env

    s, pressure, history = parts
    online = ActiveCustomers(s.actions)
    make(s, pressure, history, Challenger(online.names, Believes("satisfaction_survey"))).decide(
        NextActionRequest(customer_ids=["a", "b", "c"], request_id="r1"))
    for k, v in settings_env(s).items():
        monkeypatch.setenv(k, v)
    r = CliRunner().invoke(app, ["shadow", "--log", str(history.path)])
    said = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "3 live decisions shadowed" in said and "satisfaction_survey" in said and "send rate" in said
    missing = CliRunner().invoke(app, ["shadow", "--log", str(history.path.parent / "none.db")])
    assert missing.exit_code == 1 and "none.db" in "".join(missing.output.split())
