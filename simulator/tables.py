"""A finished (or paused) simulation read out as tables: the contract's customers and events, the campaign
targets and their assignments, when customers were buying, and the hidden truth behind them. The event codes
the simulation's buffers hold are :data:`ET`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextbest.vocabulary import CHANNEL_INDEX as CH, CHANNELS, EVENT_TYPES, NO_ACTION, STAGES
from simulator.formulas import HABIT_DROPOUT_MULTIPLIER
from simulator.population import B2B_SECTORS, B2C_SECTORS, COMPANY_SIZES, REGIONS, SEGMENTS, TIMEZONES

ET = {e: i for i, e in enumerate(EVENT_TYPES)}  # event type codes in the simulation's buffers


def _release_memory() -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise); a no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _timestamps(sim, t) -> pd.Series:
    """Day offsets as UTC timestamps (whole seconds); non-finite -> NaT."""
    sec = np.round(np.asarray(t, float) * 86400.0)
    ok = np.isfinite(sec)
    ns = np.where(ok, sec, 0).astype(np.int64) * 1_000_000_000 + sim.t0.value
    ns[~ok] = np.iinfo(np.int64).min
    return pd.Series(pd.DatetimeIndex(ns.view("M8[ns]")).tz_localize("UTC"))


def customers(sim, ids: pd.Index) -> pd.DataFrame:
    b2b = sim.segment == 1
    sector = np.where(b2b, np.array(B2B_SECTORS, object)[np.maximum(sim.sector_b2b, 0)],
                      np.array(B2C_SECTORS, object)[np.maximum(sim.sector_b2c, 0)])
    cols = {
        "customer_id": ids.to_numpy(),
        "registered_at": _timestamps(sim, sim.reg),
        "timezone": pd.Categorical.from_codes(sim.tz, TIMEZONES),
        "segment": pd.Categorical.from_codes(sim.segment, SEGMENTS),
        "region": pd.Categorical.from_codes(sim.region, REGIONS),
        "company_size": pd.Categorical(np.where(b2b, np.array(COMPANY_SIZES, object)[np.maximum(sim.size, 0)],
                                                "none"), categories=(*COMPANY_SIZES, "none")),
        "sector": pd.Categorical(sector, categories=(*B2C_SECTORS, *B2B_SECTORS)),
    }
    for c, k in CH.items():
        cols[f"consent_{c}"] = sim.consent_now[:, k]
    for c, k in CH.items():
        cols[f"reachable_{c}"] = sim.reach[:, k]
    return pd.DataFrame(cols)


def events(sim, ids: pd.Index, keep: bool = False, types: tuple[str, ...] | None = None,
           who: np.ndarray | None = None) -> pd.DataFrame:
    """The event buffers as one frame sorted by time, built column by column to bound memory. The buffers are
    handed over unless `keep` (a world still running); `types` keeps only those event types, `who` (a mask
    over the customers) only those customers' events."""
    fields = [list(f) for f in zip(*sim._events)] if sim._events else [[np.zeros(0, np.int32)]] * 7
    if not keep:
        sim._events = []
    rows = None
    if types is not None:
        rows = np.isin(np.concatenate(fields[2]), [ET[t] for t in types])
    if who is not None:
        mine = np.asarray(who, bool)[np.concatenate(fields[0])]
        rows = mine if rows is None else rows & mine

    def column(k: int) -> np.ndarray:
        out = np.concatenate(fields[k])
        fields[k] = None  # free the buffers of this column
        if not keep:
            _release_memory()
        return out if rows is None else out[rows]

    sec, cust = column(1), column(0)
    key = (sec.astype(np.int64) << 32) | cust.astype(np.int64)
    order = np.argsort(key, kind="stable")
    del key
    if len(order) < 2**31:
        order = order.astype(np.int32)
    cols = {"customer_id": pd.Categorical.from_codes(cust[order], ids)}
    del cust
    ns = sec[order].astype(np.int64)
    del sec
    ns *= 1_000_000_000
    ns += sim.t0.value
    cols["event_timestamp"] = pd.DatetimeIndex(ns.view("M8[ns]")).tz_localize("UTC")
    del ns
    sel = order
    cols["event_type"] = pd.Categorical.from_codes(column(2)[sel], EVENT_TYPES)
    cols["channel"] = pd.Categorical.from_codes(column(3)[sel], CHANNELS)
    cols["amount"] = column(4)[sel].astype(float)
    cols["action_id"] = pd.Categorical.from_codes(column(5)[sel], sim.action_ids)
    cols["campaign_id"] = pd.Categorical.from_codes(column(6)[sel], sim.campaign_ids)
    return pd.DataFrame(cols, copy=False)


def truth(sim, ids: pd.Index) -> pd.DataFrame:
    window_closed = sim.habit >= 0
    habit = pd.array(np.where(window_closed, sim.habit == 1, False), dtype="boolean")
    habit[~window_closed] = pd.NA
    cols = {
        "customer_id": ids.to_numpy(),
        "activation_propensity": -np.expm1(-sim.lam0 * sim.tau),
        "activation_hazard": sim.lam0,
        "interest_decay_days": sim.tau,
        "purchase_rate": sim.mu,
        "dropout_hazard": sim.delta,
        "second_purchase_in_window": habit,
        "dropout_hazard_effective": np.select([sim.habit == 1, sim.habit == 0],
                                              [sim.delta * HABIT_DROPOUT_MULTIPLIER, sim.delta], np.nan),
    }
    for c, k in CH.items():
        cols[f"response_{c}"] = sim.resp[:, k]
    cols.update({
        "preferred_hour": sim.pref,
        "hour_concentration": sim.kappa,
        "offer_sensitivity": sim.offer_sens,
        "basket_mean": sim.basket,
        "activated_by": pd.Categorical.from_codes(sim.activated_by - 1, ("self", "message")),
        "first_purchase_at": _timestamps(sim, sim.t1),
        "second_purchase_at": _timestamps(sim, sim.t2),
        "dropout_at": _timestamps(sim, sim.dropout),
        "alive_at_end": sim.alive.copy(),
        "persuadability": sim.persuadability,
        "sleeping_dog": sim.dog.copy(),
        "lapse_per_message": sim.harm,
    })
    for k, a in enumerate(sim.action_ids):
        cols[f"persuasion_{a}"] = sim.persuasion[:, k]
    return pd.DataFrame(cols)


def lives(sim, ids: pd.Index) -> pd.DataFrame:
    """When each customer became alive (first purchase, or a conversion after a lapse) and lapsed, in time
    order: what the oracle needs to know who was buying at any time."""
    if sim._lives:
        cust, t, up = (np.concatenate(p) for p in zip(*sim._lives))
    else:
        cust, t, up = np.zeros(0, np.int32), np.zeros(0), np.zeros(0, np.int8)
    order = np.lexsort((t, cust))
    return pd.DataFrame({"customer_id": pd.Categorical.from_codes(cust[order], ids),
                         "at": _timestamps(sim, t[order]), "alive": up[order].astype(bool)})


def targets(sim, ids: pd.Index, keep: bool = False) -> pd.DataFrame:
    """Every target of the campaigns, control included, with the action it was drawn (or would have
    received) and the probability of what it got. The buffers are handed over unless `keep`."""
    if not sim._targets:
        parts = [np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int8), np.zeros(0, np.int16),
                 np.zeros(0, np.int8), np.zeros(0), np.zeros(0, bool), np.zeros(0)]
    else:
        parts = [np.concatenate(p) for p in zip(*sim._targets)]
    if not keep:
        sim._targets = []
        _release_memory()
    cust, camp, ch, act, stage, ts, control, prop = parts
    order = np.argsort(ts, kind="stable")
    return pd.DataFrame({
        "campaign_id": pd.Categorical.from_codes(camp[order], sim.campaign_ids),
        "customer_id": pd.Categorical.from_codes(cust[order], ids),
        "channel": pd.Categorical.from_codes(ch[order], CHANNELS),
        "action_id": pd.Categorical.from_codes(act[order], sim.action_ids),
        "stage": pd.Categorical.from_codes(stage[order], STAGES),
        "planned_at": _timestamps(sim, ts[order]),
        "control": control[order],
        "propensity": prop[order],
    })


def assignments_of(targets: pd.DataFrame) -> pd.DataFrame:
    """The campaign targets as the contract's assignments table: control members (and decisions to send nothing)
    as no_action without a channel, a control member with the action it was held out from."""
    action = targets["action_id"].astype(object).to_numpy()
    nothing = targets["control"].to_numpy(bool) | pd.isna(action)  # held out, or a decision to send nothing
    channel = targets["channel"].astype(object).to_numpy()
    return pd.DataFrame({
        "customer_id": targets["customer_id"].astype(str).to_numpy(),
        "assigned_at": targets["planned_at"],
        "action_id": np.where(nothing, NO_ACTION, action),
        "channel": np.where(nothing, None, channel),
        "propensity": targets["propensity"].to_numpy(float),
        "campaign_id": targets["campaign_id"].astype(str).to_numpy(),
        "holdout_action": np.where(targets["control"].to_numpy(bool) & pd.notna(action), action, None),
    })
