"""`nextbest simulate-loop`: a small world lived day by day by the five arms, with one weekly retrain."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.loop.arms import ARMS
from analysis.loop.run import simulate_loop, write
from nextbest.cli import app
from tests.support import settings_for

pytestmark = pytest.mark.slow

DAYS, RETRAIN_EVERY, TAIL = 10, 5, 20


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    s = settings_for(root, NEXTBEST__SERVING__EXPLORATION_SHARE="0.05", NEXTBEST__TRAINING__MAX_ROWS="30000")
    doc = simulate_loop(s, days=DAYS, customers=1500, legacy_days=150, retrain_every=RETRAIN_EVERY,
                        root=root / "loop", start=date(2025, 1, 6), tail_days=TAIL)
    return s, root, doc


def test_every_arm_lives_every_day(loop):
    _, _, doc = loop
    assert set(doc["arms"]) == set(ARMS)
    for a in doc["arms"].values():
        assert len(a["value"]) == len(a["sends"]) == len(a["messages"]) == DAYS
    assert doc["day0"] == "2025-06-05"  # 150 legacy days after the start, whatever today is


def test_no_action_sends_nothing_and_is_worth_nothing(loop):
    _, _, doc = loop
    a = doc["arms"]["no_action"]
    assert sum(a["sends"]) == 0 and sum(a["messages"]) == 0
    assert a["value"] == [0.0] * DAYS


def test_no_policy_sends_on_a_closed_channel(loop):
    _, _, doc = loop
    assert {a: doc["summary"][a]["consent_violations"] for a in ARMS} == {a: 0 for a in ARMS}


def test_the_oracle_policy_creates_the_most_value_among_the_rule_bound_policies(loop):
    _, _, doc = loop
    s = doc["summary"]
    assert s["oracle"]["value"] > 0
    assert s["oracle"]["value"] > s["learning"]["value"]
    assert s["oracle"]["value"] > s["frozen"]["value"]


def test_nextbest_sends_fewer_messages_than_the_calendar(loop):
    _, _, doc = loop
    s = doc["summary"]
    assert 0 < s["learning"]["messages_per_customer_30d"] < s["calendar"]["messages_per_customer_30d"]


def test_every_arm_is_also_valued_by_what_its_world_produced_against_no_action(loop):
    _, _, doc = loop
    assert doc["tail_days"] == TAIL
    noise = doc["noise"]
    assert noise["draws"] == 4 and noise["sd"] > 0 and noise["half_width"] > 0
    eve = doc["arms"]["no_action"]["produced"]["sends"]  # the legacy's last sends, the evening before day 0
    for arm in ARMS:
        a, r = doc["arms"][arm], doc["summary"][arm]
        assert r["realised_low"] < r["realised"] < r["realised_high"]
        # nobody sends after the loop (the calendar stops too): the messages sent are the loop's assignments
        assert a["produced"]["sends"] == sum(a["sends"]) + eve
    assert doc["arms"]["calendar"]["produced"]["cost"] > doc["arms"]["learning"]["produced"]["cost"] > \
        doc["arms"]["no_action"]["produced"]["cost"]
    # the no-action worlds differ by their chance draws only
    assert len({t["total"] for t in doc["no_action_twins"]}) == 3


def test_the_learning_arm_retrains_on_its_own_logged_decisions(loop):
    s, root, doc = loop
    assert [r["day"] for r in doc["retrains"]] == [str((pd.Timestamp(doc["day0"]) + pd.Timedelta(days=RETRAIN_EVERY))
                                                       .date())]
    r = doc["retrains"][0]
    assert r["status"] == "trained" and r["version"] == "2"
    # judged by the policy gate on the logged decisions: its verdict carries the doubly robust difference
    assert "doubly robust value per logged decision" in r["message"] and r["dr_low"] <= r["dr_difference"]
    # the exported tables hold the learning arm's decisions with their propensities, controls included
    a = pd.read_parquet(root / "loop" / "data" / "world" / "assignments.parquet")
    own = a[a["campaign_id"].astype(str).str.startswith("learning-")]
    assert own["assigned_at"].min() >= pd.Timestamp(doc["day0"], tz="UTC")
    assert len(own) > 100
    p = own["propensity"].to_numpy(float)
    assert ((p > 0) & (p <= 1)).all()
    assert (own["action_id"] == "no_action").any() and (own["action_id"] != "no_action").any()
    assert own.loc[own["action_id"] == "no_action", "channel"].isna().all()


def test_the_page_shows_a_chart_per_measure_and_the_target(loop, tmp_path):
    _, _, doc = loop
    paths = write(doc, tmp_path)
    md = paths["md"].read_text()
    assert "| nextbest, retrained weekly |" in md and "| legacy calendar |" in md
    assert "90% or more of the oracle's daily value" in md
    assert "realised incremental value (95% noise interval)" in md and "no-action worlds reseeded" in md
    assert paths["png"].stat().st_size > 20_000
    assert np.isfinite(doc["summary"]["learning"]["share_of_oracle_end"])


def test_cli_refuses_a_legacy_period_too_short_to_learn_from():
    r = CliRunner().invoke(app, ["simulate-loop", "--legacy-days", "10"], env={"COLUMNS": "200"})
    assert r.exit_code == 2
    assert "Invalid value for '--legacy-days'" in r.output and "greater than or equal to 60" in r.output
