"""`nextbest evaluate`: what the decisions are worth against doing nothing, on a simulated world's causal truth.

- :func:`evaluate` on the data folder's world, or on ``seeds`` fresh worlds each built and learned from scratch
  (``analysis/evaluation/worlds.py``), writing ``docs/evaluation.{md,png,json}`` and an MLflow run;
- the policies compared are in ``policies.py``, the valuation in ``value.py``, one world's run in ``single.py``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from nextbest.settings import Settings


def evaluate(settings: Settings, seeds: int = 0, customers: int | None = None, out_dir: Path | None = None,
             progress=None, log_mlflow: bool = True, reuse: bool = False) -> dict:
    """Evaluate on the world of ``settings.world_dir`` (``seeds`` = 0), or on ``seeds`` new worlds of
    ``customers`` customers (default ``world.customers``) built under ``<data_dir>/evaluation/worlds``."""
    from analysis.evaluation import document
    from analysis.evaluation.single import evaluate_world
    from analysis.evaluation.worlds import evaluate_worlds

    step = progress or (lambda msg: None)
    if seeds:
        first = settings.world.seed
        doc = evaluate_worlds(settings, list(range(first, first + seeds)), customers or settings.world.customers,
                              settings.data_dir / "evaluation" / "worlds", progress, reuse=reuse)
    else:
        if not (settings.world_dir / "truth.parquet").exists():
            raise SystemExit(f"evaluation needs a simulated world: {settings.world_dir / 'truth.parquet'} is missing "
                             "(real data has no causal truth); run `nextbest evaluate --seeds 5` to evaluate on "
                             "fresh simulated worlds")
        from simulator.oracle import Oracle

        step("loading the world's truth")
        r = evaluate_world(settings, Oracle.load(settings.world_dir), customers=customers, progress=progress)
        doc = {k: v for k, v in r.items() if k not in ("ids", "choices", "values")}
    doc["generated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    doc["targets"] = document.targets(doc)
    paths = document.write(settings, doc, out_dir or settings.root / "docs")
    if not seeds:  # the report reads the evaluation of its own data
        latest = settings.data_dir / "evaluation" / "latest.json"
        latest.parent.mkdir(parents=True, exist_ok=True)
        latest.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    doc["run_id"] = document.log_mlflow(settings, doc, paths) if log_mlflow else None
    doc["paths"] = {k: str(v) for k, v in paths.items()}
    return doc
