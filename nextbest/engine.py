"""Where partitioned work runs: in this process, or on a Dask cluster (``engine`` in the settings).

The feature build and batch scoring split the base by customer into
independent tasks (a module-level function and its arguments); :class:`Engine`
runs them in this process (``kind: local``; one after the other, or on a thread
per core where the work releases the interpreter lock) or on Dask
workers (``kind: dask``): the scheduler at ``engine.address``, or a local
cluster of ``engine.workers`` processes started for the run and stopped after
it. Workers read and write the same data folder, so on several machines it
must be shared storage.

Dask because both halves of the stack support it natively: Feast has a Dask
offline store and LightGBM a Dask estimator; and it installs from PyPI with
the project, with no JVM or cluster manager.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

from nextbest.settings import Settings


class Engine:
    """Run independent tasks: ``with Engine(settings) as e: results = e.map(fn, [args, ...])``."""

    def __init__(self, settings: Settings, progress: bool = False):
        self.conf = settings.engine
        self.progress = progress
        self.client = None
        self._cluster = None

    @property
    def kind(self) -> str:
        return self.conf.kind

    @property
    def workers(self) -> int:
        """Processes the work is spread over (1 in this process)."""
        if self.client is None:
            return 1
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    @property
    def threads(self) -> int:
        """Threads work in this process may use: every core of the machine."""
        import os

        return os.cpu_count() or 1

    def __enter__(self) -> "Engine":
        if self.conf.kind == "dask":
            try:
                from distributed import Client, LocalCluster
            except ImportError as e:  # pragma: no cover - a dependency of the project
                raise RuntimeError("engine.kind: dask needs the `distributed` package (pip install distributed)") from e
            if self.conf.address:
                self.client = Client(self.conf.address, timeout="30s")
            else:
                self._cluster = LocalCluster(n_workers=self.conf.workers, threads_per_worker=1, processes=True,
                                             dashboard_address=None, silence_logs=40)
                self.client = Client(self._cluster)
            if self.progress:
                where = self.conf.address or f"a local cluster of {self.conf.workers} processes"
                print(f"engine: dask on {where}", file=sys.stderr)
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        self.client = self._cluster = None

    def map(self, fn: Callable, tasks: Sequence[tuple], label: str = "tasks", threads: int = 1) -> list[Any]:
        """``[fn(*args) for args in tasks]``, in order; in this process on ``threads`` threads (for tasks whose
        work releases the interpreter lock: numpy, Arrow), at most that many at once; on Dask, spread over the
        workers (a task's error is raised here with its own traceback)."""
        if self.client is None:
            from concurrent.futures import ThreadPoolExecutor

            out = []
            with ThreadPoolExecutor(max(1, threads)) as pool:
                for i, result in enumerate(pool.map(lambda args: fn(*args), tasks)):
                    out.append(result)
                    if self.progress and len(tasks) > 1:
                        print(f"  {label}: {i + 1}/{len(tasks)}", file=sys.stderr)
            return out
        from distributed import as_completed

        futures = [self.client.submit(fn, *args, pure=False) for args in tasks]
        done = 0
        for _ in as_completed(futures):
            done += 1
            if self.progress:
                print(f"  {label}: {done}/{len(futures)} on {self.workers} workers", file=sys.stderr)
        return self.client.gather(futures)
