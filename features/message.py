"""Per-message inputs of the response head: one (customer, channel, local hour) per row.

Besides the customer's features, the response head reads the message's
channel and local hour, and that channel's own engagement history gathered
from the customer's per-channel features. Training (one row per logged
message) and serving (one row per candidate channel) both build these
columns with :func:`message_inputs`.
"""

from __future__ import annotations

import numpy as np

from nextbest.vocabulary import CHANNELS

MESSAGE_STATS = ("sent", "open_rate", "click_rate", "consecutive_ignores", "days_since_response")
MESSAGE_INPUTS = ("msg_channel_code", "msg_local_hour", *(f"msg_{m}" for m in MESSAGE_STATS))


def message_stat_features() -> list[str]:
    """The customer features :func:`message_inputs` gathers from, statistic by statistic, channel by channel."""
    return [f"{s}_{c}" for s in MESSAGE_STATS for c in CHANNELS]


def message_inputs(X: np.ndarray, index: dict[str, int], channel_code: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """[n, len(MESSAGE_INPUTS)]: channel code, local hour, and the customer's stats on that channel.

    ``X`` holds customer features with column positions ``index`` (name -> column).
    """
    code = np.asarray(channel_code, dtype=np.int64)
    out = np.empty((len(X), len(MESSAGE_INPUTS)), np.float32)
    out[:, 0], out[:, 1] = code, hour
    for k, m in enumerate(MESSAGE_STATS, start=2):
        cols = np.array([index[f"{m}_{c}"] for c in CHANNELS])
        out[:, k] = X[np.arange(len(X)), cols[code]]
    return out
