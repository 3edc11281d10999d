"""Real time: events (and new customers) received after the last build, kept in SQLite beside the
features, and the refresh of the customers they concern in the online store.

- :class:`LiveEvents`: the received events and customers, indexed by customer.
- :func:`push`: record new contract events and recompute the affected customers' snapshot with the
  pipeline's own code (:func:`features.compute.snapshot_at`), written through the packed view's push source.
- :func:`refresh_live`: after a bulk rewrite of the online store, the customers with live events again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import warnings
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from features import pipeline
from features.compute import snapshot_at
from features.names import views
from features.store import customer_feature_names, feast_definitions, get_store, online_state, pack_vectors
from nextbest.vocabulary import ENTITY_KEY
from nextbest.vocabulary import TIMESTAMP_FIELD as TS

if TYPE_CHECKING:
    from feast import FeatureStore

LIVE_DB = "live_events.db"

_EVENT_COLS = ("customer_id", "event_timestamp", "event_type", "channel", "amount", "action_id", "campaign_id")
_live_lock = threading.Lock()


class LiveEvents:
    """Events (and new customers) received in real time, indexed by customer (SQLite beside the features)."""

    def __init__(self, features_dir: Path):
        self.path = Path(features_dir) / LIVE_DB
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._conn()) as c, c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS events (customer_id TEXT, ts_ns INTEGER, event_type TEXT, channel TEXT,"
                " amount REAL, action_id TEXT, campaign_id TEXT)"
            )
            c.execute("CREATE INDEX IF NOT EXISTS events_customer ON events (customer_id, ts_ns)")
            c.execute("CREATE TABLE IF NOT EXISTS customers (customer_id TEXT PRIMARY KEY, row TEXT)")

    def _conn(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def append(self, events: pd.DataFrame, customers: pd.DataFrame | None = None) -> None:
        ev = events.reset_index(drop=True)
        ts = pd.to_datetime(ev["event_timestamp"], utc=True).dt.as_unit("ns").astype("int64")
        rows = [
            (
                str(r[0]), int(t), r[2],
                r[3] if isinstance(r[3], str) else None,
                None if r[4] is None or (isinstance(r[4], float) and np.isnan(r[4])) else float(r[4]),
                r[5] if isinstance(r[5], str) else None,
                r[6] if isinstance(r[6], str) else None,
            )
            for r, t in zip(ev.reindex(columns=list(_EVENT_COLS)).itertuples(index=False), ts)
        ]
        with _live_lock, closing(self._conn()) as c, c:
            c.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?)", rows)
            if customers is not None and len(customers):
                recs = customers.reset_index(drop=True)
                payload = json.loads(recs.to_json(orient="records", date_format="iso", date_unit="ns"))
                c.executemany(
                    "INSERT OR REPLACE INTO customers VALUES (?, ?)",
                    [(str(p["customer_id"]), json.dumps(p)) for p in payload],
                )

    def events_for(self, ids: Sequence[str], since_ns: int | None = None) -> pd.DataFrame:
        ids = [str(i) for i in ids]
        q = f"SELECT * FROM events WHERE customer_id IN ({','.join('?' * len(ids))})"
        args: list = list(ids)
        if since_ns is not None:
            q += " AND ts_ns >= ?"
            args.append(int(since_ns))
        with closing(self._conn()) as c:
            rows = c.execute(q, args).fetchall()
        df = pd.DataFrame(rows, columns=["customer_id", "ts_ns", "event_type", "channel", "amount", "action_id", "campaign_id"])
        df.insert(1, "event_timestamp", pd.to_datetime(df.pop("ts_ns").astype("int64"), utc=True))
        df["amount"] = df["amount"].astype(float)
        return df

    def customers_for(self, ids: Sequence[str]) -> pd.DataFrame:
        ids = [str(i) for i in ids]
        with closing(self._conn()) as c:
            rows = c.execute(
                f"SELECT row FROM customers WHERE customer_id IN ({','.join('?' * len(ids))})", ids
            ).fetchall()
        if not rows:
            return pd.DataFrame()
        df = pd.DataFrame([json.loads(r[0]) for r in rows])
        df["registered_at"] = pd.to_datetime(df["registered_at"], utc=True)
        return df

    def customer_ids(self, since_ns: int | None = None) -> list[str]:
        if not self.path.exists():
            return []
        with closing(self._conn()) as c:
            if since_ns is None:
                rows = c.execute("SELECT DISTINCT customer_id FROM events").fetchall()
            else:
                rows = c.execute("SELECT DISTINCT customer_id FROM events WHERE ts_ns >= ?", (int(since_ns),)).fetchall()
        return [r[0] for r in rows]


def _history(settings, ids: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """World customers and events of ``ids`` (customer-sorted history files written by the build)."""
    import pyarrow.parquet as pq

    hdir = settings.features_dir / pipeline.HISTORY_DIR
    ids = sorted({str(i) for i in ids})
    if not (hdir / "events.parquet").exists():
        return pd.DataFrame(), pd.DataFrame(columns=list(_EVENT_COLS))
    flt = [(ENTITY_KEY, "in", ids)]
    cust = pq.read_table(hdir / "customers.parquet", filters=flt).to_pandas()
    ev = pq.read_table(hdir / "events.parquet", filters=flt).to_pandas()
    return cust, ev


def _data_end_ns(settings) -> int | None:
    meta = pipeline.read_meta(settings.features_dir)
    return pd.Timestamp(meta["data_end"]).value if meta.get("data_end") else None


def _merge_customers(world: pd.DataFrame, live: pd.DataFrame) -> pd.DataFrame:
    if live is None or live.empty:
        return world
    if world is None or world.empty:
        return live
    world = world[~world[ENTITY_KEY].astype(str).isin(live[ENTITY_KEY].astype(str))]
    return pd.concat([world, live], ignore_index=True)


def _snapshot_vectors(settings, ids: list[str], t, names: list[str]):
    """Recompute the snapshot at ``t`` of customers ``ids`` from world history + live events."""
    world_c, world_e = _history(settings, ids)
    live = LiveEvents(settings.features_dir)
    since = _data_end_ns(settings)
    live_e = live.events_for(ids, since_ns=since)
    customers = _merge_customers(world_c, live.customers_for(ids))
    if customers is None or customers.empty:
        return None
    customers = customers.copy()
    customers["registered_at"] = pd.to_datetime(customers["registered_at"], utc=True)
    frames = [f for f in (world_e, live_e) if len(f)]
    events = pd.concat(frames, ignore_index=True) if frames else live_e
    events = events.copy()
    events["event_timestamp"] = pd.to_datetime(events["event_timestamp"], utc=True)
    snaps = snapshot_at(customers, events, t, settings)
    return snaps


def _write_snapshot(settings, store, snaps: dict[str, pd.DataFrame], names: list[str]) -> int:
    prof = snaps["customer_profile"]
    if prof.empty:
        return 0
    ids = prof[ENTITY_KEY].to_numpy(dtype=object)
    X = np.full((len(ids), len(names)), np.nan, np.float32)
    for view, df in snaps.items():
        for f in views(tuple(settings.actions))[view]:
            if f in names:
                X[:, names.index(f)] = df[f].to_numpy(np.float32)
    # through the view's push source: Feast's real-time write path
    from feast.data_source import PushMode

    d = feast_definitions()
    df = pd.DataFrame({ENTITY_KEY: ids, TS: prof[TS].to_numpy(), d.VECTOR_FIELD: pack_vectors(X, prof["timezone"].tolist())})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store.push(d.VECTOR_PUSH_SOURCE, df, to=PushMode.ONLINE)
    if online_state(settings).get("plain_materialized"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for view, df in snaps.items():
                store.write_to_online_store(view, df)
    return len(ids)


def push(
    settings,
    events: pd.DataFrame,
    customers: pd.DataFrame | None = None,
    now=None,
    store: "FeatureStore | None" = None,
) -> dict:
    """Real-time update: record contract ``events`` (and new ``customers`` rows), recompute the
    affected customers' snapshot at now with the pipeline's own code, write it to the online store.

    The snapshot time is ``max(now, latest pushed event + 1 µs)`` so every pushed
    event counts. Live events older than the last build's data end are taken to
    be part of the world already and are ignored; ``events_counted`` in the result
    says how many of ``events`` the features count.
    """
    from nextbest.contract import EVENT_TYPES

    t0 = time.perf_counter()
    missing = [c for c in ("customer_id", "event_timestamp", "event_type") if c not in events]
    if missing:
        raise ValueError(f"push: events need the contract columns {missing}")
    unknown = sorted(set(events["event_type"].dropna().astype(str)) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"push: unknown event_type {unknown}; allowed: {', '.join(EVENT_TYPES)}")
    events = events.copy()
    events["event_timestamp"] = pd.to_datetime(events["event_timestamp"], utc=True)
    if events["event_timestamp"].isna().any():
        raise ValueError("push: every event needs an event_timestamp")
    ids = sorted(set(events[ENTITY_KEY].astype(str)) | (set(customers[ENTITY_KEY].astype(str)) if customers is not None else set()))
    if not ids:
        return {"customers": 0, "events": 0, "seconds": 0.0}
    live = LiveEvents(settings.features_dir)
    live.append(events, customers)
    now = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    latest = events["event_timestamp"].max() if len(events) else now
    t = max(now, latest + pd.Timedelta(microseconds=1))
    store = store or get_store(settings)
    names = customer_feature_names(settings, store)
    snaps = _snapshot_vectors(settings, ids, t, names)
    written = _write_snapshot(settings, store, snaps, names) if snaps is not None else 0
    since = _data_end_ns(settings)
    counted = len(events) if since is None else int((events["event_timestamp"].dt.as_unit("ns").astype("int64") >= since).sum())
    return {
        "customers": written,
        "unknown_customers": len(ids) - written,
        "events": int(len(events)),
        "events_counted": counted if written else 0,
        "snapshot_time": t.isoformat(),
        "seconds": round(time.perf_counter() - t0, 4),
    }


def refresh_live(settings, store) -> int:
    """Re-apply real-time events newer than the build (after a bulk rewrite of the online store)."""
    since = _data_end_ns(settings)
    ids = LiveEvents(settings.features_dir).customer_ids(since) if (settings.features_dir / LIVE_DB).exists() else []
    if not ids:
        return 0
    names = customer_feature_names(settings, store)
    live = LiveEvents(settings.features_dir).events_for(ids, since_ns=since)
    t = max(pd.Timestamp.now(tz="UTC"), live["event_timestamp"].max() + pd.Timedelta(microseconds=1))
    total = 0
    for lo in range(0, len(ids), 5000):
        snaps = _snapshot_vectors(settings, ids[lo : lo + 5000], t, names)
        total += _write_snapshot(settings, store, snaps, names) if snaps is not None else 0
    return total
