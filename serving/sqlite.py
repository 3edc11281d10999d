"""One SQLite file shared by every worker process of the service (WAL mode), as the decision log and the
SQLite pressure store use it: created only when asked (at service start), never silently recreated when
it disappears, one connection per thread, write transactions under ``BEGIN IMMEDIATE``.

Checkpoints (copying the write-ahead log into the database file, with an fsync) run on a background thread
of each process that writes, every ``CHECKPOINT_EVERY_S`` seconds, never inside a commit: SQLite's automatic
checkpoint would otherwise stall one request in every few hundred by tens of milliseconds. A commit in WAL mode
survives ``kill -9`` before it is checkpointed.

The log starts afresh only when a commit finds it entirely copied; under sustained writes a commit lands
during every copy, and the log would grow without bound (gigabytes a minute at full load), as would the time a
restart after a crash takes to read it. So once the log passes ``wal_limit_bytes``, the thread copies what came
in meanwhile until a copy finds little left, then the rest while holding writers back (a ``RESTART`` checkpoint,
about a millisecond), and the next commit starts the log again. The file is cut back to four times that size
when it restarts past it (cutting it costs the commit that does it, so it is not cut at every restart)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterator


CHECKPOINT_EVERY_S = 0.5
WAL_LIMIT_BYTES = 64 * 1024 * 1024
RESTART_TRIES, RESTART_RETRY_S, RESTART_WHEN_S = 200, 0.0005, 0.002


class SqliteFile:
    def __init__(self, path: Path | str, what: str, unavailable: type[Exception], sync: str = "normal",
                 create: Callable[[sqlite3.Connection], None] | None = None, wal_limit_bytes: int = WAL_LIMIT_BYTES):
        """``what`` names the file in errors; ``unavailable`` is raised when it cannot be used;
        ``create`` (given at service start) creates it if needed and brings its schema up to date."""
        self.path, self.what, self.unavailable, self.sync = Path(path), what, unavailable, sync.upper()
        self.wal_limit_bytes = wal_limit_bytes
        if create is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None, timeout=30)) as c:
                c.execute("PRAGMA journal_mode=WAL")
                create(c)
        self._local = threading.local()
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()
        self._starting = threading.Lock()

    def _open(self, timeout: float) -> sqlite3.Connection:
        if not self.path.exists():
            raise self.unavailable(f"{self.what} {self.path} is missing")
        try:
            return sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, isolation_level=None, timeout=timeout,
                                   check_same_thread=False)
        except sqlite3.Error as e:
            raise self.unavailable(f"{self.what} {self.path}: {e}") from None

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened once)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open(timeout=30)
            conn.execute(f"PRAGMA synchronous={self.sync}")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the background thread checkpoints (module docstring)
            conn.execute(f"PRAGMA journal_size_limit={4 * self.wal_limit_bytes}")
            self._local.conn = conn
            self._start_checkpointer()
        return conn

    def _start_checkpointer(self) -> None:
        with self._starting:
            if self._checkpointer is None or not self._checkpointer.is_alive():
                self._stop.clear()
                self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                                      name=f"checkpoint {self.path.name}")
                self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        conn, page = None, 0
        while not self._stop.is_set():
            time.sleep(CHECKPOINT_EVERY_S)  # a relative sleep: no deadline read from a clock that may be shifted
            if self._stop.is_set():
                break
            try:
                if conn is None:
                    conn = self._open(timeout=0)  # the loop never waits on SQLite's busy handler (_checkpoint)
                    page = conn.execute("PRAGMA page_size").fetchone()[0]
                self._checkpoint(conn, page)
            except Exception:  # a missing or locked file: the requests report it; try again later
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(CHECKPOINT_EVERY_S)
        if conn is not None:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection, page: int) -> None:
        """Copy the log into the database without waiting for anyone; past the limit, copy what came in meanwhile
        until little is left, then the rest holding writers back (module docstring)."""
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames * page <= self.wal_limit_bytes:
            return
        for attempt in range(RESTART_TRIES):
            t0 = time.perf_counter()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # what came in meanwhile, not waiting
            # little was left (or writers never pause): finish it, holding writers back
            if time.perf_counter() - t0 < RESTART_WHEN_S or attempt >= RESTART_TRIES // 2:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                if not busy:
                    return
            time.sleep(RESTART_RETRY_S)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """SQLite errors as ``unavailable``."""
        try:
            yield
        except sqlite3.Error as e:
            raise self.unavailable(f"{self.what} {self.path}: {e}") from None

    @contextlib.contextmanager
    def tx(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction: a write lock from the start when ``immediate``, a consistent read otherwise."""
        with self.guard():
            conn = self.conn()
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def ping(self, query: str) -> None:
        """Raise ``unavailable`` unless the file is there and answers ``query`` on a fresh connection."""
        with contextlib.closing(self._open(timeout=5)) as c, self.guard():
            c.execute(query).fetchall()

    def close(self) -> None:
        self._stop.set()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
