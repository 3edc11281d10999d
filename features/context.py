"""Request-time context features: one pure, vectorised function.

:func:`compute_context` turns the request fields of a decision (when the
trigger happened, what it was, on which channel, near a store or not, the
weather) plus the customer's timezone into the ``names.CONTEXT`` features.
The Feast on-demand view ``request_context`` calls it for training data and
the serving path may call it directly: both get the same numbers.

Codes (all float32; stable, documented in ``features/README.md``):

- ``ctx_local_hour``: hour 0..23 in the customer's timezone (UTC when the
  timezone is missing or unknown)
- ``ctx_weekday``: 0 = Monday .. 6 = Sunday, local
- ``ctx_day_part``: index in ``names.DAY_PARTS`` (see :data:`DAY_PART_OF_HOUR`)
- ``ctx_trigger_code``: index in ``names.TRIGGERS``; contract event types
  ``message_opened/clicked/converted`` map to ``message_response``; unknown -> 0
- ``ctx_trigger_channel_code``: 1 + index in ``names.CHANNELS``; 0 = none/unknown
- ``ctx_near_store``: 1.0 when the request says so, else 0.0
- ``ctx_weather_code``: index in ``names.WEATHER``; unknown -> 0

Declaration-safe: importing this module does no work.
"""

from __future__ import annotations

from datetime import datetime, timezone as _tz
from functools import lru_cache
from typing import Any, Iterable
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from features.names import CONTEXT
from nextbest.vocabulary import CHANNELS, DAY_PARTS, TRIGGERS, WEATHER

# hour -> day part:  night 22-06, breakfast 06-09, morning 09-12, lunch 12-14,
# afternoon 14-18, evening 18-22
DAY_PART_OF_HOUR = np.array(
    [0] * 6 + [1] * 3 + [2] * 3 + [3] * 2 + [4] * 4 + [5] * 4 + [0] * 2, dtype=np.float32
)
assert len(DAY_PART_OF_HOUR) == 24 and int(DAY_PART_OF_HOUR.max()) == len(DAY_PARTS) - 1

_TRIGGER_CODE = {name: i for i, name in enumerate(TRIGGERS)}
_TRIGGER_CODE.update(
    {
        "message_opened": TRIGGERS.index("message_response"),
        "message_clicked": TRIGGERS.index("message_response"),
        "message_converted": TRIGGERS.index("message_response"),
        "app_visit": TRIGGERS.index("visit"),
        "abandoned_cart": TRIGGERS.index("cart_abandoned"),
    }
)
_CHANNEL_CODE = {name: i + 1 for i, name in enumerate(CHANNELS)}
_WEATHER_CODE = {name: i for i, name in enumerate(WEATHER)}
_SMALL = 512  # below this many rows a plain loop beats pandas' per-call overhead

# neutral request values used when a caller has no context (e.g. training rows)
NEUTRAL_REQUEST = {"trigger_event": "none", "trigger_channel": "", "near_store": 0, "weather": "unknown"}


@lru_cache(maxsize=1024)
def _zone(name: str | None) -> ZoneInfo | _tz:
    if not name or not isinstance(name, str):
        return _tz.utc
    try:
        return ZoneInfo(name)
    except Exception:  # unknown or malformed zone name: fall back to UTC
        return _tz.utc


@lru_cache(maxsize=1024)
def _zone_name(name: Any) -> str:
    z = _zone(name if isinstance(name, str) else None)
    return "UTC" if z is _tz.utc else name


def _as_list(x: Any, n: int | None = None) -> list:
    if x is None:
        return [None] * (n or 0)
    if isinstance(x, (str, bytes, datetime, pd.Timestamp, int, float, bool, np.generic)):
        return [x] * (n or 1)
    return list(x)


_EPOCH = datetime(1970, 1, 1, tzinfo=_tz.utc)


def _dt_ns(d: datetime) -> int:
    delta = d - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000 + getattr(d, "nanosecond", 0)


def to_utc_ns(values: Any) -> np.ndarray:
    """Timestamps (datetimes, pandas, ISO strings or epoch seconds) as int64 UTC nanoseconds; NaT -> now."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        out = values.astype("datetime64[ns]").astype(np.int64)
    elif isinstance(values, pd.DatetimeIndex) or (
        isinstance(values, pd.Series) and pd.api.types.is_datetime64_any_dtype(values.dtype)
    ):
        idx = pd.DatetimeIndex(values)
        idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
        out = idx.as_unit("ns").asi8.copy()
    else:
        items = _as_list(values)
        if len(items) < _SMALL and all(isinstance(v, datetime) and v.tzinfo is not None for v in items):
            out = np.array([_dt_ns(v) for v in items], dtype=np.int64)
        elif items and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in items):
            out = (np.asarray(items, dtype=np.float64) * 1e9).astype(np.int64)
        else:
            idx = pd.DatetimeIndex(pd.to_datetime(pd.Series(items, dtype=object), utc=True, errors="coerce"))
            out = idx.as_unit("ns").asi8.copy()
    nat = out == np.iinfo(np.int64).min
    if nat.any():
        out[nat] = pd.Timestamp.now(tz="UTC").value
    return out


def local_hour_weekday(ts_ns: np.ndarray, zones: Any) -> tuple[np.ndarray, np.ndarray]:
    """Local hour (0..23) and weekday (0 = Monday) of UTC nanosecond timestamps, one timezone per row.

    Unknown or missing zone names count as UTC. Vectorised per distinct zone.
    """
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    n = len(ts_ns)
    zones = _as_list(zones, n)
    hour = np.empty(n, dtype=np.int16)
    wday = np.empty(n, dtype=np.int16)
    if n == 0:
        return hour, wday
    if n < _SMALL:
        seen: dict = {}
        for i, (t, z) in enumerate(zip(ts_ns.tolist(), zones)):
            key = (t, z if isinstance(z, str) else None)
            hw = seen.get(key)
            if hw is None:
                d = datetime.fromtimestamp(t // 1_000_000_000, tz=_tz.utc).astimezone(_zone(key[1]))
                hw = seen[key] = (d.hour, d.weekday())
            hour[i], wday[i] = hw
        return hour, wday
    codes, uniques = pd.factorize(pd.Series(zones, dtype=object), use_na_sentinel=False)
    return local_hour_weekday_codes(ts_ns, codes, list(uniques))


def local_hour_weekday_codes(ts_ns: np.ndarray, codes: np.ndarray, zones: list) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`local_hour_weekday` with zones given as ``zones[codes[i]]`` (fast for many rows)."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    codes = np.asarray(codes)
    hour = np.empty(len(ts_ns), dtype=np.int16)
    wday = np.empty(len(ts_ns), dtype=np.int16)
    if len(ts_ns) == 0:
        return hour, wday
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(zones) + 1))
    for k, zone in enumerate(zones):
        sel = order[bounds[k] : bounds[k + 1]]
        if len(sel) == 0:
            continue
        local = pd.DatetimeIndex(ts_ns[sel], tz="UTC").tz_convert(_zone_name(zone))
        hour[sel] = local.hour
        wday[sel] = local.dayofweek
    return hour, wday


def _codes(values: Any, table: dict[str, int], n: int, default: int = 0) -> np.ndarray:
    items = _as_list(values, n)
    if n >= _SMALL:
        codes, uniq = pd.factorize(pd.Series(items, dtype=object), use_na_sentinel=False)
        return _codes(list(uniq), table, len(uniq), default)[codes] if len(uniq) else np.zeros(n, np.float32)
    return np.fromiter(
        (table.get(v.strip().lower(), default) if isinstance(v, str) else default for v in items),
        dtype=np.float32,
        count=n,
    )


def _flags(values: Any, n: int) -> np.ndarray:
    items = _as_list(values, n)
    if n >= _SMALL:
        codes, uniq = pd.factorize(pd.Series(items, dtype=object), use_na_sentinel=False)
        return _flags(list(uniq), len(uniq))[codes] if len(uniq) else np.zeros(n, np.float32)
    out = np.zeros(n, dtype=np.float32)
    for i, v in enumerate(items):
        if isinstance(v, str):
            out[i] = v.strip().lower() in ("1", "true", "yes", "y", "t")
        elif v is not None and not (isinstance(v, float) and np.isnan(v)):
            out[i] = bool(v)
    return out


def compute_context(
    trigger_timestamp: Any,
    timezone: Any,
    trigger_event: Any = None,
    trigger_channel: Any = None,
    near_store: Any = None,
    weather: Any = None,
) -> dict[str, np.ndarray]:
    """The ``names.CONTEXT`` features (float32 arrays, one value per row).

    ``trigger_timestamp``: when the trigger happened (tz-aware datetimes, pandas
    timestamps, ISO strings or epoch seconds; missing -> now). ``timezone``:
    the customer's IANA zone per row (or one for all). The other fields may be
    lists, scalars or None (neutral value).
    """
    ts = to_utc_ns(trigger_timestamp)
    n = len(ts)
    hour, wday = local_hour_weekday(ts, timezone)
    out = {
        "ctx_local_hour": hour.astype(np.float32),
        "ctx_weekday": wday.astype(np.float32),
        "ctx_day_part": DAY_PART_OF_HOUR[hour],
        "ctx_trigger_code": _codes(trigger_event, _TRIGGER_CODE, n),
        "ctx_trigger_channel_code": _codes(trigger_channel, _CHANNEL_CODE, n),
        "ctx_near_store": _flags(near_store, n),
        "ctx_weather_code": _codes(weather, _WEATHER_CODE, n),
    }
    assert tuple(out) == CONTEXT
    return out


def with_context(names: list[str], customer_names: list[str], Xc: np.ndarray, timezones, at) -> np.ndarray:
    """The feature service's vector (`names` order): the stored customer features `Xc` (columns
    `customer_names`) and the context of a trigger at `at` (a tz-aware timestamp; no event, channel or
    location)."""
    X = np.empty((len(Xc), len(names)), np.float32)
    pos = {n: j for j, n in enumerate(names)}
    X[:, [pos[n] for n in customer_names]] = Xc
    ctx = compute_context(np.full(len(Xc), at.value).astype("datetime64[ns]"), timezones)
    for name, values in ctx.items():
        if name in pos:
            X[:, pos[name]] = values
    return X


def context_from_inputs(inputs: dict[str, Iterable]) -> dict[str, list]:
    """Adapter for the Feast python-mode on-demand view: dict of lists in, dict of lists out."""
    ts = inputs.get("trigger_timestamp")
    zones = inputs.get("timezone", inputs.get("customer_profile__timezone"))
    n = len(_as_list(ts))
    ctx = compute_context(
        ts,
        _as_list(zones, n) if zones is not None else None,
        inputs.get("trigger_event"),
        inputs.get("trigger_channel"),
        inputs.get("near_store"),
        inputs.get("weather"),
    )
    return {k: list(v) for k, v in ctx.items()}
