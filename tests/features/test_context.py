from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from features.context import DAY_PART_OF_HOUR, compute_context, context_from_inputs, local_hour_weekday
from features.names import CONTEXT
from nextbest.vocabulary import CHANNELS, DAY_PARTS, TRIGGERS, WEATHER


def test_local_hour_and_weekday_follow_the_customer_timezone():
    t = datetime(2025, 7, 1, 22, 30, tzinfo=timezone.utc)  # Tuesday 22:30 UTC
    ctx = compute_context([t] * 4, ["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"])
    assert ctx["ctx_local_hour"].tolist() == [0.0, 18.0, 7.0, 22.0]  # Paris is UTC+2 in summer
    assert ctx["ctx_weekday"].tolist() == [2.0, 1.0, 2.0, 1.0]  # Paris and Tokyo are already Wednesday
    winter = compute_context([datetime(2025, 1, 15, 22, 30, tzinfo=timezone.utc)], ["Europe/Paris"])
    assert winter["ctx_local_hour"][0] == 23.0  # UTC+1 in winter


def test_day_parts():
    assert [DAY_PARTS[int(DAY_PART_OF_HOUR[h])] for h in (0, 5, 6, 8, 9, 11, 12, 13, 14, 17, 18, 21, 22, 23)] == [
        "night", "night", "breakfast", "breakfast", "morning", "morning", "lunch", "lunch",
        "afternoon", "afternoon", "evening", "evening", "night", "night",
    ]
    t = datetime(2025, 3, 3, 11, 15, tzinfo=timezone.utc)  # 12:15 in Paris -> lunch
    assert DAY_PARTS[int(compute_context([t], ["Europe/Paris"])["ctx_day_part"][0])] == "lunch"


def test_codes_and_neutral_values():
    t = datetime(2025, 3, 3, 11, 15, tzinfo=timezone.utc)
    ctx = compute_context(
        [t, t, t], ["UTC", "Nowhere/Unknown", None],
        trigger_event=["purchase", "message_clicked", "nonsense"],
        trigger_channel=["sms", None, "fax"],
        near_store=[True, 0, None],
        weather=["rain", "unknown", "hail"],
    )
    assert tuple(ctx) == CONTEXT
    assert all(v.dtype == np.float32 and len(v) == 3 for v in ctx.values())
    assert ctx["ctx_local_hour"].tolist() == [11.0, 11.0, 11.0]  # unknown or missing zones count as UTC
    assert ctx["ctx_trigger_code"].tolist() == [TRIGGERS.index("purchase"), TRIGGERS.index("message_response"), 0]
    assert ctx["ctx_trigger_channel_code"].tolist() == [CHANNELS.index("sms") + 1, 0, 0]
    assert ctx["ctx_near_store"].tolist() == [1.0, 0.0, 0.0]
    assert ctx["ctx_weather_code"].tolist() == [WEATHER.index("rain"), 0, 0]


def test_small_and_large_inputs_agree():
    rng = np.random.default_rng(0)
    n = 3000
    ts = pd.Timestamp("2025-01-01", tz="UTC").value + rng.integers(0, 365 * 86400, n) * 1_000_000_000
    zones = list(rng.choice(["Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "bad"], n))
    h_all, w_all = local_hour_weekday(ts, zones)
    h_few, w_few = local_hour_weekday(ts[:10], zones[:10])
    assert (h_all[:10] == h_few).all() and (w_all[:10] == w_few).all()
    ref = [pd.Timestamp(t, tz="UTC").tz_convert(z if z != "bad" else "UTC") for t, z in zip(ts[:200], zones[:200])]
    assert h_all[:200].tolist() == [r.hour for r in ref]
    assert w_all[:200].tolist() == [r.dayofweek for r in ref]
    events = list(rng.choice(TRIGGERS, n))
    big = compute_context(pd.DatetimeIndex(ts, tz="UTC"), zones, trigger_event=events, near_store=[1] * n)
    small = compute_context(list(pd.DatetimeIndex(ts[:5], tz="UTC")), zones[:5], trigger_event=events[:5], near_store=[1] * 5)
    for k in CONTEXT:
        assert np.array_equal(big[k][:5], small[k]), k


def test_feast_adapter_takes_and_returns_lists():
    t = datetime(2025, 6, 2, 10, 30, tzinfo=timezone.utc)
    out = context_from_inputs({"trigger_timestamp": [t, t], "timezone": ["Asia/Tokyo", None], "trigger_event": ["visit", "x"]})
    assert set(out) == set(CONTEXT)
    assert [float(v) for v in out["ctx_local_hour"]] == [19.0, 10.0]
    assert all(isinstance(v, np.float32) for v in out["ctx_weekday"])  # Feast infers Float32 from these
