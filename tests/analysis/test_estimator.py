"""`nextbest check-estimator`: logs of a small simulated world, each candidate's estimate beside its truth."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.loop.estimator import CHECKED, check_estimator, summary, write
from nextbest.cli import app
from tests.support import settings_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    root = tmp_path_factory.mktemp("estimator")
    s = settings_for(root, NEXTBEST__TRAINING__MAX_ROWS="30000")
    doc = check_estimator(s, repetitions=2, customers=1500, legacy_days=120, log_days=7, exploration=0.3,
                          root=root / "check", start=date(2025, 1, 6))
    return root, doc


def test_each_repetition_logs_the_products_own_randomised_decisions(check):
    root, doc = check
    a = pd.read_parquet(root / "check" / "log" / "assignments.parquet")  # the last repetition's log
    assert len(a) == doc["runs"][-1]["decisions"] > 300
    assert a["campaign_id"].astype(str).str.startswith("nextbest-").all()
    assert a["assigned_at"].min() >= pd.Timestamp("2025-05-06", tz="UTC")  # day 0: 120 days after the start
    p = a["propensity"].to_numpy(float)
    assert ((p > 0) & (p <= 1)).all()
    assert (p < 0.5).any()  # explored options carry their (small) probability
    assert a.groupby("customer_id").size().max() == 1  # one decision per customer: no message blurs another's


def test_the_log_is_judged_on_the_features_its_decisions_saw(check):
    _, doc = check
    for run in doc["runs"]:  # deciding again on the window, the champion makes the logged choices its own
        assert run["greedy_sends"] > 20 and run["greedy_same"] >= 0.95, run  # weekly snapshots: 0.67


def test_the_repetitions_are_independent_futures(check):
    _, doc = check
    first, second = doc["runs"]
    assert first["decisions"] != second["decisions"] or first["champion"]["truth"] != second["champion"]["truth"]


def test_every_checked_candidate_has_a_truth_and_an_interval_around_its_estimate(check):
    _, doc = check
    for run in doc["runs"]:
        for name in CHECKED:
            r = run[name]
            assert np.isfinite(r["truth"]) and r["truth"] != 0
            assert r["low"] <= r["dr"] <= r["high"]


def test_coverage_and_error_are_computed_over_the_repetitions():
    runs = [{n: {"truth": 1.0, "dr": dr, "low": dr - 0.5, "high": dr + 0.5} for n in CHECKED} for dr in (1.02, 2.0)]
    s = summary(runs)["champion"]
    assert s["coverage"] == 0.5  # 1.02 +- 0.5 covers 1.0, 2.0 +- 0.5 does not
    assert s["relative_error"] == pytest.approx(0.51)  # mean estimate 1.51 against 1.0
    assert not s["relative_error_met"] and not s["coverage_met"]


def test_the_page_states_the_targets(check, tmp_path):
    _, doc = check
    md = write(doc, tmp_path)["md"].read_text()
    assert "| nextbest champion |" in md and "| calendar baseline |" in md
    assert "within 5% of the truth" in md and "at least 90% of the repetitions" in md


def test_cli_refuses_an_exploration_share_above_one():
    r = CliRunner().invoke(app, ["check-estimator", "--exploration", "1.5"], env={"COLUMNS": "200"})
    assert r.exit_code == 2
    assert "Invalid value for '--exploration'" in r.output
