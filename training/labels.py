"""Point-in-time labels for the four heads.

A label at time t looks only at what happens from t on; the features at t
(read from the feature store) look only before t. Rows whose horizon runs
past the end of the data are dropped (their outcome is not known yet).

* activation - registered, never bought at t: a first purchase in [t, t+H);
  activating (one purchase, inside the activation window): the second
  purchase before first purchase + window.
* churn - customers with at least one purchase at t: no purchase in [t, t+H).
* channel (response) - one row per message sent: clicked within
  RESPONSE_DAYS of the send, with the channel and the local send hour.
* send time - one row per engagement (open, click, visit, purchase): its
  local hour, 0..23 (the head learns a distribution over 24 hours).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.names import CHANNELS

RESPONSE_DAYS = 3
ENGAGEMENT_EVENTS = ("message_opened", "message_clicked", "visit", "purchase")
STAGE_REGISTERED, STAGE_ACTIVATING = 0, 1

LABEL_DEFINITIONS = {
    "activation": "registered never-bought: first purchase within {activation_horizon_days} days; "
    "first-time buyer inside the {activation_window_days}-day window: second purchase inside the window",
    "churn": "customer with >= 1 purchase: no purchase within {churn_horizon_days} days",
    "channel": f"message sent on a channel at a local hour: clicked within {RESPONSE_DAYS} days",
    "send_time": "engagement (open, click, visit, purchase): its local hour 0-23",
}


def _next_purchase(entities: pd.DataFrame, purchases: pd.DataFrame) -> pd.Series:
    """Time of the first purchase at or after each entity row's timestamp (NaT if none)."""
    ns = "datetime64[ns, UTC]"
    left = entities[["customer_id", "event_timestamp"]].reset_index()
    left["event_timestamp"] = left["event_timestamp"].astype(ns)
    left = left.sort_values("event_timestamp")
    right = purchases[["customer_id", "event_timestamp"]].rename(columns={"event_timestamp": "next_purchase"})
    right["next_purchase"] = right["next_purchase"].astype(ns)
    right = right.assign(event_timestamp=right["next_purchase"]).sort_values("event_timestamp")
    merged = pd.merge_asof(left, right, on="event_timestamp", by="customer_id", direction="forward",
                           allow_exact_matches=True)
    return merged.set_index("index")["next_purchase"].reindex(entities.index)


def activation_labels(rows: pd.DataFrame, purchases: pd.DataFrame, horizon_days: int, window_days: int,
                      data_end: pd.Timestamp) -> pd.DataFrame:
    """rows: customer_id, event_timestamp, stage_code, days_since_first_purchase (from the feature store)."""
    rows = rows[rows["stage_code"].isin([STAGE_REGISTERED, STAGE_ACTIVATING])].copy()
    nxt = _next_purchase(rows, purchases)
    t = rows["event_timestamp"]
    first = t - pd.to_timedelta(rows["days_since_first_purchase"].fillna(0), unit="D")
    deadline = np.where(rows["stage_code"] == STAGE_REGISTERED, t + pd.Timedelta(days=horizon_days),
                        first + pd.Timedelta(days=window_days))
    deadline = pd.to_datetime(pd.Series(deadline, index=rows.index), utc=True)
    rows["label"] = (nxt.notna() & (nxt < deadline)).astype(np.int8)
    return rows[deadline <= data_end]


def churn_labels(rows: pd.DataFrame, purchases: pd.DataFrame, horizon_days: int, data_end: pd.Timestamp) -> pd.DataFrame:
    """rows: customer_id, event_timestamp, n_purchases (from the feature store)."""
    rows = rows[rows["n_purchases"].fillna(0) >= 1].copy()
    nxt = _next_purchase(rows, purchases)
    deadline = rows["event_timestamp"] + pd.Timedelta(days=horizon_days)
    rows["label"] = (nxt.isna() | (nxt >= deadline)).astype(np.int8)
    return rows[deadline <= data_end]


def local_hour(ts: pd.Series, tz: pd.Series) -> np.ndarray:
    """Local hour of UTC timestamps in each row's timezone (the feature pipeline's own clock)."""
    from features.context import local_hour_weekday, to_utc_ns

    return local_hour_weekday(to_utc_ns(ts), tz.to_numpy())[0]


def response_labels(events: pd.DataFrame, customers: pd.DataFrame, data_end: pd.Timestamp) -> pd.DataFrame:
    """One row per message_sent: channel code, local send hour, clicked within RESPONSE_DAYS."""
    sent = events[events["event_type"] == "message_sent"][["customer_id", "event_timestamp", "channel", "campaign_id"]]
    sent = sent[sent["event_timestamp"] + pd.Timedelta(days=RESPONSE_DAYS) <= data_end].copy()
    clicks = events[events["event_type"] == "message_clicked"][["customer_id", "campaign_id", "channel", "event_timestamp"]]
    clicks = clicks.rename(columns={"event_timestamp": "clicked_at"}).drop_duplicates(["customer_id", "campaign_id", "channel"])
    sent = sent.merge(clicks, on=["customer_id", "campaign_id", "channel"], how="left")
    sent["label"] = (sent["clicked_at"].notna()
                     & (sent["clicked_at"] < sent["event_timestamp"] + pd.Timedelta(days=RESPONSE_DAYS))).astype(np.int8)
    tz = sent["customer_id"].map(customers.set_index("customer_id")["timezone"]).fillna("UTC")
    sent["msg_channel_code"] = sent["channel"].map({c: i for i, c in enumerate(CHANNELS)}).astype(np.float32)
    sent["msg_local_hour"] = local_hour(sent["event_timestamp"], tz).astype(np.float32)
    return sent.drop(columns=["clicked_at", "campaign_id"]).reset_index(drop=True)


def send_time_labels(events: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """One row per engagement event: the local hour (0..23) as the class label."""
    eng = events[events["event_type"].isin(ENGAGEMENT_EVENTS)][["customer_id", "event_timestamp"]].copy()
    tz = eng["customer_id"].map(customers.set_index("customer_id")["timezone"]).fillna("UTC")
    eng["label"] = local_hour(eng["event_timestamp"], tz)
    return eng.reset_index(drop=True)
