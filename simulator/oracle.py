"""The oracle: the true probabilities behind a simulated world."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.vocabulary import CHANNELS
from simulator.formulas import (
    HABIT_DROPOUT_MULTIPLIER,
    hour_distribution,
    hour_factor,
    p_first_purchase,
    p_no_purchase,
    p_second_in_window,
)

CH = {c: i for i, c in enumerate(CHANNELS)}


def _days(values) -> np.ndarray:
    """Timestamps (scalar, array, Series) as float days since the Unix epoch; NaT -> NaN."""
    if isinstance(values, (pd.Timestamp, datetime, str, np.datetime64)):
        ts = pd.Timestamp(values)
        if ts.tzinfo is None:
            raise ValueError("as_of must be timezone-aware (UTC)")
        return np.array(ts.value / 86400e9)
    idx = pd.DatetimeIndex(pd.Series(values)) if not isinstance(values, pd.DatetimeIndex) else values
    if idx.tz is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    out = idx.asi8.astype(float) / 86400e9
    out[idx.isna()] = np.nan
    return out


def _codes(values, index: pd.Index) -> np.ndarray:
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        cat_codes = index.get_indexer(pd.Index(values.cat.categories.astype(str)))
        raw = values.cat.codes.to_numpy()
        return np.where(raw >= 0, cat_codes[np.maximum(raw, 0)], -1)
    return index.get_indexer(pd.Index(np.asarray(values, dtype=object).astype(str)))


class Oracle:
    """The true probabilities of a simulated world.

    Methods take an array of customer ids (unknown ids give NaN) and, where
    time matters, a tz-aware ``as_of``. The purchase history up to ``as_of`` is
    read from the events; the hidden traits and dropout times from the truth.
    """

    def __init__(self, truth: pd.DataFrame, customers: pd.DataFrame, events: pd.DataFrame,
                 window_days: float = 11.0):
        self.window = float(window_days)
        self.index = pd.Index(truth["customer_id"].astype(str).to_numpy())
        n = len(self.index)
        col = lambda c: truth[c].to_numpy(dtype=float)  # noqa: E731
        self.lam0 = col("activation_hazard")
        self.tau = col("interest_decay_days")
        self.mu = col("purchase_rate")
        self.delta = col("dropout_hazard")
        self.delta_eff = col("dropout_hazard_effective")
        self.resp = np.column_stack([col(f"response_{c}") for c in CHANNELS])
        self.pref = col("preferred_hour")
        self.kappa = col("hour_concentration")
        self.dropout = _days(truth["dropout_at"])
        ci = _codes(customers["customer_id"], self.index)
        known = ci >= 0  # customers added to a simulated world (hand-written scenarios) have no truth: NaN
        ci = ci[known]
        self.reg = np.full(n, np.nan)
        self.reg[ci] = _days(customers["registered_at"])[known]
        self.open = np.zeros((n, len(CHANNELS)), bool)
        for k, c in enumerate(CHANNELS):
            ok = customers[f"consent_{c}"].to_numpy(bool) & customers[f"reachable_{c}"].to_numpy(bool)
            self.open[ci, k] = ok[known]
        buys = (events["event_type"] == "purchase").to_numpy(dtype=bool)
        pc = _codes(events["customer_id"][buys], self.index)
        psec = (pd.DatetimeIndex(events["event_timestamp"][buys]).asi8 // 1_000_000_000).astype(np.int64)
        keep = pc >= 0
        key = (pc[keep].astype(np.int64) << 32) + psec[keep]
        key.sort()
        self._key = key

    @classmethod
    def load(cls, world_dir: Path | str) -> "Oracle":
        world_dir = Path(world_dir)
        truth = pd.read_parquet(world_dir / "truth.parquet")
        params = {}
        if (world_dir / "world.json").exists():
            params = json.loads((world_dir / "world.json").read_text())
        if (world_dir / "events.parquet").exists() and (world_dir / "customers.parquet").exists():
            customers = pd.read_parquet(world_dir / "customers.parquet")
            events = pd.read_parquet(
                world_dir / "events.parquet",
                columns=["customer_id", "event_timestamp", "event_type"],
                filters=[("event_type", "==", "purchase")],
            )
        else:
            from nextbest.contract import load_world

            customers, events = load_world(world_dir)
        return cls(truth, customers, events, window_days=params.get("activation_window_days", 11))

    # -- lookups -------------------------------------------------------------------
    def _idx(self, customer_ids) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(customer_ids, dtype=object).astype(str).ravel()
        i = self.index.get_indexer(pd.Index(ids))
        return np.maximum(i, 0), i >= 0

    def _history(self, i, as_of_days):
        """(purchases before as_of, first purchase day, second purchase day) per row."""
        sec = np.floor(np.broadcast_to(as_of_days, i.shape) * 86400.0 + 1e-6).astype(np.int64)
        base = i.astype(np.int64) << 32
        lo = np.searchsorted(self._key, base, side="left")
        hi = np.searchsorted(self._key, base + sec, side="left")
        n = hi - lo
        k = self._key
        first = np.where(n >= 1, (k[np.minimum(lo, len(k) - 1)] - base) / 86400.0, np.nan) if len(k) else \
            np.full(len(i), np.nan)
        second = np.where(n >= 2, (k[np.minimum(lo + 1, len(k) - 1)] - base) / 86400.0, np.nan) if len(k) else \
            np.full(len(i), np.nan)
        return n, first, second

    # -- probabilities -------------------------------------------------------------
    def p_activation(self, customer_ids, as_of, horizon_days: float) -> np.ndarray:
        """P(first purchase within the horizon) for never-bought customers; for a customer whose only
        purchase is at most `activation_window_days` old, P(second purchase inside the window)."""
        i, known = self._idx(customer_ids)
        t = np.broadcast_to(_days(as_of), i.shape).astype(float)
        n, first, _ = self._history(i, t)
        out = np.full(len(i), np.nan)
        registered = known & (self.reg[i] <= t)
        m = registered & (n == 0)
        out[m] = p_first_purchase(self.lam0[i[m]], self.tau[i[m]], t[m] - self.reg[i[m]], horizon_days)
        left = first + self.window - t
        m = registered & (n == 1) & (left >= 0)
        out[m] = p_second_in_window(self.mu[i[m]], np.minimum(horizon_days, left[m]))
        return out

    def p_churn(self, customer_ids, as_of, horizon_days: float) -> np.ndarray:
        """P(no purchase within the horizon) for customers with at least one purchase before as_of."""
        i, known = self._idx(customer_ids)
        t = np.broadcast_to(_days(as_of), i.shape).astype(float)
        n, first, _ = self._history(i, t)
        out = np.full(len(i), np.nan)
        bought = known & (n >= 1)
        dead = bought & (self.dropout[i] <= t)
        out[dead] = 1.0
        m = bought & ~dead
        im, tm, nm = i[m], t[m], n[m]
        left = first[m] + self.window - tm
        inside = left > 0
        delta_after = np.where(inside, np.where(nm >= 2, self.delta[im] * HABIT_DROPOUT_MULTIPLIER, self.delta[im]),
                               self.delta_eff[im])
        delta_after = np.where(np.isnan(delta_after), self.delta[im], delta_after)
        out[m] = p_no_purchase(self.mu[im], delta_after, np.where(inside, left, 0.0), horizon_days)
        return out

    def p_response(self, customer_ids, channel, hour_local) -> np.ndarray:
        """P(click | a message on `channel` at local `hour_local`). `channel` may be one name or one per
        customer; `hour_local` a scalar, one per customer, or 2-D (n, k) for k hours each."""
        i, known = self._idx(customer_ids)
        ch = self._channel_codes(channel, len(i))
        hour = np.asarray(hour_local, float)
        r = np.where(known & (ch >= 0), self.resp[i, np.maximum(ch, 0)], np.nan)
        pref, kappa = self.pref[i], self.kappa[i]
        if hour.ndim == 2:
            r, pref, kappa = r[:, None], pref[:, None], kappa[:, None]
        return r * hour_factor(hour, pref, kappa)

    def hour_distribution(self, customer_ids) -> np.ndarray:
        """(n, 24) true distribution of the local hour of engagement; rows sum to 1 (NaN for unknown ids)."""
        i, known = self._idx(customer_ids)
        out = hour_distribution(self.pref[i], self.kappa[i])
        out[~known] = np.nan
        return out

    def preferred_hour(self, customer_ids) -> np.ndarray:
        i, known = self._idx(customer_ids)
        return np.where(known, self.pref[i], np.nan)

    def reachable(self, customer_ids) -> np.ndarray:
        """(n, 5) consent and reachability per channel (CHANNELS order)."""
        i, known = self._idx(customer_ids)
        return self.open[i] & known[:, None]

    def best_channel(self, customer_ids, allowed_mask=None) -> np.ndarray:
        """The channel with the highest true response among those allowed, consented and reachable
        (None when there is none). `allowed_mask`: (5,) or (n, 5) booleans in CHANNELS order, or channel names."""
        i, known = self._idx(customer_ids)
        if allowed_mask is None:
            allowed = np.ones(len(CHANNELS), bool)
        elif len(allowed_mask) and all(isinstance(c, str) for c in allowed_mask):
            allowed = np.array([c in set(allowed_mask) for c in CHANNELS])
        else:
            allowed = np.asarray(allowed_mask, bool)
        ok = np.broadcast_to(allowed, (len(i), len(CHANNELS))) & self.open[i] & known[:, None]
        score = np.where(ok, self.resp[i], -np.inf)
        best = score.argmax(axis=1)
        names = np.array(CHANNELS, dtype=object)[best]
        names[~ok.any(axis=1)] = None
        return names

    def expected_value(self, customer_ids, action: str, channel, hour_local, as_of, catalogue) -> np.ndarray:
        """True expected value of sending `action` on `channel` at local `hour_local`:
        p_response * lift * g * value - cost, where g is P(activation, 30 d), P(churn, 60 d) or 1 by the
        action's driver. -inf where the action does not allow the channel or the customer is not consented
        and reachable on it; NaN where g is undefined (e.g. an activation action for a customer who is
        past activation) or the id is unknown. 'no_action' is worth 0."""
        i, known = self._idx(customer_ids)
        if action == "no_action":
            return np.where(known, 0.0, np.nan)
        a = catalogue[action]
        ch = self._channel_codes(channel, len(i))
        names = np.array(CHANNELS, dtype=object)
        allowed = np.array([c in a.cost for c in CHANNELS])
        cost = np.array([a.cost.get(c, np.nan) for c in CHANNELS])
        p = self.p_response(customer_ids, names[np.maximum(ch, 0)], hour_local)
        if a.driver == "activation":
            g = self.p_activation(customer_ids, as_of, 30)
        elif a.driver == "churn":
            g = self.p_churn(customer_ids, as_of, 60)
        else:
            g = np.ones(len(i))
        ev = p * a.lift * g * a.value - cost[np.maximum(ch, 0)]
        ok = (ch >= 0) & allowed[np.maximum(ch, 0)] & self.open[i, np.maximum(ch, 0)]
        ev = np.where(ok, ev, -np.inf)
        return np.where(known, ev, np.nan)

    @staticmethod
    def _channel_codes(channel, n: int) -> np.ndarray:
        if isinstance(channel, str):
            return np.full(n, CH.get(channel, -1))
        arr = np.asarray(channel, dtype=object).ravel()
        codes = pd.Series(arr, dtype=object).map(CH).fillna(-1).astype(int).to_numpy()
        return np.broadcast_to(codes, (n,)) if len(codes) == 1 else codes
