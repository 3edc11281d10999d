"""The feature build: the world's point-in-time snapshots (computed by :mod:`features.compute`) written as
one Parquet dataset per view, a part per customer chunk, never holding every snapshot at once, with the
per-customer history that real-time updates read; in this process or partitioned by customer on Dask
(``nextbest.engine``). The new files are swapped in only when every partition is written.
"""

from __future__ import annotations

import json
import os
import sys
import time as _time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from features.compute import CustomerArrays, EventArrays, SnapshotPlan, snapshot_times, to_ns, view_columns
from features.names import customer_features, views
from nextbest.partition import customer_ids, id_ranges, part_count, split_world, training_sample

HISTORY_DIR = "history"
META_FILE = "snapshots.json"

def coverage_messages(events: pd.DataFrame) -> list[str]:
    """Why some views will be empty for this data (a transactions-only import, say)."""
    types = set(events["event_type"].unique()) if len(events) else set()
    msgs = []
    if not types & {"message_sent", "message_opened", "message_clicked", "message_converted"}:
        msgs.append(
            "no message events (message_sent/opened/clicked/converted) in the events table: "
            "engagement and pressure features are empty (counts 0, rates and recencies NaN) and "
            "timing features come from purchases and visits only; channel-response models will "
            "be weak until message events are imported"
        )
    if "purchase" not in types:
        msgs.append(
            "no purchase events in the events table: every customer is 'registered' and the "
            "RFM and monetary features are empty"
        )
    return msgs


def snapshot_parts(path: Path | str) -> list[Path]:
    """The Parquet files of one view's snapshots: the part files of a dataset folder (what :func:`build` writes,
    one per customer chunk), or the file itself."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix == ".parquet" and not p.name.startswith("."))
    return [path] if path.exists() else []


# light compression: about as small as the default (snappy) on feature columns, faster to write, ~4x faster to read
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1}


class _SnapshotWriter:
    """Writes one build partition's rows into the staging folders (see :func:`_staging`): a part file per customer
    chunk and view, named after the partition and the chunk so they never collide. In each part the rows at the
    newest snapshot time are a row group of their own, so each customer's newest row (the online store's content)
    is read without the history. Chunks may be written from several threads."""

    def __init__(self, staging: dict[str, Path], actions: tuple[str, ...], newest_ns: int, prefix: str):
        self.staging, self.actions, self.newest_ns, self.prefix = staging, actions, newest_ns, prefix

    def write(self, k: int, cols: np.ndarray, ids: np.ndarray, ts: np.ndarray, tz: np.ndarray) -> int:
        """Chunk ``k``'s rows (``cols``: a contiguous row per feature); return how many."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not len(ts):
            return 0
        split = int(np.searchsorted(ts, self.newest_ns))  # rows are in time order
        key = {"customer_id": pa.array(ids, pa.string()),
               "event_timestamp": pa.array(ts.astype("datetime64[ns]"), pa.timestamp("ns", tz="UTC"))}
        for view, vcols in view_columns(cols, tz, self.actions):
            table = pa.table({**key, **{c: pa.array(v, pa.string() if c == "timezone" else None)
                                        for c, v in vcols.items()}})
            path = self.staging[view] / f"part-{self.prefix}-{k:05d}.parquet"
            with pq.ParquetWriter(path, table.schema, **PARQUET_OPTIONS) as w:
                for lo, hi in ((0, split), (split, len(ts))):
                    if hi > lo:
                        w.write_table(table.slice(lo, hi - lo), row_group_size=200_000)
        return len(ts)

    def write_history(self, customers: pd.DataFrame, events: pd.DataFrame, cust: CustomerArrays, ev: EventArrays) -> None:
        """Customers and events sorted by customer id (events then by time), in small row groups: fast
        per-customer reads for real-time refresh. The order comes from the arrays already sorted by customer code."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        by_id = np.argsort(cust.ids.astype(str), kind="stable")  # customer codes in id order
        rank = np.empty(cust.n, np.int64)
        rank[by_id] = np.arange(cust.n)
        ev_rows = ev.rows[np.argsort(rank[ev.code], kind="stable")]
        for name, df, rows, group in (("customers", customers.reset_index(drop=True), by_id, 5_000),
                                      ("events", events.reset_index(drop=True), ev_rows, 20_000)):
            table = pa.Table.from_pandas(df.take(rows), preserve_index=False)
            # a column with no value in this partition is typed text, as in the others (one dataset schema)
            table = table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                                          for f in table.schema]))
            pq.write_table(table, self.staging[f"{HISTORY_DIR}/{name}"] / f"part-{self.prefix}.parquet",
                           row_group_size=group, **PARQUET_OPTIONS)


def _datasets(features_dir: Path, actions: tuple[str, ...]) -> dict[str, Path]:
    """Every dataset folder a build writes: one per view, and the per-customer history."""
    fd = Path(features_dir)
    out = {v: fd / f"{v}.parquet" for v in views(actions)}
    out.update({f"{HISTORY_DIR}/{t}": fd / HISTORY_DIR / f"{t}.parquet" for t in ("customers", "events")})
    return out


def _staging(features_dir: Path, actions: tuple[str, ...]) -> dict[str, Path]:
    """Empty staging folders beside each dataset; :func:`_commit` swaps them in once every partition is written."""
    out = {}
    for name, final in _datasets(features_dir, actions).items():
        tmp = final.with_name(f".{final.name}.building")
        _remove(tmp)
        tmp.mkdir(parents=True)
        out[name] = tmp
    return out


def _commit(features_dir: Path, actions: tuple[str, ...], staging: dict[str, Path]) -> dict[str, str]:
    files = {}
    for name, final in _datasets(features_dir, actions).items():
        old = final.with_name(f".{final.name}.old")
        _remove(old)
        if final.exists():
            os.replace(final, old)
        os.replace(staging[name], final)
        _remove(old)
        files[name] = str(final)
    return files


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def vector_placeholder(features_dir: Path) -> Path:
    """An empty batch file for the packed view's push source (lets `feast materialize` run over every view)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(features_dir) / "customer_vector.parquet"
    if not path.exists():
        schema = pa.schema(
            [("customer_id", pa.string()), ("event_timestamp", pa.timestamp("ns", tz="UTC")), ("vector", pa.binary())]
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(schema.empty_table(), path)
    return path


def read_meta(features_dir: Path) -> dict:
    p = Path(features_dir) / META_FILE
    return json.loads(p.read_text()) if p.exists() else {}


def _build_part(settings, world_dir: Path, part_dir: Path | None, times_ns: np.ndarray, staging: dict[str, Path],
                prefix: str, frames: tuple[pd.DataFrame, pd.DataFrame] | None = None, threads: int = 1,
                progress: bool = False, first: np.ndarray | None = None) -> dict:
    """One build partition: its customers' snapshots and history, written into the staging folders (runs on a
    Dask worker or in this process; reads its part folder of the split world, or takes the whole world already
    loaded as ``frames``). Its customer chunks are computed and written on ``threads`` threads (numpy and Arrow
    release the interpreter lock), at most that many chunks in memory at once; the customers of ``first`` (the
    ones training reads) in chunks of their own."""
    from concurrent.futures import ThreadPoolExecutor

    from nextbest.partition import load_part

    customers, events = frames if frames is not None else load_part(part_dir, world_dir)
    writer = _SnapshotWriter(staging, tuple(settings.actions), int(times_ns[-1]), prefix)
    plan = SnapshotPlan(customers, events, settings, list(times_ns), first=first)
    cust, n = plan.cust, len(plan.bounds)

    def one(k: int) -> int:
        cols, codes, ts = plan.chunk(k)
        rows = writer.write(k, cols, cust.ids[codes], ts, cust.tz[codes])
        if progress:
            print(f"  snapshots: customers {plan.bounds[k][1]:,}/{cust.n:,} (chunk {k + 1}/{n})", file=sys.stderr)
        return rows

    with ThreadPoolExecutor(max(1, threads)) as pool:
        history = pool.submit(writer.write_history, plan.customers, events, cust, plan.ev)
        rows = list(pool.map(one, range(n)))
        history.result()
    return {"customers": int(len(customers)), "events": int(len(events)), "rows": sum(rows),
            "parts": sum(r > 0 for r in rows)}


def _world_outline(world_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the build needs before it partitions the world: the customers, and the events' times and types (read
    as stored; a time that does not parse is left out here and reported when its part is validated)."""
    from nextbest.contract import ContractError, Violation, find_table, read_raw

    cpath, epath = find_table(world_dir, "customers"), find_table(world_dir, "events")
    if cpath is None or epath is None:
        name = "customers" if cpath is None else "events"
        raise ContractError([Violation(str(world_dir / f"{name}.csv"), "*", f"no {name}.csv or {name}.parquet in {world_dir}")])
    import pyarrow.parquet as pq

    present = pq.read_schema(epath).names if epath.suffix == ".parquet" else list(pd.read_csv(epath, nrows=0).columns)
    cols = [c for c in ("event_timestamp", "event_type") if c in present]  # a missing one: reported by validation
    events = pd.read_parquet(epath, columns=cols) if epath.suffix == ".parquet" else pd.read_csv(epath, usecols=cols)
    events = events.reindex(columns=["event_timestamp", "event_type"])
    customers = read_raw(cpath)
    if "registered_at" not in customers:  # reported by validation
        customers["registered_at"] = pd.NaT
    for df, col in ((events, "event_timestamp"), (customers, "registered_at")):
        if col in df:
            df[col] = pd.to_datetime(df[col], utc=True, errors="coerce", format="ISO8601")
    return customers, events[events["event_timestamp"].notna()]


def build(settings, world_dir: Path | str | None = None, progress: bool = False) -> dict:
    """Read the world, write one Parquet dataset per view under ``settings.features_dir``; return a summary.

    Snapshots are written per customer chunk as they are computed (never held whole). A base of more than
    ``engine.max_partition_customers`` customers (or any base with ``engine.kind: dask``) is first split by
    customer in one streaming pass (:mod:`nextbest.partition`); its parts are built in this process, one per core
    at a time, or on the Dask workers. Peak memory then grows with a part and a chunk per core, not with the base. The
    files are the same either way, and are swapped in only when every partition is written."""
    from nextbest.contract import load_world
    from nextbest.engine import Engine

    t0 = _time.perf_counter()
    world_dir = Path(world_dir or settings.world_dir)
    actions = tuple(settings.actions)
    fd = settings.features_dir
    fd.mkdir(parents=True, exist_ok=True)
    with Engine(settings, progress=progress) as engine:
        conf = settings.engine
        ids = customer_ids(world_dir)
        sample = training_sample(settings, ids)  # chunks of their own: training's reads skip the others'
        n_parts = conf.partitions or part_count(len(ids), conf.max_partition_customers,
                                                at_least=2 * engine.workers if engine.kind == "dask" else 1)
        whole = n_parts == 1 and engine.kind == "local"
        # a base built whole is validated first; a split one part by part
        customers, events = load_world(world_dir, in_time_order=False) if whole else _world_outline(world_dir)
        t_load = _time.perf_counter() - t0
        messages = coverage_messages(events)
        for m in messages:
            print(f"warning: {m}", file=sys.stderr)
        times = snapshot_times(customers, events, settings.features.cadence_days)
        times_ns = np.array([to_ns(t) for t in times], dtype=np.int64)
        staging = _staging(fd, actions)
        if whole:
            parts = [_build_part(settings, world_dir, None, times_ns, staging, "00000", frames=(customers, events),
                                 threads=engine.threads, progress=progress, first=sample)]
        else:
            del events
            split_dir = fd / ".split"
            _remove(split_dir)
            try:
                dirs = split_world(world_dir, split_dir, id_ranges(ids, n_parts), progress=progress)
                tasks = [(settings, world_dir, d, times_ns, staging, f"{k:05d}", None, 1, False, sample)
                         for k, d in enumerate(dirs)]
                # in this process: a part per core, their chunks one after the other
                parts = engine.map(_build_part, tasks, label="feature partitions", threads=engine.threads)
            finally:
                _remove(split_dir)
    t_compute = _time.perf_counter() - t0 - t_load
    files = _commit(fd, actions, staging)
    vector_placeholder(fd)
    end = times[-1]
    meta = {
        "built_at": datetime.now(timezone.utc).isoformat(),
        "world_dir": str(world_dir),
        "engine": settings.engine.kind,
        "customers": int(len(customers)),
        "events": int(sum(p["events"] for p in parts)),
        "snapshots": int(len(times)),
        "first_snapshot": times[0].isoformat(),
        "data_end": end.isoformat(),
        # every customer registered before data_end has a row at data_end: each one's newest snapshot
        "complete_at": end.isoformat(),
        "rows": int(sum(p["rows"] for p in parts)),
        "parts": int(sum(p["parts"] for p in parts)),
        "n_features": len(customer_features(actions)),
        "actions": list(settings.actions),
        "warnings": messages,
        "times": [t.isoformat() for t in times],
    }
    (fd / META_FILE).write_text(json.dumps(meta, indent=2))
    return {
        **{k: v for k, v in meta.items() if k != "times"},
        "features_dir": str(fd),
        "files": {k: v for k, v in files.items() if not k.startswith(HISTORY_DIR)},
        "seconds": {
            "load": round(t_load, 2),
            "compute": round(t_compute, 2),
            "total": round(_time.perf_counter() - t0, 2),
        },
    }
