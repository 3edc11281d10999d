"""The policy gate's verdict in the registry: a refused challenger stays @challenger with the estimate and the
interval in its reason, a winning one becomes @champion; both are shown by `nextbest models`."""

from __future__ import annotations

import pytest

from analysis.gate import record
from analysis.ope import Comparison
from nextbest.vocabulary import CHALLENGER, CHAMPION, EFFECT_MODEL
from tests.support import settings_for


@pytest.fixture
def registry(tmp_path):
    """Two versions of the effect model in a fresh registry: v1 @champion, v2 @challenger."""
    import mlflow
    from mlflow import MlflowClient

    from nextbest.model_contract import connect, model_name

    s = settings_for(tmp_path)
    connect(s)
    client = MlflowClient()
    name = model_name(s, EFFECT_MODEL)
    client.create_registered_model(name)
    for _ in range(2):
        with mlflow.start_run() as run:
            client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(name, CHAMPION, "1")
    client.set_registered_model_alias(name, CHALLENGER, "2")
    return s, client, name


def verdict(better: bool) -> Comparison:
    return Comparison(champion=0.050, challenger=0.080 if better else 0.020, difference=0.030 if better else -0.030,
                      low=0.010 if better else -0.055, high=0.050 if better else -0.004, margin=0.0, n=12_345,
                      better=better)


def test_a_worse_challenger_is_refused_with_the_estimate_and_interval_in_the_reason(registry):
    s, client, name = registry
    r = record(s, verdict(False), {EFFECT_MODEL: ("1", "2")})
    assert not r["promoted"]
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == "1"
    tags = client.get_model_version(name, "2").tags
    assert tags["gate"] == "refused: DR -0.0300 [-0.0550, -0.0040] per decision"
    assert "0.0200" in tags["gate_reason"] and "0.0500" in tags["gate_reason"]
    assert "[-0.0550, -0.0040]" in tags["gate_reason"] and "does not beat" in tags["gate_reason"]
    import mlflow

    runs = mlflow.search_runs(filter_string="tags.kind = 'policy-gate'")
    assert len(runs) == 1 and runs.iloc[0]["tags.verdict"] == "refused"
    assert runs.iloc[0]["metrics.dr_difference"] == pytest.approx(-0.03)


def test_a_better_challenger_is_promoted_and_models_shows_the_verdict(registry):
    from rich.console import Console

    from training.registry import models_table

    s, client, name = registry
    r = record(s, verdict(True), {EFFECT_MODEL: ("1", "2")})
    assert r["promoted"] and str(client.get_model_version_by_alias(name, CHAMPION).version) == "2"
    assert client.get_model_version(name, "2").tags["promoted_by"] == "policy gate"
    console = Console(width=250, record=True)
    console.print(models_table(s))
    assert "promoted: DR +0.0300 [+0.0100, +0.0500] per decision" in console.export_text()
