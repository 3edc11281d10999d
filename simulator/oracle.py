"""The oracle: the true probabilities behind a simulated world, and the true effect of any option.

:meth:`Oracle.incremental_value` is the causal truth the policies are judged
by: the expected objective of a customer if the option (action, channel,
local hour) is sent at ``as_of`` minus the same without any message, in
currency, net of the incentive and the send's cost. It is computed in closed
form from the world's hidden state with the same formulas the simulator
draws from (``simulator/formulas.py``, ``simulator/effects.py``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.vocabulary import CHANNEL_INDEX as CH, CHANNELS, NO_ACTION
from simulator import effects as FX
from simulator.formulas import (
    HABIT_DROPOUT_MULTIPLIER,
    P_DELIVER,
    SEEN_MULT,
    hour_distribution,
    hour_factor,
    p_first_purchase,
    p_no_purchase,
    p_second_in_window,
    purchases_after_habit,
    purchases_alive,
    purchases_in_window,
    purchases_never_bought,
)


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
                 window_days: float = 11.0, lives: pd.DataFrame | None = None):
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
        self.basket = col("basket_mean")
        self.offer_sens = col("offer_sensitivity")
        self.harm = col("lapse_per_message") if "lapse_per_message" in truth else np.full(n, FX.BASE_HARM)
        self.dog = truth["sleeping_dog"].to_numpy(bool) if "sleeping_dog" in truth else np.zeros(n, bool)
        self.actions = [c[len("persuasion_"):] for c in truth.columns if c.startswith("persuasion_")]
        self.persuasion = np.column_stack([col(f"persuasion_{a}") for a in self.actions]) if self.actions else \
            np.zeros((n, 0))
        ci = _codes(customers["customer_id"], self.index)
        known = ci >= 0  # customers added to a simulated world (hand-written scenarios) have no truth: NaN
        ci = ci[known]
        self.reg = np.full(n, np.nan)
        self.reg[ci] = _days(customers["registered_at"])[known]
        self.open = np.zeros((n, len(CHANNELS)), bool)
        for k, c in enumerate(CHANNELS):
            ok = customers[f"consent_{c}"].to_numpy(bool) & customers[f"reachable_{c}"].to_numpy(bool)
            self.open[ci, k] = ok[known]
        self._key = self._keys(events, "purchase")
        self._sends = self._keys(events, "message_sent")
        if lives is not None and len(lives):
            lc = _codes(lives["customer_id"], self.index)
            lsec = (pd.DatetimeIndex(lives["at"]).asi8 // 1_000_000_000).astype(np.int64)
            keep = lc >= 0
            key = (lc[keep].astype(np.int64) << 32) + lsec[keep]
            order = np.argsort(key, kind="stable")
            self._lives, self._alive_flag = key[order], lives["alive"].to_numpy(bool)[keep][order]
        else:
            self._lives, self._alive_flag = None, None

    def _keys(self, events: pd.DataFrame, kind: str) -> np.ndarray:
        """Sorted (customer code << 32) + unix seconds of the events of one type."""
        rows = (events["event_type"] == kind).to_numpy(dtype=bool)
        codes = _codes(events["customer_id"][rows], self.index)
        sec = (pd.DatetimeIndex(events["event_timestamp"][rows]).asi8 // 1_000_000_000).astype(np.int64)
        keep = codes >= 0
        key = (codes[keep].astype(np.int64) << 32) + sec[keep]
        key.sort()
        return key

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
                filters=[("event_type", "in", ["purchase", "message_sent"])],
            )
        else:
            from nextbest.contract import load_world

            customers, events = load_world(world_dir)
        lives = pd.read_parquet(world_dir / "lives.parquet") if (world_dir / "lives.parquet").exists() else None
        return cls(truth, customers, events, window_days=params.get("activation_window_days", 11), lives=lives)

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
        dead = bought & ~self.alive(i, t)
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

    # -- the causal truth -----------------------------------------------------------
    def alive(self, i: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Whether each customer (truth row `i`) is buying at day `t`: activated and not lapsed, or brought back."""
        if self._lives is None:  # a world saved without its lives: the last dropout decides
            return ~(self.dropout[i] <= t)
        sec = np.floor(np.broadcast_to(t, i.shape) * 86400.0 + 1e-6).astype(np.int64)
        base = i.astype(np.int64) << 32
        lo = np.searchsorted(self._lives, base, side="left")
        last = np.searchsorted(self._lives, base + sec, side="right") - 1
        return (last >= lo) & self._alive_flag[np.maximum(last, 0)]

    def recent_sends(self, i: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Messages sent to each customer in the FATIGUE_DAYS before `t` (what fatigues them)."""
        sec = np.floor(np.broadcast_to(t, i.shape) * 86400.0 + 1e-6).astype(np.int64)
        base = i.astype(np.int64) << 32
        lo = np.searchsorted(self._sends, base + sec - int(FX.FATIGUE_DAYS * 86400), side="left")
        hi = np.searchsorted(self._sends, base + sec, side="left")
        return hi - lo

    def _state(self, i: np.ndarray, t: np.ndarray) -> dict:
        n, first, second = self._history(i, t)
        left = first + self.window - t
        return {"n": n, "left": left, "alive": self.alive(i, t),
                "habit": (n >= 2) & (second <= first + self.window),
                "in_window": (n >= 1) & (left > 0)}

    def natural_purchases(self, i: np.ndarray, t: np.ndarray, horizon: float, st: dict | None = None) -> np.ndarray:
        """Expected purchases in (t, t + horizon] without any message, from each customer's hidden state."""
        st = st or self._state(i, t)
        out = np.zeros(len(i))
        never = st["n"] == 0
        if never.any():
            j = i[never]
            out[never] = purchases_never_bought(self.lam0[j], self.tau[j], t[never] - self.reg[j], self.mu[j],
                                                self.delta[j], self.window, horizon)
        win = st["in_window"] & st["alive"]
        habit = win & st["habit"]
        out[habit] = purchases_after_habit(self.mu[i[habit]], self.delta[i[habit]], st["left"][habit], horizon)
        single = win & ~st["habit"]
        out[single] = purchases_in_window(self.mu[i[single]], self.delta[i[single]], st["left"][single], horizon)
        post = (st["n"] >= 1) & ~st["in_window"] & st["alive"]
        out[post] = purchases_alive(self.mu[i[post]], self._delta_after(i[post], st, post), horizon)
        return out  # lapsed customers buy nothing on their own

    def _delta_after(self, i: np.ndarray, st: dict, rows: np.ndarray) -> np.ndarray:
        d = np.where(st["habit"][rows], self.delta[i] * HABIT_DROPOUT_MULTIPLIER, self.delta[i])
        return np.where(np.isnan(self.delta_eff[i]), d, self.delta_eff[i])

    def purchases_after_conversion(self, i: np.ndarray, t: np.ndarray, horizon: float,
                                   st: dict | None = None) -> np.ndarray:
        """Expected natural purchases in (t, t + horizon] after a purchase a message caused at t: it activates a
        never-buyer, forms the habit inside the window, brings a lapsed customer back."""
        st = st or self._state(i, t)
        out = np.empty(len(i))
        never = st["n"] == 0
        out[never] = purchases_in_window(self.mu[i[never]], self.delta[i[never]], self.window, horizon)
        win = st["in_window"]
        out[win] = purchases_after_habit(self.mu[i[win]], self.delta[i[win]], st["left"][win], horizon)
        post = (st["n"] >= 1) & ~win
        out[post] = purchases_alive(self.mu[i[post]], self._delta_after(i[post], st, post), horizon)
        return out

    def p_natural_purchase(self, i: np.ndarray, t: np.ndarray, days: float, st: dict | None = None) -> np.ndarray:
        """P(at least one purchase on their own within `days`) - the sure things of an incentive."""
        st = st or self._state(i, t)
        out = np.zeros(len(i))
        never = st["n"] == 0
        out[never] = p_first_purchase(self.lam0[i[never]], self.tau[i[never]], t[never] - self.reg[i[never]], days)
        buying = (st["n"] >= 1) & st["alive"]
        j = i[buying]
        left = np.where(st["in_window"][buying], st["left"][buying], 0.0)
        d = np.where(st["in_window"][buying], self.delta[j], self._delta_after(j, st, buying))
        out[buying] = 1.0 - p_no_purchase(self.mu[j], d, left, days)
        return out

    def seen(self, customer_ids, channel, hour_local, as_of) -> np.ndarray:
        """P(the message is seen): the click probability on the channel at the local hour, faded by fatigue,
        times the channel's reads per click, at most its delivery rate."""
        i, _ = self._idx(customer_ids)
        ch = self._channel_codes(channel, len(i))
        t = np.broadcast_to(_days(as_of), i.shape).astype(float)
        click = self.p_response(customer_ids, channel, hour_local) * FX.fatigue(self.recent_sends(i, t))
        return np.minimum(click * SEEN_MULT[np.maximum(ch, 0)], P_DELIVER[np.maximum(ch, 0)])

    def incremental_value(self, customer_ids, action: str, channel, hour_local, as_of, catalogue) -> np.ndarray:
        """True incremental value (currency) of sending `action` on `channel` at local `hour_local` at `as_of`,
        against sending nothing, net of the incentive and the send's cost:

            value x (E[objective | send] - E[objective | nothing]) - incentive x E[redemptions] - cost

        With e = P(seen) and r = the customer's persuasion by the action, the message converts with
        probability e x r (an extra purchase that also activates, forms the habit or brings back, per the
        customer's state), pushes a buying customer away with probability P(delivered) x lapse, and a
        customer who saw an incentive message redeems it on any purchase within REDEEM_DAYS. -inf where
        the action does not allow the channel or the customer is not consented and reachable on it; NaN for
        unknown ids; `no_action` is worth 0."""
        i, known = self._idx(customer_ids)
        if action == NO_ACTION:
            return np.where(known, 0.0, np.nan)
        act = catalogue[action]
        k = self.actions.index(action)
        ch = self._channel_codes(channel, len(i))
        chc = np.maximum(ch, 0)
        t = np.broadcast_to(_days(as_of), i.shape).astype(float)
        obj = act.objective
        st = self._state(i, t)
        e = self.seen(customer_ids, np.array(CHANNELS, dtype=object)[chc], hour_local, as_of)
        conv = e * self.persuasion[i, k]
        if obj.event == "purchase":
            unit = self.basket[i] if obj.measure == "amount" else np.ones(len(i))
            conv_unit = unit * (FX.conversion_scale(self.offer_sens[i]) if obj.measure == "amount" else 1.0)
            base = self.natural_purchases(i, t, obj.horizon_days, st)
            after = self.purchases_after_conversion(i, t, obj.horizon_days, st)
            lapse = P_DELIVER[chc] * self.harm[i] * ((st["n"] >= 1) & st["alive"])
            with_msg = conv * (conv_unit + unit * after) + (1 - conv) * (1 - lapse) * unit * base
            gain = with_msg - unit * base
        else:  # a visit or the action's own conversion: only the message makes it happen
            gain = conv
        redemptions = np.zeros(len(i))
        if act.incentive > 0:
            q = self.p_natural_purchase(i, t, FX.REDEEM_DAYS, st)
            redemptions = conv + (e - conv) * q
        cost = np.array([act.cost.get(c, np.nan) for c in CHANNELS])[chc]
        value = act.value * gain - act.incentive * redemptions - cost
        ok = (ch >= 0) & np.array([c in act.cost for c in CHANNELS])[chc] & self.open[i, chc]
        value = np.where(ok, value, -np.inf)
        return np.where(known & (self.reg[i] <= t), value, np.nan)

    @staticmethod
    def _channel_codes(channel, n: int) -> np.ndarray:
        if isinstance(channel, str):
            return np.full(n, CH.get(channel, -1))
        arr = np.asarray(channel, dtype=object).ravel()
        codes = pd.Series(arr, dtype=object).map(CH).fillna(-1).astype(int).to_numpy()
        return np.broadcast_to(codes, (n,)) if len(codes) == 1 else codes
