"""A simulated CRM world with known truth, and the oracle that knows it.

The generative story
--------------------
* **Customers** register over time: about 40% during the year before ``start``
  (their history up to ``start`` is simulated too, so day one already has
  active, at-risk and lapsed customers), the rest over ``[start, start+days)``.
  Each one has a segment (b2c / b2b), a region, a company size (b2b), a sector
  or store type, an IANA timezone, and per-channel consent and reachability
  (some have no e-mail address at all).
* **Latent traits** (``truth``), shifted by the attributes so they can be
  learnt from features: an activation hazard that fades with the time since
  registration (about 30% of registrants never buy), a purchase rate, a dropout
  hazard, a peak click probability per channel, a preferred local engagement
  hour with a concentration, an offer sensitivity and a basket size.
* **Activation.** The first purchase comes from the fading hazard
  ``lam0 * exp(-age / tau)``. The **activation window** (11 days) then opens:
  the customer cannot drop out inside it, and a second purchase inside it
  forms the habit, which multiplies the dropout hazard by 0.4 for good.
* **Retention and attrition.** After the window an alive customer buys as a
  Poisson process (rate ``purchase_rate``) until an exponential dropout
  (``dropout_hazard``, or the reduced one); a dropped-out customer buys no
  more on their own and only a message can still bring a one-off purchase.
* **Behaviour.** Visits (some ending in an abandoned cart), purchases and
  message opens / clicks happen at hours drawn from a von Mises distribution
  around the customer's preferred *local* hour, converted to UTC through the
  customer's timezone (daylight saving included).
* **Legacy marketing.** A calendar-driven history: a weekly e-mail (Tuesday),
  a weekly push (Thursday), an SMS every two weeks (Wednesday), a print
  mailing on the first Monday of the month and in-app messages on visits (at
  most one a week). Each calendar campaign goes out at one local hour that
  rotates between campaigns (8, 10, 12, 15, 18, 20), only to consented and
  reachable customers, with the action of the catalogue chosen by lifecycle
  stage; a random 10% of each campaign's targets is held out as control
  (:mod:`simulator.legacy`). A message is clicked with probability
  ``p_response(channel, send hour)``, fading with recent messages; a customer
  who saw it converts with their persuasion by that action
  (:mod:`simulator.effects`), and purchase-type actions then produce a purchase.

This module is the engine (per-customer next-event times, advanced day by
day, and what a message does when sent). Who the customers are is drawn by
:mod:`simulator.population`; a simulation is read out as the contract's tables
and the hidden truth by :mod:`simulator.tables`. :func:`simulate` returns a
:class:`World`; :class:`Oracle` answers the true probabilities behind it
(activation, churn, response, engagement hour) and the true expected value of
an action.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from nextbest.contract import write_world
from nextbest.vocabulary import CHANNEL_INDEX as CH, CHANNELS, STAGES
from simulator import effects as FX
from simulator import legacy, tables
from simulator.formulas import HABIT_DROPOUT_MULTIPLIER, P_DELIVER, SEEN_MULT, hour_factor
from simulator.oracle import Oracle
from simulator.population import TIMEZONES, draw_population
from simulator.tables import ET

# --- world constants ----------------------------------------------------------
PRE_DAYS = 365  # history simulated before `start`
IN_APP = CH["in_app"]
ST = {s: i for i, s in enumerate(STAGES)}

# channel mechanics (indexed by channel code)
HAS_OPENS = np.array([True, False, True, True, False])  # whether a seen message is tracked as opened
P_UNSUB = np.array([0.0025, 0.003, 0.0015, 0.0, 0.001])  # per delivered message
DELIVERY_DAYS = np.array([2 / 1440, 0.5 / 1440, 0.5 / 1440, 0.0, 2.0])
OBJECTIVE_CODE = {"purchase": 0, "visit": 1, "message_converted": 2}  # what a conversion produces
RECENT_SENDS = 8  # send times kept per customer for the fatigue of the last 7 days


# --- the world ------------------------------------------------------------------
@dataclass
class World:
    """A simulated world: the contract's two tables plus the hidden truth."""

    customers: pd.DataFrame
    events: pd.DataFrame
    truth: pd.DataFrame
    targets: pd.DataFrame | None = None  # every campaign target, control included
    campaigns: pd.DataFrame | None = None  # the legacy calendar
    lives: pd.DataFrame | None = None  # when customers started and stopped buying
    params: dict = field(default_factory=dict)

    @property
    def assignments(self) -> pd.DataFrame | None:
        """The randomised campaign targets in the contract's assignments layout."""
        return None if self.targets is None else tables.assignments_of(self.targets)

    def oracle(self) -> "Oracle":
        window = self.params.get("activation_window_days", 11)
        return Oracle(self.truth, self.customers, self.events, window_days=window, lives=self.lives)


class _Sim:
    """The simulation engine: per-customer next-event times, advanced day by day."""

    # next-event columns
    P, V, W, D, C = range(5)

    def __init__(self, n: int, days: int, seed: int, start: date, settings, progress: bool, after_days: int = 0):
        if n < 1 or days < 1 or after_days < 0:
            raise ValueError("customers and days must be positive, after_days not negative")
        self.n, self.days, self.seed, self.start, self.progress = n, days, seed, start, progress
        self.rng = np.random.default_rng(seed)
        self.S = float(PRE_DAYS)  # index of `start`
        # end (exclusive): the customers register over `days`, the world may live `after_days` more
        self.E = float(PRE_DAYS + days + after_days)
        self.end_sec = int(self.E * 86400)  # events are buffered as int32 seconds; this one is dropped
        self.t0 = pd.Timestamp(start - timedelta(days=PRE_DAYS), tz="UTC")
        f = settings.features
        self.window = float(f.activation_window_days)
        self.at_risk_days, self.lapsed_days = float(f.at_risk_days), float(f.lapsed_days)
        self.horizon_act = float(settings.training.activation_horizon_days)
        self.horizon_churn = float(settings.training.churn_horizon_days)
        self._catalogue(settings.actions)
        self._offsets()
        self._events: list[tuple] = []
        self._compacted = 0
        self._targets: list[tuple] = []
        self.campaign_ids: list[str] = []
        self.campaign_meta: list[dict] = []
        self.dropped_conversions = 0
        self.legacy_until = self.E  # the legacy calendar (and its in-app messages) runs before this day index

    # -- set-up ----------------------------------------------------------------
    def _catalogue(self, actions: Mapping) -> None:
        self.action_ids = tuple(actions)
        A = len(self.action_ids)
        self.actions = actions
        self.a_produces = np.array([OBJECTIVE_CODE[actions[a].objective.event] for a in self.action_ids])
        self.a_incentive = np.array([actions[a].incentive > 0 for a in self.action_ids])
        self.a_channel = np.zeros((A, len(CHANNELS)), bool)
        self.a_stage = np.zeros((A, len(STAGES)), bool)
        for k, a in enumerate(self.action_ids):
            for c in actions[a].cost:
                self.a_channel[k, CH[c]] = True
            for s in actions[a].stages:
                self.a_stage[k, ST[s]] = True
        self.a_requires = [actions[a].requires for a in self.action_ids]
        self.a_max_tenure = np.array([actions[a].max_tenure_days or np.inf for a in self.action_ids], float)

    def _offsets(self) -> None:
        """UTC offsets (days) per timezone and UTC day, taken at noon; rows are day index + 3."""
        ndays = int(self.E) + 8
        noon = pd.date_range(self.t0 - pd.Timedelta(days=3), periods=ndays, freq="D") + pd.Timedelta(hours=12)
        naive = noon.tz_localize(None)
        self.off = np.empty((len(TIMEZONES), ndays))
        for k, tz in enumerate(TIMEZONES):
            local = noon.tz_convert(tz).tz_localize(None)
            self.off[k] = (local - naive).total_seconds().to_numpy() / 86400.0

    def _off(self, idx, t):
        d = np.clip(np.floor(t).astype(np.int64) + 3, 0, self.off.shape[1] - 1)
        return self.off[self.tz[idx], d]

    def to_local(self, idx, t):
        return t + self._off(idx, t)

    def to_utc(self, idx, local):
        return local - self._off(idx, local)

    def _population(self) -> None:
        rng, n = self.rng, self.n
        total = draw_population(self, PRE_DAYS)

        # registration time of day from the engagement hours
        self.reg = self.snap(np.arange(n), self.reg_day + 0.5, lower=self.reg_day, upper=self.reg_day + 1.0)

        # --- dynamic state -------------------------------------------------------
        self.n_purch = np.zeros(n, np.int32)
        self.t1 = np.full(n, np.nan)
        self.t2 = np.full(n, np.nan)
        self.t_last = np.full(n, np.nan)
        self.t_state = self.reg.copy()
        self.habit = np.full(n, -1, np.int8)
        self.alive = np.zeros(n, bool)
        self.dropout = np.full(n, np.nan)
        self.activated_by = np.zeros(n, np.int8)  # 0 never, 1 on their own, 2 by a message
        self.consent_now = self.consent.copy()
        self.last_inapp = np.full(n, -np.inf)
        self.pend_act = np.zeros(n, np.int16)
        self.pend_ch = np.zeros(n, np.int8)
        self.pend_camp = np.zeros(n, np.int32)
        self.recent = np.full((n, RECENT_SENDS), -np.inf)  # the latest send times (fatigue)
        self.red_act = np.full(n, -1, np.int16)  # an engaged incentive message not yet redeemed
        self.red_until = np.full(n, -np.inf)
        self.red_ch = np.zeros(n, np.int8)
        self.red_camp = np.zeros(n, np.int32)
        self._lives: list[tuple] = []  # (customer, time, 1 = becomes alive / 0 = lapses)

        NX = np.full((n, 5), np.inf)
        e = rng.exponential(1.0, n)
        ok = e < total
        age = np.full(n, np.inf)
        age[ok] = -self.tau[ok] * np.log1p(-e[ok] / total[ok])
        NX[:, self.P] = self.reg + age
        NX[:, self.V] = self.reg + rng.exponential(1.0, n) / self.visit_rate(np.arange(n), self.reg)
        self.NX = NX
        self.emit(np.arange(n), self.reg, ET["registration"])

    # -- helpers ---------------------------------------------------------------
    def emit(self, cust, t, etype, channel=-1, amount=None, action=-1, campaign=-1) -> None:
        cust = np.asarray(cust, np.int32)
        k = len(cust)
        if k == 0:
            return
        full = lambda v, dt: np.full(k, v, dt) if np.ndim(v) == 0 else np.asarray(v, dt)  # noqa: E731
        amt = np.full(k, np.nan, np.float32) if amount is None else np.asarray(amount, np.float32)
        sec = np.minimum(np.round(np.asarray(t, float) * 86400.0), self.end_sec).astype(np.int32)
        row = (cust, sec, full(etype, np.int8), full(channel, np.int8), amt, full(action, np.int16),
               full(campaign, np.int32))
        inside = sec < self.end_sec  # nothing is kept at or after the end
        if not inside.all():
            row = tuple(a[inside] for a in row)
        self._events.append(row)

    def compact(self) -> None:
        """Merge the small event buffers of the last days into one (keeps the heap from fragmenting)."""
        if len(self._events) > self._compacted + 1:
            recent = self._events[self._compacted:]
            merged = tuple(np.concatenate(f) for f in zip(*recent))
            self._events[self._compacted:] = [merged]
        self._compacted = len(self._events)

    def engagement_hour(self, idx):
        ang = self.rng.vonmises(0.0, self.kappa[idx])
        return np.mod(self.pref[idx] + ang * 24.0 / (2.0 * np.pi), 24.0)

    def snap(self, idx, t, lower=None, upper=None):
        """Move times to an engagement hour of the same local day, kept inside [lower, upper)."""
        local = self.to_local(idx, t)
        out = self.to_utc(idx, np.floor(local) + self.engagement_hour(idx) / 24.0)
        if lower is not None:
            out = np.where(out < lower, t, out)
        if upper is not None:
            out = np.where(out >= upper, t, out)
        return out

    def next_engagement(self, idx, after):
        """The first engagement time strictly after `after` (within a day)."""
        local = self.to_local(idx, after)
        cand = np.floor(local) + self.engagement_hour(idx) / 24.0
        cand = np.where(cand <= local, cand + 1.0, cand)
        return np.maximum(self.to_utc(idx, cand), after + 1.0 / 1440)

    def visit_rate(self, idx, t):
        fading = self.lam0[idx] * np.exp(-np.maximum(t - self.reg[idx], 0.0) / self.tau[idx])
        never = 0.01 + 2.0 * fading
        rate = np.where(self.alive[idx], 0.02 + 1.5 * self.mu[idx], 0.004)
        return np.where(self.n_purch[idx] == 0, never, rate)

    def stage(self, idx, t):
        n = self.n_purch[idx]
        since_last = t - self.t_last[idx]
        return np.select(
            [n == 0, (n == 1) & (t - self.t1[idx] <= self.window), since_last < self.at_risk_days,
             since_last < self.lapsed_days],
            [ST["registered"], ST["activating"], ST["active"], ST["at_risk"]],
            ST["lapsed"],
        ).astype(np.int8)

    def amounts(self, idx, scale=1.0):
        a = self.basket[idx] * scale * np.exp(self.rng.normal(-0.125, 0.5, len(idx)))
        return np.round(a, 2)

    # -- state changes -----------------------------------------------------------
    def purchase(self, idx, ts, clock, natural: bool, scale=1.0) -> None:
        rng = self.rng
        n0 = self.n_purch[idx]
        self.emit(idx, ts, ET["purchase"], amount=self.amounts(idx, scale))
        if natural:
            self._redeem(idx, ts)
        first = n0 == 0
        f, tf, cf = idx[first], ts[first], clock[first]
        self.t1[f] = tf
        self.habit[f] = -1
        self.alive[f] = True
        self._lives.append((f.astype(np.int32), tf.copy(), np.ones(len(f), np.int8)))
        self.activated_by[f] = 1 if natural else 2
        self.NX[f, self.W] = tf + self.window
        if not natural:  # a converted lapsed customer comes back: buying again, with a fresh dropout clock
            back = ~first & ~self.alive[idx]
            j, tj = idx[back], clock[back]
            self.alive[j] = True
            self._lives.append((j.astype(np.int32), ts[back].copy(), np.ones(len(j), np.int8)))
            self.NX[j, self.P] = tj + rng.exponential(1.0, len(j)) / self.mu[j]
            closed = ~np.isnan(self.delta_eff[j])  # otherwise the window's end schedules the dropout
            self.NX[j[closed], self.D] = tj[closed] + rng.exponential(1.0, int(closed.sum())) / self.delta_eff[j[closed]]
        second = ~first & (n0 == 1) & (self.habit[idx] == -1) & (ts <= self.t1[idx] + self.window)
        self.habit[idx[second]] = 1
        self.t2[idx[second]] = ts[second]
        self.n_purch[idx] += 1
        self.t_last[idx] = np.fmax(self.t_last[idx], ts)
        self.t_state[idx] = np.maximum(self.t_state[idx], ts)
        if natural:
            again = self.alive[idx]
            j = idx[again]
            self.NX[j, self.P] = clock[again] + rng.exponential(1.0, len(j)) / self.mu[j]
        else:
            self.NX[f, self.P] = cf + rng.exponential(1.0, len(f)) / self.mu[f]
        if len(f):
            self.NX[f, self.V] = cf + rng.exponential(1.0, len(f)) / self.visit_rate(f, cf)

    def _on_purchase(self, idx, t) -> None:
        ts = self.snap(idx, t, lower=self.t_state[idx], upper=self.E)
        before = self.rng.random(len(idx)) < 0.6
        j = idx[before]
        self.emit(j, np.maximum(ts[before] - self.rng.uniform(1, 15, len(j)) / 1440, self.t_state[j]), ET["visit"])
        self.purchase(idx, ts, t, natural=True)

    def _on_window_end(self, idx, t) -> None:
        h = self.habit[idx]
        h = np.where(h == -1, 0, h).astype(np.int8)
        self.habit[idx] = h
        d = self.delta[idx] * np.where(h == 1, HABIT_DROPOUT_MULTIPLIER, 1.0)
        self.delta_eff[idx] = d
        alive = self.alive[idx]  # a customer a message pushed away inside the window stays lapsed
        self.NX[idx, self.D] = np.where(alive, t + self.rng.exponential(1.0, len(idx)) / d, np.inf)
        self.NX[idx, self.W] = np.inf

    def _on_dropout(self, idx, t) -> None:
        self._lives.append((idx.astype(np.int32), np.asarray(t, float).copy(), np.zeros(len(idx), np.int8)))
        self.alive[idx] = False
        self.dropout[idx] = t
        self.NX[idx, self.P] = np.inf
        self.NX[idx, self.D] = np.inf
        self.NX[idx, self.V] = t + self.rng.exponential(1.0, len(idx)) / self.visit_rate(idx, t)

    def _on_visit(self, idx, t) -> None:
        rng = self.rng
        ts = self.snap(idx, t, lower=self.reg[idx], upper=self.E)
        self.emit(idx, ts, ET["visit"])
        p_cart = np.where(self.n_purch[idx] == 0, 0.20, 0.12)
        cart = rng.random(len(idx)) < p_cart
        self.emit(idx[cart], ts[cart] + rng.uniform(2, 25, cart.sum()) / 1440, ET["cart_abandoned"])
        legacy.in_app_on_visit(self, idx, t, ts)
        self.NX[idx, self.V] = t + rng.exponential(1.0, len(idx)) / self.visit_rate(idx, t)

    def _on_conversion(self, idx, t) -> None:
        act = self.pend_act[idx].astype(int)
        self.emit(idx, t, ET["message_converted"], self.pend_ch[idx], action=act, campaign=self.pend_camp[idx])
        self.NX[idx, self.C] = np.inf
        same = self.red_act[idx] == act  # the conversion is the redemption of the incentive
        self.red_act[idx[same]] = -1
        buy = self.a_produces[act] == OBJECTIVE_CODE["purchase"]
        if buy.any():
            scale = FX.conversion_scale(self.offer_sens[idx[buy]])
            self.purchase(idx[buy], t[buy], t[buy], natural=False, scale=scale)
        visit = self.a_produces[act] == OBJECTIVE_CODE["visit"]
        self.emit(idx[visit], t[visit], ET["visit"])

    def _redeem(self, idx, ts) -> None:
        """A purchase inside the redemption window of an engaged incentive message redeems the incentive."""
        due = (self.red_act[idx] >= 0) & (ts <= self.red_until[idx])
        j = idx[due]
        self.emit(j, ts[due], ET["message_converted"], self.red_ch[j], action=self.red_act[j], campaign=self.red_camp[j])
        self.red_act[j] = -1

    def advance(self, until: float) -> None:
        """Process every natural event before `until`, each customer's in time order."""
        handlers = (self._on_purchase, self._on_visit, self._on_window_end, self._on_dropout, self._on_conversion)
        S = np.flatnonzero(self.NX.min(axis=1) < until)
        while S.size:
            sub = self.NX[S]
            j = sub.argmin(axis=1)
            t = sub[np.arange(len(S)), j]
            keep = t < until
            S, j, t = S[keep], j[keep], t[keep]
            for k, handler in enumerate(handlers):
                m = j == k
                if m.any():
                    handler(S[m], t[m])

    # -- marketing ---------------------------------------------------------------
    def campaign(self, cid: str, channel: str, kind: str, local_hour, day) -> int:
        self.campaign_ids.append(cid)
        self.campaign_meta.append({"campaign_id": cid, "channel": channel, "kind": kind,
                                   "local_hour": local_hour, "date": day})
        return len(self.campaign_ids) - 1

    def recent_sends(self, idx, t) -> np.ndarray:
        """Messages sent to each customer in the FATIGUE_DAYS before `t`."""
        return ((self.recent[idx] > t[:, None] - FX.FATIGUE_DAYS) & (self.recent[idx] < t[:, None])).sum(axis=1)

    def send(self, idx, ch: int, act, camp, ts, hour_local) -> None:
        """Send action `act` on channel `ch` at `ts` (local hour `hour_local`) to customers `idx`: delivery,
        engagement (fading with fatigue), conversion by the customer's persuasion, lapses and unsubscriptions."""
        rng = self.rng
        k = len(idx)
        if k == 0:
            return
        p_click = self.resp[idx, ch] * hour_factor(hour_local, self.pref[idx], self.kappa[idx])
        p_click = p_click * FX.fatigue(self.recent_sends(idx, ts))
        self.recent[idx, np.argmin(self.recent[idx], axis=1)] = ts
        p_seen = np.minimum(p_click * SEEN_MULT[ch], P_DELIVER[ch])
        u = rng.random(k)
        delivered, seen, clicked = u < P_DELIVER[ch], u < p_seen, u < p_click
        self.emit(idx, ts, ET["message_sent"], ch, action=act, campaign=camp)
        td = ts + DELIVERY_DAYS[ch] * rng.uniform(0.5, 1.0, k)
        self.emit(idx[delivered], td[delivered], ET["message_delivered"], ch, action=act[delivered],
                  campaign=camp[delivered])
        eng = seen | clicked
        j = idx[eng]
        if ch == IN_APP:
            te = td[eng] + rng.uniform(0.05, 1.5, len(j)) / 1440
        else:
            te = self.next_engagement(j, td[eng])
        if HAS_OPENS[ch]:
            self.emit(j, te, ET["message_opened"], ch, action=act[eng], campaign=camp[eng])
        c = clicked[eng]
        tc = te[c] + rng.uniform(0.3, 8.0, c.sum()) / 1440
        self.emit(j[c], tc, ET["message_clicked"], ch, action=act[eng][c], campaign=camp[eng][c])
        # conversion of those who saw it: the customer's persuasion by this action
        ae, ce = act[eng], camp[eng]
        conv = rng.random(len(j)) < self.persuasion[j, ae]
        keep = self.a_incentive[ae] & ~conv  # a seen incentive message is redeemed on a purchase soon after
        ir = j[keep]
        self.red_act[ir], self.red_until[ir] = ae[keep], te[keep] + FX.REDEEM_DAYS
        self.red_ch[ir], self.red_camp[ir] = ch, ce[keep]
        tconv = te[conv] + rng.uniform(5.0, 240.0, conv.sum()) / 1440
        ic, ac, cc = j[conv], ae[conv], ce[conv]
        free = np.isinf(self.NX[ic, self.C])
        self.dropped_conversions += int((~free).sum())
        ic, ac, cc, tconv = ic[free], ac[free], cc[free], tconv[free]
        self.NX[ic, self.C] = tconv
        self.pend_act[ic], self.pend_ch[ic], self.pend_camp[ic] = ac, ch, cc
        # a delivered message can push a buying customer away (sleeping dogs above all)
        lapse = delivered & self.alive[idx] & (self.n_purch[idx] > 0) & (rng.random(k) < self.harm[idx])
        jl = idx[lapse]
        self.NX[jl, self.D] = np.minimum(self.NX[jl, self.D], td[lapse])
        # rare unsubscriptions (far more frequent among sleeping dogs)
        if P_UNSUB[ch] > 0:
            p_unsub = P_UNSUB[ch] * np.where(self.dog[idx], FX.SLEEPING_DOG_UNSUB, 1.0)
            un = delivered & (rng.random(k) < p_unsub)
            tu = td[un] + rng.uniform(0.02, 1.5, un.sum())
            inside = tu < self.E
            ju = idx[un][inside]
            self.emit(ju, tu[inside], ET["unsubscribed"], ch, action=act[un][inside], campaign=camp[un][inside])
            self.consent_now[ju, ch] = False

    # -- run ---------------------------------------------------------------------
    def begin(self) -> None:
        """The population, the monthly in-app campaigns and the history before `start`."""
        self._population()
        legacy.in_app_campaigns(self)
        for d in range(0, int(self.S), 7):
            self.advance(float(min(d + 7, self.S)))
            self.compact()

    def day(self, d: int) -> None:
        """Everything up to the start of day index `d`, then the day's legacy campaigns while they run."""
        self.advance(float(d))
        if d < self.legacy_until:
            legacy.calendar(self, d)
        if d % 7 == 6:
            self.compact()

    def run(self) -> None:
        t_start = time.perf_counter()
        self.begin()
        for d in range(int(self.S), int(self.E)):
            self.day(d)
            if self.progress and (d - int(self.S)) % 30 == 0:
                print(f"simulated {d - int(self.S)}/{self.days} days ({time.perf_counter() - t_start:.0f}s)",
                      file=sys.stderr, flush=True)
        self.advance(self.E)

def customer_ids(n: int) -> pd.Index:
    width = max(7, len(str(n)))
    return pd.Index([f"C{i:0{width}d}" for i in range(1, n + 1)], name="customer_id")


def simulate(
    settings,
    customers: int,
    days: int,
    seed: int,
    start: date,
    out_dir: Path | None = None,
    progress: bool = False,
) -> World:
    """Simulate `customers` over `days` from `start` with the configured catalogue and horizons;
    write the world to `out_dir` when given."""
    if isinstance(start, datetime):
        start = start.date()
    elif isinstance(start, str):
        start = date.fromisoformat(start)
    t0 = time.perf_counter()
    sim = _Sim(int(customers), int(days), int(seed), start, settings, progress)
    sim.run()
    ids = customer_ids(sim.n)
    world = World(
        customers=tables.customers(sim, ids),
        events=tables.events(sim, ids),
        truth=tables.truth(sim, ids),
        targets=tables.targets(sim, ids),
        campaigns=pd.DataFrame(sim.campaign_meta),
        lives=tables.lives(sim, ids),
    )
    world.params = {
        "customers": int(customers),
        "days": int(days),
        "seed": int(seed),
        "start": start.isoformat(),
        "history_start": (start - timedelta(days=PRE_DAYS)).isoformat(),
        "activation_window_days": sim.window,
        "habit_dropout_multiplier": HABIT_DROPOUT_MULTIPLIER,
        "control_share": legacy.CONTROL_SHARE,
        "send_hours": list(legacy.SEND_HOURS),
        "actions": list(sim.action_ids),
        "sleeping_dogs": round(float(sim.dog.mean()), 4),
        "lost_causes": round(float((sim.persuadability == 0).mean()), 4),
        "events": int(len(world.events)),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if progress:
        print(f"simulated {customers:,} customers, {len(world.events):,} events in {world.params['seconds']}s",
              file=sys.stderr, flush=True)
    if out_dir is not None:
        save_world(world, out_dir)
    return world


def save_world(world: World, out_dir: Path | str) -> Path:
    """Write customers / events / assignments (the contract's layout), truth, lives, targets, campaigns and
    world.json."""
    out_dir = Path(out_dir)
    write_world(out_dir, world.customers, world.events, world.assignments)
    world.truth.to_parquet(out_dir / "truth.parquet", index=False)
    if world.lives is not None:
        world.lives.to_parquet(out_dir / "lives.parquet", index=False)
    if world.targets is not None:
        world.targets.to_parquet(out_dir / "targets.parquet", index=False)
    if world.campaigns is not None:
        c = world.campaigns.copy()
        if "date" in c:
            c["date"] = c["date"].astype(str)
        c.to_parquet(out_dir / "campaigns.parquet", index=False)
    (out_dir / "world.json").write_text(json.dumps(world.params, indent=2) + "\n")
    return out_dir
