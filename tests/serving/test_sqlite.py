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
