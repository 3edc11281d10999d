"""What a policy's decisions are truly worth: the oracle's incremental value of each chosen option."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from analysis.evaluation.policies import Choice
from nextbest.settings import Settings
from nextbest.vocabulary import CHANNELS


@dataclass
class Valued:
    value: np.ndarray  # float64 [n]: true incremental value of each customer's decision, net of cost (0 = nothing)
    undefined: int  # sends the oracle cannot value (unknown customer): counted at minus their cost
    consent_violations: int  # sends on a channel the customer is not consented and reachable on


def true_value(oracle, ids: np.ndarray, choice: Choice, as_of, settings: Settings,
               actions: Sequence[str]) -> Valued:
    """The oracle's incremental value of each decision at its send hour (0 for no action), one call per action.
    `as_of`: one decision time, or one per decision (a ``pd.DatetimeIndex``).

    A send the oracle cannot value (an unknown id) or on a channel it knows to be closed is worth minus its
    cost; closed channels are also counted as consent violations."""
    n = len(ids)
    value = np.zeros(n)
    undefined = violations = 0
    for a, name in enumerate(actions):
        rows = np.flatnonzero(choice.action == a)
        if not len(rows):
            continue
        ch = choice.channel[rows].astype(int)
        v = oracle.incremental_value(ids[rows], name, np.array(CHANNELS, dtype=object)[ch],
                                     choice.hour[rows].astype(float), as_of if np.ndim(as_of) == 0 else as_of[rows],
                                     settings.actions)
        cost = np.array([settings.actions[name].cost.get(c, 0.0) for c in CHANNELS])[ch]
        closed, bad = np.isneginf(v), np.isnan(v)
        violations += int(closed.sum())
        undefined += int(bad.sum())
        value[rows] = np.where(closed | bad, -cost, v)
    return Valued(value, undefined, violations)
