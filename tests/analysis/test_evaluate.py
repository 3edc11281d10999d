"""Policy evaluation against the simulated world's causal truth, on a small world with rule-based decisions
(no trained model: nextbest falls back to the catalogue's priors)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.evaluation import evaluate
from analysis.evaluation.single import DIAGNOSTICS, POLICIES, evaluate_world
from analysis.evaluation.worlds import mean_interval
from nextbest.vocabulary import CHANNELS, STAGES
from tests.support import settings_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small simulated world with features built and registered, no trained model."""
    from features import pipeline, store
    from simulator.world import simulate

    root = tmp_path_factory.mktemp("evaluate")
    s = settings_for(root)
    w = simulate(s, customers=1500, days=120, seed=11, start="2025-01-06", out_dir=s.world_dir)
    pipeline.build(s)
    store.apply(s)
    return s, root, w.oracle()


@pytest.fixture(scope="module")
def result(world):
    s, root, oracle = world
    return evaluate_world(s, oracle)


def test_no_action_is_worth_nothing(result):
    assert result["policies"]["no_action"]["value"] == 0 and result["policies"]["no_action"]["sends"] == 0
    assert (result["values"]["no_action"] == 0).all()


def test_the_oracle_policy_is_worth_the_most(result):
    """With the true effects the same rules pick, per customer, the option worth the most: no policy beats it."""
    pol, values = result["policies"], result["values"]
    assert pol["oracle"]["value"] > 0 and pol["oracle"]["share_of_oracle"] == pytest.approx(1.0)
    for p in ("nextbest", "response_ranked", "calendar", "random"):
        assert pol["oracle"]["value"] > pol[p]["value"], p
    # and it never sends what is worth less than nothing
    sends = result["choices"]["oracle"].sends
    assert (values["oracle"][sends] > 0).all()


def test_values_are_the_sum_of_the_customers_values(result):
    for p in (*POLICIES, *DIAGNOSTICS):
        assert result["policies"][p]["value"] == pytest.approx(result["values"][p].sum(), abs=1e-3)
        assert result["policies"][p]["sends"] == int(result["choices"][p].sends.sum())


def test_where_nextbest_loses_adds_up_to_its_gap_to_the_oracle(result):
    lost = result["losses"]
    gap = result["policies"]["oracle"]["value"] - result["policies"]["nextbest"]["value"]
    assert sum(k["lost"] for k in lost["kinds"].values()) == pytest.approx(gap, abs=1e-2)
    differ = (result["choices"]["oracle"].action != result["choices"]["nextbest"].action).sum()
    assert lost["kinds"]["action"]["customers"] + lost["kinds"]["extra_send"]["customers"] \
        + lost["kinds"]["held_back"]["customers"] == differ


def test_every_send_honours_consent_and_reachability(world, result):
    s, _, oracle = world
    open_ = oracle.reachable(result["ids"])
    for p in (*POLICIES, *DIAGNOSTICS):
        c = result["choices"][p]
        rows = np.flatnonzero(c.sends)
        assert open_[rows, c.channel[rows]].all(), p
        assert result["policies"][p]["consent_violations"] == 0


def test_every_send_is_an_action_of_the_customers_stage_on_an_allowed_channel(world, result):
    import pandas as pd

    from features.store import historical_features

    s, _, _ = world
    feats = historical_features(s, pd.DataFrame({"customer_id": result["ids"], "event_timestamp": pd.Timestamp(
        result["as_of"])}))
    stage = feats["stage_code"].to_numpy().astype(int)
    actions = list(s.actions)
    for p in POLICIES:
        c = result["choices"][p]
        for i in np.flatnonzero(c.sends)[:300]:
            act = s.actions[actions[c.action[i]]]
            assert STAGES[stage[i]] in act.stages and CHANNELS[c.channel[i]] in act.cost, (p, i)


def test_calendar_sends_one_action_per_stage_at_ten(world, result):
    c = result["choices"]["calendar"]
    assert c.sends.any() and set(c.hour[c.sends].tolist()) == {10}


def test_wrong_lifts_change_what_the_priors_choose(result):
    a = result["choices"]["response_ranked"]
    b = result["choices"]["response_ranked_wrong_lifts"]
    assert (a.action != b.action).any()


def test_outputs_documents_and_mlflow(world):
    import mlflow
    from mlflow import MlflowClient

    from nextbest.model_contract import connect

    s, root, _ = world
    doc = evaluate(s, out_dir=root / "docs")
    for kind in ("json", "md", "png"):
        assert (root / "docs" / f"evaluation.{kind}").stat().st_size > 500
    data = json.loads((root / "docs" / "evaluation.json").read_text())
    assert set(data["policies"]) == {*POLICIES, *DIAGNOSTICS}
    assert {"share_of_oracle", "share_of_oracle_met"} <= set(data["targets"])
    assert (s.data_dir / "evaluation" / "latest.json").exists()
    md = (root / "docs" / "evaluation.md").read_text()
    assert "oracle policy (same rules, true effects)" in md and "calendar baseline" in md
    assert "## Where nextbest loses value against the oracle" in md and "another send hour" in md
    assert "(evaluation-losses.png)" in md and (root / "docs" / "evaluation-losses.png").stat().st_size > 500
    connect(s)
    run = MlflowClient().get_run(doc["run_id"])
    assert run.data.metrics["no_action_per_1000"] == 0 and "nextbest_per_1000" in run.data.metrics
    assert mlflow.artifacts.list_artifacts(run_id=doc["run_id"], artifact_path="evaluation")


def test_needs_a_simulated_world(tmp_path):
    s = settings_for(tmp_path)
    with pytest.raises(SystemExit, match="simulated world"):
        evaluate(s, out_dir=tmp_path / "docs")


def test_interval_over_worlds():
    c = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert c["mean"] == 3.0 and c["n"] == 5
    assert c["low"] == pytest.approx(3.0 - 2.776 * np.std([1, 2, 3, 4, 5], ddof=1) / np.sqrt(5))
    assert mean_interval([2.0])["low"] is None and mean_interval([])["mean"] is None


def test_policies_judged_on_the_logged_campaigns(world):
    """The world's randomised legacy campaigns as the log: every candidate estimated with IPS, self-normalised
    IPS and doubly robust, with intervals around the estimates; doing nothing is worth exactly nothing."""
    from analysis.evaluation.logged import CANDIDATES, evaluate_logged

    s, root, oracle = world
    doc = evaluate_logged(s, s.world_dir, n_boot=100)
    assert doc["decisions"] > 1000 and doc["controls"] > 50
    assert list(doc["policies"]) == list(CANDIDATES)
    nothing = doc["policies"]["no_action"]
    assert all(nothing[e]["value"] == 0 for e in ("ips", "snips", "dr")) and nothing["send_rate"] == 0
    assert nothing["unsupported"] == 0 and not nothing["warnings"]
    # each legacy campaign used one channel: the champion's other channels have no support there, and it says so
    champion = doc["policies"]["champion"]
    assert champion["unsupported"] > 0 and any("no support" in w for w in champion["warnings"])
    for name in ("champion", "response_ranked", "calendar"):
        p = doc["policies"][name]
        assert p["send_rate"] > 0 and 0 < p["ess"] <= p["matched"] <= doc["decisions"], name
        for e in ("ips", "dr"):
            assert p[e]["low"] <= p[e]["value"] <= p[e]["high"], (name, e)


def test_a_challenger_configuration_is_judged_on_the_log(world):
    """A configuration that never sends is refused against the champion's rules on the same logged decisions,
    with both doubly robust values in the reason; without any challenger there is nothing to gate."""
    from analysis.gate import policy_gate

    s, root, oracle = world
    with pytest.raises(SystemExit, match="nothing to gate"):
        policy_gate(s, s.world_dir)
    silent = s.model_copy(update={"contact_policy": s.contact_policy.model_copy(update={"min_expected_value": 1e6})})
    r = policy_gate(s, s.world_dir, silent, n_boot=100)
    assert not r["promoted"] and r["challenger"] == 0 and r["changes"] == {}
    assert f"{r['champion']:.4f}" in r["reason"] and f"[{r['low']:+.4f}, {r['high']:+.4f}]" in r["reason"]


def test_a_start_that_is_not_a_date_is_refused_by_name(tmp_path):
    from typer.testing import CliRunner

    from nextbest.cli import app

    r = CliRunner().invoke(app, ["evaluate", "--seeds", "1", "--start", "2025-13-01"],
                           env={"COLUMNS": "200", "NEXTBEST__PATHS__DATA_DIR": str(tmp_path)})
    assert r.exit_code == 2
    assert "Invalid value for --start" in r.output and "'2025-13-01' is not a date" in r.output
