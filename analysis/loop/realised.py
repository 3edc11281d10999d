"""What an arm of the loop truly produced: its world's outcomes against the no-action world's, valued as the
catalogue values them.

The loop's daily value sums each message's true expected increment at its send time. That misses what one
message does to the next and what lasts past an objective's horizon: a lapse a message caused loses every
later purchase, an unsubscription closes the channel for good, a customer a message brought back keeps
buying, a second conversion while one is pending is lost. The realised value counts all of it: the arm's
world and the no-action world live the same customers from the same day-0 state, and the difference of what
they produce (purchases, the actions' own conversions, minus the incentives paid and the sends' cost), after
the arms stop deciding and the horizons run out, is the arm's effect.

The two worlds draw their chance events from streams that part at the first difference, so the difference
also holds noise. The loop measures it: extra no-action worlds reseeded at day 0 (the noise twins) give the
spread of one world's outcome, and the interval of an arm's realised value is +-1.96 x that spread x
sqrt(1 + 1 / draws).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

REALISED_EVENTS = ("purchase", "visit", "message_sent", "message_converted")


def unit_values(catalogue: Mapping) -> dict[tuple[str, str], float]:
    """Currency per unit of each shared objective, (event, measure) -> value: purchases and visits are one
    outcome whichever action asks for them, valued at the median of the values of the actions that do."""
    by: dict[tuple[str, str], list[float]] = {}
    for act in catalogue.values():
        o = act.objective
        if o.event != "message_converted":
            by.setdefault((o.event, o.measure), []).append(float(act.value))
    return {k: float(np.median(v)) for k, v in by.items()}


def outcome_value(events: pd.DataFrame, catalogue: Mapping) -> dict[str, float]:
    """The value of what `events` hold (the contract's events of one world over one period): the shared
    objectives (purchase amounts or counts, visits) at their unit values, each action's own conversions where
    they are its objective, minus the incentives paid (every conversion of an incentive action: a converted
    message or a redeemed one) and the cost of every send. Returns the parts and their ``total``."""
    kind = events["event_type"].astype(str).to_numpy()
    units = unit_values(catalogue)
    gain = 0.0
    for (event, measure), value in units.items():
        rows = events[kind == event]
        gain += value * (float(rows["amount"].fillna(0.0).sum()) if measure == "amount" else len(rows))
    conv = events[kind == "message_converted"]
    per_action = conv["action_id"].astype(str).value_counts()
    own = paid = 0.0
    for action, count in per_action.items():
        act = catalogue.get(action)
        if act is None:
            continue
        if act.objective.event == "message_converted":
            own += act.value * count
        paid += act.incentive * count
    sent = events[kind == "message_sent"]
    pairs = pd.DataFrame({"a": sent["action_id"].astype(str).to_numpy(), "c": sent["channel"].astype(str).to_numpy()})
    cost = 0.0
    for (action, channel), count in pairs.value_counts().items():
        act = catalogue.get(action)
        cost += (act.cost.get(channel, 0.0) if act is not None else 0.0) * count
    return {"objectives": gain, "own_conversions": own, "incentives": paid, "cost": cost,
            "sends": int(len(sent)), "total": gain + own - paid - cost}


def realised(totals: Mapping[str, float], no_action: list[float]) -> tuple[dict[str, dict], dict]:
    """Each arm's realised incremental value (its total minus the mean of the no-action draws) with the 95%
    noise interval from the draws' spread; `no_action` holds the no-action arm's total and its twins'. Returns
    the arms' figures and the noise (sd of one world's total, draws, the interval's half width)."""
    draws = np.asarray(no_action, float)
    base = float(draws.mean())
    sd = float(draws.std(ddof=1)) if len(draws) > 1 else float("nan")
    half = float(1.96 * sd * np.sqrt(1.0 + 1.0 / len(draws)))
    arms = {arm: {"value": float(t) - base, "low": float(t) - base - half, "high": float(t) - base + half}
            for arm, t in totals.items()}
    return arms, {"sd": sd, "draws": len(draws), "half_width": half}
