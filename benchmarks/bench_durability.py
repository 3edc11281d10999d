"""What keeping every contact promise costs on the request path, in process (no HTTP):

* the decision log's commit of a request's decisions before they are returned
  (``ContactHistory.log_decisions``), with ``serving.decision_log_sync`` normal (survives kill -9)
  and full (also a power cut), for 1, 100 and 500 decisions; beside it, as the baseline, normal with
  SQLite's default of checkpointing inside the commit that fills 1,000 pages of log (the service
  checkpoints on a background thread instead, ``serving.sqlite``);
* the contact-pressure round trip of a request (``PressureStore.overlay`` then ``reserve``) on SQLite,
  for 1 and 100 customers each with a send.

Synthetic decision records shaped like the service's; scratch files under NEXTBEST_BENCH_DIR.

    .venv/bin/python benchmarks/bench_durability.py [--repeats 300]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SCRATCH, machine, machine_line, md_table, print_table, write_results  # noqa: E402

RECORD = {
    "customer_id": "C0000064", "action": "cross_sell", "channel": "in_app", "send_at": "2026-11-23T15:00:00-05:00",
    "stage": "active", "scores": {"activation": 0.555556, "churn": 0.023371, "response": {
        "email": 0.059896, "sms": 0.059896, "push": 0.055794, "in_app": 0.049835, "print": 0.031586},
        "best_hours": [15, 13, 16]},
    "expected_value": 0.334387, "reasons": [
        {"code": "stage:active", "text": "lifecycle stage: active"},
        {"code": "best_ev", "text": "cross_sell by in_app is the best of 3 eligible option(s): expected value 0.334"}],
    "control_group": False, "holdout_action": None, "holdout_channel": None, "cold_start": False, "fallback": False,
    "fallbacks": [], "model_versions": {"activation": "1", "churn": "1", "channel": "1", "send_time": "1"},
}


def _records(n: int) -> list[dict]:
    return [{**RECORD, "customer_id": f"C{i:07d}", "decision_id": str(uuid.uuid4())} for i in range(n)]


def _stats(ms: list[float]) -> tuple[float, float]:
    return float(np.median(ms)), float(np.percentile(ms, 99))


def bench_log(root: Path, repeats: int) -> list[list]:
    from serving.history import ContactHistory

    rows = []
    for sync, in_commit in (("normal", False), ("normal", True), ("full", False)):
        hist = ContactHistory(root / f"history-{sync}-{in_commit}.db", sync=sync)
        if in_commit:  # the baseline: no background checkpoints, SQLite's automatic one inside commits
            conn = hist.db.conn()  # opening the connection starts the checkpoint thread: stop it after
            hist.db._stop.set()
            conn.execute("PRAGMA wal_autocheckpoint=1000")
        what = f"decision log commit, synchronous={sync}" + (", checkpoints inside commits (baseline)" if in_commit
                                                             else "")
        for n in (1, 100, 500):
            times = []
            for _ in range(repeats if n < 500 else max(repeats // 5, 20)):
                recs = _records(n)
                texts = [json.dumps(r) for r in recs]
                t0 = time.perf_counter()
                hist.log_decisions(recs, texts, "2026-11-23T10:00:00+00:00", "bench")
                times.append((time.perf_counter() - t0) * 1e3)
            rows.append([what, n, *(round(x, 3) for x in _stats(times))])
        hist.close()
    return rows


def bench_pressure(root: Path, repeats: int) -> list[list]:
    from nextbest.settings import DEFAULT_CONFIG_DIR, load_settings
    from serving.policy import compile_policy
    from serving.pressure import Limits, Reservation, SqlitePressure

    store = SqlitePressure(root / "pressure.db", Limits.from_policy(compile_policy(load_settings(
        DEFAULT_CONFIG_DIR, environ={}))), create=True)
    now = int(time.time() * 1000)
    rows = []
    for n in (1, 100):
        times = []
        for k in range(repeats):
            ids = [f"c{k}-{i}" for i in range(n)]
            t0 = time.perf_counter()
            ov = store.overlay(ids)
            store.reserve([Reservation(str(uuid.uuid4()), c, "cross_sell", "in_app", now + 3_600_000,
                                       now + 10_800_000, 0, 0, float("nan")) for c in ids], ov.watermark, now)
            times.append((time.perf_counter() - t0) * 1e3)
        rows.append(["pressure overlay + reserve (SQLite)", n, *(round(x, 3) for x in _stats(times))])
    store.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=300)
    args = ap.parse_args()
    info = machine()
    root = SCRATCH / "durability"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rows = bench_log(root, args.repeats) + bench_pressure(root, args.repeats)
    headers = ["what", "per request", "p50 ms", "p99 ms"]
    print_table("durability and contact pressure on the request path", headers, rows)
    md = "\n".join([
        "# Durability and contact pressure: cost per request", "",
        "In process, no HTTP: the commit of a request's decisions to the decision log before they are returned, "
        "and the pressure store's overlay read plus the atomic reservation of each send. "
        f"{args.repeats} repeats (500 decisions: a fifth), medians and 99th percentiles.", "",
        *md_table(headers, rows), "", machine_line(info)])
    write_results("durability", md, {"machine": info, "rows": [dict(zip(headers, r)) for r in rows]})


if __name__ == "__main__":
    main()
