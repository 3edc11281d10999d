"""A simulated world that runs one day at a time while a policy outside it decides the marketing.

:class:`LiveWorld` is the world of :mod:`simulator.world` (same customers,
same causal story, same legacy calendar) stopped at the start of a day: the
caller reads what a CRM would hold at that moment (the contract's tables up to
now), asks whoever decides, hands back the day's assignments (sends, and
members held out), and moves on to the next day. :meth:`LiveWorld.fork` copies
the whole state, random generator included, so several policies can live the
same future from the same day.

The legacy calendar runs up to the day the loop starts; from then on only the
assignments handed in are sent, unless a fork keeps the calendar running (the
calendar baseline).
"""

from __future__ import annotations

import copy
from datetime import date, timedelta

import numpy as np
import pandas as pd

from nextbest.vocabulary import CHANNELS
from simulator.oracle import Oracle
from simulator import legacy, tables
from simulator.tables import ET
from simulator.world import World, _Sim, customer_ids

TRIGGER_EVENTS = ("registration", "visit", "cart_abandoned", "purchase", "message_clicked")


class LiveWorld:
    """The world after `legacy_days` of calendar marketing, advanced one day at a time for `loop_days` more."""

    def __init__(self, settings, customers: int, legacy_days: int, loop_days: int, seed: int, start: date,
                 progress: bool = False, tail_days: int = 0):
        """`tail_days`: the world may live that many days past the loop (to let what it did play out) without
        changing the world of the loop's days: the same customers, registering over the legacy and loop days."""
        if legacy_days < 1 or loop_days < 1 or tail_days < 0:
            raise ValueError("legacy_days and loop_days must be positive, tail_days not negative")
        self.sim = _Sim(int(customers), int(legacy_days + loop_days), int(seed), start, settings, progress,
                        after_days=int(tail_days))
        self.ids = customer_ids(self.sim.n)
        self.first_day = int(self.sim.S) + int(legacy_days)  # day index the loop starts on
        self.sim.legacy_until = self.first_day
        self.sim.begin()
        for d in range(int(self.sim.S), self.first_day + 1):
            self.sim.day(d)
        self.today = self.first_day
        self._campaigns: dict[str, int] = {}

    # -- time --------------------------------------------------------------------
    @property
    def now(self) -> pd.Timestamp:
        return self.sim.t0 + pd.Timedelta(days=self.today)

    def next_day(self) -> None:
        """Move to the start of the next day (natural events, and the calendar's campaigns where it still runs)."""
        if self.today >= int(self.sim.E):
            raise ValueError("the simulated period is over")
        self.today += 1
        self.sim.day(self.today)

    def fork(self, calendar: bool = False, seed: int | None = None) -> "LiveWorld":
        """An independent copy living the same future (another future with `seed`: its random stream reseeded);
        with `calendar` the legacy calendar goes on in it."""
        other = copy.deepcopy(self)
        if seed is not None:
            other.sim.rng = np.random.default_rng(seed)
        if calendar:
            other.sim.legacy_until = other.sim.E
            legacy.calendar(other.sim, other.today)
        return other

    # -- what a CRM holds now ------------------------------------------------------
    def registered(self) -> np.ndarray:
        """Mask of the customers registered before now."""
        return self.sim.reg < self.today

    def triggered(self) -> np.ndarray:
        """Mask of the customers a journey engine asks about today: those with a visit, an abandoned cart, a
        purchase, a registration or a click yesterday, and everyone registered on their weekly review day."""
        lo, hi = int((self.today - 1) * 86400), int(self.today * 86400)
        kinds = np.array([ET[k] for k in TRIGGER_EVENTS], np.int8)
        out = np.zeros(self.sim.n, bool)
        for cust, sec, etype, *_ in self.sim._events:
            m = (sec >= lo) & (sec < hi) & np.isin(etype, kinds)
            out[cust[m]] = True
        weekly = (np.arange(self.sim.n) + self.today) % 7 == 0
        return (out | weekly) & self.registered()

    def pending(self) -> np.ndarray:
        """Mask of the customers with a message already planned at or after now (not yet in any table)."""
        return self.sim.recent.max(axis=1) >= self.today

    def customers(self, who: np.ndarray | None = None) -> pd.DataFrame:
        """The customers table as it stands now (consent as of now), registered customers only."""
        keep = self.registered() if who is None else np.asarray(who, bool) & self.registered()
        return tables.customers(self.sim, self.ids)[keep].reset_index(drop=True)

    def events(self, who: np.ndarray | None = None, types: tuple[str, ...] | None = None) -> pd.DataFrame:
        """The events before now (of the customers in `who`, of the `types`)."""
        ev = tables.events(self.sim, self.ids, keep=True, types=types, who=who)
        return ev[ev["event_timestamp"] < self.now].reset_index(drop=True)

    def targets(self) -> pd.DataFrame:
        """Every assignment so far (the legacy campaigns' and those handed in), controls included."""
        return tables.targets(self.sim, self.ids, keep=True)

    def mark(self) -> int:
        """A bookmark in the assignments: :meth:`assignments_since` returns those made after it."""
        return len(self.sim._targets)

    def assignments_since(self, mark: int) -> tuple | None:
        """The raw assignment rows made after `mark` (customer row, campaign, channel, action, stage, planned time
        in days, control, propensity), None when there are none."""
        parts = self.sim._targets[mark:]
        return tuple(np.concatenate(p) for p in zip(*parts)) if parts else None

    def world(self) -> World:
        """The world as a CRM export of now would show it: the contract's tables up to now, plus the truth."""
        targets = self.targets()
        targets = targets[targets["planned_at"] < self.now].reset_index(drop=True)
        return World(customers=self.customers(), events=self.events(), truth=tables.truth(self.sim, self.ids),
                     targets=targets, campaigns=pd.DataFrame(self.sim.campaign_meta), lives=self.lives(),
                     params={"customers": self.sim.n, "seed": self.sim.seed, "start": self.sim.start.isoformat(),
                             "loop_start": self.day_of(self.first_day).isoformat(),
                             "now": self.now.isoformat(), "activation_window_days": self.sim.window})

    def lives(self) -> pd.DataFrame:
        lives = tables.lives(self.sim, self.ids)
        return lives[lives["at"] < self.now].reset_index(drop=True)

    def oracle(self, who: np.ndarray | None = None, consent_at: pd.Timestamp | None = None) -> Oracle:
        """The truth as of now (for the customers in `who`): what any option is worth to them. With `consent_at`,
        the consent is the one of that time (unsubscriptions since then undone)."""
        who = np.ones(self.sim.n, bool) if who is None else np.asarray(who, bool)
        truth = tables.truth(self.sim, self.ids)[who].reset_index(drop=True)
        customers = tables.customers(self.sim, self.ids)[who].reset_index(drop=True)
        if consent_at is not None:
            unsub = tables.events(self.sim, self.ids, keep=True, types=("unsubscribed",), who=who)
            unsub = unsub[unsub["event_timestamp"] >= consent_at]
            rows = pd.Index(customers["customer_id"].astype(str)).get_indexer(unsub["customer_id"].astype(str))
            for c in CHANNELS:
                customers.loc[rows[unsub["channel"].astype(str).eq(c).to_numpy()], f"consent_{c}"] = True
        lives = tables.lives(self.sim, self.ids)
        lives = lives[lives["customer_id"].isin(set(truth["customer_id"]))]
        return Oracle(truth, customers, self.events(who, ("purchase", "message_sent")), window_days=self.sim.window,
                      lives=lives)

    def day_of(self, d: int) -> date:
        return self.sim.start + timedelta(days=d - int(self.sim.S))

    # -- acting ----------------------------------------------------------------------
    def send_time(self, idx: np.ndarray, local_hour: np.ndarray) -> np.ndarray:
        """The UTC day offsets of local `local_hour` today for each customer, tomorrow where today's has passed."""
        idx = np.asarray(idx, np.int64)
        ts = self.sim.to_utc(idx, self.today + np.asarray(local_hour, float) / 24.0)
        later = ts < self.today
        ts[later] = self.sim.to_utc(idx[later], self.today + 1 + np.asarray(local_hour, float)[later] / 24.0)
        return np.maximum(ts, float(self.today))

    def assign(self, idx: np.ndarray, action: np.ndarray, channel: np.ndarray, local_hour: np.ndarray,
               propensity: np.ndarray, control: np.ndarray, campaign: str) -> None:
        """Record today's assignments of customers `idx` (action -1 = no action; `control` = held out) and send
        the messages among them at their local hour."""
        idx = np.asarray(idx, np.int64)
        action, channel = np.asarray(action, np.int16), np.asarray(channel, np.int8)
        control = np.asarray(control, bool)
        hour = np.where(action >= 0, np.asarray(local_hour, float), 12.0)
        ts = self.send_time(idx, hour)
        if campaign not in self._campaigns:
            self._campaigns[campaign] = self.sim.campaign(campaign, "any", "decision", None,
                                                          self.day_of(self.today))
        camp = np.full(len(idx), self._campaigns[campaign], np.int32)
        stage = self.sim.stage(idx, ts)
        self.sim._targets.append((idx.astype(np.int32), camp, np.where(action >= 0, channel, -1).astype(np.int8),
                                  action, stage, ts.copy(), control, np.asarray(propensity, float)))
        send = (action >= 0) & ~control
        for k in range(len(CHANNELS)):
            m = send & (channel == k)
            if m.any():
                self.sim.send(idx[m], k, action[m], camp[m], ts[m], hour[m])

