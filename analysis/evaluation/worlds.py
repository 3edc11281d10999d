"""Several simulated worlds, one per seed, each built and learned from scratch, then evaluated the same way:
the policies' true incremental value with a 95% confidence interval over the worlds."""

from __future__ import annotations

import json
import math
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

from analysis.evaluation.single import DIAGNOSTICS, LABELS, POLICIES, evaluate_world
from nextbest.settings import Settings

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (for a two-sided 95% interval)."""
    if df <= 0:
        return float("nan")
    known = [k for k in T_975 if k <= df]
    return T_975[max(known)] if df < 30 else 1.96


def mean_interval(values: list[float]) -> dict:
    """Mean and two-sided 95% t-interval of a small sample (one value per world)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    if not len(x):
        return {"mean": None, "low": None, "high": None, "n": 0}
    m = float(x.mean())
    if len(x) < 2:
        return {"mean": m, "low": None, "high": None, "n": 1}
    half = t_quantile(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return {"mean": m, "low": m - half, "high": m + half, "n": int(len(x))}


def accuracy_over_worlds(runs: list[dict]) -> dict | None:
    """The effect model's accuracy (``accuracy.effect_accuracy``) averaged over the worlds that had one."""
    from analysis.evaluation.accuracy import by_action

    acc = [r["effect_accuracy"] for r in runs if r.get("effect_accuracy")]
    if not acc:
        return None
    actions: dict[str, dict] = {}
    for a in acc:
        for name, e in by_action(a["options"]).items():
            actions.setdefault(name, {"model": [], "true": []})
            actions[name]["model"].append(e["model"])
            actions[name]["true"].append(e["true"])
    return {"worlds": len(acc),
            "same_best_option": mean_interval([a.get("same_best_option") for a in acc]),
            "best_option_value_kept": mean_interval([a.get("best_option_value_kept") for a in acc]),
            "actions": {k: {"model": mean_interval(v["model"]), "true": mean_interval(v["true"])}
                        for k, v in actions.items()}}


def losses_over_worlds(runs: list[dict]) -> dict | None:
    """Where nextbest loses value against the oracle (``losses.where_lost``, one per world) summarised: per kind
    the mean and 95% interval of the share of the oracle's value and of the loss per 1,000 customers; the pairs
    of actions that lose most, per 1,000 customers averaged over the worlds."""
    from analysis.evaluation.losses import KINDS, TOP_PAIRS

    losses = [r["losses"] for r in runs if r.get("losses")]
    if not losses:
        return None
    kinds = {k: {"share_of_oracle": mean_interval([w["kinds"][k]["share_of_oracle"] for w in losses]),
                 "per_1000": mean_interval([w["kinds"][k]["per_1000"] for w in losses]),
                 "customers": float(np.mean([w["kinds"][k]["customers"] for w in losses]))} for k in KINDS}
    pairs: dict[tuple[str, str], float] = {}
    for w in losses:
        for p in w["pairs"]:
            pairs[(p["oracle"], p["nextbest"])] = pairs.get((p["oracle"], p["nextbest"]), 0.0) + p["per_1000"]
    ranked = sorted(pairs.items(), key=lambda kv: -kv[1])[:TOP_PAIRS]
    return {"worlds": len(losses), "kinds": kinds,
            "pairs": [{"oracle": a, "nextbest": b, "per_1000": v / len(losses)} for (a, b), v in ranked]}


def world_settings(settings: Settings, root: Path, seed: int) -> Settings:
    """Settings whose data and MLflow store live under `root` (one world of the evaluation)."""
    paths = settings.paths.model_copy(update={"data_dir": root / "data", "mlruns_dir": root / "mlruns",
                                              "reports_dir": root / "reports"})
    mlflow = settings.mlflow.model_copy(update={"tracking_uri": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
                                                "artifact_root": root / "mlruns" / "artifacts"})
    world = settings.world.model_copy(update={"seed": seed})
    return settings.model_copy(update={"paths": paths, "mlflow": mlflow, "world": world})


def build_world(settings: Settings, customers: int, progress=None) -> object:
    """Simulate, build features, train every model; return the world's oracle."""
    from features import pipeline, store
    from simulator.world import simulate
    from training.train import train_all

    step = progress or (lambda msg: None)
    w = settings.world
    step(f"seed {w.seed}: simulating {customers:,} customers over {w.days} days")
    world = simulate(settings, customers=customers, days=w.days, seed=w.seed, start=w.start_date,
                     out_dir=settings.world_dir)
    step(f"seed {w.seed}: features")
    pipeline.build(settings)
    store.apply(settings)
    store.materialize(settings)
    step(f"seed {w.seed}: training the heads and the effect model")
    train_all(settings, oracle=world.oracle())
    _built(settings).write_text(json.dumps(_identity(settings, customers)) + "\n")
    return world.oracle()


def _identity(settings: Settings, customers: int) -> dict:
    """What makes two built worlds the same: seed, customers, days and first day."""
    w = settings.world
    return {"seed": w.seed, "customers": customers, "days": w.days, "start": w.start_date.isoformat()}


def _built(settings: Settings) -> Path:
    """The marker a completely built world leaves (simulated, features, models)."""
    return settings.data_dir / "built.json"


def built_world(settings: Settings, customers: int):
    """The oracle of the world already built at `settings` with the same seed, customers, days and first day,
    else None."""
    from simulator.oracle import Oracle

    marker = _built(settings)
    if not marker.exists():
        return None
    if json.loads(marker.read_text()) != _identity(settings, customers):
        return None
    return Oracle.load(settings.world_dir)


def evaluate_worlds(settings: Settings, seeds: list[int], customers: int, root: Path, progress=None,
                    reuse: bool = False) -> dict:
    """Build and evaluate one world per seed under `root`; aggregate each policy's value per 1,000 customers and
    share of the oracle's value with 95% intervals over the worlds. With `reuse`, a world already built there
    with the same seed, customers and days is evaluated again without being rebuilt."""
    step = progress or (lambda msg: None)
    t0 = time.perf_counter()
    runs = []
    for seed in seeds:
        s = world_settings(settings, root / f"seed-{seed}", seed)
        oracle = built_world(s, customers) if reuse else None
        if oracle is not None:
            step(f"seed {seed}: reusing the world built in {root / f'seed-{seed}'}")
        else:
            oracle = build_world(s, customers, progress)
        step(f"seed {seed}: evaluating")
        r = evaluate_world(s, oracle)
        runs.append({"seed": seed, **{k: v for k, v in r.items() if k not in ("ids", "choices", "values")}})
    summary = {}
    for p in (*POLICIES, *DIAGNOSTICS):
        summary[p] = {
            "label": LABELS[p],
            "per_1000": mean_interval([r["policies"][p]["per_1000"] for r in runs]),
            "share_of_oracle": mean_interval([r["policies"][p]["share_of_oracle"] for r in runs]),
            "send_rate": mean_interval([r["policies"][p]["send_rate"] for r in runs]),
        }
    return {"worlds": len(runs), "seeds": list(seeds), "customers": customers, "days": settings.world.days,
            "summary": summary, "effect_accuracy": accuracy_over_worlds(runs),
            "losses": losses_over_worlds(runs), "runs": runs, "seconds": round(time.perf_counter() - t0, 1),
            "start": str(settings.world.start_date), "end": str(settings.world.start_date + timedelta(
                days=settings.world.days))}
