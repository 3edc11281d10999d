"""The service's SQLite files: commits never pay for a checkpoint; the background folds the log into the database."""

from __future__ import annotations

import shutil
import sqlite3
import time

from serving.sqlite import SqliteFile


class Unavailable(RuntimeError):
    pass


def _rows_in_database_file_alone(path, tmp_path) -> int:
    """Rows visible in the database file without its write-ahead log (a copy of the file by itself; -1 when the
    copy caught a checkpoint half-way)."""
    alone = tmp_path / "alone.db"
    shutil.copy(path, alone)
    try:
        with sqlite3.connect(alone) as c:
            return c.execute("SELECT COUNT(*) FROM t").fetchone()[0]
    except sqlite3.DatabaseError:
        return -1
    finally:
        alone.unlink()


def test_commits_leave_checkpoints_to_the_background_which_folds_the_log_into_the_database(tmp_path):
    path = tmp_path / "log.db"
    f = SqliteFile(path, "test log", Unavailable, create=lambda c: c.execute("CREATE TABLE t (k TEXT, v TEXT)"))
    try:
        payload = "x" * 3000
        for i in range(300):  # ~1,500 pages of log, past SQLite's own automatic checkpoint (1,000 pages)
            with f.tx() as conn:
                conn.executemany("INSERT INTO t VALUES (?, ?)", [(f"{i}-{k}", payload) for k in range(5)])
        assert f.conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # a commit never checkpoints
        deadline = time.monotonic() + 30
        while _rows_in_database_file_alone(path, tmp_path) < 1500 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _rows_in_database_file_alone(path, tmp_path) == 1500  # every commit reached the database file
        with f.tx() as conn:
            assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1500
    finally:
        f.close()


def test_the_log_stays_bounded_while_writes_never_pause(tmp_path, monkeypatch):
    """A commit lands during every background copy, so the log is never found entirely copied by itself: past its
    limit it is finished holding writers back, and starts afresh."""
    import serving.sqlite

    monkeypatch.setattr(serving.sqlite, "CHECKPOINT_EVERY_S", 0.1)
    limit = 1024 * 1024
    path = tmp_path / "log.db"
    wal = tmp_path / "log.db-wal"
    f = SqliteFile(path, "test log", Unavailable, create=lambda c: c.execute("CREATE TABLE t (k TEXT, v TEXT)"),
                   wal_limit_bytes=limit)
    try:
        payload, largest = "x" * 4000, 0
        for i in range(400):  # ~45 MB of log at most ~35 MB/s: several checkpoint intervals
            with f.tx() as conn:
                conn.executemany("INSERT INTO t VALUES (?, ?)", [(f"{i}-{k}", payload) for k in range(25)])
            largest = max(largest, wal.stat().st_size)
            time.sleep(0.003)
        with f.tx() as conn:
            assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 10_000
    finally:
        f.close()
    # without the restarts the log holds every commit (~45 MB); with them, 4 MB plus what a 0.1 s interval lets in
    assert largest < 20 * limit, f"the log reached {largest / limit:.1f} MB"
