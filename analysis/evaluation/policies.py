"""The policies an evaluation compares, each a function returning one :class:`Choice` per customer.

Every policy honours the same contact rules (consent and reachability, caps,
relay, cooldowns, stage, tenure, conditions, quiet hours), through the
decision policy itself where it decides:

* ``nextbest`` - the serving path: champion heads and the effect model;
* ``oracle`` - the same rules fed the world's truth: true outcome scores, true
  send hours and the true increment of every option (:class:`OracleIncrements`);
* ``response_ranked`` - the same rules and heads without the effect model:
  options ranked by the catalogue's prior, P(click) x driver score x prior per
  click (how nextbest decided before it learned effects);
* ``calendar`` - the stage's calendar action at 10:00 on the first open channel;
* ``random`` - a random eligible option at a random allowed hour;
* ``no_action`` - nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextbest.settings import Settings
from nextbest.vocabulary import CHANNELS, STAGES


@dataclass
class Choice:
    """One policy's decisions over the sample (indices into the catalogue and CHANNELS)."""

    action: np.ndarray  # int16 [n]; -1 = no_action
    channel: np.ndarray  # int8 [n]; -1 = none
    hour: np.ndarray  # int8 [n]; local send hour, -1 when nothing is sent
    learned: np.ndarray | None = None  # bool [n]: the option's value came from the effect model

    @property
    def sends(self) -> np.ndarray:
        return self.action >= 0


def choice_of(d) -> Choice:
    """A :class:`serving.policy.Decisions` as a Choice (the send hour is ``best_hours[:, 0]``)."""
    hour = d.best_hours[:, 0].astype(np.int8)
    return Choice(d.action_idx.astype(np.int16), d.channel_idx.astype(np.int8),
                  np.where(d.action_idx >= 0, hour, -1).astype(np.int8), d.learned & (d.action_idx >= 0))


def no_action(n: int) -> Choice:
    return Choice(np.full(n, -1, np.int16), np.full(n, -1, np.int8), np.full(n, -1, np.int8))


class OracleIncrements:
    """The world's true increment of any option (``serving.policy.rules.Increments``), for the oracle policy."""

    def __init__(self, oracle, ids: np.ndarray, as_of: pd.Timestamp, settings: Settings):
        self.oracle, self.ids, self.as_of, self.settings = oracle, ids, as_of, settings

    def learned(self, action: str) -> bool:
        return True

    def __call__(self, rows, action, channel, p_response, p_activation, p_churn, hour):
        v = self.oracle.incremental_value(self.ids[rows], action, CHANNELS[channel], np.asarray(hour, float),
                                          self.as_of, self.settings.actions)
        cost = self.settings.actions[action].cost.get(CHANNELS[channel], 0.0)
        return np.where(np.isfinite(v), v + cost, -np.inf)  # the policy subtracts the cost itself


def calendar_actions(settings: Settings, weights: dict[str, float]) -> dict[str, str | None]:
    """Stage -> the calendar's action: among the catalogue actions of the stage without a tenure limit or a
    ``missing_email`` condition, the one the legacy calendar weighs most (ties: catalogue order)."""
    out: dict[str, str | None] = {}
    for stage in STAGES:
        options = [a for a, act in settings.actions.items()
                   if stage in act.stages and act.max_tenure_days is None and act.requires != "missing_email"]
        out[stage] = max(options, key=lambda a: weights.get(a, 1.0)) if options else None
    return out


def calendar_choice(settings: Settings, weights: dict[str, float], pol, stage: np.ndarray, eligible: np.ndarray,
                    open_: np.ndarray) -> Choice:
    """The stage's calendar action at the default hour on the first open channel of the action, to everyone for
    whom it is eligible, whatever it is worth."""
    index = {a: i for i, a in enumerate(pol.actions)}
    per_stage = calendar_actions(settings, weights)
    stage_action = np.array([index[per_stage[s]] if per_stage[s] else -1 for s in STAGES], np.int16)
    a = stage_action[stage]
    n = len(stage)
    rows = np.arange(n)
    has = a >= 0
    ok = np.zeros((n, len(CHANNELS)), bool)
    ok[has] = pol.allowed[a[has]] & open_[has]
    send = has & eligible[rows, np.maximum(a, 0)] & ok.any(axis=1)
    first = ok.argmax(axis=1)
    return Choice(np.where(send, a, -1).astype(np.int16), np.where(send, first, -1).astype(np.int8),
                  np.where(send, pol.default_hour, -1).astype(np.int8))


def eligibility(pol, col, found: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stage [n], eligible actions [n, A], open channels [n, C]) by the policy's own rules, for customers whose
    features `col` reads (``serving.policy.inputs._Columns``), without the churn head: the baselines know none."""
    from serving.policy.rules import candidate_actions, channel_mask, churn_scores, lifecycle_stage

    stage, _ = lifecycle_stage(col("stage_code"), found)
    eligible, _ = candidate_actions(pol, stage, col, churn_scores(None, stage, found)[0], None)
    return stage, eligible, channel_mask(pol, col).open


def random_choice(pol, eligible: np.ndarray, open_: np.ndarray, seed: int) -> Choice:
    """A uniformly random eligible (action, channel) pair at a uniformly random allowed hour."""
    rng = np.random.default_rng(seed)
    n, A = eligible.shape
    C = len(CHANNELS)
    pairs = eligible[:, :, None] & pol.allowed[None, :, :] & open_[:, None, :]
    key = np.where(pairs, rng.random((n, A, C)), -1.0).reshape(n, A * C)
    best = key.argmax(axis=1)
    send = pairs.reshape(n, A * C).any(axis=1)
    hours = np.flatnonzero(pol.allowed_hours)
    planned = hours[rng.integers(0, len(hours), n)].astype(np.int8)
    return Choice(np.where(send, best // C, -1).astype(np.int16), np.where(send, best % C, -1).astype(np.int8),
                  np.where(send, planned, -1).astype(np.int8))
