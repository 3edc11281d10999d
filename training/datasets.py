"""Datasets for the four heads: labels joined to historical features read
through the one feature service, split by time (train < validation < test).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.message import MESSAGE_INPUTS, message_inputs
from features.names import CONTEXT, HOUR_HISTORY
from nextbest.settings import Settings
from nextbest.vocabulary import HEADS
from training import labels as L

EXTRA_INPUTS = {"channel": MESSAGE_INPUTS}  # per-row inputs a head reads besides the feature service's


class SkipHead(Exception):
    """A head cannot be trained on this data; the message says why."""


@dataclass
class Split:
    X: np.ndarray
    y: np.ndarray
    frame: pd.DataFrame  # customer_id, event_timestamp (+ channel/hour for the response head)


@dataclass
class Dataset:
    head: str
    features: list[str]
    train: Split
    valid: Split
    test: Split
    time_range: dict = field(default_factory=dict)
    label_definition: str = ""
    horizon_days: int | None = None

    @property
    def sizes(self) -> dict:
        return {k: int(len(getattr(self, k).y)) for k in ("train", "valid", "test")}


@dataclass
class Sources:
    """Everything the labels and features of one training run come from."""

    customers: pd.DataFrame
    events: pd.DataFrame
    data_end: pd.Timestamp
    snapshot_times: list[pd.Timestamp]
    feature_list: list[str]
    assignments: pd.DataFrame | None = None  # who was randomised to which option (None: the data has none)
    base_customers: int = 0  # customers in the base; more than len(customers) when training reads a sample


def load_sources(settings: Settings) -> Sources:
    """The world training reads: every customer, or a random sample of ``training.max_customers`` of a larger
    base (all rows of the sampled customers, the others never loaded; ``data_end`` is still the base's)."""
    from features.store import feature_names, snapshot_times
    from nextbest.contract import load_assignments, load_world, load_world_part
    from nextbest.partition import customer_ids, newest_event, training_sample

    world = settings.world_dir
    ids = customer_ids(world)
    sample = training_sample(settings, ids)
    if sample is not None:
        customers, events = load_world_part(world, sample, in_time_order=True)
        assignments = load_assignments(world, settings.actions, customers, customer_ids=sample)
        data_end = newest_event(world)
    else:
        customers, events = load_world(world)
        assignments = load_assignments(world, settings.actions, customers)
        data_end = events["event_timestamp"].max()
    names = [f for f in feature_names(settings) if f not in CONTEXT]
    return Sources(customers, events, data_end, snapshot_times(settings), names, assignments, len(ids))


def model_inputs(head: str, feature_list: list[str]) -> list[str]:
    """A head's inputs in order. The send-time head's end with the customer's own engagement hours
    (``HOUR_HISTORY``): its evidence, which its booster does not read (``nextbest.hours``)."""
    if head == "send_time":
        return [f for f in feature_list if f not in HOUR_HISTORY] + list(HOUR_HISTORY)
    return list(feature_list) + list(EXTRA_INPUTS.get(head, ()))


def _sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return df if len(df) <= n else df.sample(n=n, random_state=seed).sort_values("event_timestamp")


def _with_features(settings: Settings, rows: pd.DataFrame) -> pd.DataFrame:
    from features.store import historical_features

    feats = historical_features(settings, rows[["customer_id", "event_timestamp"]])
    feats = feats.drop(columns=["customer_id", "event_timestamp"], errors="ignore")
    return pd.concat([rows.reset_index(drop=True), feats.reset_index(drop=True)], axis=1)


def _split(settings: Settings, head: str, frame: pd.DataFrame, inputs: list[str], label_def: str,
           horizon: int | None) -> Dataset:
    t = frame["event_timestamp"]
    last = t.max()
    test_start = last - pd.Timedelta(days=settings.training.test_days)
    valid_start = test_start - pd.Timedelta(days=settings.training.validation_days)
    if (t < valid_start).mean() < 0.4:
        # labelled rows span less time than the configured windows (e.g. a short purchase log):
        # keep the split in time order, on the oldest 60% / next 20% / newest 20% of the rows
        valid_start, test_start = t.quantile(0.6), t.quantile(0.8)
        if not (t.min() < valid_start < test_start <= last):
            raise SkipHead(f"{head}: labelled rows cover too few distinct times for a split in time order")
    parts = {"train": t < valid_start, "valid": (t >= valid_start) & (t < test_start), "test": t >= test_start}
    splits = {}
    for name, mask in parts.items():
        sub = frame[mask.to_numpy()]
        if len(sub) == 0 or sub["label"].nunique() < (2 if head != "send_time" else 1):
            raise SkipHead(f"{head}: the {name} window ({len(sub)} rows) has too few rows or a single class")
        X = sub.reindex(columns=inputs).to_numpy(dtype=np.float32)
        keep = [c for c in ("customer_id", "event_timestamp", "channel", "msg_local_hour", "stage_code") if c in sub]
        splits[name] = Split(X, sub["label"].to_numpy(), sub[keep].reset_index(drop=True))
    time_range = {
        "train_from": str(t.min()), "valid_from": str(valid_start), "test_from": str(test_start), "test_to": str(last),
    }
    return Dataset(head, inputs, splits["train"], splits["valid"], splits["test"], time_range, label_def, horizon)


def _snapshot_rows(src: Sources, horizon_days: int) -> pd.DataFrame:
    """(customer, snapshot time) for customers registered before t, with a fully observed horizon."""
    times = [t for t in src.snapshot_times if t + pd.Timedelta(days=horizon_days) <= src.data_end]
    reg = src.customers[["customer_id", "registered_at"]]
    frames = [reg.loc[reg["registered_at"] < t, ["customer_id"]].assign(event_timestamp=t) for t in times]
    if not frames:
        return pd.DataFrame(columns=["customer_id", "event_timestamp"])
    return pd.concat(frames, ignore_index=True)


def build_dataset(settings: Settings, head: str, src: Sources) -> Dataset:
    tr, fs = settings.training, settings.features
    purchases = src.events[src.events["event_type"] == "purchase"][["customer_id", "event_timestamp"]]
    seed = tr.seed
    inputs = model_inputs(head, src.feature_list)
    if head in ("activation", "churn"):
        horizon = tr.activation_horizon_days if head == "activation" else tr.churn_horizon_days
        rows = _snapshot_rows(src, horizon)
        if rows.empty:
            raise SkipHead(f"{head}: the data ({src.data_end}) is too short for a {horizon}-day horizon")
        frame = _with_features(settings, _sample(rows, 3 * tr.max_rows, seed))
        if head == "activation":
            frame = L.activation_labels(frame, purchases, horizon, fs.activation_window_days, src.data_end)
        else:
            frame = L.churn_labels(frame, purchases, horizon, src.data_end)
        frame = _sample(frame, tr.max_rows, seed)
        label_def = L.LABEL_DEFINITIONS[head].format(**tr.model_dump(), **fs.model_dump())
    elif head == "channel":
        if not (src.events["event_type"] == "message_sent").any():
            raise SkipHead("channel: no message_sent events in the data, so no response labels "
                           "(a transactions-only log); serving falls back to channel base rates")
        frame = _with_features(settings, _sample(L.response_labels(src.events, src.customers, src.data_end), tr.max_rows, seed))
        cols = list(src.feature_list)
        extra = message_inputs(frame[cols].to_numpy(np.float32), {c: i for i, c in enumerate(cols)},
                               frame["msg_channel_code"].to_numpy(), frame["msg_local_hour"].to_numpy())
        frame[list(MESSAGE_INPUTS)] = extra
        horizon, label_def = L.RESPONSE_DAYS, L.LABEL_DEFINITIONS[head]
    elif head == "send_time":
        if not src.events["event_type"].isin(("message_opened", "message_clicked")).any():
            raise SkipHead("send_time: no message opens or clicks in the data, so no engagement hours worth "
                           "learning from (a transactions-only log); serving falls back to 10:00 local time")
        from training.models import ROW_SHARE

        rows = int(tr.max_rows * ROW_SHARE["send_time"])
        frame = _with_features(settings, _sample(L.send_time_labels(src.events, src.customers), rows, seed))
        horizon, label_def = None, L.LABEL_DEFINITIONS[head]
    else:
        raise ValueError(f"unknown head {head!r}; choose from {', '.join(HEADS)}")
    positives = int((frame["label"] > 0).sum()) if head != "send_time" else len(frame)
    if positives < tr.min_positives or (head != "send_time" and len(frame) - positives < tr.min_positives):
        raise SkipHead(f"{head}: only {positives} positive and {len(frame) - positives} negative labels "
                       f"(training.min_positives = {tr.min_positives})")
    return _split(settings, head, frame, inputs, label_def, horizon)
