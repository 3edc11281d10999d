"""What each assignment led to: the action's objective over its horizon, in currency.

For an assignment of action ``a`` (or a control held out, ``no_action``) at
time ``t`` the outcome measured for ``a`` is::

    value_a x units of a's objective in (t, t + horizon_a]  -  incentive_a x redemptions

* units: the purchases' amount (``measure: amount``) or the count of the
  objective's event; for ``message_converted`` only the conversions of ``a``'s
  own message (the same campaign) count, so a control has none;
* redemptions: the conversions of the assigned message within the horizon
  (a voucher used), which cost the incentive whether or not the customer
  would have bought anyway. Controls pay nothing.

Rows whose horizon runs past the end of the data are dropped (their outcome is
not known yet). A control speaks for every action whose horizon it has seen:
by default it is kept only when it has seen the longest; with
``partial_controls`` as soon as it has seen the shortest, ``y_<action>`` being
NaN for the actions whose horizon it has not (so an action's treated rows and
its controls cover the same assignment times).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from nextbest.vocabulary import NO_ACTION


def _window_sum(keys: np.ndarray, values: np.ndarray | None, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sum of `values` (count when None) of the sorted int64 `keys` falling in [lo, hi) per row."""
    a = np.searchsorted(keys, lo, side="left")
    b = np.searchsorted(keys, hi, side="left")
    if values is None:
        return (b - a).astype(float)
    cum = np.concatenate([[0.0], np.cumsum(values)])
    return cum[b] - cum[a]


def _keyed(frame: pd.DataFrame, codes: pd.Index, by: str = "customer_id") -> tuple[np.ndarray, np.ndarray]:
    """Events as sorted keys (customer code << 40 | seconds since epoch) and their order."""
    c = codes.get_indexer(frame[by].astype(str))
    sec = (pd.DatetimeIndex(frame["event_timestamp"]).asi8 // 1_000_000_000).astype(np.int64)
    keep = c >= 0
    key = (c.astype(np.int64) << 40) + sec
    key = np.where(keep, key, -1)
    order = np.argsort(key, kind="stable")
    return key[order], order


def objective_units(assignments: pd.DataFrame, events: pd.DataFrame, action: str, catalogue: Mapping) -> np.ndarray:
    """Units of `action`'s objective each assignment row's customer produced within the horizon after it."""
    obj = catalogue[action].objective
    codes = pd.Index(pd.unique(assignments["customer_id"].astype(str)))
    c = codes.get_indexer(assignments["customer_id"].astype(str)).astype(np.int64)
    t = (pd.DatetimeIndex(assignments["assigned_at"]).asi8 // 1_000_000_000).astype(np.int64)
    lo, hi = (c << 40) + t, (c << 40) + t + int(obj.horizon_days * 86400)
    if obj.event == "message_converted":
        ev = events[(events["event_type"] == "message_converted") & (events["action_id"].astype(object) == action)]
        ev = ev.assign(key=ev["customer_id"].astype(str) + "|" + ev["campaign_id"].astype(str))
        row_key = assignments["customer_id"].astype(str) + "|" + assignments["campaign_id"].astype(str)
        codes2 = pd.Index(pd.unique(pd.concat([row_key, ev["key"]])))
        c2 = codes2.get_indexer(row_key).astype(np.int64)
        keys, _ = _keyed(ev.rename(columns={"key": "k"}), codes2, by="k")
        return _window_sum(keys, None, (c2 << 40) + t, (c2 << 40) + t + int(obj.horizon_days * 86400))
    ev = events[events["event_type"] == obj.event]
    keys, order = _keyed(ev, codes)
    values = ev["amount"].to_numpy(float)[order] if obj.measure == "amount" else None
    if values is not None:
        values = np.nan_to_num(values)
    return _window_sum(keys, values, lo, hi)


def redemptions(assignments: pd.DataFrame, events: pd.DataFrame, horizon_days: np.ndarray) -> np.ndarray:
    """Conversions of each assigned message (same customer, action and campaign) within its horizon."""
    conv = events[events["event_type"] == "message_converted"]
    key = lambda f, a: f["customer_id"].astype(str) + "|" + f[a].astype(str) + "|" + f["campaign_id"].astype(str)  # noqa: E731
    row_key = key(assignments, "action_id")
    ev = conv.assign(k=key(conv, "action_id"))
    codes = pd.Index(pd.unique(pd.concat([row_key, ev["k"]])))
    c = codes.get_indexer(row_key).astype(np.int64)
    keys, _ = _keyed(ev, codes, by="k")
    t = (pd.DatetimeIndex(assignments["assigned_at"]).asi8 // 1_000_000_000).astype(np.int64)
    return _window_sum(keys, None, (c << 40) + t, (c << 40) + t + (np.asarray(horizon_days) * 86400).astype(np.int64))


def outcomes(assignments: pd.DataFrame, events: pd.DataFrame, catalogue: Mapping,
             data_end: pd.Timestamp, partial_controls: bool = False) -> pd.DataFrame:
    """For every assignment row and every catalogue action it can speak for, the outcome in currency.

    Treated rows (action a) get ``y`` for their own action; control rows (``no_action``) get one
    ``y_<action>`` per catalogue action (what they produced without a message, valued as that action
    values it). Returns the assignments with ``y`` (treated rows; NaN for controls) and ``y_<action>``
    columns, restricted to rows whose horizon is observed."""
    out = assignments.reset_index(drop=True).copy()
    horizon = out["action_id"].map({a: act.objective.horizon_days for a, act in catalogue.items()})
    spans = [act.objective.horizon_days for act in catalogue.values()]
    horizon = horizon.fillna(min(spans) if partial_controls else max(spans)).to_numpy(float)
    observed = (out["assigned_at"] + pd.to_timedelta(horizon, unit="D")) <= data_end
    out = out[observed.to_numpy()].reset_index(drop=True)
    horizon = horizon[observed.to_numpy()]
    treated = out["action_id"].ne(NO_ACTION).to_numpy()
    y = np.full(len(out), np.nan)
    red = redemptions(out, events, horizon)
    for a, act in catalogue.items():
        rows = (out["action_id"] == a).to_numpy()
        units = objective_units(out, events, a, catalogue)
        if rows.any():
            y[rows] = act.value * units[rows] - act.incentive * red[rows]
        seen = (out["assigned_at"] + pd.Timedelta(days=act.objective.horizon_days) <= data_end).to_numpy()
        out[f"y_{a}"] = np.where(treated | ~seen, np.nan, act.value * units)
    out["y"] = y
    out["redemptions"] = np.where(treated, red, 0.0)
    return out
