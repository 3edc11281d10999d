"""Contact history: every decision and every piece of feedback, durably.

A request's decisions are committed in one SQLite transaction (WAL) before the answer is
returned, so a decision a journey engine has seen survives ``kill -9`` of the service: its
feedback is accepted after a restart. ``serving.decision_log_sync: full`` also survives a power
cut (one fsync per request). Each decision keeps the JSON it was answered with, so a retried
request (same ``request_id``) gets the very same answer. Feedback is stored once per decision
and event: a retried event is recognised and counted once.

Every worker process of the service opens the same file.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from nextbest.vocabulary import FEEDBACK_EVENTS
from serving.sqlite import SqliteFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
  decision_id TEXT PRIMARY KEY, customer_id TEXT, decided_at TEXT, request_id TEXT, action TEXT, channel TEXT,
  send_at TEXT, stage TEXT, expected_value REAL, control_group INTEGER, holdout_action TEXT, cold_start INTEGER,
  fallback INTEGER, model_versions TEXT, record TEXT, propensity REAL, exploration INTEGER);
CREATE TABLE IF NOT EXISTS feedback (
  decision_id TEXT, customer_id TEXT, event TEXT, channel TEXT, action_id TEXT, amount REAL, event_timestamp TEXT);
CREATE INDEX IF NOT EXISTS feedback_decision ON feedback(decision_id);
CREATE TABLE IF NOT EXISTS shadow (
  decision_id TEXT PRIMARY KEY, customer_id TEXT, decided_at TEXT, action TEXT, channel TEXT, send_at TEXT,
  expected_value REAL, model_versions TEXT);
"""
_FEEDBACK_ONCE = "CREATE UNIQUE INDEX IF NOT EXISTS feedback_once ON feedback(decision_id, event)"
# columns added to the decisions table since its first version, in order: a log written earlier gains them
_ADDED = (("record", "TEXT"), ("propensity", "REAL"), ("exploration", "INTEGER"))
_DECISION_COLUMNS = ("decision_id", "customer_id", "decided_at", "request_id", "action", "channel", "send_at", "stage",
                     "expected_value", "control_group", "holdout_action", "cold_start", "fallback", "model_versions",
                     "record", "propensity", "exploration")
_INSERT = (f"INSERT OR IGNORE INTO decisions ({', '.join(_DECISION_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(_DECISION_COLUMNS))})")


class HistoryUnavailable(RuntimeError):
    """The decision log cannot be read or written."""


class ContactHistory:
    def __init__(self, path: Path | str, sync: str = "normal", create: bool = True):
        self.path = Path(path)
        self.db = SqliteFile(path, "decision log", HistoryUnavailable, sync, create=_create if create else None)

    def log_decisions(self, records: list[dict], texts: Sequence[str], decided_at: str,
                      request_id: str | None | Sequence[str | None], shadow: Sequence[dict] = ()) -> None:
        """Commit decisions (and the JSON each was answered with) in one transaction, with the request id each
        answered (one for all, or one per record), and the challenger's would-be decisions for the same customers
        when the service runs a shadow (``shadow``, keyed by the live decision's id)."""
        with self.db.tx() as conn:
            conn.executemany(_INSERT, _rows(records, texts, decided_at, request_id))
            if shadow:
                versions = json.dumps(shadow[0].get("model_versions") or {})
                conn.executemany("INSERT OR IGNORE INTO shadow VALUES (?,?,?,?,?,?,?,?)", [
                    (r["decision_id"], r["customer_id"], decided_at, r["action"], r.get("channel"), r.get("send_at"),
                     r.get("expected_value"), versions) for r in shadow])

    def answered(self, decision_ids: Sequence[str]) -> dict[str, str]:
        """The JSON already answered for those of ``decision_ids`` that were decided before."""
        ids = list(decision_ids)
        out: dict[str, str] = {}
        with self.db.guard():
            conn = self.db.conn()
            for lo in range(0, len(ids), 500):
                part = ids[lo:lo + 500]
                q = f"SELECT decision_id, record FROM decisions WHERE decision_id IN ({','.join('?' * len(part))})"
                out.update({d: r for d, r in conn.execute(q, part) if r is not None})
        return out

    def decision(self, decision_id: str) -> dict | None:
        with self.db.guard():
            cur = self.db.conn().execute("SELECT * FROM decisions WHERE decision_id = ?", (decision_id,))
            row = cur.fetchone()
        return None if row is None else dict(zip([c[0] for c in cur.description], row))

    def has_feedback(self, decision_id: str, event: str) -> bool:
        with self.db.guard():
            row = self.db.conn().execute("SELECT 1 FROM feedback WHERE decision_id = ? AND event = ?",
                                         (decision_id, event)).fetchone()
        return row is not None

    def log_feedback(self, decision_id: str, customer_id: str, event: str, channel: str | None,
                     action_id: str | None, amount: float | None, ts: pd.Timestamp) -> bool:
        """Store one event of a decision; False when that event was already stored (a retry)."""
        with self.db.tx() as conn:
            cur = conn.execute("INSERT OR IGNORE INTO feedback VALUES (?,?,?,?,?,?,?)",
                               (decision_id, customer_id, event, channel, action_id, amount, ts.isoformat()))
            return cur.rowcount == 1

    def ping(self) -> None:
        self.db.ping("SELECT 1 FROM decisions LIMIT 1")

    def decisions_frame(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM decisions", self.db.conn())

    def feedback_frame(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM feedback", self.db.conn())

    def shadow_frame(self) -> pd.DataFrame:
        """The challenger's would-be decisions beside the live ones they shadowed (``live_*`` columns)."""
        return pd.read_sql_query(
            "SELECT s.*, d.action AS live_action, d.channel AS live_channel, d.expected_value AS live_expected_value,"
            " d.control_group AS live_control_group, d.exploration AS live_exploration, d.model_versions AS "
            "live_model_versions FROM shadow s JOIN decisions d USING (decision_id)", self.db.conn())

    def close(self) -> None:
        self.db.close()


def contract_events(feedback: pd.DataFrame) -> pd.DataFrame:
    """Feedback rows (``decision_id, customer_id, event, channel, action_id, amount, event_timestamp``) as the
    data contract's events: each as its message event (``FEEDBACK_EVENTS``; ``cancelled`` is none), a converted
    amount also as a purchase of that amount; the decision is the events' campaign."""
    fb = feedback[feedback["event"].map(FEEDBACK_EVENTS).notna()]
    ts = pd.to_datetime(fb["event_timestamp"], utc=True, format="ISO8601")
    common = {"customer_id": fb["customer_id"].astype(str), "event_timestamp": ts,
              "action_id": fb["action_id"], "campaign_id": fb["decision_id"]}
    messages = pd.DataFrame({**common, "event_type": fb["event"].map(FEEDBACK_EVENTS), "channel": fb["channel"],
                             "amount": np.nan})
    bought = (fb["event"] == "converted").to_numpy() & fb["amount"].notna().to_numpy()
    purchases = pd.DataFrame({**{k: v[bought] for k, v in common.items()}, "event_type": "purchase",
                              "channel": None, "amount": fb["amount"][bought].astype(float)})
    cols = ["customer_id", "event_timestamp", "event_type", "channel", "amount", "action_id", "campaign_id"]
    return pd.concat([messages[cols], purchases[cols]], ignore_index=True)


def _create(conn: sqlite3.Connection) -> None:
    """Create the log, or bring one written by an earlier version up to date."""
    conn.executescript(_SCHEMA)
    have = {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}
    for name, kind in _ADDED:
        if name not in have:  # decisions logged before the column existed keep NULL there
            conn.execute(f"ALTER TABLE decisions ADD COLUMN {name} {kind}")
    try:
        conn.execute(_FEEDBACK_ONCE)
    except sqlite3.IntegrityError:  # repeated events stored before feedback became idempotent: keep the first
        conn.execute("DELETE FROM feedback WHERE rowid NOT IN "
                     "(SELECT MIN(rowid) FROM feedback GROUP BY decision_id, event)")
        conn.execute(_FEEDBACK_ONCE)


def _rows(records: list[dict], texts: Sequence[str], decided_at: str,
          request_id: str | None | Sequence[str | None]) -> list[tuple]:
    versions = json.dumps(records[0].get("model_versions") or {}) if records else "{}"
    rids = [request_id] * len(records) if request_id is None or isinstance(request_id, str) else request_id
    return [(
        r["decision_id"], r["customer_id"], decided_at, rid, r["action"], r.get("channel"),
        r.get("send_at"), r.get("stage"), r.get("expected_value"), int(bool(r.get("control_group"))),
        r.get("holdout_action"), int(bool(r.get("cold_start"))), int(bool(r.get("fallback"))), versions, text,
        r.get("propensity"), int(bool(r.get("exploration"))),
    ) for r, text, rid in zip(records, texts, rids)]
