"""Benchmark: `POST /next_action` over HTTP, the real service against a naive one.

Starts two BentoML servers on 127.0.0.1 in the same run, on a scratch copy of
the demo world (``data/`` and ``mlruns/`` copied to ``--scratch``; when the
project has no demo world, a 20k world is simulated, built and trained there):

- ``nextbest``: ``bentoml serve serving.service:NextBest`` (packed online
  vectors, native boosters compiled with lleaves, vectorised policy); the run
  waits for ``/readyz`` and for ``/health`` to report ``compiled_trees``;
- ``naive``: ``bentoml serve naive_service:NaiveNextBest``
  (``benchmarks/naive_service.py``: BentoML defaults with the access log on,
  Feast ``get_online_features`` on the feature service over the scalar views -
  materialised here with ``materialize(plain=True)``, timed - and MLflow pyfunc
  models predicting on DataFrames, then the same policy).

Each run starts from an empty decision log and pressure store (what earlier runs logged is removed from the
scratch copy), so runs measure the same thing. For 1 and 100 random known customers per request, with 1 client and with 8
concurrent clients (keep-alive connections driven by one asyncio thread), it
measures latency percentiles and throughput. The two services are measured
alternately, block by block, ``--repeats`` times; the table shows the median
over repeats of each block's p50 / p99 / throughput. It samples the servers'
RSS during the load (psutil, whole process tree) and reads each process's
``VmHWM`` at the end. Both servers are stopped at the end, also on error.

    .venv/bin/python benchmarks/bench_online.py            # full run (~10 min)
    .venv/bin/python benchmarks/bench_online.py --quick    # fewer requests, one repeat
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (  # noqa: E402
    ROOT, SCRATCH, ensure_world, machine, machine_line, md_table, median, print_table, scratch_env,
    scratch_settings, write_results,
)

BENTOML = Path(sys.executable).with_name("bentoml")
TARGET_P99_1_MS = 3.0  # 1 customer, 1 client
TARGET_RPS_1_8 = 1000.0  # 1 customer, 8 clients: requests/s ...
TARGET_P99_1_8_MS = 20.0  # ... at this p99
TARGET_P50_100_MS = 10.0  # 100 customers, 1 client


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, target: str, cwd: Path, root: Path, logs: Path, workers: int = 1):
        self.name, self.port = name, free_port()
        env = {**os.environ, **scratch_env(root), "PYTHONPATH": str(ROOT), "BENTOML_DO_NOT_TRACK": "true",
               "NEXTBEST__SERVING__WORKERS": str(workers),
               "BENTOML_CONFIG_OVERRIDES": json.dumps({"services": {"nextbest": {"workers": workers}}})}
        self.log = open(logs / f"{name}.log", "w")
        self.proc = subprocess.Popen(
            [str(BENTOML), "serve", target, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.perf_counter()
        self.ready_s: float | None = None
        self.compiled_s: float | None = None

    def processes(self):
        import psutil

        try:
            p = psutil.Process(self.proc.pid)
            return [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def wait_ready(self, timeout: float = 300, need_compiled: bool = False) -> dict:
        import httpx

        deadline = time.perf_counter() + timeout
        health: dict = {}
        with httpx.Client(timeout=5) as c:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log.name}")
                try:
                    if self.ready_s is None and c.get(self.url + "/readyz").status_code == 200:
                        self.ready_s = time.perf_counter() - self.started
                    if self.ready_s is not None:
                        health = c.post(self.url + "/health", json={}).json()
                        if not need_compiled or health.get("compiled_trees"):
                            self.compiled_s = time.perf_counter() - self.started
                            return health
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready after {timeout}s; see {self.log.name}")

    def hwm_mb(self) -> dict[int, float]:
        out = {}
        for p in self.processes():
            try:
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        out[p.pid] = int(line.split()[1]) / 1024
            except OSError:
                pass
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self.log.close()


class RssSampler(threading.Thread):
    """Peak of the summed RSS of a server's process tree, and the peak of its largest process."""

    def __init__(self, servers: list[Server], every: float = 0.2):
        super().__init__(daemon=True)
        self.servers, self.every = servers, every
        self.peak_tree = {s.name: 0.0 for s in servers}
        self.peak_proc = {s.name: 0.0 for s in servers}
        self._stop = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for s in self.servers:
                rss = []
                for p in s.processes():
                    try:
                        rss.append(p.memory_info().rss / 2**20)
                    except psutil.Error:
                        pass
                if rss:
                    self.peak_tree[s.name] = max(self.peak_tree[s.name], sum(rss))
                    self.peak_proc[s.name] = max(self.peak_proc[s.name], max(rss))
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()


# --------------------------------------------------------------------------- load


def run_block(url: str, ids: np.ndarray, n: int, clients: int, requests: int, seed: int,
              max_seconds: float) -> dict:
    """`requests` POSTs of n random known ids from `clients` concurrent clients; stop early after max_seconds.

    The clients are keep-alive HTTP/1.1 connections driven by one asyncio thread, each sending its next request
    as soon as its answer is in (closed loop). The load generator shares the cores with the servers; one thread
    spends about 0.2 ms of CPU per request, where a thread per client spent 0.5 ms at 8 clients (GIL hand-offs),
    so more of the machine is left to the server under test. ``client_cpu_ms`` reports what it spent."""
    import asyncio
    import resource
    from urllib.parse import urlsplit

    host = urlsplit(url)
    per = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]

    async def client(i: int, deadline: float, lat: list[float], errors: list[int]) -> None:
        rng = np.random.default_rng(seed * 100 + i)
        reader, writer = await asyncio.open_connection(host.hostname, host.port)
        try:
            for _ in range(per[i]):
                if time.perf_counter() > deadline:
                    break
                body = json.dumps({"customer_ids": rng.choice(ids, n, replace=False).tolist()}).encode()
                head = (f"POST /next_action HTTP/1.1\r\nHost: {host.netloc}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode()
                t0 = time.perf_counter()
                writer.write(head + body)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                payload = await reader.readexactly(length)
                dt = time.perf_counter() - t0
                if status_line.split()[1] != b"200" or len(json.loads(payload)["decisions"]) != n:
                    errors[0] += 1
                    continue
                lat.append(dt)
        finally:
            writer.close()

    async def block() -> tuple[list[float], int]:
        lat: list[float] = []
        errors = [0]
        deadline = time.perf_counter() + max_seconds
        await asyncio.gather(*(client(i, deadline, lat, errors) for i in range(clients)))
        return lat, errors[0]

    cpu0 = resource.getrusage(resource.RUSAGE_THREAD)
    t0 = time.perf_counter()
    lat, errors = asyncio.run(block())
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_THREAD)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    a = np.array(lat) * 1e3
    return {
        "requests": int(len(a)), "errors": errors, "wall_s": wall,
        "p50_ms": float(np.percentile(a, 50)) if len(a) else None,
        "p99_ms": float(np.percentile(a, 99)) if len(a) else None,
        "mean_ms": float(a.mean()) if len(a) else None,
        "rps": len(a) / wall if wall else None,
        "customers_per_s": len(a) * n / wall if wall else None,
        "client_cpu_ms": cpu / max(len(a) + errors, 1) * 1e3,
        "truncated": len(a) + errors < requests,
    }


def agreement(servers: list[Server], ids: np.ndarray, n: int = 200) -> dict:
    """Same request (fixed request id and trigger time) to both services: share of identical actions/channels."""
    import httpx

    rng = np.random.default_rng(99)
    body = {"customer_ids": rng.choice(ids, n, replace=False).tolist(), "request_id": "bench-agreement",
            "context": {"trigger_timestamp": "2026-01-15T10:00:00+00:00"}}
    out = {}
    for s in servers:
        with httpx.Client(timeout=120) as c:
            out[s.name] = c.post(s.url + "/next_action", json=body).json()["decisions"]
    a, b = out["nextbest"], out["naive"]
    key = lambda d: (d.get("action"), d.get("channel"))  # noqa: E731
    return {"customers": n, "same_action": float(np.mean([x.get("action") == y.get("action") for x, y in zip(a, b)])),
            "same_action_and_channel": float(np.mean([key(x) == key(y) for x, y in zip(a, b)]))}


def breakdown(settings, ids: np.ndarray, repeats: int = 200) -> list[dict]:
    """In-process stage times of one decision request (no HTTP): where the service's time goes."""
    from datetime import datetime, timezone

    import orjson

    from serving.engine import Engine, decide_arrays
    from serving.history import ContactHistory
    from serving.policy import compile_policy
    from serving.pressure import Limits, SqlitePressure
    from serving.scoring import Scorer

    from features.store import OnlineFeatures

    online = OnlineFeatures(settings)
    scorer = Scorer.from_registry(settings, list(online.names), compile="now")
    hist_dir = settings.data_dir / "serving" / "bench-breakdown"
    hist_dir.mkdir(parents=True, exist_ok=True)
    pressure = SqlitePressure(hist_dir / "pressure.db", Limits.from_policy(compile_policy(settings)), create=True)
    eng = Engine(settings, online=online, scorer=scorer, history=ContactHistory(hist_dir / "history.db"),
                 pressure=pressure)
    rng = np.random.default_rng(5)
    out = []
    for n in (1, 100):
        t = {k: [] for k in ("features", "scores", "policy", "records", "history", "json", "total")}
        for _ in range(repeats):
            batch = rng.choice(ids, n, replace=False).tolist()
            now = datetime.now(timezone.utc)
            ctx = {"trigger_timestamp": [now] * n, "trigger_event": ["none"] * n, "trigger_channel": [None] * n,
                   "near_store": [False] * n, "weather": ["unknown"] * n}
            t0 = time.perf_counter()
            X, found, tz = online.read(batch, context=ctx)
            t1 = time.perf_counter()
            scorer.score(X, eng.policy)
            t2 = time.perf_counter()
            d = decide_arrays(eng.policy, scorer, eng.feature_index, batch, X, found, tz, now,
                              trigger=["none"] * n, trigger_channel=[None] * n, near_store=[False] * n,
                              weather=["unknown"] * n, restrict_actions=[None] * n, request_id=None)
            t3 = time.perf_counter()
            rec = d.to_records()
            t4 = time.perf_counter()
            texts = [orjson.dumps(r).decode() for r in rec]  # as Engine.answer_many encodes them
            t5 = time.perf_counter()
            eng.history.log_decisions(rec, texts, now.isoformat(), None)
            t6 = time.perf_counter()
            ('{"request_id":null,"decisions":[' + ",".join(texts) + "]}").encode()  # the body, as the service builds it
            t7 = time.perf_counter()
            for k, v in zip(t, (t1 - t0, t2 - t1, (t3 - t2) - (t2 - t1), t4 - t3, t6 - t5, (t5 - t4) + (t7 - t6),
                                t7 - t0)):
                t[k].append(v * 1e3)
        out.append({"customers": n, **{k: float(np.median(v)) for k, v in t.items()},
                    "total_p99": float(np.percentile(t["total"], 99))})
    return out


# --------------------------------------------------------------------------- main


def fresh_serving_state(settings) -> None:
    """Start from an empty decision log and pressure store (the servers create them): what earlier runs logged would
    otherwise make each run measure a larger log than the one before."""
    import shutil

    for db in (settings.serving_dir / "history.db", settings.pressure_path):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(settings.serving_dir / "bench-breakdown", ignore_errors=True)


def decision_log_size(settings) -> dict:
    """Decisions in the log and its size on disk (database and write-ahead log) at the end of the run."""
    import sqlite3

    db = settings.serving_dir / "history.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        n = c.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    mb = sum(Path(f"{db}{x}").stat().st_size for x in ("", "-wal") if Path(f"{db}{x}").exists()) / 2**20
    return {"decisions": int(n), "mb": round(mb, 1)}


def known_ids(settings) -> np.ndarray:
    import pyarrow.parquet as pq

    t = pq.read_table(settings.features_dir / "customer_profile.parquet", columns=["customer_id"])
    return np.array(sorted(set(t.column("customer_id").to_pylist())), dtype=object)


def ensure_plain(settings) -> float | None:
    """Feast's plain materialize of the scalar views (needed by the naive service); its seconds (recorded
    beside the scratch copy when it ran in an earlier run), None if unknown."""
    st = settings.features_dir / "online_state.json"
    rec = settings.data_dir / "plain_materialize.json"
    if st.exists() and json.loads(st.read_text()).get("plain_materialized"):
        return json.loads(rec.read_text())["seconds"] if rec.exists() else None
    from features import store

    t0 = time.perf_counter()
    store.materialize(settings, plain=True)
    secs = time.perf_counter() - t0
    rec.write_text(json.dumps({"seconds": secs, "at": time.time()}))
    return secs


def markdown(res: dict, info: dict, cmd: str) -> str:
    rows = []
    for sc in res["scenarios"]:
        nb, nv = sc["nextbest"], sc["naive"]
        ratio = (nv["p50_ms"] / nb["p50_ms"]) if nb["p50_ms"] and nv["p50_ms"] else None
        for name, m in (("nextbest", nb), ("naive", nv)):
            rows.append([
                f"{sc['customers']}", f"{sc['clients']}", name, f"{m['requests']}",
                f"{m['p50_ms']:.2f}" if m["p50_ms"] else "", f"{m['p99_ms']:.2f}" if m["p99_ms"] else "",
                f"{m['rps']:,.0f}" if m["rps"] else "", f"{m['customers_per_s']:,.0f}" if m["customers_per_s"] else "",
                f"{ratio:.1f}x" if name == "nextbest" and ratio else "",
            ])
    t = res["targets"]
    mem = res["memory"]
    lines = [
        "# Online decisions over HTTP: nextbest vs a naive BentoML + Feast SDK + pyfunc service",
        "",
        f"Produced by `{cmd}` on 127.0.0.1 ({res['world']['customers']:,}-customer world, random known "
        "customers, no request context). Both servers run in the same session and are measured alternately; "
        f"each cell is the median over {res['repeats']} repeats of that block's statistic. The load generator "
        "(keep-alive connections driven by one asyncio thread) shares the machine's cores with the servers.",
        "",
        machine_line(info),
        "",
        "## Targets",
        "",
        *md_table(["target", "measured (nextbest)", "met"], [
            [f"1 customer, 1 client: p99 <= {TARGET_P99_1_MS:g} ms", f"{t['p99_1_ms']:.2f} ms", "yes" if t["p99_1_ok"] else "**no**"],
            [f"1 customer, 8 clients: >= {TARGET_RPS_1_8:,.0f} requests/s at p99 <= {TARGET_P99_1_8_MS:g} ms",
             f"{t['rps_1_8']:,.0f} requests/s, p99 {t['p99_1_8_ms']:.2f} ms", "yes" if t["rps_1_8_ok"] else "**no**"],
            [f"100 customers, 1 client: p50 <= {TARGET_P50_100_MS:g} ms", f"{t['p50_100_ms']:.2f} ms", "yes" if t["p50_100_ok"] else "**no**"],
        ]),
        "",
        f"The nextbest server ran {res.get('workers', 1)} worker process(es) (`serving.workers`).",
        "",
        "## Latency and throughput",
        "",
        *md_table(["customers/request", "clients", "service", "requests", "p50 ms", "p99 ms", "requests/s",
                   "customers/s", "naive/nextbest p50"], rows, "rrlrrrrrr"),
        "",
        "## Memory and start-up",
        "",
        *md_table(["service", "peak RSS, process tree (MB)", "peak RSS, largest process (MB)", "VmHWM per process (MB)",
                   "ready (s)", "compiled trees ready (s)"], [
            [s, f"{mem[s]['peak_tree_mb']:.0f}", f"{mem[s]['peak_proc_mb']:.0f}",
             ", ".join(f"{v:.0f}" for v in mem[s]["vmhwm_mb"]), f"{res['startup'][s]['ready_s']:.1f}",
             f"{res['startup'][s]['compiled_s']:.1f}" if s == "nextbest" else ""] for s in mem], "lrrrrr"),
        "",
        "## Where a request's time goes (in process, no HTTP)",
        "",
        *md_table(["customers", "online read (ms)", "scores (ms)", "policy (ms)", "to_records (ms)",
                   "decision log commit (ms)", "JSON (ms)", "total p50 (ms)", "total p99 (ms)"], [
            [str(b["customers"]), *(f"{b[k]:.2f}" for k in ("features", "scores", "policy", "records", "history",
                                                                "json", "total", "total_p99"))]
            for b in res.get("breakdown", [])]),
        "",
        "Medians of each stage of `Engine.decide`'s path called directly (`OnlineFeatures.read`, `Scorer.score`, "
        "the rest of `decide_arrays`, `Decisions.to_records`, `ContactHistory.log_decisions`; JSON: each decision "
        "encoded with orjson and the response body joined, as the service does), one request at a time; `total` is the whole sequence timed per request. It leaves out "
        "the contact-pressure round trip (see `durability.md`). The gap between it and the HTTP p50 above is the HTTP "
        "server, BentoML's middlewares, the front door's validation and the round trip; under concurrent load a "
        "worker decides the requests that arrived meanwhile together, in one pass.",
        "",
        f"- Decisions agree on {res['agreement']['same_action'] * 100:.1f}% of actions "
        f"({res['agreement']['same_action_and_channel'] * 100:.1f}% action and channel) for the same "
        f"{res['agreement']['customers']} customers with a fixed request id and trigger time.",
        "- Feast's plain materialize of the scalar views for the naive service: "
        + (f"{res['plain_materialize_s']:.0f} s for {res['world']['customers']:,} customers "
           f"({res['plain_materialize_s'] / res['world']['customers'] * 1000:.1f} s per 1k)."
           if res.get("plain_materialize_s") else "already done in the scratch copy (not timed in this run)."),
        f"- nextbest: `bentoml serve serving.service:NextBest` ({res.get('workers', 1)} worker(s), access log off); "
        "each request also reserves its sends in the SQLite pressure store and "
        "commits its decisions to the SQLite decision log. naive: `benchmarks/naive_service.py` "
        "(BentoML defaults, access log on; no contact history).",
        "- Load generator CPU per request (median over the nextbest blocks): "
        + ", ".join(f"{sc['customers']} customer(s), {sc['clients']} client(s): "
                    f"{median([b.get('client_cpu_ms', float('nan')) for b in sc['nextbest']['blocks']]):.2f} ms"
                    for sc in res["scenarios"]) + ".",
        f"- Decision log: emptied at the start of the run (with the pressure store), "
        f"{res['decision_log']['decisions']:,} decisions and {res['decision_log']['mb']:,.0f} MB on disk at the end."
        if res.get("decision_log") else "- Decision log: carried over from earlier runs.",
        f"- Request counts: 1 client: {res['plan']['n1_1']} requests of 1 customer, {res['plan']['n100_1']} of 100; "
        f"8 clients: {res['plan']['n1_8']} / {res['plan']['n100_8']} in total; a block stops after "
        f"{res['plan']['max_block_s']:g} s (the naive service's slow blocks hold fewer requests - see `requests`).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scratch", type=Path, default=SCRATCH / "online")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="about a fifth of the requests, one repeat")
    ap.add_argument("--max-block-s", type=float, default=20.0, help="stop a block after this many seconds")
    ap.add_argument("--name", default="online")
    ap.add_argument("--workers", type=int, default=None,
                    help="worker processes of the nextbest server (default: serving.workers: auto)")
    ap.add_argument("--breakdown-only", action="store_true",
                    help="only redo the in-process breakdown and merge it into the existing results/<name>.json")
    a = ap.parse_args()
    if a.workers is None:
        from nextbest.settings import Serving

        a.workers = Serving().worker_count
    if a.breakdown_only:
        from _common import RESULTS

        res = json.loads((RESULTS / f"{a.name}.json").read_text())
        root = ensure_world(a.scratch)
        settings = scratch_settings(root)
        res["breakdown"] = breakdown(settings, known_ids(settings))
        write_results(a.name, markdown(res, res["machine"], res["command"]), res)
        print(json.dumps(res["breakdown"], indent=1))
        return
    plan = {"n1_1": 1000, "n100_1": 150, "n1_8": 1000, "n100_8": 1000, "max_block_s": a.max_block_s}
    if a.quick:
        plan.update(n1_1=100, n100_1=40, n1_8=200, n100_8=200, max_block_s=min(a.max_block_s, 8))
        a.repeats = 1
    info = machine()
    root = ensure_world(a.scratch)
    settings = scratch_settings(root)
    plain_s = ensure_plain(settings)
    fresh_serving_state(settings)
    ids = known_ids(settings)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    servers: list[Server] = []

    def stop_all() -> None:
        for s in servers:
            s.stop()

    atexit.register(stop_all)
    try:
        servers.append(Server("nextbest", "serving.service:NextBest", ROOT, root, logs, workers=a.workers))
        servers.append(Server("naive", "naive_service:NaiveNextBest", ROOT / "benchmarks", root, logs))
        health = servers[0].wait_ready(need_compiled=True)
        servers[1].wait_ready()
        print(f"nextbest ready in {servers[0].ready_s:.1f}s, compiled trees after {servers[0].compiled_s:.1f}s: "
              f"{health.get('compiled_trees')}; naive ready in {servers[1].ready_s:.1f}s", flush=True)
        for s in servers:  # warm-up
            run_block(s.url, ids, 1, 1, 50, 0, 60)
            run_block(s.url, ids, 100, 2, 20, 0, 60)
        agree = agreement(servers, ids)
        print("agreement:", agree, flush=True)
        sampler = RssSampler(servers)
        sampler.start()
        scen = [(1, 1, plan["n1_1"]), (100, 1, plan["n100_1"]), (1, 8, plan["n1_8"]), (100, 8, plan["n100_8"])]
        raw: dict = {(n, c, s.name): [] for n, c, _ in scen for s in servers}
        for rep in range(a.repeats):
            for n, c, reqs in scen:
                order = servers if rep % 2 == 0 else servers[::-1]
                for s in order:
                    m = run_block(s.url, ids, n, c, reqs, seed=rep + 1, max_seconds=plan["max_block_s"])
                    raw[(n, c, s.name)].append(m)
                    print(f"rep {rep + 1} n={n:<3} clients={c} {s.name:<8} {m['requests']:>5} req  "
                          f"p50 {m['p50_ms']:.2f} ms  p99 {m['p99_ms']:.2f} ms  {m['rps']:.0f} req/s", flush=True)
        sampler.stop()
        memory = {s.name: {"peak_tree_mb": sampler.peak_tree[s.name], "peak_proc_mb": sampler.peak_proc[s.name],
                           "vmhwm_mb": sorted(s.hwm_mb().values(), reverse=True)} for s in servers}
        startup = {s.name: {"ready_s": s.ready_s, "compiled_s": s.compiled_s} for s in servers}
    finally:
        stop_all()
    log_size = decision_log_size(settings)
    print("in-process breakdown ...", flush=True)
    stages = breakdown(settings, ids, repeats=60 if a.quick else 200)
    scenarios = []
    for n, c, _ in scen:
        sc = {"customers": n, "clients": c}
        for s in ("nextbest", "naive"):
            blocks = raw[(n, c, s)]
            sc[s] = {k: median([b[k] for b in blocks]) for k in ("p50_ms", "p99_ms", "mean_ms", "rps", "customers_per_s")}
            sc[s]["requests"] = sum(b["requests"] for b in blocks)
            sc[s]["errors"] = sum(b["errors"] for b in blocks)
            sc[s]["blocks"] = blocks
        scenarios.append(sc)
    one = next(x for x in scenarios if x["customers"] == 1 and x["clients"] == 1)["nextbest"]
    hundred = next(x for x in scenarios if x["customers"] == 100 and x["clients"] == 1)["nextbest"]
    eight = next(x for x in scenarios if x["customers"] == 1 and x["clients"] == 8)["nextbest"]
    targets = {"p99_1_ms": one["p99_ms"], "p99_1_ok": one["p99_ms"] <= TARGET_P99_1_MS,
               "rps_1_8": eight["rps"], "p99_1_8_ms": eight["p99_ms"],
               "rps_1_8_ok": eight["rps"] >= TARGET_RPS_1_8 and eight["p99_ms"] <= TARGET_P99_1_8_MS,
               "p50_100_ms": hundred["p50_ms"], "p50_100_ok": hundred["p50_ms"] <= TARGET_P50_100_MS}
    cmd = ("python benchmarks/bench_online.py " + " ".join(sys.argv[1:])).strip()
    res = {"machine": info, "command": cmd, "repeats": a.repeats, "workers": a.workers, "plan": plan, "world": {"customers": len(ids)},
           "plain_materialize_s": plain_s, "agreement": agree, "scenarios": scenarios, "memory": memory,
           "startup": startup, "targets": targets, "health": health, "breakdown": stages,
           "decision_log": log_size}
    print_table("POST /next_action (median over repeats)",
                ["customers", "clients", "service", "p50 ms", "p99 ms", "req/s", "customers/s"],
                [[sc["customers"], sc["clients"], s, f"{sc[s]['p50_ms']:.2f}", f"{sc[s]['p99_ms']:.2f}",
                  f"{sc[s]['rps']:.0f}", f"{sc[s]['customers_per_s']:.0f}"] for sc in scenarios for s in ("nextbest", "naive")])
    path = write_results(a.name, markdown(res, info, cmd), res)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
