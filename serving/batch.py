"""`nextbest score`: decide for the whole base (or a list of ids) at a point in
time, from historical features read through the feature service, with the
same scoring and policy code as the online service."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from nextbest.settings import Settings
from serving.engine import decide_arrays
from serving.policy import compile_policy
from serving.scoring import Scorer

console = Console()
CHUNK = 250_000


def _as_of(settings: Settings, as_of: str | None) -> pd.Timestamp:
    if as_of:
        t = pd.Timestamp(as_of)
        if t.tzinfo is None:
            raise SystemExit(f"--as-of: {as_of!r} has no timezone; write e.g. {as_of}+00:00")
        return t.tz_convert("UTC")
    from features.store import snapshot_times

    times = snapshot_times(settings)
    if not times:
        raise SystemExit("no feature snapshots yet: run `nextbest features build` first")
    return pd.Timestamp(times[-1])


def _ids(settings: Settings, ids: Path | None) -> np.ndarray:
    if ids is not None:
        lines = [x.strip() for x in Path(ids).read_text().splitlines() if x.strip()]
        if not lines:
            raise SystemExit(f"--ids: {ids} lists no customer id")
        return np.array(lines, dtype=object)
    from nextbest.contract import find_table

    path = find_table(settings.world_dir, "customers")
    if path is None:
        raise SystemExit(f"no customers table in {settings.world_dir}")
    col = pd.read_parquet(path, columns=["customer_id"]) if path.suffix == ".parquet" else pd.read_csv(
        path, usecols=["customer_id"], dtype=str)
    return col["customer_id"].astype(str).to_numpy(dtype=object)


def score(settings: Settings, as_of: str | None, out: Path, ids: Path | None = None, progress: bool = False,
          scorer: Scorer | None = None) -> dict:
    """Write one decision per customer to `out` (.parquet or .csv); return timings."""
    from features.store import feature_names, historical_features

    t0 = time.perf_counter()
    t = _as_of(settings, as_of)
    customer_ids = _ids(settings, ids)
    names = feature_names(settings)
    index = {n: i for i, n in enumerate(names)}
    scorer = scorer or Scorer.from_registry(settings, names)
    policy = compile_policy(settings)
    read_s = decide_s = 0.0
    frames = []
    for lo in range(0, len(customer_ids), CHUNK):
        chunk = customer_ids[lo:lo + CHUNK]
        t1 = time.perf_counter()
        entity = pd.DataFrame({"customer_id": chunk, "event_timestamp": t})
        feats = historical_features(settings, entity)
        X = feats.reindex(columns=names).to_numpy(dtype=np.float32)
        found = feats[[n for n in names if not n.startswith("ctx_")]].notna().any(axis=1).to_numpy()
        tz = feats["timezone"].fillna("UTC").tolist() if "timezone" in feats else ["UTC"] * len(chunk)
        t2 = time.perf_counter()
        d = decide_arrays(policy, scorer, index, chunk, X, found, tz, t.to_pydatetime(), request_id=f"batch:{t.isoformat()}")
        frames.append(d.to_frame())
        t3 = time.perf_counter()
        read_s, decide_s = read_s + (t2 - t1), decide_s + (t3 - t2)
        if progress:
            console.print(f"  scored {min(lo + CHUNK, len(customer_ids)):,}/{len(customer_ids):,} customers")
    result = pd.concat(frames, ignore_index=True)
    result.insert(1, "as_of", t)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        result.to_csv(out, index=False)
    else:
        result.to_parquet(out, index=False)
    total = time.perf_counter() - t0
    stats = {
        "customers": len(result), "as_of": t.isoformat(), "out": str(out), "feature_read_s": round(read_s, 2),
        "decide_s": round(decide_s, 2), "total_s": round(total, 2),
        "decisions_per_s": round(len(result) / decide_s) if decide_s else None,
        "actions": result["action"].value_counts().to_dict(),
    }
    if progress:
        acted = int((result["action"] != "no_action").sum())
        console.print(
            f"{len(result):,} decisions as of {t:%Y-%m-%d %H:%M} UTC -> {out} ({acted:,} actions, "
            f"{int(result['control_group'].sum()):,} in control); features {read_s:.1f}s, "
            f"policy {decide_s:.2f}s ({stats['decisions_per_s']:,}/s)"
        )
    return stats
