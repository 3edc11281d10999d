"""Who decides in the simulated loop: each arm looks at the same kind of world and hands back its day's choices.

* ``nextbest`` (learning, or frozen at day 0): the serving path itself -
  features computed from the world's tables as they stand at the start of the
  day (``features.compute.snapshot_at``, the pipeline's own code), the champion
  heads and effect model (``serving.engine.decide_arrays``), control group and
  exploration on as configured;
* ``oracle``: the same rules and control group, every option valued with its
  true increment (``analysis.evaluation.single.oracle_decision_inputs``);
* ``calendar``: the legacy calendar goes on inside the world
  (``LiveWorld.fork(calendar=True)``); ``no_action``: nothing is sent.

Every arm decides for the customers the journey engine triggers that day
(``LiveWorld.triggered``) who have no message already planned.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from nextbest.settings import Settings
from simulator.live import LiveWorld

ARMS = ("learning", "frozen", "oracle", "calendar", "no_action")
LABELS = {
    "learning": "nextbest, retrained weekly",
    "frozen": "nextbest, frozen at day 0",
    "oracle": "oracle policy (true effects)",
    "calendar": "legacy calendar",
    "no_action": "no action",
}


@dataclass
class Today:
    """The features of the customers asked about today."""

    rows: np.ndarray  # their row in the world (int64)
    ids: np.ndarray  # customer ids (object)
    X: np.ndarray  # float32 [n, F], the feature service's order
    found: np.ndarray
    timezones: list[str]


def features_today(settings: Settings, world: LiveWorld, names: list[str], skip: np.ndarray | None = None) -> Today | None:
    """The feature vectors of today's triggered customers (but those in `skip`), as the online store would hold
    them this morning."""
    from features.context import with_context
    from features.names import CONTEXT
    from features.compute import snapshot_at

    who = world.triggered() & ~world.pending()
    if skip is not None:
        who &= ~skip
    if not who.any():
        return None
    views = snapshot_at(world.customers(who), world.events(who), world.now, settings)
    columns: dict[str, np.ndarray] = {}
    first = None
    for frame in views.values():
        first = frame if first is None else first
        for c in frame.columns:
            if c not in ("customer_id", "event_timestamp", "timezone"):
                columns[c] = frame[c].to_numpy(np.float32)
    ids = first["customer_id"].to_numpy(dtype=object)
    tz = first["timezone"].astype(str).tolist()
    stored = [n for n in names if n not in CONTEXT]
    X = with_context(names, stored, np.column_stack([columns[n] for n in stored]), tz, world.now)
    rows = world.ids.get_indexer(ids).astype(np.int64)
    return Today(rows, ids, X, np.ones(len(ids), bool), tz)


def decide_nextbest(policy, scorer, index: dict, today: Today, world: LiveWorld, tag: str):
    """The serving path's decisions for today's customers."""
    from serving.engine import decide_arrays

    return decide_arrays(policy, scorer, index, today.ids, today.X, today.found, today.timezones,
                         world.now.to_pydatetime(), request_id=f"loop:{tag}:{world.now.date()}")


def decide_oracle(settings: Settings, policy, scorer, index: dict, today: Today, world: LiveWorld):
    """The oracle policy's decisions: the same rules and control group, true increments, true send hours."""
    from analysis.evaluation.policies import OracleIncrements
    from analysis.evaluation.single import oracle_decision_inputs
    from serving.policy import decide

    who = np.zeros(len(world.ids), bool)
    who[today.rows] = True
    truth = OracleIncrements(world.oracle(who), today.ids, world.now, settings)
    scores = scorer.score(today.X, policy)
    inputs, _ = oracle_decision_inputs(policy, truth, index, today.X, today.found, today.timezones,
                                       world.now.to_pydatetime(), scores, f"loop:oracle:{world.now.date()}")
    return decide(inputs, dataclasses.replace(policy, exploration_share=0.0))


def hand_in(world: LiveWorld, today: Today, decisions, tag: str) -> None:
    """Today's decisions as the world's assignments: sends at their local hour, control members held out."""
    world.assign(today.rows, decisions.action_idx, decisions.channel_idx, decisions.best_hours[:, 0],
                 decisions.propensity, decisions.control_group, f"{tag}-{world.now.date()}")
