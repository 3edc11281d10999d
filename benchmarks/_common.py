"""Shared helpers of the benchmark scripts: machine description, scratch worlds, result files.

Not a benchmark itself. Every script imports it with ``benchmarks/`` on
``sys.path`` (the scripts put it there).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SCRATCH = Path(os.environ.get("NEXTBEST_BENCH_DIR", "/tmp/nextbest-bench"))


# --------------------------------------------------------------------------- machine


def machine() -> dict:
    """nproc, CPU model, RAM, Python and key package versions, date."""
    import importlib.metadata as md

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20)
    except (OSError, ValueError, IndexError):
        mem = None
    versions = {}
    for p in ("numpy", "pandas", "lightgbm", "lleaves", "feast", "mlflow", "bentoml", "httpx"):
        try:
            versions[p] = md.version(p)
        except md.PackageNotFoundError:
            versions[p] = None
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "loadavg_1m_start": round(os.getloadavg()[0], 2),
    }


def machine_line(info: dict) -> str:
    pk = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    return (f"Machine: {info['nproc']} cores ({info['cpu']}), {info['memory_gb']} GiB RAM; Python {info['python']}; "
            f"{pk}; {info['platform']}; run {info['date']}.")


def write_results(name: str, markdown: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = data.get("machine") or {}
    if "loadavg_1m_start" in info:
        end = info.setdefault("loadavg_1m_end", round(os.getloadavg()[0], 2))
        markdown = markdown.rstrip("\n") + (
            f"\n\nMachine load: 1-minute load average {info['loadavg_1m_start']} at the start and {end} at the end "
            f"on {info['nproc']} cores (anything above the core count means the run shared the CPUs with other work, "
            "which inflates absolute times; the compared variants are interleaved so their ratios hold better).\n")
    md = RESULTS / f"{name}.md"
    md.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    return md


def md_table(headers: list[str], rows: list[list], align: str | None = None) -> list[str]:
    align = align or "".join("l" if i == 0 else "r" for i in range(len(headers)))
    sep = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(sep) + "|"]
    out += ["| " + " | ".join("" if c is None else str(c) for c in r) + " |" for r in rows]
    return out


def print_table(title: str, headers: list[str], rows: list[list]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title)
        for h in headers:
            t.add_column(h)
        for r in rows:
            t.add_row(*["" if c is None else str(c) for c in r])
        Console().print(t)
    except ImportError:  # pragma: no cover
        print(title)
        print("\n".join(md_table(headers, rows)))


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------- scratch worlds


def scratch_env(root: Path) -> dict[str, str]:
    """NEXTBEST__* overrides pointing data and MLflow at ``root`` (a scratch folder)."""
    root = Path(root)
    return {
        "NEXTBEST__PATHS__DATA_DIR": str(root / "data"),
        "NEXTBEST__PATHS__MLRUNS_DIR": str(root / "mlruns"),
        "NEXTBEST__MLFLOW__TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        "NEXTBEST__MLFLOW__ARTIFACT_ROOT": str(root / "mlruns" / "artifacts"),
    }


def scratch_settings(root: Path, **extra: str):
    from nextbest.settings import load_settings

    return load_settings(environ={**os.environ, **scratch_env(root), **extra})


def use_scratch(root: Path) -> None:
    """Make this process (and its children) use ``root`` for data and MLflow."""
    os.environ.update(scratch_env(root))


def _has_champions(root: Path) -> bool:
    return (root / "mlruns" / "mlflow.db").exists() and (root / "ready.json").exists()


def champions_fit(root: Path) -> str | None:
    """None when the champions under ``root`` score with the current serving code, else why not.
    Checked in a child process, so this process's MLflow client never caches the registry."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, %r); sys.path.insert(0, %r); from _common import _fit, scratch_settings; "
            "from pathlib import Path; w = _fit(scratch_settings(Path(%r))); print('FIT:' + (w or 'ok'))"
            % (str(ROOT / "benchmarks"), str(ROOT), str(root)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    line = [x for x in out.stdout.splitlines() if x.startswith("FIT:")]
    if not line:
        return f"check failed: {out.stderr.strip().splitlines()[-1:] if out.stderr else out.returncode}"
    return None if line[-1] == "FIT:ok" else line[-1][4:]


def _fit(settings) -> str | None:
    import numpy as np

    from features.store import feature_names
    from serving.scoring import Scorer

    try:
        names = feature_names(settings)
        sc = Scorer.from_registry(settings, names, compile="no")
        if sc.unavailable:
            return f"heads unavailable: {sc.unavailable}"
        sc.score(np.full((3, len(names)), np.nan, np.float32))
        return None
    except Exception as e:  # e.g. a head trained with other model inputs than the code builds today
        return f"{type(e).__name__}: {e}"


def train_into(root: Path, progress: bool = False) -> dict:
    """Train the four heads on ``root``'s features into a fresh MLflow under ``root``."""
    from training.train import train_all

    root = Path(root)
    shutil.rmtree(root / "mlruns", ignore_errors=True)
    shutil.rmtree(root / "data" / "serving" / "compiled", ignore_errors=True)
    s = scratch_settings(root)
    use_scratch(root)
    t0 = time.perf_counter()
    res = train_all(s, progress=progress)
    return {"seconds": time.perf_counter() - t0, "heads": [(r.head, r.status, r.version) for r in res]}


def copy_demo(root: Path, src: Path = ROOT) -> bool:
    """Copy the project's demo world (data/ and mlruns/) into ``root``; False when there is none.
    When its champions no longer fit the current serving code, retrain them into the copy."""
    if not ((src / "data" / "features" / "snapshots.json").exists() and (src / "mlruns" / "mlflow.db").exists()):
        return False
    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shutil.copytree(src / "data", root / "data", ignore=shutil.ignore_patterns("*.db-wal", "*.db-shm", "history.db"))
    shutil.copytree(src / "mlruns", root / "mlruns")
    s = scratch_settings(root)
    from features import store

    store.apply(s)  # re-register the sources under the copy (the online store file is the copied one)
    info = {"source": str(src), "copied": time.time()}
    why = champions_fit(root)
    if why:
        print(f"the demo champions do not fit the current code ({why[:160]}); retraining into {root}", flush=True)
        info["retrained"] = {"why": why, **train_into(root, progress=True)}
    (root / "ready.json").write_text(json.dumps(info, default=str))
    return True


class StagePeaks:
    """Wall time and peak resident memory of this process per named stage (RSS sampled every 50 ms)."""

    def __init__(self):
        import threading

        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self._stage: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @staticmethod
    def _rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            st = self._stage
            if st is not None:
                self.peak_mb[st] = max(self.peak_mb.get(st, 0.0), self._rss_mb())

    def stage(self, name: str):
        import contextlib

        @contextlib.contextmanager
        def run():
            import gc

            gc.collect()
            self._stage, t0 = name, time.perf_counter()
            self.peak_mb[name] = self._rss_mb()
            try:
                yield
            finally:
                self.seconds[name] = time.perf_counter() - t0
                self.peak_mb[name] = max(self.peak_mb[name], self._rss_mb())
                self._stage = None

        return run()

    def close(self) -> None:
        self._stop.set()


def _child_run(fn, args, kwargs, q) -> None:
    try:
        fn(*args, **kwargs)
        q.put(("ok", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    except BaseException as e:  # report, do not hang the parent
        import traceback

        q.put(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def _in_child(fn, *args, **kwargs) -> float:
    """``fn(*args, **kwargs)`` in a spawned process; its peak resident memory (MB)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child_run, args=(fn, args, kwargs, q))
    p.start()
    status, value = q.get()
    p.join()
    if status != "ok":
        raise RuntimeError(value)
    return value


def build_world(root: Path, customers: int, days: int = 365, seed: int = 7, train: bool = True,
                progress: bool = False, score: bool = False, dask: bool = False) -> dict:
    """Simulate + features + apply + packed materialize (+ train, + batch scoring of the whole base, + the
    features build and batch scoring again on a local Dask cluster) into ``root``; return each stage's seconds
    and peak memory (MB)."""
    from features import pipeline, store
    from simulator.world import simulate

    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    s = scratch_settings(root)
    use_scratch(root)
    peaks = StagePeaks()
    with peaks.stage("simulate"):
        # in a process of its own: the world it leaves on disk is the pipeline's input, its memory is not
        peaks.peak_mb["simulate"] = _in_child(simulate, s, customers=customers, days=days, seed=seed,
                                              start=s.world.start_date, out_dir=s.world_dir, progress=progress)
    with peaks.stage("features_build"):
        fb = pipeline.build(s, progress=progress)
    with peaks.stage("apply"):
        store.apply(s)
    with peaks.stage("materialize"):
        store.materialize(s)
    t = peaks.seconds
    info = {"customers": customers, "days": days, "events": fb.get("events"), "feature_rows": fb.get("rows"),
            "stages": t, "peak_mb": peaks.peak_mb}
    if train:
        from training.train import train_all

        with peaks.stage("train_total"):
            res = train_all(s, progress=progress)
        for r in res:
            t[f"train_{r.head}"] = r.seconds
        t["train_load_sources"] = t["train_total"] - sum(r.seconds for r in res)
        info["train"] = [{"head": r.head, "status": r.status, "version": r.version, "promoted": r.promoted,
                          "seconds": r.seconds, "metrics": r.metrics} for r in res]
        info["train_customers"] = min(customers, s.training.max_customers or customers)
        if score:
            from serving.batch import score as batch_score

            with peaks.stage("batch_score"):
                st = batch_score(s, None, root / "scores.parquet")
            info["batch"] = {k: v for k, v in st.items() if k != "actions"}
            if dask:  # the same build and scoring on a local Dask cluster of two processes, timed beside
                on_dask = {"engine": s.engine.model_copy(update={"kind": "dask", "workers": 2})}
                data = root / "dask"
                data.mkdir()
                (data / "world").symlink_to(s.world_dir.resolve())
                with peaks.stage("features_build_dask"):
                    pipeline.build(s.model_copy(update={**on_dask, "paths": s.paths.model_copy(
                        update={"data_dir": data})}))
                with peaks.stage("batch_score_dask"):
                    batch_score(s.model_copy(update=on_dask), None, root / "scores-dask.parquet")
                shutil.rmtree(data, ignore_errors=True)
        (root / "ready.json").write_text(json.dumps(info, default=str))
    peaks.close()
    return info


def ensure_world(root: Path, customers: int | None = None, progress: bool = True) -> Path:
    """A scratch world with trained champions at ``root``: reuse it, else copy the demo (customers None),
    else simulate + build + train ``customers`` (default 20,000)."""
    root = Path(root)
    if _has_champions(root):
        return root
    if customers is None and copy_demo(root):
        return root
    build_world(root, customers or 20_000, progress=progress)
    return root
