"""A marketer's A/B/n campaign as a client would export it: two competing e-mails and a random control group,
weekly for twenty weeks, in the data contract (customers, events, assignments).

Who each e-mail works for is known: ``email_x`` persuades the B2C customers of the north, ``email_y`` the B2B
accounts, and every e-mail puts the B2C customers of the south off their next purchase."""

from __future__ import annotations

import numpy as np
import pandas as pd

T0 = pd.Timestamp("2025-06-02", tz="UTC")  # the end of the export (a Monday)
WEEKS = 20
SHARES = {"email_x": 0.4, "email_y": 0.4, "no_action": 0.2}
PERSUADED = {("north_b2c", "email_x"): 0.5, ("b2b", "email_y"): 0.5}  # P(an extra purchase) by group and e-mail
PUT_OFF = 0.6  # P(a message cancels the next purchase of a south B2C customer)
OPENED = 0.45  # share of the e-mails opened
ACTION = {
    "stages": ["active", "at_risk", "activating"],
    "objective": {"event": "purchase", "measure": "amount", "horizon_days": 30},
    "value": 0.30,
    "cost": {"email": 0.01},
    "driver": "response",
    "lift": 10.0,
    "cooldown_days": 0,
}


def group_of(customers: pd.DataFrame) -> np.ndarray:
    b2b = customers["segment"].eq("b2b").to_numpy()
    north = customers["region"].eq("north").to_numpy()
    return np.where(b2b, "b2b", np.where(north, "north_b2c", "south_b2c"))


def campaign(n: int, held_out: int, seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(customers, events, assignments, ids of the held-out customers). The held-out customers got the campaign
    like everyone else, but their assignments are kept out of the export: nothing is learned from them."""
    rng = np.random.default_rng(seed)
    total = n + held_out
    ids = np.array([f"K{i:05d}" for i in range(total)], dtype=object)
    seg = np.where(rng.random(total) < 0.35, "b2b", "b2c")
    region = np.where(rng.random(total) < 0.5, "north", "south")
    start = T0 - pd.Timedelta(days=400)
    customers = pd.DataFrame({
        "customer_id": ids, "registered_at": start + pd.to_timedelta(rng.uniform(0, 30, total), unit="D"),
        "timezone": "Europe/Paris", "segment": seg, "region": region,
        "consent_email": True, "reachable_email": True,
    })
    customers["registered_at"] = customers["registered_at"].dt.floor("s")
    group = group_of(customers)
    # natural purchases: every 12 days on average, from registration to the end
    rows = []
    for i in range(total):
        t = customers["registered_at"].iloc[i] + pd.Timedelta(days=float(rng.exponential(5)))
        while t < T0:
            rows.append((ids[i], t, "purchase", float(rng.lognormal(np.log(50), 0.3))))
            t += pd.Timedelta(days=float(rng.exponential(12)))
    purchases = pd.DataFrame(rows, columns=["customer_id", "event_timestamp", "event_type", "amount"])
    assign, extra, cancel = [], [], []
    by_customer = {c: g["event_timestamp"].to_numpy() for c, g in purchases.groupby("customer_id")}
    for w in range(WEEKS):
        when = T0 - pd.Timedelta(days=7 * (WEEKS - w) + 35) + pd.Timedelta(hours=9)
        arm = rng.choice(list(SHARES), total, p=list(SHARES.values()))
        for i in range(total):
            a = arm[i]
            if i < n:
                assign.append((ids[i], when, a, None if a == "no_action" else "email", SHARES[a], f"ab-week-{w}"))
            if a == "no_action":
                continue
            extra.append((ids[i], when, "message_sent", np.nan, a, f"ab-week-{w}"))
            if rng.random() < OPENED:
                extra.append((ids[i], when + pd.Timedelta(hours=1), "message_opened", np.nan, a, f"ab-week-{w}"))
            if rng.random() < PERSUADED.get((group[i], a), 0.0):
                t = when + pd.Timedelta(hours=float(rng.uniform(2, 48)))
                extra.append((ids[i], t, "message_converted", np.nan, a, f"ab-week-{w}"))
                extra.append((ids[i], t + pd.Timedelta(minutes=5), "purchase", float(rng.lognormal(np.log(80), 0.2)),
                              None, None))
            if group[i] == "south_b2c" and rng.random() < PUT_OFF:
                nxt = by_customer.get(ids[i], np.array([]))
                nxt = nxt[(nxt > when) & (nxt < when + pd.Timedelta(days=14))]
                if len(nxt):
                    cancel.append((ids[i], nxt[0]))
    gone = pd.DataFrame(cancel, columns=["customer_id", "event_timestamp"]).drop_duplicates()
    purchases = purchases.merge(gone.assign(_gone=True), on=["customer_id", "event_timestamp"], how="left")
    purchases = purchases[purchases["_gone"].isna()].drop(columns="_gone")
    more = pd.DataFrame(extra, columns=["customer_id", "event_timestamp", "event_type", "amount", "action_id",
                                        "campaign_id"])
    events = pd.concat([purchases, more], ignore_index=True)
    events["channel"] = np.where(events["event_type"].str.startswith("message_"), "email", None)
    registrations = customers[["customer_id", "registered_at"]].rename(columns={"registered_at": "event_timestamp"})
    events = pd.concat([events, registrations.assign(event_type="registration")], ignore_index=True)
    events = events.sort_values(["event_timestamp", "customer_id"], kind="stable").reset_index(drop=True)
    assignments = pd.DataFrame(assign, columns=["customer_id", "assigned_at", "action_id", "channel", "propensity",
                                                "campaign_id"])
    return customers, events, assignments, ids[n:]
