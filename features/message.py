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


def message_columns(index: dict[str, int]) -> np.ndarray:
    """[len(MESSAGE_STATS), len(CHANNELS)]: the column of ``index`` holding each statistic on each channel."""
    return np.array([[index[f"{m}_{c}"] for c in CHANNELS] for m in MESSAGE_STATS], np.int64)


def message_inputs(X: np.ndarray, index: dict[str, int], channel_code: np.ndarray, hour: np.ndarray,
                   columns: np.ndarray | None = None) -> np.ndarray:
    """[n, len(MESSAGE_INPUTS)]: channel code, local hour, and the customer's stats on that channel.

    ``X`` holds customer features with column positions ``index`` (name -> column); ``columns``, when given, is
    ``message_columns(index)`` computed once.
    """
    code = np.asarray(channel_code, dtype=np.int64)
    table = message_columns(index) if columns is None else columns
    out = np.empty((len(X), len(MESSAGE_INPUTS)), np.float32)
    out[:, 0], out[:, 1] = code, hour
    out[:, 2:] = X[np.arange(len(X))[:, None], table[:, code].T]
    return out


# The effect model scores one (customer, action, channel) option per row: the customer's features, then
# which option it is, how likely the customer is to respond to it on that channel at the chosen hour (the
# channel head's P(click), context boosts included) and the outcome scores without contact.
OPTION_INPUTS = ("opt_action_code", "opt_channel_code", "opt_response", "opt_p_activation", "opt_p_churn")


def option_inputs(action_code, channel_code, p_response, p_activation, p_churn) -> np.ndarray:
    """[n, len(OPTION_INPUTS)] for n options (action code = index in the catalogue the model was trained on)."""
    cols = (action_code, channel_code, p_response, p_activation, p_churn)
    n = max(np.size(c) for c in cols)
    out = np.empty((n, len(OPTION_INPUTS)), np.float32)
    for k, c in enumerate(cols):
        out[:, k] = np.broadcast_to(np.asarray(c, np.float32), (n,))
    return out


class EffectInputs:
    """The effect model's input layout, resolved once: customer features by name from the columns `index` of a
    feature matrix, then the OPTION_INPUTS, in the model's own feature order (`model_features`)."""

    def __init__(self, model_features, index: dict[str, int]):
        feats = list(model_features)
        self.width = len(feats)
        at_x = [k for k, f in enumerate(feats) if f not in OPTION_INPUTS]
        self._at_x, self._cols_x = np.array(at_x, np.int64), np.array([index[feats[k]] for k in at_x], np.int64)
        at_opt = [k for k, f in enumerate(feats) if f in OPTION_INPUTS]
        self._at_opt = np.array(at_opt, np.int64)
        self._cols_opt = np.array([OPTION_INPUTS.index(feats[k]) for k in at_opt], np.int64)

    def __call__(self, X: np.ndarray, action_code, channel_code, p_response, p_activation, p_churn) -> np.ndarray:
        """[n, width] float32 for n options, one per row of `X`."""
        out = np.empty((len(X), self.width), np.float32)
        if len(self._at_x):
            out[:, self._at_x] = X[:, self._cols_x]
        if len(self._at_opt):
            opt = option_inputs(action_code, channel_code, p_response, p_activation, p_churn)
            out[:, self._at_opt] = opt[:, self._cols_opt]
        return out


def effect_matrix(model_features, X: np.ndarray, index: dict[str, int], action_code, channel_code, p_response,
                  p_activation, p_churn) -> np.ndarray:
    """The effect model's inputs for n options (:class:`EffectInputs`, laid out for this call)."""
    return EffectInputs(model_features, index)(X, action_code, channel_code, p_response, p_activation, p_churn)


def effect_scale(X: np.ndarray, index: dict[str, int], amount, default: float) -> np.ndarray:
    """What the effect model's output is multiplied by: the basket estimate where the action's objective is a
    purchase amount (`amount` per row), else 1."""
    basket = outcome_scale(X[:, index["monetary_365d"]], X[:, index["frequency_365d"]], default)
    return np.where(np.asarray(amount, bool), basket, 1.0).astype(np.float32)


def outcome_scale(monetary_365d: np.ndarray, frequency_365d: np.ndarray, default: float) -> np.ndarray:
    """A customer's basket estimate (spend per purchase over the last year; `default` when they bought nothing):
    what an amount outcome is measured against, so a large account's noise does not drown everyone's signal."""
    freq = np.nan_to_num(np.asarray(frequency_365d, float), nan=0.0)
    spend = np.nan_to_num(np.asarray(monetary_365d, float), nan=0.0)
    basket = np.divide(spend, freq, out=np.full(len(freq), float(default)), where=freq >= 1)
    return np.maximum(basket, 0.1 * float(default)).astype(np.float32)
