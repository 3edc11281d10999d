"""Benchmark: filling the online store from the latest feature snapshot.

Writes a synthetic latest snapshot (one row per customer in every feature
view, realistic value ranges) for N customers, registers the Feast repository
and compares

- ``packed``: ``features.store.materialize`` - one float32 vector per customer
  through the online store's ``online_write_batch``;
- ``plain``: ``features.store.materialize(plain=True)`` - Feast's standard
  ``materialize`` of the six scalar views (only up to ``--plain-max``
  customers: at 1M it takes far too long to be worth waiting for);

into SQLite, and into Redis when a ``redis-server`` answers on
``--redis-host/--redis-port`` (there also on a local Dask cluster of two
workers, each writing its feature parts). It also times ``OnlineFeatures.read`` for 1 and
100 customers. Prints a table and writes ``benchmarks/results/materialize.md``.

    .venv/bin/python benchmarks/bench_materialize.py                 # 100k and 1M
    .venv/bin/python benchmarks/bench_materialize.py --sizes 100000  # quicker
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _common import machine, machine_line  # noqa: E402
from features.names import views  # noqa: E402
from nextbest.settings import load_settings  # noqa: E402

PART = 100_000  # customers per part file of the synthetic snapshot
ZONES = np.array(["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney"], dtype=object)


def synthetic_latest(n: int, actions, seed: int = 0) -> dict[str, pd.DataFrame]:
    """One snapshot row per customer for every view, with plausible values (counts, rates, NaN recencies)."""
    rng = np.random.default_rng(seed)
    ids = np.char.add("C", np.char.zfill(np.arange(n).astype(str), 8)).astype(object)
    ts = pd.DatetimeIndex(np.full(n, pd.Timestamp("2026-01-01", tz="UTC").value).astype("datetime64[ns]"), tz="UTC")

    def counts(lam):
        return rng.poisson(lam, n).astype(np.float32)

    def recency(p_missing=0.3):
        v = rng.exponential(40, n).astype(np.float32)
        v[rng.random(n) < p_missing] = np.nan
        return v

    out = {}
    for view, feats in views(actions).items():
        cols: dict[str, object] = {"customer_id": ids, "event_timestamp": ts}
        for f in feats:
            if f.startswith(("consent_", "reachable_", "rfm_dropped")):
                cols[f] = (rng.random(n) < 0.6).astype(np.float32)
            elif f.endswith("_code") and view == "customer_profile":
                cols[f] = rng.integers(0, 997, n).astype(np.float32)
            elif f in ("stage_code", "rfm_segment", "rfm_segment_prev"):
                cols[f] = rng.integers(0, 5, n).astype(np.float32)
            elif "rate" in f or "share" in f:
                cols[f] = rng.random(n).astype(np.float32)
            elif f.startswith(("days_since", "tenure")):
                cols[f] = recency()
            elif f.startswith("monetary"):
                cols[f] = (rng.lognormal(3, 1, n) * (rng.random(n) < 0.7)).astype(np.float32)
            else:
                cols[f] = counts(2.0)
        if view == "customer_profile":
            cols["timezone"] = ZONES[rng.integers(0, len(ZONES), n)]
        out[view] = pd.DataFrame(cols)
    return out


def redis_up(host: str, port: int) -> bool:
    try:
        import redis

        return bool(redis.Redis(host=host, port=port, socket_connect_timeout=1).ping())
    except Exception:
        return False


def settings_for(data_dir: Path, kind: str, host: str, port: int):

    env = {"NEXTBEST__PATHS__DATA_DIR": str(data_dir), "NEXTBEST__ONLINE_STORE__KIND": kind,
           "NEXTBEST__ONLINE_STORE__REDIS_HOST": host, "NEXTBEST__ONLINE_STORE__REDIS_PORT": str(port)}
    return load_settings(environ=env)


def read_latency(settings, n_ids: int, total: int, repeats: int = 300) -> float:
    """Median ms of OnlineFeatures.read for n_ids random known customers."""
    from features.store import OnlineFeatures

    of = OnlineFeatures(settings)
    rng = np.random.default_rng(1)
    samples = []
    for _ in range(repeats):
        ids = [f"C{i:08d}" for i in rng.integers(0, total, n_ids)]
        t0 = time.perf_counter()
        X, found, _ = of.read(ids)
        samples.append((time.perf_counter() - t0) * 1e3)
        assert found.all()
    return statistics.median(samples)


def run(sizes: list[int], plain_max: int, data_root: Path, host: str, port: int) -> list[dict]:
    from features import store

    kinds = ["sqlite"] + (["redis"] if redis_up(host, port) else [])
    if "redis" not in kinds:
        print(f"redis: nothing answers on {host}:{port}; SQLite only")
    rows = []
    for n in sizes:
        data_dir = data_root / f"n{n}"
        shutil.rmtree(data_dir, ignore_errors=True)
        t0 = time.perf_counter()
        snaps = synthetic_latest(n, tuple(load_settings().actions))
        fd = data_dir / "features"
        fd.mkdir(parents=True)
        for view, df in snaps.items():  # the build's layout: a dataset folder per view, one part per chunk
            (fd / f"{view}.parquet").mkdir()
            for k, lo in enumerate(range(0, n, PART)):
                df.iloc[lo:lo + PART].to_parquet(fd / f"{view}.parquet" / f"part-00000-{k:05d}.parquet", index=False)
        del snaps
        print(f"\n== {n:,} customers (synthetic snapshot written in {time.perf_counter() - t0:.1f}s)")
        for kind in kinds:
            s = settings_for(data_dir, kind, host, port)
            if kind == "redis":
                import redis

                redis.Redis(host=host, port=port).flushdb()
            (fd / "online_store.db").unlink(missing_ok=True)
            store.apply(s)
            modes = ["packed"] + (["packed, dask 2 workers"] if kind == "redis" else []) + (
                ["plain"] if n <= plain_max else [])
            for mode in modes:
                run_s = s
                if "dask" in mode:  # each feature part written to Redis by a worker of a local cluster
                    run_s = s.model_copy(update={"engine": s.engine.model_copy(update={"kind": "dask", "workers": 2})})
                    redis.Redis(host=host, port=port).flushdb()
                t0 = time.perf_counter()
                st = store.materialize(run_s, plain=(mode == "plain"))
                secs = time.perf_counter() - t0
                size = (fd / "online_store.db").stat().st_size / 2**20 if kind == "sqlite" else None
                row = {"customers": n, "online_store": kind, "mode": mode, "features": st["n_features"],
                       "seconds": round(secs, 1), "customers_per_s": round(n / secs),
                       "sqlite_mb": round(size) if size is not None else None}
                if mode.startswith("packed"):
                    row["read_1_ms"] = round(read_latency(s, 1, n), 3)
                    row["read_100_ms"] = round(read_latency(s, 100, n, repeats=100), 3)
                rows.append(row)
                print(row, flush=True)
            if n > plain_max:
                rows.append({"customers": n, "online_store": kind, "mode": "plain", "features": None,
                             "seconds": None, "note": f"skipped: Feast's plain materialize above {plain_max:,} customers is too slow to wait for"})
    return rows


def markdown(rows: list[dict], info: dict) -> str:
    lines = [
        "# Online store fill: packed vector vs Feast's plain materialize",
        "",
        "Produced by `benchmarks/bench_materialize.py` (synthetic latest snapshot, one row per customer, "
        f"{rows[0]['features'] if rows else '?'} float32 features + timezone).",
        "",
        machine_line(info),
        "",
        "| customers | online store | mode | seconds | customers/s | vs plain | SQLite MB | read 1 (ms) | read 100 (ms) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    plain_rate = {r["online_store"]: r["customers_per_s"] for r in rows if r["mode"] == "plain" and r.get("seconds")}
    for r in rows:
        if r.get("seconds") is None:
            rate = plain_rate.get(r["online_store"])
            est = f"skipped (about {r['customers'] / rate / 60:.0f} min at the rate measured above)" if rate else "skipped"
            lines.append(f"| {r['customers']:,} | {r['online_store']} | {r['mode']} | {est} | | | | | |")
            continue
        ratio = ""
        if r["mode"].startswith("packed") and r["online_store"] in plain_rate:
            ratio = f"{r['customers_per_s'] / plain_rate[r['online_store']]:.0f}x"
        lines.append(
            f"| {r['customers']:,} | {r['online_store']} | {r['mode']} | {r['seconds']} | "
            f"{r['customers_per_s']:,} | {ratio} | {r.get('sqlite_mb') or ''} | {r.get('read_1_ms', '')} | {r.get('read_100_ms', '')} |"
        )
    lines += [
        "",
        "- `packed`: `features.store.materialize` - one float32 vector per customer (view `customer_vector`) "
        "written with the online store's `online_write_batch` in batches of `online_store.write_batch_size`.",
        "- `packed, dask 2 workers`: the same with `engine.kind: dask` on a local cluster of two processes: each "
        "feature part's newest vectors are read and written to Redis by a worker, in parallel (cluster start "
        "included).",
        "- `plain`: `features.store.materialize(plain=True)` - Feast's `FeatureStore.materialize` of the six scalar "
        "views (one online row per customer and feature); skipped above `--plain-max` customers because it would "
        "take tens of minutes (and about 27 GB of SQLite at 1M customers).",
        "- reads: median of `OnlineFeatures.read` (one online-store lookup for all ids, `np.frombuffer` per "
        "customer, request-context columns computed) for random known customers.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--plain-max", type=int, default=100_000, help="largest size for Feast's plain materialize")
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/nextbest-bench/materialize"))
    ap.add_argument("--redis-host", default="127.0.0.1")
    ap.add_argument("--redis-port", type=int, default=6379)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "materialize.md")
    a = ap.parse_args()
    info = machine()
    rows = run(a.sizes, a.plain_max, a.data_dir, a.redis_host, a.redis_port)
    md = markdown(rows, info)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(md)
    print("\n" + md)
    print(f"written: {a.out}")
    shutil.rmtree(a.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
