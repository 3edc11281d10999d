"""`nextbest score`: decide for the whole base (or a list of ids) at a point in
time, from historical features read through the feature service, with the
same scoring and policy code as the online service."""

from __future__ import annotations

import os
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


def _as_of(settings: Settings, as_of: str) -> pd.Timestamp:
    try:
        t = pd.Timestamp(as_of)
    except ValueError:
        raise SystemExit(f"--as-of: {as_of!r} is not an ISO-8601 time, e.g. 2026-01-31T00:00:00+00:00") from None
    if t.tzinfo is None:
        raise SystemExit(f"--as-of: {as_of!r} has no timezone; write e.g. {as_of}+00:00")
    return t.tz_convert("UTC")


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


def _latest(settings: Settings, names: list[str], customer_ids: np.ndarray | None, part: str | None = None):
    """Each customer's newest snapshot (the online store's content) as (ids, X, found, timezones, time); of the
    customers of one feature part only with ``part``."""
    from features.context import with_context
    from features.store import latest_snapshot

    cust_names = [n for n in names if not n.startswith("ctx_")]
    ids, ts, Xc, tz = latest_snapshot(settings, cust_names, part=part)
    t = pd.Timestamp(int(ts.max()), tz="UTC")
    found = np.ones(len(ids), bool)
    if customer_ids is not None:
        where = pd.Index(ids).get_indexer(customer_ids)
        found = where >= 0
        Xc = np.where(found[:, None], Xc[np.maximum(where, 0)], np.nan).astype(np.float32)
        tz = np.where(found, tz[np.maximum(where, 0)], "UTC")
        ids = customer_ids
    X = with_context(names, cust_names, Xc, tz, t)
    return np.asarray(ids, dtype=object), X, found, list(tz), t


_WORKER: dict = {}  # a Dask worker's models and compiled policy, made once for every part it scores


def _score_part(settings: Settings, names: list[str], versions: dict[str, str], part: str, out: Path) -> dict:
    """The newest snapshot of one feature part's customers, decided and written to ``out`` (a Dask task)."""
    key = (settings.model_dump_json(), tuple(sorted(versions.items())), tuple(names))
    if key not in _WORKER:
        _WORKER.clear()
        _WORKER[key] = (Scorer.from_registry(settings, names, compile="now", versions=versions),
                        compile_policy(settings))
    scorer, policy = _WORKER[key]
    t0 = time.perf_counter()
    ids, X, found, tz, t = _latest(settings, names, None, part=part)
    t1 = time.perf_counter()
    d = decide_arrays(policy, scorer, {n: i for i, n in enumerate(names)}, ids, X, found, tz,
                      t.to_pydatetime(), request_id=f"batch:{t.isoformat()}")
    frame = d.to_frame()
    frame.insert(1, "as_of", t)
    frame.to_parquet(out, index=False)
    return {"customers": len(frame), "as_of": t.isoformat(), "read_s": t1 - t0, "decide_s": time.perf_counter() - t1}


def _score_on_engine(settings: Settings, names: list[str], scorer: Scorer, progress: bool):
    """Every customer's newest snapshot decided on the Dask workers, one task per feature part; the parts' tables
    in customer order of the parts, and the summed read and decide seconds."""
    import shutil
    import tempfile

    from features.pipeline import snapshot_parts
    from nextbest.engine import Engine

    parts = [p.name for p in snapshot_parts(settings.features_dir / "customer_profile.parquet")]
    tmp = Path(tempfile.mkdtemp(prefix=".scores-", dir=settings.data_dir))
    try:
        with Engine(settings, progress=progress) as engine:
            stats = engine.map(_score_part, [(settings, names, scorer.versions, p, tmp / p) for p in parts],
                               label="scored parts")
        frames = [pd.read_parquet(tmp / p) for p in parts]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = pd.concat(frames, ignore_index=True)
    for col in frames[0].columns if frames else ():  # code lists (reasons...) differ by part: categorical again
        if isinstance(frames[0][col].dtype, pd.CategoricalDtype) and not isinstance(result[col].dtype, pd.CategoricalDtype):
            result[col] = result[col].astype("category")
    return result, sum(s["read_s"] for s in stats), sum(s["decide_s"] for s in stats)


def _historical(settings: Settings, names: list[str], chunk: np.ndarray, t: pd.Timestamp):
    from features.store import historical_features

    feats = historical_features(settings, pd.DataFrame({"customer_id": chunk, "event_timestamp": t}))
    X = feats.reindex(columns=names).to_numpy(dtype=np.float32)
    found = feats[[n for n in names if not n.startswith("ctx_")]].notna().any(axis=1).to_numpy()
    tz = feats["timezone"].fillna("UTC").tolist() if "timezone" in feats else ["UTC"] * len(chunk)
    return X, found, tz


def score(settings: Settings, as_of: str | None, out: Path, ids: Path | None = None, progress: bool = False,
          scorer: Scorer | None = None) -> dict:
    """Write one decision per customer to `out` (.parquet or .csv); return timings.

    Without `as_of`, decides on each customer's newest snapshot (what the online store serves);
    with it, on point-in-time features read through the feature service at that time. With
    ``engine.kind: dask`` the whole base's newest snapshot is decided on the Dask workers, one task per
    feature part, with the same model versions; the decisions are the same as in this process.
    """
    from features.store import feature_names

    t0 = time.perf_counter()
    names = feature_names(settings)
    index = {n: i for i, n in enumerate(names)}
    wanted = _ids(settings, ids) if ids is not None else None
    on_engine = settings.engine.kind != "local" and as_of is None and wanted is None
    scorer = scorer or Scorer.from_registry(settings, names, compile="no" if on_engine else "now",
                                            n_jobs=os.cpu_count() or 1)
    policy = compile_policy(settings)
    load_s = time.perf_counter() - t0
    if settings.engine.kind != "local" and not on_engine and progress:
        console.print("engine: --as-of and --ids are scored in this process")
    t_read = time.perf_counter()
    read_s = decide_s = 0.0
    if on_engine:
        result, read_s, decide_s = _score_on_engine(settings, names, scorer, progress)
        t = pd.Timestamp(result["as_of"].max()) if len(result) else pd.Timestamp.now(tz="UTC")
    else:
        if as_of is None:
            customer_ids, X_all, found_all, tz_all, t = _latest(settings, names, wanted)
        else:
            t, customer_ids = _as_of(settings, as_of), wanted if wanted is not None else _ids(settings, None)
        read_s = time.perf_counter() - t_read
        frames = []
        for lo in range(0, len(customer_ids), CHUNK):
            chunk = customer_ids[lo:lo + CHUNK]
            t1 = time.perf_counter()
            if as_of is None:
                X, found, tz = X_all[lo:lo + CHUNK], found_all[lo:lo + CHUNK], tz_all[lo:lo + CHUNK]
            else:
                X, found, tz = _historical(settings, names, chunk, t)
            t2 = time.perf_counter()
            d = decide_arrays(policy, scorer, index, chunk, X, found, tz, t.to_pydatetime(),
                              request_id=f"batch:{t.isoformat()}")
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
        "customers": len(result), "as_of": t.isoformat(), "out": str(out), "load_models_s": round(load_s, 2),
        "feature_read_s": round(read_s, 2),
        "decide_s": round(decide_s, 2), "total_s": round(total, 2),
        "decisions_per_s": round(len(result) / decide_s) if decide_s else None,
        "actions": result["action"].value_counts().to_dict(),
    }
    if progress:
        acted = int((result["action"] != "no_action").sum())
        console.print(
            f"{len(result):,} decisions as of {t:%Y-%m-%d %H:%M} UTC -> {out} ({acted:,} actions, "
            f"{int(result['control_group'].sum()):,} in control); features {read_s:.1f}s, "
            f"models + policy {decide_s:.2f}s ({stats['decisions_per_s']:,}/s)"
        )
    return stats
