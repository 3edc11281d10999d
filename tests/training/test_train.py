"""Training, tracking and promotion: what data scientists and the service rely on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from features.names import HOUR_HISTORY, HOUR_SHARES
from nextbest.hours import EVIDENCE_INPUTS, KAPPAS
from nextbest.model_contract import connect, load_version, model_name
from nextbest.vocabulary import CHALLENGER, CHAMPION
from training.registry import promote

pytestmark = pytest.mark.slow
HEADS = ("activation", "churn", "channel", "send_time")


@pytest.fixture(scope="module")
def client(installation):
    return connect(installation)


def champion_run(client, installation, head):
    v = client.get_model_version_by_alias(model_name(installation, head), CHAMPION)
    return v, client.get_run(v.run_id)


@pytest.mark.parametrize("head", HEADS)
def test_run_logs_what_the_service_needs(installation, client, head):
    v, run = champion_run(client, installation, head)
    loaded = load_version(installation, head, CHAMPION)
    c = loaded.contract
    assert c["feature_service"] == installation.features.feature_service == run.data.tags["feature_service"]
    assert c["features"] and c["label_definition"] and c["time_range"]["test_from"] < c["time_range"]["test_to"]
    assert (c["calibration"] is not None) == (head != "send_time")
    evidence = EVIDENCE_INPUTS if head == "send_time" else 0  # the send-time prior does not read the evidence
    assert loaded.head.booster.num_feature() == len(c["features"]) - evidence
    p = run.data.params
    assert {"rows_train", "rows_test", "data_train_from", "data_test_to", "lgb_learning_rate"} <= set(p)
    key = "top3_accuracy" if head == "send_time" else "auc"
    assert {f"test_{key}", f"baseline_{key}", f"oracle_{key}"} <= set(run.data.metrics)
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"contract.json", "features.json", "feature_importance.json", "evaluation"} <= arts
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{model_name(installation, head)}/{v.version}"))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert "signature" in mlmodel and mlmodel["metadata"]["nextbest"]["head"] == head


@pytest.mark.parametrize("head", HEADS)
def test_a_registered_model_predicts_through_mlflow_on_its_signature(installation, head):
    """A data scientist loading a champion with mlflow.pyfunc gets the booster's raw output on the inputs its
    signature names (calibration and the send-time posterior are the contract's)."""
    import mlflow
    import pandas as pd

    connect(installation)
    loaded = load_version(installation, head, CHAMPION)
    model = mlflow.pyfunc.load_model(f"models:/{model_name(installation, head)}@{CHAMPION}")
    inputs = model.metadata.get_input_schema().input_names()
    assert inputs == loaded.head.features[: loaded.head.booster.num_feature()]
    X = np.random.default_rng(0).random((7, len(inputs))).astype(np.float32)  # the features are float32
    got = np.asarray(model.predict(pd.DataFrame(X, columns=inputs)))
    np.testing.assert_allclose(got, np.asarray(loaded.head.booster.predict(X)), rtol=1e-6)


def test_send_time_follows_the_hours_a_customer_engaged_at(installation):
    loaded = load_version(installation, "send_time", CHAMPION)
    c = loaded.contract
    assert c["hour_evidence"]["inputs"] == list(HOUR_HISTORY) and c["hour_evidence"]["kappa"] in KAPPAS
    f = c["features"]
    X = np.full((2, len(f)), np.nan, np.float32)
    X[:, [f.index(h) for h in HOUR_SHARES]] = 0.0
    X[:, f.index("n_engagements")] = [0, 25]
    X[1, f.index("hour_share_04")] = 1.0  # every one of 25 engagements in the 04:00 hour
    dist = loaded.head.predict(X)
    assert np.allclose(dist.sum(axis=1), 1)
    assert dist[1].argmax() == 4 and dist[1, 4] > 3 * dist[0, 4]


def test_service_loads_every_champion_natively(installation):
    from features.store import feature_names
    from serving.scoring import Scorer

    scorer = Scorer.from_registry(installation, feature_names(installation), compile="no")
    assert set(scorer.models) == set(HEADS) and not scorer.unavailable
    X = np.full((3, len(scorer.feature_names)), np.nan, np.float32)
    s = scorer.score(X)
    assert s.p_response.shape == (3, 5) and s.hour_dist.shape == (3, 24)
    assert np.allclose(s.hour_dist.sum(axis=1), 1, atol=1e-5)


# margins for a small test world (2,500 customers); the demo world's figures are in the README. On this small
# causal world churn only holds its own against recency (within 0.02): messages bring lapsed customers back,
# which no snapshot foresees
@pytest.mark.parametrize("head, metric, margin", [("churn", "auc", -0.02), ("channel", "auc", 0.05),
                                                  ("send_time", "top3_accuracy", 0.02)])
def test_models_beat_their_simple_baselines(installation, client, head, metric, margin):
    _, run = champion_run(client, installation, head)
    m = run.data.metrics
    assert m[f"test_{metric}"] > m[f"baseline_{metric}"] + margin, m
    assert m[f"test_{metric}"] <= m[f"oracle_{metric}"] + 0.03  # nobody beats the truth by much


def test_worse_challenger_stays_challenger_and_forced_promotion_says_what_it_replaced(installation, client, monkeypatch):
    import training.train as T

    name = model_name(installation, "churn")
    before = str(client.get_model_version_by_alias(name, CHAMPION).version)
    # a deliberately crippled model: stumps, a tiny learning rate, a handful of rounds
    monkeypatch.setattr(T, "tuned_params", lambda s, h: {"num_leaves": 2, "learning_rate": 0.001, "min_data_in_leaf": 5000})
    src = T.load_sources(installation)
    result = T.train_head(installation, "churn", src, use_tuned=True)
    assert result.status == "trained" and not result.promoted
    assert "stays @challenger" in result.message
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == before
    assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == result.version
    forced = promote(installation, "churn", force=True)
    assert forced.promoted and forced.message.startswith("forced:") and f"replaces champion v{before}" in forced.message
    # put the good model back the same way a data scientist would
    back = promote(installation, "churn", version=int(before), force=True)
    assert back.promoted and str(client.get_model_version_by_alias(name, CHAMPION).version) == before


def test_the_effect_model_is_judged_on_its_qini_and_an_unknown_model_is_named(installation, client):
    name = model_name(installation, "effect")
    champion = str(client.get_model_version_by_alias(name, CHAMPION).version)
    again = promote(installation, "effect", version=int(champion))
    assert not again.promoted and again.message == f"{name} v{champion} is already the champion"
    assert again.challenger_score is not None and np.isfinite(again.challenger_score)  # its Qini, re-measured
    unknown = promote(installation, "sentiment")
    assert not unknown.promoted and unknown.message.startswith("unknown model 'sentiment'")
    assert "effect" in unknown.message


def test_a_held_challenger_waits_for_the_policy_gate_which_refuses_a_crippled_model(installation, client,
                                                                                    monkeypatch):
    """`nextbest train --logged DIR`: new versions stay @challenger whatever their held-out metric, and the
    policy gate judges them on the logged decisions; a crippled churn model does not earn more, so it stays
    challenger with both doubly robust values and the interval in its reason."""
    import training.train as T
    from analysis.gate import policy_gate

    name = model_name(installation, "churn")
    before = str(client.get_model_version_by_alias(name, CHAMPION).version)
    monkeypatch.setattr(T, "tuned_params", lambda s, h: {"num_leaves": 2, "learning_rate": 0.001, "min_data_in_leaf": 5000})
    result = T.train_head(installation, "churn", T.load_sources(installation), use_tuned=True, hold=True)
    assert not result.promoted and "held as @challenger" in result.message and "policy gate" in result.message
    r = policy_gate(installation, installation.world_dir, n_boot=200)
    assert not r["promoted"] and r["changes"] == {"churn": {"champion": before, "challenger": result.version}}
    assert f"[{r['low']:+.4f}, {r['high']:+.4f}]" in r["reason"] and r["low"] <= 0
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == before
    tags = client.get_model_version(name, result.version).tags
    assert tags["gate"].startswith("refused: DR") and tags["gate_reason"] == r["reason"]


def test_train_logged_needs_a_folder(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from nextbest.cli import app

    r = CliRunner().invoke(app, ["train", "--logged", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and "--logged" in r.output and "nowhere" in "".join(r.output.split())


def test_models_table_lists_versions_aliases_and_metrics(installation):
    from rich.console import Console

    from training.registry import models_table

    console = Console(width=200, record=True)
    console.print(models_table(installation))
    text = console.export_text()
    assert "nextbest-churn" in text and "champion" in text and "auc" in text


def test_tune_stores_a_resumable_study(installation):
    from training.tune import best_params, study_name, tune

    study = tune(installation, "activation", trials=2)
    assert len(study.trials) == 2 and best_params(installation, "activation") == study.best_params
    again = tune(installation, "activation", trials=1)
    assert again.study_name == study_name(installation, "activation") and len(again.trials) == 3


def test_transactions_only_log_trains_churn_and_activation_and_explains_the_rest(cdnow_path, tmp_path):
    from features import pipeline, store
    from nextbest.importer import import_transactions
    from tests.support import settings_for
    from training.train import train_all

    s = settings_for(tmp_path)
    import_transactions(cdnow_path, s.world_dir, consent=("email",))
    summary = pipeline.build(s)
    assert any("no message events" in w for w in summary["warnings"])
    store.apply(s)
    results = {r.head: r for r in train_all(s)}
    assert results["churn"].status == "trained" and results["activation"].status == "trained"
    assert results["channel"].status == "skipped" and "no message_sent events" in results["channel"].message
    assert results["send_time"].status == "skipped" and "transactions-only" in results["send_time"].message


def test_a_base_larger_than_max_customers_trains_on_a_sample_of_whole_customers(installation):
    """Training a large base reads a random sample of customers, every row of theirs and nothing of the
    others; the data's end stays the base's, and the runs record how much of the base they saw."""
    from training.datasets import build_dataset, load_sources

    whole = load_sources(installation)
    small = installation.model_copy(update={"training": installation.training.model_copy(update={"max_customers": 1000})})
    src = load_sources(small)
    ids = set(src.customers["customer_id"])
    assert len(ids) == 1000 and src.base_customers == len(whole.customers) > 1000
    assert ids < set(whole.customers["customer_id"])
    mine = whole.events[whole.events["customer_id"].isin(ids)].reset_index(drop=True)
    assert len(src.events) == len(mine) and set(src.events["customer_id"]) <= ids
    assert src.events["event_timestamp"].is_monotonic_increasing
    assert src.data_end == whole.data_end and src.snapshot_times == whole.snapshot_times
    assert set(src.assignments["customer_id"]) <= ids
    assert len(src.assignments) == whole.assignments["customer_id"].isin(ids).sum() > 0
    assert set(load_sources(small).customers["customer_id"]) == ids  # the same sample every time
    ds = build_dataset(small, "churn", src)
    assert set(ds.train.frame["customer_id"]) <= ids
