"""Names of the customer features: the vocabulary shared by the Feast repo,
the feature pipeline, training and the decision policy.

Most views have a fixed list of features. The pressure view also holds one
cooldown feature per catalogue action (``days_since_action_<id>``), so the
full list is a function of the configured catalogue: :func:`views` and
:func:`customer_features` take the action ids (``tuple(settings.actions)``).

Declarations only (no computation, no settings read).
"""

from __future__ import annotations

from typing import Sequence

from nextbest.vocabulary import ATTRIBUTES, CHANNELS

# --- feature views (all float32 in the online vector; NaN = unknown) ---------
PROFILE = (
    "tenure_days",
    *(f"{a}_code" for a in ATTRIBUTES),
    *(f"consent_{c}" for c in CHANNELS),
    *(f"reachable_{c}" for c in CHANNELS),
)
LIFECYCLE = (
    "stage_code",
    "days_since_registration",
    "days_since_first_purchase",
    "days_since_last_purchase",
    "n_purchases",
    "second_purchase_in_window",
)
RFM = (
    "frequency_30d",
    "frequency_90d",
    "frequency_365d",
    "monetary_30d",
    "monetary_90d",
    "monetary_365d",
    "rfm_segment",
    "rfm_segment_prev",
    "rfm_dropped",
)
ENGAGEMENT = tuple(
    f"{m}_{c}"
    for c in CHANNELS
    for m in (
        "sent",
        "opened",
        "clicked",
        "converted",
        "open_rate",
        "click_rate",
        "consecutive_ignores",
        "days_since_response",
    )
)
HOUR_SHARES = tuple(f"hour_share_{h:02d}" for h in range(24))  # share of past engagements per local hour
# a customer's own engagement hours, the evidence the send-time head updates its prior with (nextbest.hours)
HOUR_HISTORY = (*HOUR_SHARES, "n_engagements")
TIMING = (
    *HOUR_SHARES,
    *(f"weekday_share_{d}" for d in range(7)),
    "n_engagements",
)
CHANNEL_PRESSURE = (
    *(f"sent_7d_{c}" for c in CHANNELS),
    *(f"sent_30d_{c}" for c in CHANNELS),
    "sent_7d_total",
    "sent_30d_total",
)
# request-time context, computed on demand from the request and the customer's timezone
CONTEXT = ("ctx_local_hour", "ctx_weekday", "ctx_day_part", "ctx_trigger_code", "ctx_trigger_channel_code", "ctx_near_store", "ctx_weather_code")
CONTEXT_REQUEST = ("trigger_timestamp", "trigger_event", "trigger_channel", "near_store", "weather")

VIEW_NAMES = (
    "customer_profile",
    "customer_lifecycle",
    "customer_rfm",
    "customer_engagement",
    "customer_timing",
    "customer_pressure",
)


def action_pressure(actions: Sequence[str]) -> tuple[str, ...]:
    """Days since the last send of each catalogue action (the cooldown features)."""
    return tuple(f"days_since_action_{a}" for a in actions)


def views(actions: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Feature view -> its features, for a catalogue of ``actions`` (ids in catalogue order)."""
    return dict(zip(VIEW_NAMES, (PROFILE, LIFECYCLE, RFM, ENGAGEMENT, TIMING,
                                 (*CHANNEL_PRESSURE, *action_pressure(actions)))))


def customer_features(actions: Sequence[str]) -> tuple[str, ...]:
    """Every stored customer feature, in the feature service's order (the online vector's layout)."""
    return tuple(f for cols in views(actions).values() for f in cols)
