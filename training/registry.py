"""The model registry's gate: champion / challenger aliases, promotion on the
same held-out window, and the side-by-side table of versions. Loading models
is the model contract's job (:mod:`nextbest.model_contract`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

from nextbest.model_contract import Head, connect, load_version, model_name
from nextbest.settings import Settings
from nextbest.vocabulary import CHAMPION, CHALLENGER, EFFECT_MODEL, MODELS
from nextbest.vocabulary import HEAD_METRIC as PRIMARY_METRIC
from training.models import metrics

@dataclass
class PromotionResult:
    promoted: bool
    message: str
    challenger_score: float | None = None
    champion_score: float | None = None


def score_on(head: str, model: Head, ds) -> float:
    """A head's primary metric on a dataset's held-out window (inputs matched by name)."""
    cols = [ds.features.index(f) if f in ds.features else -1 for f in model.features]
    X = np.column_stack([ds.test.X[:, c] if c >= 0 else np.full(len(ds.test.y), np.nan, np.float32) for c in cols])
    pred = model.predict(X.astype(np.float32))
    return metrics(head, ds.test.y, pred)[PRIMARY_METRIC[head]]


def gate(settings: Settings, head: str, version: str, challenger: Head, score: Callable[[Head], float],
         force: bool = False, hold: bool = False) -> PromotionResult:
    """Make `version` the champion only if it beats the champion by the margin, both scored by `score` on the
    same held-out window. With `hold`, a model that has a champion stays @challenger whatever its score: the
    policy gate on logged decisions (``analysis/gate.py``) decides."""
    from mlflow import MlflowClient

    client = MlflowClient()
    name = model_name(settings, head)
    metric = PRIMARY_METRIC[head]
    margin = settings.training.promotion_margin
    new = score(challenger)
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except Exception:
        current = None
    if current is None:
        client.set_registered_model_alias(name, CHAMPION, version)
        return PromotionResult(True, f"{name} v{version} is the first champion (test {metric} {new:.4f})", new)
    if str(current.version) == str(version):
        return PromotionResult(False, f"{name} v{version} is already the champion", new)
    if hold:
        return PromotionResult(False, f"{name} v{version} held as @challenger (test {metric} {new:.4f}) for the "
                                      "policy gate on logged decisions", new)
    champ = load_version(settings, head, current.version).head
    old = score(champ)
    if new >= old + margin or force:
        client.set_registered_model_alias(name, CHAMPION, version)
        how = "forced: " if force and new < old + margin else ""
        return PromotionResult(
            True,
            f"{how}{name} v{version} replaces champion v{current.version} "
            f"(test {metric} {new:.4f} vs {old:.4f}, margin {margin})", new, old)
    return PromotionResult(
        False,
        f"{name} v{version} stays @challenger: test {metric} {new:.4f} does not beat champion "
        f"v{current.version} ({old:.4f}) by the margin {margin}", new, old)


def promote(settings: Settings, head: str, version: int | None = None, force: bool = False) -> PromotionResult:
    """CLI promotion: re-evaluate challenger and champion on the challenger's held-out window."""
    from training.datasets import build_dataset, load_sources

    if head not in MODELS:
        return PromotionResult(False, f"unknown model {head!r}; choose from {', '.join(MODELS)}")
    client = connect(settings)
    name = model_name(settings, head)
    ref = str(version) if version is not None else CHALLENGER
    try:
        cand = load_version(settings, head, ref)
    except Exception as e:
        return PromotionResult(False, f"{name}: no version {ref!r} to promote ({str(e).splitlines()[0][:160]})")
    src = load_sources(settings)
    if head == EFFECT_MODEL:  # Qini on the newest window of the randomised assignments
        from nextbest.model_contract import load_champions
        from training.effects import build_effect_data, uplift_report

        heads, _ = load_champions(settings)
        data = build_effect_data(settings, src, {h: m.head for h, m in heads.items()}, src.assignments)
        score = lambda m: uplift_report(settings, data, m)["qini"]  # noqa: E731
    else:
        ds = build_dataset(settings, head, src)
        score = lambda m: score_on(head, m, ds)  # noqa: E731
    result = gate(settings, head, cand.version, cand.head, score, force=force)
    if result.promoted:
        client.set_model_version_tag(name, cand.version, "promoted_by", "forced" if force else "gate")
    return result


def models_table(settings: Settings):
    """A rich table: every version of every head, its aliases and its test metrics side by side."""
    from mlflow import MlflowClient
    from rich.table import Table

    connect(settings)
    client = MlflowClient()
    table = Table(title="nextbest models")
    for col in ("model", "version", "aliases", "metric", "test", "baseline", "oracle", "created", "policy gate"):
        table.add_column(col, no_wrap=col != "policy gate")
    for head in MODELS:
        name = model_name(settings, head)
        try:
            versions = client.search_model_versions(f"name='{name}'")
            alias_of = client.get_registered_model(name).aliases  # {alias: version}; search leaves aliases empty
        except Exception:
            versions, alias_of = [], {}
        for v in sorted(versions, key=lambda v: int(v.version)):
            aliases = sorted(a for a, ver in alias_of.items() if str(ver) == str(v.version))
            run = client.get_run(v.run_id) if v.run_id else None
            m = run.data.metrics if run else {}
            key = PRIMARY_METRIC[head]
            fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
            table.add_row(
                name, str(v.version), ",".join(aliases) or "-", key,
                fmt(m.get(f"test_{key}")), fmt(m.get(f"baseline_{key}")), fmt(m.get(f"oracle_{key}")),
                str(np.datetime64(int(v.creation_timestamp), "ms"))[:19],
                (v.tags or {}).get("gate", "-"),  # the verdict of `nextbest gate --logged` (reason: gate_reason)
            )
    return table


def contract_json(contract: dict) -> str:
    return json.dumps(contract, indent=2, default=str)
