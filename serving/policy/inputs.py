"""What one decision pass reads, as arrays over customers, normalised and checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from features.names import CONTEXT
from nextbest.vocabulary import CHANNELS, DAY_PARTS, TRIGGERS, WEATHER
from serving.policy.common import _C, nan_as
from serving.policy.compile import CompiledPolicy

if TYPE_CHECKING:
    from serving.policy.rules import Increments


@dataclass
class DecisionInputs:
    """Everything one decision pass reads, as arrays over ``n`` customers.

    Flexible types are accepted and normalised in place: a single ``now`` or
    ``request_id`` applies to every customer; context fields take codes or
    names (``TRIGGERS``, ``CHANNELS``, ``DAY_PARTS``, ``WEATHER`` of
    ``features.names``). Model outputs left ``None`` (or NaN in a row) are
    replaced by rule-based defaults and flagged.
    """

    customer_ids: Sequence[str] | np.ndarray
    X: np.ndarray  # float32 [n, F]; NaN = unknown
    feature_index: Mapping[str, int]  # feature name -> column of X
    found: np.ndarray | None = None  # bool [n]; False = unknown customer (cold start)
    timezones: Sequence[str | None] | np.ndarray | None = None  # IANA; None = UTC (flagged)
    now: datetime | np.ndarray | Sequence[datetime] | None = None  # tz-aware; default: current UTC time
    p_activation: np.ndarray | None = None  # [n]
    p_churn: np.ndarray | None = None  # [n]
    p_response: np.ndarray | None = None  # [n, 5] P(click) per channel, CHANNELS order
    hour_dist: np.ndarray | None = None  # [n, 24] send-time distribution over local hours
    trigger: np.ndarray | Sequence[str] | str | None = None  # trigger event
    trigger_channel: np.ndarray | Sequence[str | None] | str | None = None  # validated; no rule reads it yet
    near_store: np.ndarray | Sequence[bool] | bool | None = None
    day_part: np.ndarray | Sequence[str] | str | None = None  # None / -1: from the local hour of `now`
    weather: np.ndarray | Sequence[str] | str | None = None
    restrict_actions: Sequence[Sequence[str] | None] | None = None  # per customer; None = every action
    request_id: str | Sequence[str | None] | None = None
    effects: "Increments | None" = None  # what options change (an effect model); None: the catalogue's priors
    # ``names.CONTEXT`` arrays as made by ``features.context.compute_context``; they fill the context
    # fields left None above (so do ctx_* columns of X when feature_index has them)
    context: Mapping[str, Sequence] | None = None
    # rows the model scores above were computed for (None: every row); the others had no option left, so no
    # model was asked and their scores stay NaN in the output without a fallback flag (``decide.channels_to_score``)
    scored: np.ndarray | None = None
    # the rules that read no score, once computed for this pass (serving.policy.decide._early_rules)
    early: object = None

    def __post_init__(self) -> None:
        ids = np.asarray(self.customer_ids, dtype=object)
        if ids.ndim != 1:
            raise ValueError("customer_ids: expected a 1-d sequence of ids")
        n = len(ids)
        self.customer_ids = ids
        X = np.asarray(self.X)
        if X.ndim != 2 or X.shape[0] != n:
            raise ValueError(f"X: expected shape ({n}, n_features), got {X.shape}")
        self.X = X if X.dtype == np.float32 else X.astype(np.float32)
        self.found = _bool_array(self.found, n, "found", default=True)
        self.timezones = _object_array(self.timezones, n, "timezones")
        self.now = _now_ns(self.now, n)
        self._read_context()
        self.p_activation = _scores(self.p_activation, (n,), "p_activation")
        self.p_churn = _scores(self.p_churn, (n,), "p_churn")
        self.p_response = _scores(self.p_response, (n, _C), "p_response")
        self.hour_dist = _scores(self.hour_dist, (n, 24), "hour_dist", clip=False)
        self.trigger = _codes(self.trigger, TRIGGERS, n, "trigger", default=0)
        self.trigger_channel = _codes(self.trigger_channel, CHANNELS, n, "trigger_channel", default=-1)
        self.near_store = _bool_array(self.near_store, n, "near_store", default=False)
        self.day_part = None if self.day_part is None else _codes(self.day_part, DAY_PARTS, n, "day_part", -1)
        self.weather = _codes(self.weather, WEATHER, n, "weather", default=0)
        if self.restrict_actions is not None and len(self.restrict_actions) != n:
            raise ValueError(
                f"restrict_actions: expected {n} entries (None = no restriction), got {len(self.restrict_actions)}"
            )
        if self.request_id is not None and not isinstance(self.request_id, str):
            self.request_id = _object_array(self.request_id, n, "request_id")
        if self.scored is not None:
            self.scored = _bool_array(self.scored, n, "scored", default=True)

    def set_scores(self, rows: np.ndarray, p_activation=None, p_churn=None, p_response=None, hour_dist=None) -> None:
        """The model scores of the customers at positions ``rows`` only (the others' stay NaN, marked unscored)."""
        n = self.n
        for name, v, shape, clip in (("p_activation", p_activation, (n,), True), ("p_churn", p_churn, (n,), True),
                                     ("p_response", p_response, (n, _C), True), ("hour_dist", hour_dist, (n, 24), False)):
            if v is None:
                setattr(self, name, None)
                continue
            full = np.full(shape, np.nan, np.float32)
            full[rows] = v
            setattr(self, name, _scores(full, shape, name, clip=clip))
        self.scored = np.zeros(n, bool)
        self.scored[rows] = True

    @property
    def n(self) -> int:
        return len(self.customer_ids)

    def _read_context(self) -> None:
        ctx = dict(self.context or {})
        unknown = sorted(set(ctx) - set(CONTEXT))
        if unknown:
            raise ValueError(f"context: unknown key(s) {unknown}; expected names of features.names.CONTEXT")
        for name in CONTEXT:
            if name not in ctx and name in self.feature_index:
                ctx[name] = self.X[:, self.feature_index[name]]
        if self.trigger is None and "ctx_trigger_code" in ctx:
            self.trigger = np.asarray(ctx["ctx_trigger_code"], np.float32)
        if self.trigger_channel is None and "ctx_trigger_channel_code" in ctx:  # 0 = none, 1 + channel index
            self.trigger_channel = np.asarray(ctx["ctx_trigger_channel_code"], np.float32) - 1
        if self.near_store is None and "ctx_near_store" in ctx:
            self.near_store = np.asarray(ctx["ctx_near_store"], np.float32) == 1
        if self.day_part is None and "ctx_day_part" in ctx:
            self.day_part = np.asarray(ctx["ctx_day_part"], np.float32)
        if self.weather is None and "ctx_weather_code" in ctx:
            self.weather = np.asarray(ctx["ctx_weather_code"], np.float32)


def _bool_array(v, n: int, name: str, default: bool) -> np.ndarray:
    if v is None:
        return np.full(n, default)
    a = np.asarray(v)
    if a.ndim == 0:
        return np.full(n, bool(a))
    if a.shape != (n,):
        raise ValueError(f"{name}: expected {n} values, got shape {a.shape}")
    return a.astype(bool)


def _object_array(v, n: int, name: str) -> np.ndarray:
    if v is None:
        return np.full(n, None, dtype=object)
    if isinstance(v, str):
        return np.full(n, v, dtype=object)
    a = np.asarray(v, dtype=object)
    if a.shape != (n,):
        raise ValueError(f"{name}: expected {n} values, got shape {a.shape}")
    return a


def _now_ns(v, n: int) -> np.ndarray:
    """Decision time as int64 UTC nanoseconds per customer."""
    if v is None:
        v = datetime.now(timezone.utc)
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError("now: timestamp has no timezone; pass a tz-aware datetime (e.g. UTC)")
        return np.full(n, pd.Timestamp(v).tz_convert("UTC").value, np.int64)
    a = np.asarray(v)
    if a.dtype.kind == "M":  # numpy datetime64 holds UTC instants
        a = a.astype("datetime64[ns]").astype(np.int64)
    elif a.dtype.kind != "i":
        idx = pd.DatetimeIndex(list(a) if a.dtype == object else a)
        if idx.tz is None:
            raise ValueError("now: timestamps have no timezone; pass tz-aware datetimes (e.g. UTC)")
        a = idx.tz_convert("UTC").asi8
    if a.ndim == 0:
        return np.full(n, int(a), np.int64)
    if a.shape != (n,):
        raise ValueError(f"now: expected {n} timestamps, got shape {a.shape}")
    return a.astype(np.int64)


def _scores(v, shape: tuple[int, ...], name: str, clip: bool = True) -> np.ndarray | None:
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float32)
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    return np.clip(a, 0.0, 1.0) if clip else a


def _codes(v, vocab: tuple[str, ...], n: int, name: str, default: int) -> np.ndarray:
    """Names or integer codes -> int16 codes into `vocab` (-1 = none/unknown)."""
    if v is None:
        return np.full(n, default, np.int16)
    if isinstance(v, str) or np.ndim(v) == 0:
        v = [v] * n
    a = np.asarray(v)
    if a.shape != (n,):
        raise ValueError(f"{name}: expected {n} values, got shape {a.shape}")
    if a.dtype.kind in "iuf":
        codes = nan_as(a.astype(np.float64), -1).astype(np.int16)
        if (codes >= len(vocab)).any() or (codes < -1).any():
            raise ValueError(f"{name}: codes must be -1..{len(vocab) - 1} ({list(vocab)})")
        return codes
    a = a.astype(object)
    inv, uniq = pd.factorize(a, use_na_sentinel=True) if n > 64 else (None, list(dict.fromkeys(a.tolist())))
    lookup = {v: i for i, v in enumerate(vocab)}
    bad = sorted({str(v) for v in uniq if v is not None and v == v and v not in lookup})
    if bad:
        raise ValueError(f"{name}: unknown value(s) {bad}; allowed: {list(vocab)}")
    if inv is None:
        return np.array([lookup.get(v, -1) for v in a.tolist()], np.int16)
    return np.append(np.array([lookup.get(v, -1) for v in uniq], np.int16), np.int16(-1))[inv]


class _Columns:
    """Read named feature columns of X (float32, NaN = unknown)."""

    def __init__(self, inputs: DecisionInputs, policy: CompiledPolicy):
        missing = [f for f in policy.required_features if f not in inputs.feature_index]
        if missing:
            raise ValueError(
                f"feature_index: the decision policy needs features that are not supplied: {', '.join(missing)}"
            )
        self.X, self.index = inputs.X, inputs.feature_index

    def __call__(self, name: str) -> np.ndarray:
        return self.X[:, self.index[name]]

    def many(self, names: Sequence[str], rows: np.ndarray | None = None) -> np.ndarray:
        cols = [self.index[f] for f in names]
        return self.X[:, cols] if rows is None else self.X[np.ix_(rows, cols)]
