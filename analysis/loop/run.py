"""`nextbest simulate-loop`: the learning loop lived day by day on a causal world, beside the policies it must beat.

1. A world of ``customers`` lives ``legacy_days`` under the legacy calendar (randomised, with controls); its
   tables are exported, the features built and every model trained from them (the day-0 models).
2. The world is forked five ways at the start of day 0 (same customers, same state, same random stream):
   nextbest learning, nextbest frozen at day 0, the oracle policy, the legacy calendar, no action
   (``analysis/loop/arms.py``). The decision policy's catalogue has its hand-set lifts rotated between actions
   (``wrong_lifts``), so what nextbest gets right it has learned.
3. Every day each arm decides for the customers the journey engine triggers (exploration and control group on
   as configured); the world sends the messages and responds (clicks, conversions, purchases, lapses,
   unsubscriptions); what happened is in the next morning's features.
4. Every ``retrain_every`` days the learning arm's tables (its own decisions as randomised assignments with
   their propensities, and what followed) are exported, the features rebuilt and the effect model retrained
   and held @challenger; the policy gate (``nextbest gate --logged``) promotes it only if its doubly robust
   value on the logged decisions beats the champion's, and a promoted version decides from the next day. (The
   Qini gate of ``nextbest train`` compares treated rows with controls without their propensities: on the
   product's own logs, where the policy chose who got what, it misjudges.)
5. Each day's assignments are valued with the world's truth (``Oracle.incremental_value`` at each message's
   send time, net of cost); messages, unsubscriptions, activations of never-buyers and lapses are counted from
   each arm's own events.
6. After the last day nobody sends (the calendar stops too) while the objectives' horizons run out
   (``tail_days``); each arm's realised value is then what its world produced against the no-action world,
   with the noise measured on ``noise_twins`` reseeded no-action worlds (``analysis/loop/realised.py``).
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.loop.arms import ARMS, LABELS
from nextbest.settings import Settings
from nextbest.vocabulary import CHANNELS

LEGACY_DAYS = 365
NOISE_TWINS = 3  # reseeded no-action worlds that measure the noise of a realised value


def day0_models(settings: Settings, world, step) -> dict:
    """Export the world as it stands, build and register its features, train every model."""
    from features import pipeline, store
    from simulator.world import save_world
    from training.train import train_all

    step(f"day 0: exporting the world and building its features ({world.now:%Y-%m-%d})")
    save_world(world.world(), settings.world_dir)
    pipeline.build(settings)
    store.apply(settings)
    step("day 0: training the heads and the effect model")
    results = train_all(settings)
    return {r.head: {"status": r.status, "version": r.version, "promoted": r.promoted} for r in results}


def _retrain(settings: Settings, world, step) -> dict:
    """The learning arm's weekly retrain: its tables exported, features rebuilt, the effect model retrained and
    held @challenger, then judged by the policy gate on the logged decisions (the legacy campaigns' and the loop's
    own, with their propensities): champion only if its doubly robust value beats the champion's."""
    from analysis.gate import policy_gate
    from features import pipeline
    from simulator.world import save_world
    from training.train import train_all

    step(f"{world.now:%Y-%m-%d}: retraining the effect model on the loop's own logs")
    save_world(world.world(), settings.world_dir)
    pipeline.build(settings)
    (r,) = train_all(settings, heads=["effect"], hold=True)
    out = {"day": str(world.now.date()), "status": r.status, "version": r.version, "promoted": False,
           "message": r.message, "qini": (r.metrics or {}).get("qini")}
    if r.status == "trained" and r.version:
        g = policy_gate(settings, settings.world_dir, n_boot=200)
        out.update(promoted=bool(g["promoted"]), message=g["reason"], dr_difference=g["difference"],
                   dr_low=g["low"], dr_high=g["high"])
    return out


def _value_rows(settings: Settings, world, rows: tuple, since: pd.Timestamp) -> tuple[float, int, int]:
    """(true incremental value, sends, sends on a closed channel) of raw assignment rows of one arm's day, which
    began at `since` (consent as it was then)."""
    from analysis.evaluation.policies import Choice
    from analysis.evaluation.value import true_value

    cust, _, ch, act, _, ts, control, _ = rows
    send = (act >= 0) & ~control
    if not send.any():
        return 0.0, 0, 0
    idx, ch, act, ts = cust[send].astype(np.int64), ch[send], act[send], ts[send]
    who = np.zeros(len(world.ids), bool)
    who[idx] = True
    hour = np.mod(world.sim.to_local(idx, ts), 1.0) * 24.0
    as_of = world.sim.t0 + pd.to_timedelta(np.round(ts * 86400.0), unit="s")
    ids = world.ids.to_numpy(dtype=object)[idx]
    v = true_value(world.oracle(who, consent_at=since), ids, Choice(act, ch, hour), pd.DatetimeIndex(as_of), settings,
                   list(settings.actions))
    return float(v.value.sum()), int(send.sum()), v.consent_violations


def _outcomes(world, start: pd.Timestamp, never_bought: np.ndarray, days: pd.DatetimeIndex) -> dict:
    """Per-day counts from one arm's own events and lives since `start`."""
    ev = world.events(types=("message_sent", "unsubscribed", "purchase"))
    ev = ev[ev["event_timestamp"] >= start]
    day = ev["event_timestamp"].dt.floor("D")
    kind = ev["event_type"].astype(str)
    count = lambda m: day[m.to_numpy()].value_counts().reindex(days, fill_value=0).to_numpy()  # noqa: E731
    buys = ev[kind.eq("purchase").to_numpy()]
    rows = world.ids.get_indexer(buys["customer_id"].astype(str))
    first = buys[never_bought[rows]].groupby(buys["customer_id"].astype(str)[never_bought[rows]].to_numpy())[
        "event_timestamp"].min().dt.floor("D")
    lives = world.lives()
    lapses = lives[(~lives["alive"]) & (lives["at"] >= start)]["at"].dt.floor("D")
    return {"messages": count(kind.eq("message_sent")), "unsubscribes": count(kind.eq("unsubscribed")),
            "activations": first.value_counts().reindex(days, fill_value=0).to_numpy(),
            "lapses": lapses.value_counts().reindex(days, fill_value=0).to_numpy()}


def simulate_loop(settings: Settings, days: int = 90, customers: int = 10_000, legacy_days: int = LEGACY_DAYS,
                  retrain_every: int = 7, root: Path | None = None, start: date | None = None,
                  progress=None, tail_days: int | None = None, noise_twins: int = NOISE_TWINS) -> dict:
    """Run the loop (module docstring) under `root` (default ``<data_dir>/loop``); returns the per-day measures of
    every arm, the retrains, the realised values and the totals. `tail_days` (default: the catalogue's longest
    objective horizon) are lived after the last decision day, with nothing sent."""
    from analysis.evaluation.single import wrong_lifts
    from analysis.evaluation.worlds import world_settings
    from analysis.loop.arms import decide_nextbest, decide_oracle, features_today, hand_in
    from analysis.loop.realised import REALISED_EVENTS, outcome_value, realised
    from features.store import feature_names
    from serving.policy import compile_policy
    from serving.scoring import Scorer
    from simulator.live import LiveWorld

    if days < 1 or legacy_days < 60 or retrain_every < 1 or noise_twins < 1 or (tail_days or 0) < 0:
        raise ValueError("days >= 1, legacy_days >= 60, retrain_every >= 1, noise_twins >= 1 and tail_days >= 0 "
                         "are required")
    step = progress or (lambda msg: None)
    t0 = time.perf_counter()
    seed = settings.world.seed
    s = world_settings(settings, Path(root or settings.data_dir / "loop"), seed)
    start = start or settings.world.start_date
    step(f"simulating {customers:,} customers: {legacy_days} days of the legacy calendar before day 0")
    tail = max(a.objective.horizon_days for a in s.actions.values()) if tail_days is None else int(tail_days)
    base = LiveWorld(s, customers, legacy_days, days, seed, start, tail_days=tail)
    day0 = base.now
    models = day0_models(s, base, step)
    names = feature_names(s)
    index = {n: i for i, n in enumerate(names)}
    frozen = Scorer.from_registry(s, names, compile="no")
    learning = frozen
    policy = compile_policy(wrong_lifts(s))
    never_bought = base.registered() & (base.sim.n_purch == 0)
    worlds = {a: base.fork(calendar=(a == "calendar")) for a in ARMS}
    worlds["calendar"].sim.legacy_until = base.first_day + days  # the calendar stops with the loop
    twins = [base.fork(seed=seed + 1 + k) for k in range(noise_twins)]  # no action, other chance draws
    marks = {a: base.mark() for a in ARMS}  # each arm's assignments so far (valued: those after)
    del base
    dates = pd.date_range(day0, periods=days, freq="D")
    value = {a: np.zeros(days) for a in ARMS}
    sends = {a: np.zeros(days, np.int64) for a in ARMS}
    violations = {a: 0 for a in ARMS}
    retrains = []
    for d in range(days):
        for arm in ("learning", "frozen", "oracle"):
            w = worlds[arm]
            today = features_today(s, w, names)
            if today is None:
                continue
            if arm == "oracle":
                decisions = decide_oracle(s, policy, frozen, index, today, w)
            else:
                decisions = decide_nextbest(policy, learning if arm == "learning" else frozen, index, today, w, arm)
            hand_in(w, today, decisions, arm)
        for arm, w in worlds.items():
            since = w.now
            w.next_day()
            rows = w.assignments_since(marks[arm])
            if rows is not None:
                v, n, bad = _value_rows(s, w, rows, since)
                value[arm][d], sends[arm][d] = v, n
                violations[arm] += bad
            marks[arm] = w.mark()
        if (d + 1) % retrain_every == 0 and d + 1 < days:
            r = _retrain(s, worlds["learning"], step)
            retrains.append(r)
            if r["promoted"]:
                learning = Scorer.from_registry(s, names, compile="no")
        for w in twins:
            w.next_day()
        step(f"day {d + 1}/{days}: " + ", ".join(f"{a} {value[a][d]:,.0f}" for a in ARMS))
    if tail:
        step(f"{tail} more days with nothing sent while the objectives' horizons run out")
    for _ in range(tail):
        for w in [*worlds.values(), *twins]:
            w.next_day()
    since = day0 - pd.Timedelta(days=1)  # a day-0 send at a local hour east of UTC happens the evening before

    def produced_by(w) -> dict:
        ev = w.events(types=REALISED_EVENTS)
        return outcome_value(ev[(ev["event_timestamp"] >= since).to_numpy()], s.actions)

    produced = {a: produced_by(w) for a, w in worlds.items()}
    twins_produced = [produced_by(w) for w in twins]
    real, noise = realised({a: produced[a]["total"] for a in ARMS},
                           [produced["no_action"]["total"]] + [t["total"] for t in twins_produced])
    registered = int(worlds["no_action"].registered().sum())
    arms = {}
    for arm, w in worlds.items():
        out = _outcomes(w, day0, never_bought, dates)
        arms[arm] = {"label": LABELS[arm], "value": value[arm].round(4).tolist(), "sends": sends[arm].tolist(),
                     **{k: v.tolist() for k, v in out.items()}, "consent_violations": violations[arm],
                     "realised": real[arm], "produced": produced[arm]}
    doc = {"customers": customers, "registered_at_end": registered, "never_bought_at_day0": int(never_bought.sum()),
           "legacy_days": legacy_days, "days": days, "seed": seed, "day0": str(day0.date()),
           "retrain_every": retrain_every, "dates": [str(x.date()) for x in dates], "arms": arms,
           "tail_days": tail, "noise": noise,
           "no_action_twins": twins_produced,
           "day0_models": models, "retrains": retrains, "channels": list(CHANNELS),
           "seconds": round(time.perf_counter() - t0, 1)}
    doc["summary"] = summary(doc)
    return doc


def summary(doc: dict, last_days: int = 28) -> dict:
    """Per arm: value over the whole loop and per day over its last `last_days` days (also as a share of the
    oracle's), messages per customer per 30 days, unsubscriptions, activations of day-0 never-buyers, lapses."""
    k = min(last_days, doc["days"])
    oracle_end = float(np.mean(doc["arms"]["oracle"]["value"][-k:]))
    oracle_total = float(np.sum(doc["arms"]["oracle"]["value"]))
    out = {}
    for arm, a in doc["arms"].items():
        end = float(np.mean(a["value"][-k:]))
        total = float(np.sum(a["value"]))
        out[arm] = {
            "label": a["label"], "value": total, "value_per_day_end": end,
            "share_of_oracle": total / oracle_total if oracle_total > 0 else None,
            "share_of_oracle_end": end / oracle_end if oracle_end > 0 else None,
            "messages_per_customer_30d": float(np.sum(a["messages"])) / max(doc["registered_at_end"], 1)
            * 30.0 / doc["days"],
            "unsubscribes": int(np.sum(a["unsubscribes"])), "activations": int(np.sum(a["activations"])),
            "lapses": int(np.sum(a["lapses"])), "consent_violations": a["consent_violations"],
            "realised": a["realised"]["value"], "realised_low": a["realised"]["low"],
            "realised_high": a["realised"]["high"],
        }
    out["window_days"] = k
    return out


def write(doc: dict, out_dir: Path) -> dict[str, Path]:
    """docs/loop.{json,md,png}."""
    from analysis.loop.document import markdown, plot

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "loop.json", "md": out_dir / "loop.md", "png": out_dir / "loop.png"}
    paths["json"].write_text(json.dumps(doc, indent=2, default=str) + "\n")
    plot(doc, paths["png"])
    paths["md"].write_text(markdown(doc, paths["png"].name))
    return paths

