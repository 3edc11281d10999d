"""Small synthetic worlds in the input data contract, for feature tests and timings."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextbest.vocabulary import CHANNELS

# the default catalogue's action ids (configs/actions.yaml); a world may name any others
DEFAULT_ACTIONS = (
    "welcome", "activation_nudge", "activation_nudge_incentive", "second_use_nudge", "cross_sell",
    "loyalty_reward", "satisfaction_survey", "anti_attrition_offer", "win_back", "contact_enrichment",
)

ZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney")


def make_world(
    n_customers: int = 200,
    days: int = 120,
    seed: int = 0,
    start: str = "2025-01-01",
    messages: bool = True,
    sends_per_day: float = 0.25,
    actions: tuple[str, ...] = DEFAULT_ACTIONS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(customers, events) frames with tz-aware UTC timestamps, purchases, visits and (optionally) messages."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start, tz="UTC")
    span = days * 86400.0
    ids = np.array([f"C{i:07d}" for i in range(n_customers)], dtype=object)
    reg_s = rng.uniform(0, span * 0.8, n_customers)
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "registered_at": t0 + pd.to_timedelta(reg_s, unit="s"),
            "timezone": rng.choice(ZONES, n_customers),
            "segment": rng.choice(["b2c", "b2b"], n_customers, p=[0.8, 0.2]),
            "region": rng.choice(["north", "south", "east", "west"], n_customers),
            "company_size": rng.choice(["micro", "small", "medium", "large", "unknown"], n_customers),
            "sector": rng.choice(["retail", "food", "services"], n_customers),
            **{f"consent_{c}": rng.random(n_customers) < 0.7 for c in CHANNELS},
            **{f"reachable_{c}": rng.random(n_customers) < 0.8 for c in CHANNELS},
        }
    )
    customers["registered_at"] = customers["registered_at"].dt.floor("s")

    def poisson_times(rate_per_day: np.ndarray, begin_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        active_days = np.maximum(span - begin_s, 0) / 86400.0
        n = rng.poisson(rate_per_day * active_days)
        who = np.repeat(np.arange(n_customers), n)
        when = begin_s[who] + rng.random(len(who)) * (span - begin_s[who])
        return who, when

    parts = [pd.DataFrame({"c": np.arange(n_customers), "s": reg_s, "event_type": "registration"})]
    buyer = rng.random(n_customers) < 0.7
    p_rate = np.where(buyer, rng.lognormal(np.log(1 / 20), 0.8, n_customers), 0.0)
    first_delay = rng.exponential(10 * 86400.0, n_customers)
    who, when = poisson_times(p_rate, reg_s + first_delay)
    parts.append(pd.DataFrame({"c": who, "s": when, "event_type": "purchase", "amount": rng.lognormal(3.5, 0.6, len(who))}))
    who, when = poisson_times(p_rate * 2 + 0.02, reg_s)
    parts.append(pd.DataFrame({"c": who, "s": when, "event_type": "visit"}))
    if messages:
        who, when = poisson_times(np.full(n_customers, sends_per_day), reg_s)
        ch = rng.choice(len(CHANNELS), len(who), p=[0.5, 0.2, 0.15, 0.1, 0.05])
        act = rng.choice(actions, len(who))
        base = dict(channel=np.array(CHANNELS, dtype=object)[ch], action_id=act)
        parts.append(pd.DataFrame({"c": who, "s": when, "event_type": "message_sent", **base}))
        parts.append(pd.DataFrame({"c": who, "s": when + 5, "event_type": "message_delivered", **base}))
        p_open = np.array([0.3, 0.5, 0.2, 0.4, 0.0])[ch] * rng.uniform(0.2, 1.8, n_customers)[who]
        opened = rng.random(len(who)) < p_open
        t_open = when + rng.exponential(3 * 3600.0, len(who))
        parts.append(pd.DataFrame({"c": who[opened], "s": t_open[opened], "event_type": "message_opened",
                                   "channel": base["channel"][opened], "action_id": act[opened]}))
        clicked = opened & (rng.random(len(who)) < 0.3)
        parts.append(pd.DataFrame({"c": who[clicked], "s": t_open[clicked] + 60, "event_type": "message_clicked",
                                   "channel": base["channel"][clicked], "action_id": act[clicked]}))
        conv = clicked & (rng.random(len(who)) < 0.2)
        parts.append(pd.DataFrame({"c": who[conv], "s": t_open[conv] + 600, "event_type": "message_converted",
                                   "channel": base["channel"][conv], "action_id": act[conv]}))
        unsub = rng.random(len(who)) < 0.002
        parts.append(pd.DataFrame({"c": who[unsub], "s": when[unsub] + 3600, "event_type": "unsubscribed",
                                   "channel": base["channel"][unsub]}))
    ev = pd.concat(parts, ignore_index=True)
    ev = ev[ev["s"] < span]
    events = pd.DataFrame(
        {
            "customer_id": ids[ev["c"].to_numpy()],
            "event_timestamp": (t0 + pd.to_timedelta(ev["s"].to_numpy(), unit="s")).floor("s"),
            "event_type": ev["event_type"].to_numpy(),
            "channel": ev.get("channel", pd.Series(None, index=ev.index)).to_numpy(),
            "amount": ev.get("amount", pd.Series(np.nan, index=ev.index)).to_numpy(),
            "action_id": ev.get("action_id", pd.Series(None, index=ev.index)).to_numpy(),
        }
    )
    events["campaign_id"] = None
    events = events.sort_values(["event_timestamp", "customer_id"], kind="stable").reset_index(drop=True)
    return customers, events
