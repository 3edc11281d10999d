"""Policy evaluation against the simulator's truth, on a small simulated world with rule-based decisions."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from nextbest.vocabulary import CHANNELS, STAGES
from nextbest.settings import DEFAULT_CONFIG_DIR, load_settings
from analysis.evaluate import POLICIES, calendar_actions, evaluate

MAIN = ("nextbest", "calendar", "random", "no_action")


def settings_for(root):
    return load_settings(DEFAULT_CONFIG_DIR, environ={
        "NEXTBEST__PATHS__DATA_DIR": str(root / "data"),
        "NEXTBEST__PATHS__MLRUNS_DIR": str(root / "mlruns"),
        "NEXTBEST__MLFLOW__TRACKING_URI": f"sqlite:///{root}/mlruns/mlflow.db",
        "NEXTBEST__MLFLOW__ARTIFACT_ROOT": str(root / "mlruns" / "artifacts"),
    })


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small simulated world with features built and registered, and no trained model (rule-based fallbacks)."""
    from features import pipeline, store
    from simulator.world import simulate

    root = tmp_path_factory.mktemp("evaluate")
    s = settings_for(root)
    simulate(s, customers=1500, days=120, seed=11, start="2025-01-06", out_dir=s.world_dir)
    pipeline.build(s)
    store.apply(s)
    return s, root


@pytest.fixture(scope="module")
def result(world):
    s, root = world
    return evaluate(s, out_dir=root / "docs")


def test_no_action_is_worth_nothing(result):
    assert result["policies"]["no_action"]["value"] == 0
    assert result["policies"]["no_action"]["sends"] == 0
    assert (result["decisions"]["no_action_value"] == 0).all()


def test_oracle_policy_is_worth_the_most(result):
    pol = result["policies"]
    oracle = pol["oracle"]["value"]
    assert oracle > 0
    tol = 0.02 * abs(oracle) + 1e-6
    for p in MAIN:
        assert oracle >= pol[p]["value"] - tol, (p, pol[p]["value"], oracle)
    assert pol["oracle_argmax"]["value"] >= oracle - tol
    assert pol["oracle"]["share_of_oracle"] == pytest.approx(1.0)


def test_the_policy_arithmetic_agrees_with_the_simulator(result):
    """Fed the truth, the policy's own expected value is the oracle's, and with the EV-optimal hour it is the argmax."""
    pol = result["policies"]
    assert pol["oracle"]["believed_value"] == pytest.approx(pol["oracle"]["value"], rel=1e-3, abs=1e-3)
    assert result["oracle_with_ev_hour"]["value"] == pytest.approx(pol["oracle_argmax"]["value"], rel=1e-3, abs=1e-3)


def test_values_are_the_sum_of_the_customers_values(result):
    d = result["decisions"]
    assert len(d) == result["customers"]
    for p in POLICIES:
        assert d[f"{p}_value"].sum() == pytest.approx(result["policies"][p]["value"], abs=1e-3)
        sent = d[f"{p}_action"] != "no_action"
        assert (d.loc[~sent, f"{p}_value"] == 0).all()
        assert sent.sum() == result["policies"][p]["sends"]


def test_calendar_sends_one_action_at_one_hour_per_stage(world, result):
    s, _ = world
    per_stage = calendar_actions(s)
    assert per_stage == {"registered": "activation_nudge", "activating": "second_use_nudge", "active": "cross_sell",
                         "at_risk": "anti_attrition_offer", "lapsed": "win_back"}
    d = result["decisions"]
    sent = d[d["calendar_action"] != "no_action"]
    assert len(sent) > 0
    assert (sent["calendar_hour"] == 10).all()
    for stage, group in sent.groupby("stage"):
        assert set(group["calendar_action"]) == {per_stage[stage]}
    assert set(sent["stage"]) <= set(STAGES)


def test_every_send_honours_consent_and_reachability(world, result):
    s, _ = world
    customers = pd.read_parquet(s.world_dir / "customers.parquet").set_index("customer_id")
    d = result["decisions"].set_index("customer_id")
    for p in POLICIES:
        assert result["policies"][p]["consent_violations"] == 0, p
        sent = d[d[f"{p}_action"] != "no_action"]
        for c in CHANNELS:
            ids = sent.index[sent[f"{p}_channel"] == c]
            ok = customers.loc[ids, f"consent_{c}"] & customers.loc[ids, f"reachable_{c}"]
            assert ok.all(), (p, c, list(ids[~ok.to_numpy()])[:5])
        # sends go out outside quiet hours (21:00-08:00 local)
        hours = sent[f"{p}_hour"].to_numpy()
        assert ((hours >= 8) & (hours < 21)).all(), p


def test_every_send_is_an_eligible_action_on_an_allowed_channel(world, result):
    s, _ = world
    d = result["decisions"]
    for p in POLICIES:
        sent = d[d[f"{p}_action"] != "no_action"]
        for (action, channel), _ in sent.groupby([f"{p}_action", f"{p}_channel"]):
            assert channel in s.actions[action].cost, (p, action, channel)
        for stage, group in sent.groupby("stage"):
            assert all(stage in s.actions[a].stages for a in group[f"{p}_action"].unique()), (p, stage)


def test_outputs_have_the_documented_keys(world, result):
    _, root = world
    doc = json.loads((root / "docs" / "evaluation.json").read_text())
    for key in ("as_of", "customers", "policies", "models", "head_swaps", "targets", "conclusion"):
        assert key in doc
    assert set(doc["policies"]) == set(POLICIES)
    for p, r in doc["policies"].items():
        for key in ("value", "per_1000", "share_of_oracle", "uplift_vs_calendar", "sends"):
            assert key in r, (p, key)
        assert r["per_1000"] == pytest.approx(r["value"] / doc["customers"] * 1000, rel=1e-3, abs=1e-3)
    assert set(doc["models"]) == {"activation", "churn", "channel", "send_time"}
    assert "channel_agreement" in doc["models"]["channel"]
    assert "send_hour" in doc["models"]["send_time"]
    assert pd.Timestamp(doc["as_of"]).tzinfo is not None
    md = (root / "docs" / "evaluation.md").read_text()
    assert "](evaluation.png)" in md and "| nextbest |" in md
    assert (root / "docs" / "evaluation.png").stat().st_size > 10_000


def test_the_run_is_logged_to_mlflow(world, result):
    import mlflow
    from mlflow import MlflowClient

    s, _ = world
    mlflow.set_tracking_uri(s.tracking_uri)
    run = MlflowClient().get_run(result["run_id"])
    assert run.info.run_name.startswith("evaluate-")
    assert run.data.metrics["nextbest_value"] == pytest.approx(result["policies"]["nextbest"]["value"])
    artifacts = {a.path for a in MlflowClient().list_artifacts(result["run_id"], "evaluation")}
    assert {"evaluation/evaluation.json", "evaluation/evaluation.md", "evaluation/evaluation.png"} <= artifacts


def test_a_sample_and_an_earlier_decision_time(world, tmp_path):
    s, _ = world
    from features.store import snapshot_times

    times = snapshot_times(s)
    asked = times[-3] + pd.Timedelta(hours=5)
    r = evaluate(s, as_of=asked.isoformat(), customers=200, out_dir=tmp_path, log_mlflow=False)
    assert r["customers"] == 200
    assert pd.Timestamp(r["as_of"]) == times[-3]  # moved back to the snapshot
    assert pd.Timestamp(r["requested_as_of"]) == asked
    assert r["policies"]["no_action"]["value"] == 0


def test_needs_a_simulated_world(tmp_path):
    with pytest.raises(SystemExit, match="simulated world"):
        evaluate(settings_for(tmp_path), out_dir=tmp_path / "docs")
