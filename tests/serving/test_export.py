"""The decision log and its feedback become the data contract's assignments and events: validated, each
decision and each feedback event once however often it was retried, and read by training like any other log."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from nextbest.clock import Clock
from nextbest.contract import load_assignments, load_world, validate_dir, write_world
from nextbest.vocabulary import CHANNELS, NO_ACTION
from serving.engine import Engine
from serving.export import export_log
from serving.history import ContactHistory
from serving.policy import compile_policy
from serving.pressure import Limits, SqlitePressure
from serving.schemas import FeedbackRequest, NextActionRequest
from serving.scoring import Scorer
from tests.serving.test_engine import ActiveCustomers
from tests.support import settings_for
from training.outcomes import outcomes

NOW = datetime(2025, 6, 3, 7, 17, tzinfo=timezone.utc)
IDS = [f"x{i:02d}" for i in range(40)]


def data_folder(path, with_assignments: bool = False):
    reg = pd.Timestamp("2025-01-06T09:00:00+00:00")
    customers = pd.DataFrame({"customer_id": IDS, "registered_at": reg, "timezone": "Europe/Paris",
                              **{f"consent_{c}": True for c in CHANNELS}, **{f"reachable_{c}": True for c in CHANNELS}})
    events = pd.DataFrame({"customer_id": IDS, "event_timestamp": reg, "event_type": "registration", "channel": None,
                           "amount": np.nan, "action_id": None, "campaign_id": None})
    assignments = pd.DataFrame({"customer_id": IDS[:5], "assigned_at": reg + pd.Timedelta(days=30),
                                "action_id": NO_ACTION, "channel": None, "propensity": 0.1,
                                "campaign_id": "legacy-1"}) if with_assignments else None
    write_world(path, customers, events, assignments)
    return path


@pytest.fixture
def served(tmp_path):
    """A service (in process) that decided for 40 known customers and one unknown, retried the request, and
    received feedback - some of it twice."""
    s = settings_for(tmp_path, NEXTBEST__SERVING__EXPLORATION_SHARE="0.3")
    online = ActiveCustomers(s.actions)
    e = Engine(s, online=online, scorer=Scorer(list(online.names)), history=ContactHistory(s.serving_dir / "history.db"),
               clock=Clock(NOW), pressure=SqlitePressure(tmp_path / "pressure.db",
                                                         Limits.from_policy(compile_policy(s)), create=True))
    first = e.decide(NextActionRequest(customer_ids=IDS, request_id="r1"))
    assert e.decide(NextActionRequest(customer_ids=IDS, request_id="r1")) == first  # a retry
    e.decide(NextActionRequest(customer_ids=["someone-new"], request_id="r2"))
    sends = [d for d in first if d["action"] != NO_ACTION]
    assert len(sends) >= 4 and any(d["action"] == NO_ACTION for d in first)

    def feedback(d, event, **kw):
        return e.feedback(FeedbackRequest(decision_id=d["decision_id"], customer_id=d["customer_id"], event=event,
                                          channel=d["channel"], action_id=d["action"],
                                          timestamp=NOW + timedelta(minutes=5), **kw))

    for d in sends[:3]:
        for event in ("sent", "sent", "opened", "clicked"):  # `sent` reported twice
            feedback(d, event)
    feedback(sends[0], "converted", amount=50.0)
    assert feedback(sends[0], "converted", amount=50.0)["duplicate"]  # repeated: counted once
    feedback(sends[3], "cancelled")
    e.close()
    return s, first, sends


def test_the_log_exports_as_validated_assignments_and_events(served, tmp_path):
    s, first, sends = served
    base = data_folder(tmp_path / "world")
    r = export_log(s, tmp_path / "out", data_dir=base)
    assert validate_dir(tmp_path / "out", s.actions)[2] == []
    customers, events = load_world(tmp_path / "out")
    a = load_assignments(tmp_path / "out", s.actions, customers)
    assert r["assignments"] == len(a) == 40 and r["unknown_customers"] == 1  # the cold start is left out
    by_id = a.set_index("decision_id")
    for d in first:  # one row per decision, with the option and the propensity it was answered with
        row = by_id.loc[d["decision_id"]]
        assert row["action_id"] == d["action"] and row["propensity"] == pytest.approx(d["propensity"])
        assert (row["channel"] is None) == (d["action"] == NO_ACTION)
        assert row["customer_id"] == d["customer_id"] and row["campaign_id"] == d["decision_id"]
        held = d["control_group"] and d["holdout_action"] not in (None, NO_ACTION)
        assert row["holdout_action"] == (d["holdout_action"] if held else None)  # what a control was held out from
    assert any(d["control_group"] and d["holdout_action"] not in (None, NO_ACTION) for d in first)
    assert a["randomised"].all() and r["controls"] == int((a["action_id"] == NO_ACTION).sum())
    mine = events[events["campaign_id"].notna()]
    counts = mine.groupby(["campaign_id", "event_type"]).size()
    assert (counts == 1).all()  # `sent` twice, `converted` twice: once each
    assert set(mine["event_type"]) == {"message_sent", "message_opened", "message_clicked", "message_converted",
                                       "purchase"}
    buy = mine[mine["event_type"] == "purchase"]
    assert list(buy["campaign_id"]) == [sends[0]["decision_id"]] and list(buy["amount"]) == [50.0]
    assert sends[3]["decision_id"] not in set(mine["campaign_id"])  # cancelled: no event


def test_training_reads_the_export_as_randomised_outcomes(served, tmp_path):
    """The converted decision's outcome is its action's value of the purchase net of the incentive it paid;
    the other sends and the controls produced nothing."""
    s, _, sends = served
    export_log(s, tmp_path / "out", data_dir=data_folder(tmp_path / "world"))
    customers, events = load_world(tmp_path / "out")
    a = load_assignments(tmp_path / "out", s.actions, customers)
    y = outcomes(a[a["randomised"]], events, s.actions, pd.Timestamp(NOW) + pd.Timedelta(days=90))
    row = y.set_index("decision_id").loc[sends[0]["decision_id"]]
    act = s.actions[sends[0]["action"]]
    expected = act.value * (50.0 if act.objective.event == "purchase" and act.objective.measure == "amount" else 1.0)
    assert row["y"] == pytest.approx(expected - act.incentive)
    others = y[y["decision_id"] != sends[0]["decision_id"]]
    assert np.nan_to_num(others["y"].to_numpy()).max() <= 0  # at most the cost of nothing: no outcome


def test_merging_twice_counts_nothing_twice(served, tmp_path):
    s, first, _ = served
    base = data_folder(tmp_path / "world", with_assignments=True)
    once = export_log(s, tmp_path / "once", data_dir=base, merge=True)
    twice = export_log(s, tmp_path / "twice", data_dir=tmp_path / "once", merge=True)  # the merged folder again
    assert once["assignments"] == twice["assignments"] == 40
    for name in ("once", "twice"):
        customers, events = load_world(tmp_path / name)
        a = load_assignments(tmp_path / name, s.actions, customers)
        assert len(a) == 45 and a["decision_id"].dropna().is_unique  # the 5 legacy assignments kept
        assert (events["event_type"] == "registration").sum() == 40
    e1, e2 = load_world(tmp_path / "once")[1], load_world(tmp_path / "twice")[1]
    assert len(e1) == len(e2)


def test_the_command_writes_the_folder_and_says_what_it_left_out(served, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from nextbest.cli import app
    from tests.support import settings_env

    s, _, _ = served
    data_folder(s.world_dir)
    for k, v in settings_env(s).items():
        monkeypatch.setenv(k, v)
    r = CliRunner().invoke(app, ["export-log", "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "40 assignments" in said and "1 decisions for customers the data folder does not know" in said
    assert validate_dir(tmp_path / "cli", s.actions)[2] == []
    missing = CliRunner().invoke(app, ["export-log", "--out", str(tmp_path / "x"), "--log", str(tmp_path / "no.db")])
    assert missing.exit_code == 1 and "no.db" in "".join(missing.output.split())
