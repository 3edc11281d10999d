"""Shared constants of the decision policy (fallback flags, rule-based defaults, time units) and its NaN helper."""

from __future__ import annotations

import numpy as np

from nextbest.vocabulary import CHANNELS

FALLBACKS: tuple[str, ...] = (
    "activation_model",
    "churn_model",
    "response_model",
    "send_time_model",
    "effect_model",
    "stage",
    "timezone",
)

# --- rule-based defaults, used when a model head (or an input) is missing ----
ACTIVATION_PRIOR: dict[str, float] = {
    "registered": 0.10,
    "activating": 0.35,
    "active": 0.60,
    "at_risk": 0.25,
    "lapsed": 0.08,
}
CHURN_PRIOR: dict[str, float] = {
    "registered": 0.40,
    "activating": 0.30,
    "active": 0.12,
    "at_risk": 0.45,
    "lapsed": 0.70,
}
CHANNEL_BASE_RATE: dict[str, float] = {"email": 0.03, "sms": 0.05, "push": 0.02, "in_app": 0.06, "print": 0.01}
RESPONSE_PRIOR_SENDS = 20.0  # pseudo-sends at the base rate when smoothing a customer's own click rate
DEFAULT_SEND_HOUR = 10  # local time, when nothing is known about the customer's hours

_NS_HOUR = 3_600_000_000_000
_NS_DAY = 24 * _NS_HOUR
_C = len(CHANNELS)


def nan_as(a, fill: float = 0.0) -> np.ndarray:
    """``a`` with NaN replaced by ``fill``: ``np.nan_to_num`` without its handling of infinities, whose fixed cost
    exceeds the rest of a one-customer rule."""
    a = np.asarray(a)
    return np.where(np.isnan(a), fill, a)
