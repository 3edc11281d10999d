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

With ``stop_at_other_conversion`` an assignment's window also ends at the
customer's first conversion of *another* message (another action or
campaign; for a control, any message): a control group keeps receiving the
programme's other campaigns, and what those messages win back or sell -
the converted purchase and everything the customer does after it - belongs
to them. The assignment's own message keeps counting to its horizon (its
conversions, and the incentive it paid on a redemption). Without the stop,
every control is partly "rescued" by the next campaign and each action's
effect looks smaller the busier the programme is. Both arms are cut the same
way, so the comparison stays randomised.
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


def _seconds(ts) -> np.ndarray:
    return (pd.DatetimeIndex(ts).asi8 // 1_000_000_000).astype(np.int64)


def _joined(*cols: pd.Series) -> pd.Series:
    out = cols[0].astype(str)
    for c in cols[1:]:
        out = out + "|" + c.astype(str)
    return out


class _Windows:
    """Sums over the events that follow each assignment row: the rows' groups (customer; customer and campaign;
    customer, action and campaign) and times are encoded once, events as sorted (group << 40 | seconds) keys."""

    def __init__(self, rows: pd.DataFrame):
        self.t = _seconds(rows["assigned_at"])
        self._groups = {}  # group columns -> (each row's group code, the groups)
        for by in (("customer_id",), ("customer_id", "campaign_id"), ("customer_id", "action_id", "campaign_id")):
            codes, groups = pd.factorize(_joined(*(rows[k] for k in by)))
            self._groups[by] = codes.astype(np.int64), pd.Index(groups)
        self.stop = np.full(len(self.t), np.iinfo(np.int64).max)  # seconds at which each row's window ends early

    def sum(self, events: pd.DataFrame, by: tuple[str, ...], days, values: str | None = None,
            stop: bool = False) -> np.ndarray:
        """Per row: the count (or the sum of column `values`) of `events` of the row's group within `days` after
        the row's time; with `stop` (the customer's own events, not tied to the row's message) only before the
        row's ``stop``."""
        row_codes, codes = self._groups[by]
        c = codes.get_indexer(_joined(*(events[k] for k in by))).astype(np.int64)
        keep = c >= 0
        keys = (c[keep] << 40) + _seconds(events["event_timestamp"])[keep]
        order = np.argsort(keys, kind="stable")
        v = None if values is None else np.nan_to_num(events[values].to_numpy(float)[keep][order])
        lo = (row_codes << 40) + self.t
        end = self.t + (np.asarray(days) * 86400).astype(np.int64)
        if stop:
            end = np.minimum(end, np.maximum(self.stop, self.t))
        return _window_sum(keys[order], v, lo, (row_codes << 40) + end)

    def stop_at_other_conversion(self, rows: pd.DataFrame, conversions: pd.DataFrame) -> None:
        """End each row's window at the customer's first conversion after the row's time that is not of the
        row's own message (same action and campaign)."""
        row_codes, codes = self._groups[("customer_id",)]
        c = codes.get_indexer(conversions["customer_id"].astype(str)).astype(np.int64)
        keep = c >= 0
        secs = _seconds(conversions["event_timestamp"])[keep]
        keys = (c[keep] << 40) + secs
        order = np.argsort(keys, kind="stable")
        keys, secs = keys[order], secs[order]
        own = _joined(conversions["action_id"], conversions["campaign_id"]).to_numpy()[keep][order]
        mine = _joined(rows["action_id"], rows["campaign_id"]).to_numpy()
        k = np.searchsorted(keys, (row_codes << 40) + self.t, side="right")
        open_ = np.ones(len(k), bool)
        while open_.any():  # skip the row's own conversions (a purchase and a redemption at most, usually)
            j = np.flatnonzero(open_)
            inside = k[j] < len(keys)
            inside[inside] &= (keys[k[j[inside]]] >> 40) == row_codes[j[inside]]
            open_[j[~inside]] = False
            j = j[inside]
            is_own = own[k[j]] == mine[j]
            self.stop[j[~is_own]] = secs[k[j[~is_own]]]
            open_[j[~is_own]] = False
            k[j[is_own]] += 1


def _of_type(events: pd.DataFrame, event_type: str) -> pd.DataFrame:
    return events[(events["event_type"] == event_type).to_numpy()]


def objective_units(windows: _Windows, events: pd.DataFrame, action: str, catalogue: Mapping) -> np.ndarray:
    """Units of `action`'s objective each assignment row's customer produced within the horizon after it."""
    obj = catalogue[action].objective
    if obj.event == "message_converted":  # only the conversions of this action's own message (same campaign)
        conv = _of_type(events, "message_converted")
        conv = conv[(conv["action_id"].astype(str) == action).to_numpy()]
        return windows.sum(conv, ("customer_id", "campaign_id"), obj.horizon_days)
    return windows.sum(_of_type(events, obj.event), ("customer_id",), obj.horizon_days,
                       values="amount" if obj.measure == "amount" else None, stop=True)


def redemptions(windows: _Windows, events: pd.DataFrame, horizon_days: np.ndarray) -> np.ndarray:
    """Conversions of each assigned message (same customer, action and campaign) within its horizon."""
    return windows.sum(_of_type(events, "message_converted"), ("customer_id", "action_id", "campaign_id"),
                       horizon_days)


def outcomes(assignments: pd.DataFrame, events: pd.DataFrame, catalogue: Mapping,
             data_end: pd.Timestamp, partial_controls: bool = False, max_rows: int | None = None,
             seed: int = 0, stop_at_other_conversion: bool = False) -> pd.DataFrame:
    """For every assignment row and every catalogue action it can speak for, the outcome in currency.

    Treated rows (action a) get ``y`` for their own action; control rows (``no_action``) get one
    ``y_<action>`` per catalogue action (what they produced without a message, valued as that action
    values it). Returns the assignments with ``y`` (treated rows; NaN for controls) and ``y_<action>``
    columns, restricted to rows whose horizon is observed; with `max_rows`, a uniform sample of those (in time
    order) is measured, so the cost follows the sample, not the log."""
    spans = [act.objective.horizon_days for act in catalogue.values()]
    fill = min(spans) if partial_controls else max(spans)

    def horizons(frame: pd.DataFrame) -> np.ndarray:
        h = frame["action_id"].map({a: act.objective.horizon_days for a, act in catalogue.items()})
        return h.fillna(fill).to_numpy(float)

    out = assignments.reset_index(drop=True)
    observed = (out["assigned_at"] + pd.to_timedelta(horizons(out), unit="D")) <= data_end
    out = out[observed.to_numpy()].reset_index(drop=True)
    if max_rows is not None and len(out) > max_rows:  # a uniform sample keeps the time mix
        out = out.sample(max_rows, random_state=seed).sort_values("assigned_at", kind="stable").reset_index(drop=True)
    else:
        out = out.copy()
    horizon = horizons(out)
    # only the events that can count: the objectives' types and conversions, of the customers measured
    types = {act.objective.event for act in catalogue.values()} | {"message_converted"}
    ev = events[events["event_type"].isin(types).to_numpy()]
    ev = ev[ev["customer_id"].astype(str).isin(pd.unique(out["customer_id"].astype(str))).to_numpy()]
    windows = _Windows(out)
    if stop_at_other_conversion:
        windows.stop_at_other_conversion(out, _of_type(ev, "message_converted"))
    treated = out["action_id"].ne(NO_ACTION).to_numpy()
    action = out["action_id"].to_numpy()
    y = np.full(len(out), np.nan)
    red = redemptions(windows, ev, horizon)
    measured: dict[tuple, np.ndarray] = {}  # actions with the same objective share their units
    for a, act in catalogue.items():
        o = act.objective
        key = (o.event, o.measure, o.horizon_days, a if o.event == "message_converted" else None)
        if key not in measured:
            measured[key] = objective_units(windows, ev, a, catalogue)
        units = measured[key]
        rows = action == a
        if rows.any():
            y[rows] = act.value * units[rows] - act.incentive * red[rows]
        seen = (out["assigned_at"] + pd.Timedelta(days=o.horizon_days) <= data_end).to_numpy()
        out[f"y_{a}"] = np.where(treated | ~seen, np.nan, act.value * units)
    out["y"] = y
    out["redemptions"] = np.where(treated, red, 0.0)
    return out
