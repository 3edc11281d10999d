"""Decisions as arrays, and as the API's records or a batch table; decision ids."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from nextbest.vocabulary import CHANNELS, NO_ACTION, STAGES
from serving.policy.common import FALLBACKS
from serving.policy.compile import CompiledPolicy
from serving.policy.rules import _digests


def _format_uuids(raw: bytes, version: int) -> np.ndarray:
    """16 bytes per id -> canonical UUID strings with the given version and the RFC 4122 variant."""
    b = np.frombuffer(raw, np.uint8).reshape(-1, 16).copy()
    b[:, 6] = (b[:, 6] & 0x0F) | (version << 4)
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80
    n = len(b)
    hx = np.frombuffer(b.tobytes().hex().encode(), np.uint8).reshape(n, 32)
    out = np.full((n, 36), ord("-"), np.uint8)
    for dst, src, width in ((0, 0, 8), (9, 8, 4), (14, 12, 4), (19, 16, 4), (24, 20, 12)):
        out[:, dst : dst + width] = hx[:, src : src + width]
    return out.view("S36").ravel().astype("U36")


def decision_ids(customer_ids: np.ndarray, request_id: str | Sequence[str | None] | None) -> np.ndarray:
    """Decision ids: a UUID (version 8) from blake2b(f"{request_id}:{customer_id}", digest_size=16)
    when a request id is given, so a retried request gets the same ids; a random UUID4 otherwise."""
    n = len(customer_ids)
    if isinstance(request_id, str):
        return _format_uuids(_digests(customer_ids, f"{request_id}:", 16), 8)
    out = np.empty(n, dtype="U36")
    given = np.zeros(n, bool) if request_id is None else pd.notna(request_id)
    rows = np.flatnonzero(given)
    if len(rows):  # one digest per row, formatted in one pass
        det = b"".join([hashlib.blake2b(f"{request_id[i]}:{customer_ids[i]}".encode(), digest_size=16).digest()
                        for i in rows])
        out[rows] = _format_uuids(det, 8)
    rows = np.flatnonzero(~given)
    if len(rows):
        out[rows] = _format_uuids(os.urandom(16 * len(rows)), 4)
    return out


@dataclass
class Decisions:
    """Decisions for ``n`` customers as arrays (action/channel/stage as indices)."""

    policy: CompiledPolicy
    customer_ids: np.ndarray  # object [n]
    action_idx: np.ndarray  # int16 [n]; -1 = no_action
    channel_idx: np.ndarray  # int8 [n]; -1 = none
    send_at: np.ndarray  # object [n]: ISO-8601 with offset, None for no_action
    send_at_utc: np.ndarray  # datetime64[ns] [n], NaT for no_action
    stage_idx: np.ndarray  # int8 [n]
    p_activation: np.ndarray  # float32 [n]; NaN for a customer who was not scored (no option left)
    p_churn: np.ndarray  # float32 [n]; NaN likewise
    p_response: np.ndarray  # float32 [n, C] (before context boosts); NaN likewise
    best_hours: np.ndarray  # int8 [n, 3]
    expected_value: np.ndarray  # float32 [n]: EV of `action` (0 for no_action)
    best_expected_value: np.ndarray  # float32 [n]: value of the best option (-inf if none)
    learned: np.ndarray  # bool [n]: the best option's increment is the effect model's (else the catalogue prior)
    n_options: np.ndarray  # int16 [n]: eligible (action, channel) pairs
    reasons: np.ndarray  # bool [n, R] over policy.reason_codes
    control_group: np.ndarray  # bool [n]
    holdout_action_idx: np.ndarray  # int16 [n]: would-be action (-1 = no_action); reported for control only
    holdout_channel_idx: np.ndarray  # int8 [n]
    cold_start: np.ndarray  # bool [n]
    fallbacks: np.ndarray  # bool [n, len(FALLBACKS)]
    propensity: np.ndarray  # float64 [n]: probability the assignment gave the returned option (rules.assignment_propensity)
    exploration: np.ndarray  # bool [n]: the returned option was drawn at random among the eligible ones
    decision_id: np.ndarray  # str [n]
    model_versions: dict[str, str]

    def __len__(self) -> int:
        return len(self.customer_ids)

    # -- names -----------------------------------------------------------------
    @property
    def action(self) -> np.ndarray:
        return np.array([*self.policy.actions, NO_ACTION], dtype=object)[self.action_idx]

    @property
    def channel(self) -> np.ndarray:
        return np.array([*CHANNELS, None], dtype=object)[self.channel_idx]

    @property
    def stage(self) -> np.ndarray:
        return np.array(STAGES, dtype=object)[self.stage_idx]

    @property
    def holdout_action(self) -> np.ndarray:
        names = np.array([*self.policy.actions, NO_ACTION], dtype=object)[self.holdout_action_idx]
        return np.where(self.control_group, names, None)

    @property
    def holdout_channel(self) -> np.ndarray:
        names = np.array([*CHANNELS, None], dtype=object)[self.holdout_channel_idx]
        return np.where(self.control_group, names, None)

    @property
    def fallback(self) -> np.ndarray:
        return self.fallbacks.any(axis=1)

    def reason_codes(self, i: int) -> list[str]:
        return [self.policy.reason_codes[r] for r in np.flatnonzero(self.reasons[i])]

    # -- outputs ---------------------------------------------------------------
    def to_records(self) -> list[dict]:
        """One dict per customer, shaped like ``serving.schemas.CustomerDecision``."""
        pol = self.policy
        n = len(self)

        def floats(a: np.ndarray) -> list:  # NaN (a customer who was not scored) -> None
            a = np.round(a.astype(np.float64), 6)
            return np.where(np.isnan(a), None, a).tolist() if np.isnan(a).any() else a.tolist()

        action, channel, stage = self.action.tolist(), self.channel.tolist(), self.stage.tolist()
        h_action, h_channel = self.holdout_action.tolist(), self.holdout_channel.tolist()
        p_act, p_churn, ev = floats(self.p_activation), floats(self.p_churn), floats(self.expected_value)
        p_resp, hours = floats(self.p_response), self.best_hours.tolist()
        control, cold, ids = self.control_group.tolist(), self.cold_start.tolist(), self.decision_id.tolist()
        propensity, explored = self.propensity.tolist(), self.exploration.tolist()
        reasons = _row_lists(self.reasons)
        fallbacks = _row_lists(self.fallbacks)
        out = []
        for i in range(n):
            out.append(
                {
                    "customer_id": str(self.customer_ids[i]),
                    "action": action[i],
                    "channel": channel[i],
                    "send_at": None if self.send_at[i] is None else str(self.send_at[i]),
                    "stage": stage[i],
                    "scores": {
                        "activation": p_act[i],
                        "churn": p_churn[i],
                        "response": dict(zip(CHANNELS, p_resp[i])),
                        "best_hours": hours[i],
                    },
                    "expected_value": ev[i],
                    "reasons": [
                        {"code": code, "text": self._reason_text(i, code, pol.reason_texts[r])}
                        for r in reasons[i]
                        for code in (pol.reason_codes[r],)
                    ],
                    "control_group": control[i],
                    "holdout_action": h_action[i],
                    "holdout_channel": h_channel[i],
                    "cold_start": cold[i],
                    "fallback": bool(fallbacks[i]),
                    "fallbacks": [FALLBACKS[k] for k in fallbacks[i]],
                    "propensity": propensity[i],
                    "exploration": explored[i],
                    "model_versions": dict(self.model_versions),
                    "decision_id": ids[i],
                }
            )
        return out

    def _reason_text(self, i: int, code: str, text: str) -> str:
        if code == "best_ev":
            held = bool(self.control_group[i])
            a = int(self.holdout_action_idx[i] if held else self.action_idx[i])
            c = int(self.holdout_channel_idx[i] if held else self.channel_idx[i])
            how = "learned from randomised sends" if self.learned[i] else "the catalogue's prior"
            return (
                f"{self.policy.actions[a]} by {CHANNELS[c]} {'would be' if held else 'is'} the best of "
                f"{int(self.n_options[i])} eligible option(s): it adds {float(self.best_expected_value[i]):.3f} "
                f"against sending nothing, net of its cost ({how})"
            )
        if code == "exploration":
            a, c = int(self.action_idx[i]), int(self.channel_idx[i])
            g, gc = int(self.holdout_action_idx[i]), int(self.holdout_channel_idx[i])
            drawn = NO_ACTION if a < 0 else f"{self.policy.actions[a]} by {CHANNELS[c]}"
            best = NO_ACTION if g < 0 else f"{self.policy.actions[g]} by {CHANNELS[gc]}"
            return f"{drawn}: {text}; probability {float(self.propensity[i]):.4f}, the best option being {best}"
        if code == "nothing_worth_cost":
            return f"{text}: best of {int(self.n_options[i])} option(s) is {float(self.best_expected_value[i]):.3f}"
        return text

    def to_frame(self) -> pd.DataFrame:
        """A flat table for batch output: categoricals for names, ';'-joined reason and fallback codes."""
        pol = self.policy
        act_cats, no_action = [*pol.actions, NO_ACTION], len(pol.actions)
        holdout = np.where(self.holdout_action_idx < 0, no_action, self.holdout_action_idx)
        data = {
            "customer_id": self.customer_ids,
            "action": pd.Categorical.from_codes(np.where(self.action_idx < 0, no_action, self.action_idx), act_cats),
            "channel": pd.Categorical.from_codes(self.channel_idx.astype(np.int64), list(CHANNELS)),
            "send_at": self.send_at,
            "send_at_utc": pd.DatetimeIndex(self.send_at_utc, tz=None).tz_localize("UTC"),
            "stage": pd.Categorical.from_codes(self.stage_idx.astype(np.int64), list(STAGES)),
            "p_activation": self.p_activation,
            "p_churn": self.p_churn,
            **{f"p_response_{c}": self.p_response[:, j] for j, c in enumerate(CHANNELS)},
            **{f"best_hour_{k + 1}": self.best_hours[:, k] for k in range(self.best_hours.shape[1])},
            "expected_value": self.expected_value,
            "best_expected_value": self.best_expected_value,
            "learned": self.learned,
            "reasons": _joined_codes(self.reasons, pol.reason_codes),
            "control_group": self.control_group,
            "holdout_action": pd.Categorical.from_codes(np.where(~self.control_group, -1, holdout), act_cats),
            "holdout_channel": pd.Categorical.from_codes(
                np.where(self.control_group, self.holdout_channel_idx, -1).astype(np.int64), list(CHANNELS)
            ),
            "cold_start": self.cold_start,
            "fallback": self.fallback,
            "fallbacks": _joined_codes(self.fallbacks, FALLBACKS),
            "propensity": self.propensity,
            "exploration": self.exploration,
            "decision_id": self.decision_id,
        }
        df = pd.DataFrame(data)
        for k, v in self.model_versions.items():
            df[f"model_version_{k}"] = v
        return df


def _row_lists(flags: np.ndarray) -> list[list[int]]:
    """Boolean flags [n, R] -> the indices set in each row."""
    rows, cols = np.nonzero(flags)
    bounds = np.searchsorted(rows, np.arange(len(flags) + 1))
    cols = cols.tolist()
    return [cols[bounds[i] : bounds[i + 1]] for i in range(len(flags))]


def _joined_codes(flags: np.ndarray, codes: Sequence[str]) -> pd.Categorical:
    """Boolean flags [n, R] -> ';'-joined codes per row, built once per distinct combination."""
    n = len(flags)
    if n == 0:
        return pd.Categorical([])
    packed = np.packbits(flags, axis=1)
    width = -(-packed.shape[1] // 8) * 8
    words = np.pad(packed, ((0, 0), (0, width - packed.shape[1]))).view(np.uint64)
    if words.shape[1] == 1:
        inv, _ = pd.factorize(words[:, 0])
        first = np.full(inv.max() + 1, -1)
        first[inv[::-1]] = np.arange(n)[::-1]  # first row of each combination
    else:
        _, first, inv = np.unique(words, axis=0, return_index=True, return_inverse=True)
        inv = inv.ravel()
    labels = [";".join(codes[j] for j in np.flatnonzero(flags[i])) for i in first]
    return pd.Categorical.from_codes(inv, labels)
