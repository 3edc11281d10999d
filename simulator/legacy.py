"""The legacy marketing programme the simulated world lives under before (and, for the calendar baseline,
beside) any decision policy: a calendar of campaigns (a weekly e-mail on Tuesday, a weekly push on Thursday,
an SMS every two weeks on Wednesday, a print mailing on the first Monday of the month) and an in-app message
on visits (at most one a week, one campaign per month). Each campaign goes to the consented and reachable
customers at a local hour that rotates between campaigns, with the catalogue action drawn by lifecycle stage
(known probabilities), and holds a random share out as control.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from nextbest.vocabulary import CHANNEL_INDEX as CH, STAGES

CONTROL_SHARE = 0.10
SEND_HOURS = (8, 10, 12, 15, 18, 20)  # local hours the calendar campaigns rotate through
INAPP_MIN_GAP_DAYS = 7.0
# legacy targeting: weight of each action when several fit the stage and channel
LEGACY_WEIGHTS = {
    "welcome": 5.0,
    "activation_nudge": 3.0,
    "activation_nudge_incentive": 1.0,
    "second_use_nudge": 5.0,
    "cross_sell": 3.0,
    "loyalty_reward": 1.5,
    "satisfaction_survey": 1.0,
    "anti_attrition_offer": 3.0,
    "win_back": 5.0,
    "contact_enrichment": 2.0,
}


def choose_actions(sim, idx, stage, ch: int, t):
    """The legacy calendar's action for each target, drawn with the legacy weights among the eligible
    actions, and its probability: (action index or -1, probability)."""
    k = len(idx)
    W = np.zeros((k, len(sim.action_ids)))
    tenure = t - sim.reg[idx]
    for a in range(len(sim.action_ids)):
        if not sim.a_channel[a, ch]:
            continue
        m = sim.a_stage[a][stage] & (tenure <= sim.a_max_tenure[a])
        req = sim.a_requires[a]
        if req == "missing_email":
            m &= ~sim.reach[idx, CH["email"]]
        elif req == "churn_or_rfm_drop":  # the legacy calendar knows no churn score: at-risk stage only
            m &= stage == STAGES.index("at_risk")
        W[:, a] = m * LEGACY_WEIGHTS.get(sim.action_ids[a], 1.0)
    tot = W.sum(axis=1)
    u = sim.rng.random(k) * tot
    choice = np.minimum((np.cumsum(W, axis=1) <= u[:, None]).sum(axis=1), len(sim.action_ids) - 1)
    prob = W[np.arange(k), choice] / np.where(tot > 0, tot, 1.0)
    return np.where(tot > 0, choice, -1), prob


def target(sim, idx, ch: int, camp, ts, hour_local) -> None:
    """Pick the action by stage (randomly, with known probabilities), hold out the control share at random,
    send to the others."""
    stage = sim.stage(idx, ts)
    act, prob = choose_actions(sim, idx, stage, ch, ts)
    ok = act >= 0
    idx, ts, act, stage, prob = idx[ok], ts[ok], act[ok], stage[ok], prob[ok]
    camp = np.broadcast_to(np.asarray(camp, np.int32), ok.shape)[ok]
    hour_local = np.broadcast_to(np.asarray(hour_local, float), ok.shape)[ok]
    control = sim.rng.random(len(idx)) < CONTROL_SHARE
    propensity = np.where(control, CONTROL_SHARE, (1.0 - CONTROL_SHARE) * prob)
    sim._targets.append((idx.astype(np.int32), camp, np.full(len(idx), ch, np.int8), act.astype(np.int16),
                         stage, ts.copy(), control, propensity))
    s = ~control
    sim.send(idx[s], ch, act[s], camp[s], ts[s], hour_local[s])


def calendar(sim, d: int) -> None:
    """The legacy campaigns of simulated day index `d`."""
    day = sim.start + timedelta(days=d - int(sim.S))
    wd = day.weekday()
    week = (d - int(sim.S)) // 7
    plans = []
    if wd == 1:
        plans.append(("email", SEND_HOURS[week % 6]))
    if wd == 3:
        plans.append(("push", SEND_HOURS[(week + 3) % 6]))
    if wd == 2 and week % 2 == 0:
        plans.append(("sms", SEND_HOURS[(week // 2 + 1) % 6]))
    if wd == 0 and day.day <= 7:
        plans.append(("print", SEND_HOURS[(day.month + 4) % 6]))
    for channel, hour in plans:
        ch = CH[channel]
        camp = sim.campaign(f"{channel}-{day.isoformat()}", channel, "calendar", hour, day)
        idx = np.flatnonzero(sim.consent_now[:, ch] & sim.reach[:, ch] & (sim.reg < d + 1.5))
        local = d + (hour + sim.rng.uniform(0.0, 0.25, len(idx))) / 24.0
        ts = sim.to_utc(idx, local)
        ok = (sim.reg[idx] < ts) & (ts < sim.E)
        target(sim, idx[ok], ch, camp, ts[ok], float(hour))


def in_app_campaigns(sim) -> None:
    """One in-app campaign per calendar month of the simulated period (``sim.inapp_campaign``: day -> campaign)."""
    sim.inapp_campaign = np.zeros(int(sim.E) + 2, np.int16)
    months: dict[tuple[int, int], int] = {}
    for d in range(int(sim.S), int(sim.E) + 2):
        day = sim.start + timedelta(days=d - int(sim.S))
        key = (day.year, day.month)
        if key not in months:
            months[key] = sim.campaign(f"in_app-{day.year}-{day.month:02d}", "in_app", "on_visit", None,
                                       day.replace(day=1))
        sim.inapp_campaign[d] = months[key]


def in_app_on_visit(sim, idx, t, ts) -> None:
    """The in-app message shown on a visit at `ts` (scheduled at `t`) while the legacy programme runs: to
    consented, reachable customers, at most one every INAPP_MIN_GAP_DAYS."""
    in_app = CH["in_app"]
    ok = (ts >= sim.S) & (np.maximum(t, ts) < sim.legacy_until) & sim.consent_now[idx, in_app] & \
        sim.reach[idx, in_app]
    ok &= ts - sim.last_inapp[idx] >= INAPP_MIN_GAP_DAYS
    if ok.any():
        j, tj = idx[ok], ts[ok] + sim.rng.uniform(0.2, 2.0, ok.sum()) / 1440
        camp = sim.inapp_campaign[np.clip(np.floor(tj).astype(int), 0, len(sim.inapp_campaign) - 1)]
        sim.last_inapp[j] = tj
        target(sim, j, in_app, camp, tj, np.mod(sim.to_local(j, tj), 1.0) * 24.0)
