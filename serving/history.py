"""Contact history: every decision and every piece of feedback, durably.

Decisions are appended by a background writer (SQLite in WAL mode) so the
request path never waits on disk; feedback is written synchronously because
it is also what the contact-pressure features are recomputed from.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd

BATCH_SECONDS = 0.05
_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
  decision_id TEXT PRIMARY KEY, customer_id TEXT, decided_at TEXT, request_id TEXT, action TEXT, channel TEXT,
  send_at TEXT, stage TEXT, expected_value REAL, control_group INTEGER, holdout_action TEXT, cold_start INTEGER,
  fallback INTEGER, model_versions TEXT);
CREATE TABLE IF NOT EXISTS feedback (
  decision_id TEXT, customer_id TEXT, event TEXT, channel TEXT, action_id TEXT, amount REAL, event_timestamp TEXT);
CREATE INDEX IF NOT EXISTS feedback_decision ON feedback(decision_id);
"""


class ContactHistory:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect()
        self._conn.executescript(_SCHEMA)
        self._queue: queue.Queue = queue.Queue()
        self._writer = threading.Thread(target=self._drain, name="decision-log", daemon=True)
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _drain(self) -> None:
        conn = self._connect()
        while True:
            batch = [self._queue.get()]
            time.sleep(BATCH_SECONDS)  # gather what arrives meanwhile: one write per batch, not per request
            while not self._queue.empty() and len(batch) < 10_000:
                batch.append(self._queue.get_nowait())
            rows = [row for b in batch if b is not None for row in self._rows(*b)]
            if rows:
                conn.executemany("INSERT OR REPLACE INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            for _ in batch:
                self._queue.task_done()
            if any(b is None for b in batch):
                return

    def log_decisions(self, records: list[dict], decided_at: str, request_id: str | None) -> None:
        """Queue a request's decisions; the writer thread turns them into rows off the request path."""
        self._queue.put((records, decided_at, request_id))

    @staticmethod
    def _rows(records: list[dict], decided_at: str, request_id: str | None) -> list[tuple]:
        versions = json.dumps(records[0].get("model_versions") or {}) if records else "{}"
        return [(
            r["decision_id"], r["customer_id"], decided_at, request_id, r["action"], r.get("channel"),
            r.get("send_at"), r.get("stage"), r.get("expected_value"), int(bool(r.get("control_group"))),
            r.get("holdout_action"), int(bool(r.get("cold_start"))), int(bool(r.get("fallback"))), versions,
        ) for r in records]

    def flush(self) -> None:
        self._queue.join()

    def decision(self, decision_id: str) -> dict | None:
        self.flush()
        cur = self._conn.execute("SELECT * FROM decisions WHERE decision_id = ?", (decision_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([c[0] for c in cur.description], row))

    def log_feedback(self, decision_id: str, customer_id: str, event: str, channel: str | None,
                     action_id: str | None, amount: float | None, ts: pd.Timestamp) -> None:
        self._conn.execute(
            "INSERT INTO feedback VALUES (?,?,?,?,?,?,?)",
            (decision_id, customer_id, event, channel, action_id, amount, ts.isoformat()),
        )

    def decisions_frame(self) -> pd.DataFrame:
        self.flush()
        return pd.read_sql_query("SELECT * FROM decisions", self._conn)

    def feedback_frame(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM feedback", self._conn)

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(timeout=5)
        self._conn.close()
