"""`nextbest train`: build datasets, fit the heads, log everything to MLflow,
register each as @challenger and let the gate decide @champion."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console

from nextbest.hours import EVIDENCE_INPUTS
from nextbest.model_contract import connect, model_name
from nextbest.quiet import silenced_stderr
from nextbest.settings import Settings
from nextbest.vocabulary import CHALLENGER, CHANNELS, EFFECT_MODEL, HEAD_KIND, HEAD_METRIC, MODELS, NO_ACTION
from training import baselines as B
from training import models as M
from training.datasets import Dataset, SkipHead, build_dataset, load_sources
from training.registry import gate, score_on

console = Console()


@dataclass
class HeadResult:
    head: str
    status: str  # trained | skipped
    message: str
    version: str | None = None
    promoted: bool = False
    metrics: dict = field(default_factory=dict)
    baseline: dict = field(default_factory=dict)
    oracle: dict | None = None
    seconds: float = 0.0


def _requirements() -> list[str]:
    """What loading a logged booster needs (MLflow would otherwise re-import every module to infer it: 5 s)."""
    import mlflow.lightgbm

    return mlflow.lightgbm.get_default_pip_requirements()


def tuned_params(settings: Settings, head: str) -> dict | None:
    from training.tune import best_params

    return best_params(settings, head)


def predict_test(head: str, model: M.Head, ds: Dataset) -> np.ndarray:
    return model.predict(ds.test.X)


def _signature(ds: Dataset, booster):
    """The registered model's signature: the booster's own inputs (the send-time prior reads all the head's
    inputs but the last ones, the customer's hour evidence) and its raw output. Calibration and the hour
    posterior are in the contract (the version's metadata), applied as serving applies them."""
    from mlflow.models import infer_signature

    import pandas as pd

    k = booster.num_feature()
    sample = pd.DataFrame(ds.test.X[:50, :k], columns=ds.features[:k])
    return infer_signature(sample, booster.predict(sample.to_numpy()))


def _log_test_predictions(ds: Dataset, pred: np.ndarray, oracle_pred: np.ndarray | None, limit: int = 50_000) -> None:
    """The held-out predictions (a sample), for gains and calibration charts in the report."""
    import tempfile

    import mlflow

    f = ds.test.frame.copy()
    f["label"] = ds.test.y
    if pred.ndim == 1:
        f["prediction"] = pred
        if oracle_pred is not None:
            f["oracle"] = oracle_pred
    else:
        top = np.argsort(-pred, axis=1)[:, :3]
        f["top1"], f["top2"], f["top3"] = top[:, 0], top[:, 1], top[:, 2]
        if oracle_pred is not None:
            f["oracle_top1"] = oracle_pred.argmax(axis=1)
    f = f.sample(n=min(limit, len(f)), random_state=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/test_predictions.parquet"
        f.to_parquet(path, index=False)
        mlflow.log_artifact(path, "evaluation")


def _base_params(src) -> dict:
    """How much of the base a run learned from (training reads a sample of a large base)."""
    return {"customers": len(src.customers), "base_customers": src.base_customers or len(src.customers)}


def train_head(settings: Settings, head: str, src, use_tuned: bool = True, oracle=None,
               hold: bool = False) -> HeadResult:
    import mlflow

    t0 = time.perf_counter()
    try:
        ds = build_dataset(settings, head, src)
    except SkipHead as e:
        with mlflow.start_run(run_name=f"{head}-skipped"):  # the reason stays on record beside the trained runs
            mlflow.set_tags({"head": head, "status": "skipped", "skip_reason": str(e)})
        return HeadResult(head, "skipped", str(e))
    params = tuned_params(settings, head) if use_tuned else None
    tr = settings.training
    model = M.fit(head, ds, params, tr.num_boost_round, tr.early_stopping_rounds, tr.seed)
    pred = predict_test(head, model, ds)
    test_metrics = M.metrics(head, ds.test.y, pred)
    base_name, base = B.baseline_metrics(ds)
    base.update(B.btyd_metrics(ds, src.events, settings))
    oracle_pred = B.oracle_scores(ds, oracle, settings)
    orc = B.oracle_metrics(ds, oracle, settings)
    contract = {
        "head": head,
        "kind": HEAD_KIND[head],
        "features": ds.features,
        "feature_service": settings.features.feature_service,
        "label_definition": ds.label_definition,
        "horizon_days": ds.horizon_days,
        "calibration": model.calibration,
        "primary_metric": HEAD_METRIC[head],
        "time_range": ds.time_range,
    }
    if model.hour_kappa is not None:  # the prior's evidence: the last inputs (nextbest.hours)
        contract["hour_evidence"] = {"kappa": model.hour_kappa, "inputs": ds.features[-EVIDENCE_INPUTS:]}
    name = model_name(settings, head)
    with mlflow.start_run(run_name=f"{head}-{time.strftime('%Y%m%d-%H%M%S')}"):
        mlflow.set_tags({"head": head, "feature_service": settings.features.feature_service,
                         "label_definition": ds.label_definition, "baseline": base_name})
        mlflow.log_params({
            **{f"lgb_{k}": v for k, v in M.lgb_params(head, params, tr.seed).items()},
            "best_iteration": model.booster.best_iteration, "tuned": params is not None,
            **({"hour_kappa": model.hour_kappa} if model.hour_kappa is not None else {}),
            "horizon_days": ds.horizon_days, "activation_window_days": settings.features.activation_window_days,
            "n_features": len(ds.features), **{f"rows_{k}": v for k, v in ds.sizes.items()}, **_base_params(src),
            **{f"data_{k}": v for k, v in ds.time_range.items()},
        })
        mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items() if np.isfinite(v)})
        mlflow.log_metrics({f"baseline_{k}": v for k, v in base.items()})
        if orc:
            mlflow.log_metrics({f"oracle_{k}": v for k, v in orc.items()})
        mlflow.log_dict({"features": ds.features, "feature_service": settings.features.feature_service}, "features.json")
        mlflow.log_dict(dict(M.importance(model, top=len(ds.features))), "feature_importance.json")
        mlflow.log_dict(contract, "contract.json")
        _log_test_predictions(ds, pred, oracle_pred)
        with silenced_stderr():
            info = mlflow.lightgbm.log_model(
                model.booster, name="model", signature=_signature(ds, model.booster), registered_model_name=name,
                metadata={"nextbest": json.loads(json.dumps(contract, default=str))},
                pip_requirements=_requirements(),
            )
        version = str(info.registered_model_version)
        mlflow.set_tag("registered_version", version)
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, CHALLENGER, version)
    result = gate(settings, head, version, model, lambda m: score_on(head, m, ds), hold=hold)
    return HeadResult(head, "trained", result.message, version, result.promoted, test_metrics,
                      {"name": base_name, **base}, orc, time.perf_counter() - t0)


def _effect_oracle_metrics(settings: Settings, data, fit, oracle) -> dict | None:
    """How the model's increments of the test window's sends compare with the world's true increments."""
    from training.effects import predict_increments

    if oracle is None:
        return None
    f = data.frame
    rows = np.flatnonzero(f["split"].eq("test").to_numpy() & f["action_id"].ne(NO_ACTION).to_numpy())
    rows = rows[:20000]
    if len(rows) < 50:
        return None
    sub = f.iloc[rows]
    hour = sub["local_hour"].to_numpy(float)
    pred, true = np.empty(len(rows)), np.empty(len(rows))
    actions = {a: i for i, a in enumerate(data.actions)}
    for (a, day), g in sub.assign(_i=np.arange(len(rows)), _day=sub["assigned_at"].dt.floor("D")).groupby(
            ["action_id", "_day"]):
        ch = g["channel"].map({c: i for i, c in enumerate(CHANNELS)}).to_numpy().astype(int)
        pred[g["_i"]] = predict_increments(settings, fit.effect, data, rows[g["_i"].to_numpy()], actions[a], ch)
        cost = np.array([settings.actions[a].cost[c] for c in g["channel"]])
        true[g["_i"]] = oracle.incremental_value(g["customer_id"].to_numpy(), a, g["channel"].to_numpy(),
                                                 hour[g["_i"].to_numpy()], g["assigned_at"].iloc[0],
                                                 settings.actions) + cost
    ok = np.isfinite(true)
    if ok.sum() < 50:
        return None
    return {"corr": float(np.corrcoef(pred[ok], true[ok])[0, 1]), "mean_true": float(true[ok].mean()),
            "mean_predicted": float(pred[ok].mean()), "coverage": float(ok.mean())}


def effect_contract(settings: Settings, data, fit) -> dict:
    """What the registered effect model carries for serving: its inputs, the catalogue it was trained on, which
    actions are learned, how outputs are scaled, the objectives and values it measured."""
    return {
        "head": EFFECT_MODEL, "kind": HEAD_KIND[EFFECT_MODEL], "features": fit.effect.features,
        "feature_service": settings.features.feature_service, "actions": data.actions, "channels": list(CHANNELS),
        "learned": {a: n for a, n in fit.learned.items() if n >= settings.effects.min_assignments},
        "assignments": fit.learned, "scale_default": data.scale_default,
        "scaled_actions": [a for a in data.actions if settings.actions[a].objective.measure == "amount"],
        "objectives": {a: {**act.objective.model_dump(), "value": act.value, "incentive": act.incentive}
                       for a, act in settings.actions.items()},
        "label_definition": "increment of the action's objective in currency (value x units - incentive x "
                            "redemptions) against the controls' outcome without contact",
        "primary_metric": HEAD_METRIC[EFFECT_MODEL], "time_range": data.time_range, "calibration": None,
    }


def train_effect_model(settings: Settings, src, oracle=None, progress: bool = False,
                       hold: bool = False) -> HeadResult:
    """Learn what each action changes from the randomised assignments; log, register and gate the effect model."""
    import mlflow

    from nextbest.model_contract import load_champions
    from training.effects import SkipEffects, build_effect_data, fit_effects, uplift_report

    t0 = time.perf_counter()
    name = model_name(settings, EFFECT_MODEL)
    try:
        heads, _ = load_champions(settings)
        data = build_effect_data(settings, src, {h: m.head for h, m in heads.items()}, src.assignments)
        fit = fit_effects(settings, data)
    except SkipEffects as e:
        with mlflow.start_run(run_name=f"{EFFECT_MODEL}-skipped"):
            mlflow.set_tags({"head": EFFECT_MODEL, "status": "skipped", "skip_reason": str(e)})
        return HeadResult(EFFECT_MODEL, "skipped", str(e))
    report = uplift_report(settings, data, fit.effect)
    contract = effect_contract(settings, data, fit)
    learned = contract["learned"]
    metrics = {"qini": report["qini"], "prior_qini": report["prior_qini"]}
    with mlflow.start_run(run_name=f"{EFFECT_MODEL}-{time.strftime('%Y%m%d-%H%M%S')}"):
        mlflow.set_tags({"head": EFFECT_MODEL, "feature_service": settings.features.feature_service,
                         "label_definition": contract["label_definition"], "baseline": "prior (response-ranked)"})
        split = data.frame["split"].value_counts()
        mlflow.log_params({"learner": "X-learner treated side, pooled over options (LightGBM)",
                           "best_iteration": fit.effect.booster.best_iteration, "n_features": len(fit.effect.features),
                           **{f"rows_{k}": int(v) for k, v in split.items()},
                           **{f"data_{k}": v for k, v in data.time_range.items()},
                           "learned_actions": len(learned), "min_assignments": settings.effects.min_assignments,
                           **_base_params(src)})
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_metrics({"baseline_qini": report["prior_qini"]} if np.isfinite(report["prior_qini"]) else {})
        orc = _effect_oracle_metrics(settings, data, fit, oracle)
        if orc:
            mlflow.log_metrics({f"oracle_{k}": v for k, v in orc.items()})
        mlflow.log_dict(report, "evaluation/uplift.json")
        mlflow.log_dict(contract, "contract.json")
        mlflow.log_dict(dict(M.importance(fit.effect, top=len(fit.effect.features))), "feature_importance.json")
        for key, booster in fit.baselines.items():
            mlflow.log_text(booster.model_to_string(), f"baselines/{key}.lgb")
        with silenced_stderr():
            info = mlflow.lightgbm.log_model(fit.effect.booster, name="model", registered_model_name=name,
                                             pip_requirements=_requirements(),
                                             metadata={"nextbest": json.loads(json.dumps(contract, default=str))})
        version = str(info.registered_model_version)
        mlflow.set_tag("registered_version", version)
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, CHALLENGER, version)
    result = gate(settings, EFFECT_MODEL, version, fit.effect, lambda m: uplift_report(settings, data, m)["qini"],
                  hold=hold)
    return HeadResult(EFFECT_MODEL, "trained", result.message, version, result.promoted, metrics,
                      {"name": "prior (response-ranked)", "qini": report["prior_qini"]}, orc,
                      time.perf_counter() - t0)


def train_all(settings: Settings, heads=None, use_tuned: bool = True, progress: bool = False,
              oracle=None, hold: bool = False) -> list[HeadResult]:
    """Train, log and gate each head, then the effect model. ``oracle``: the truth of a simulated world (an
    object with the ``simulator.oracle.Oracle`` methods), to log each model's distance to it; None for real data.
    ``hold``: new versions stay @challenger where a champion exists, for the policy gate on logged decisions."""
    heads = list(heads or MODELS)
    unknown = [h for h in heads if h not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    connect(settings)
    with console.status("reading data and features") if progress else _null():
        src = load_sources(settings)
    results = []
    for i, head in enumerate(heads, 1):
        with console.status(f"[{i}/{len(heads)}] training {head}") if progress else _null():
            if head == EFFECT_MODEL:
                r = train_effect_model(settings, src, oracle, hold=hold)
            else:
                r = train_head(settings, head, src, use_tuned, oracle, hold=hold)
        results.append(r)
        if progress:
            _print_result(r)
    return results


def _print_result(r: HeadResult) -> None:
    if r.status == "skipped":
        console.print(f"[yellow]skipped[/yellow] {r.message}")
        return
    key = HEAD_METRIC[r.head]
    orc = f", oracle {r.oracle[key]:.3f}" if r.oracle and key in r.oracle else ""
    console.print(
        f"[green]trained[/green] {r.head} v{r.version} in {r.seconds:.0f}s: test {key} {r.metrics[key]:.3f} "
        f"(baseline {r.baseline.get(key, float('nan')):.3f} [{r.baseline['name']}]{orc}) - {r.message}"
    )


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
