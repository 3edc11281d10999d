"""Contact pressure shared by every worker: reservations and confirmed sends.

The feature snapshot a decision reads counts the sends it has seen (``sent_7d_<channel>``,
``sent_30d_<channel>``, ``sent_7d_total``, ``sent_30d_total``, ``days_since_action_<id>``).
What it may not show yet lives here, in one store every worker process shares:

* a **reservation** for every send a decision recommends, held until its ``send_at`` plus
  ``serving.reservation_hold_minutes`` unless ``sent`` feedback confirms it or ``cancelled`` releases it;
* every **confirmed send**, at its own timestamp, until the online features are known to count it
  (a late send, older than the last feature build, never is: it counts from here for its whole window).

A decision first adds what the store knows to the customers' pressure columns
(:meth:`PressureStore.overlay`, :meth:`Overlay.apply`), then reserves each send atomically
(:meth:`PressureStore.reserve`): the customer's counts and cooldown are checked and the reservation
is written in one transaction (SQLite ``BEGIN IMMEDIATE``) or one Lua script (Redis), so two
workers can never both take the last unit of a cap.

Why a confirmed send stops counting here only when it is safe: feedback pushes the send into the
online features *before* confirming it, and every confirmation takes the next value of a sequence.
A decision reads that sequence (its *watermark*) before it reads the features, so a send confirmed
at or below the watermark with ``in_features`` is certainly in the features it read; anything
confirmed later still counts here. The worst case is a send counted twice for one decision, never
a send not counted. Pushes of one customer are serialised by :meth:`PressureStore.customer_lock`,
so an older snapshot can never overwrite a newer one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from nextbest.vocabulary import CHANNELS
from serving.sqlite import SqliteFile

MS_DAY = 86_400_000
WINDOWS = (7, 30)  # rolling windows of the pressure features: sent_7d_* and sent_30d_*
RESERVED, SENT, CANCELLED = "reserved", "sent", "cancelled"
LOCK_SLOTS = 4096  # customer locks are byte ranges of one lock file, by a hash of the customer id
PRUNE_EVERY_S = 600  # forgotten contacts (expired reservations, sends past every window) are deleted this often


class PressureStoreUnavailable(RuntimeError):
    """The shared pressure store cannot be reached (file missing, Redis down)."""


@dataclass(frozen=True)
class Limits:
    """The contact policy as the store checks it: caps per channel and overall, cooldown per action."""

    actions: tuple[str, ...]
    cap_window: tuple[int, ...]  # per channel (CHANNELS order): the feature window of its cap, 7 or 30 days
    cap_max: tuple[float, ...]  # per channel; inf = no cap
    overall_window: int
    overall_max: float
    cooldown_days: tuple[float, ...]  # per action
    keep_days: int  # how long a confirmed send can still matter (longest window or cooldown)

    @classmethod
    def from_policy(cls, policy) -> "Limits":
        """From a :class:`serving.policy.CompiledPolicy` (its cap features name the windows)."""
        window = lambda feature: int(feature.split("_")[1].rstrip("d"))  # noqa: E731  sent_7d_email -> 7
        cooldown = tuple(float(d) for d in policy.cooldown_days)
        return cls(
            actions=tuple(policy.actions),
            cap_window=tuple(window(f) for f in policy.cap_features),
            cap_max=tuple(float(m) for m in policy.cap_max),
            overall_window=window(policy.overall_feature),
            overall_max=float(policy.overall_max),
            cooldown_days=cooldown,
            keep_days=int(max([*WINDOWS, *cooldown])) + 1,
        )


@dataclass(frozen=True)
class Contact:
    decision_id: str
    customer_id: str
    action: str
    channel: str
    state: str
    at_ms: int  # reservation: its send_at; send: the event's own timestamp
    expires_ms: int | None = None
    seq: int | None = None  # confirmation sequence (sends only)
    in_features: bool = False  # the online features count this send

    def counts(self, now_ms: int, watermark: int) -> bool:
        """Whether the features read after ``watermark`` may miss this contact, so the store must count it."""
        if self.state == RESERVED:
            return self.expires_ms is not None and self.expires_ms > now_ms
        if self.state == SENT:
            return not self.in_features or (self.seq or 0) > watermark
        return False

    def in_window(self, now_ms: int, days: int) -> bool:
        return self.state == RESERVED or self.at_ms > now_ms - days * MS_DAY

    def days_ago(self, now_ms: int) -> float:
        return 0.0 if self.state == RESERVED else max(0.0, (now_ms - self.at_ms) / MS_DAY)


@dataclass(frozen=True)
class Reservation:
    """A send a decision recommends, with the customer's pressure as its feature snapshot shows it."""

    decision_id: str
    customer_id: str
    action: str
    channel: str
    send_at_ms: int
    expires_ms: int
    base_channel: float  # sends on `channel` in its cap window, from the features (NaN = none)
    base_overall: float  # sends on every channel in the overall window
    base_days_since: float  # days since `action` was last sent (NaN = never)


def fits(r: Reservation, contacts: Sequence[Contact], limits: Limits, now_ms: int, watermark: int) -> bool:
    """Whether ``r`` stays within its channel cap, the overall cap and its action's cooldown, given the
    customer's ``contacts`` in the store (its own earlier reservation excluded)."""
    c, a = CHANNELS.index(r.channel), limits.actions.index(r.action)
    live = [x for x in contacts if x.decision_id != r.decision_id and x.counts(now_ms, watermark)]
    on_channel = sum(1 for x in live if x.channel == r.channel and x.in_window(now_ms, limits.cap_window[c]))
    overall = sum(1 for x in live if x.in_window(now_ms, limits.overall_window))
    since = [x.days_ago(now_ms) for x in live if x.action == r.action]
    base_since = r.base_days_since if math.isfinite(r.base_days_since) else math.inf
    days_since = min([base_since, *since])
    return (_n(r.base_channel) + on_channel < limits.cap_max[c]
            and _n(r.base_overall) + overall < limits.overall_max
            and days_since >= limits.cooldown_days[a])


def _n(x: float) -> float:
    return 0.0 if x is None or not math.isfinite(x) else float(x)


@dataclass
class Overlay:
    """What the store knows about some customers that their feature snapshot may not show."""

    watermark: int
    contacts: dict[str, list[Contact]] = field(default_factory=dict)  # customer -> all its contacts in the store

    def apply(self, X: np.ndarray, index: dict[str, int], ids: Sequence[str], now_ms: int,
              actions: Sequence[str]) -> None:
        """Add the counting contacts to the pressure columns of ``X`` (rows in ``ids`` order), in place."""
        for i, cid in enumerate(ids):
            row = X[i]
            for x in self.contacts.get(cid, ()):
                if not x.counts(now_ms, self.watermark):
                    continue
                for w in WINDOWS:
                    if x.in_window(now_ms, w):
                        for name in (f"sent_{w}d_{x.channel}", f"sent_{w}d_total"):
                            j = index[name]
                            v = float(row[j])
                            row[j] = 1.0 if math.isnan(v) else v + 1.0
                if x.action in actions:
                    j = index[f"days_since_action_{x.action}"]
                    d, v = x.days_ago(now_ms), float(row[j])
                    row[j] = d if not math.isfinite(v) else min(v, d)


class PressureStore:
    """The interface both stores implement (SQLite on one machine, Redis across machines)."""

    limits: Limits

    def overlay(self, customer_ids: Sequence[str]) -> Overlay:
        raise NotImplementedError

    def reserve(self, reservations: Sequence[Reservation], watermark: int, now_ms: int) -> list[bool]:
        """Check and write each reservation atomically; True where it was written (or was already held)."""
        raise NotImplementedError

    def state(self, decision_id: str, customer_id: str) -> str | None:
        """reserved, sent, cancelled, or None when the store holds nothing for the decision."""
        raise NotImplementedError

    def confirm(self, decision_id: str, customer_id: str, action: str, channel: str, at_ms: int,
                in_features: bool) -> str | None:
        """Record a send (idempotent); return the decision's state before (None: nothing was held)."""
        raise NotImplementedError

    def cancel(self, decision_id: str, customer_id: str) -> str | None:
        """Release a reservation; return the state before (a send is never released)."""
        raise NotImplementedError

    def customer_lock(self, customer_id: str):
        """A lock, shared by every worker, around one customer's feature pushes."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise :class:`PressureStoreUnavailable` unless the store answers."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def open_pressure_store(settings, limits: Limits) -> PressureStore:
    """The store ``settings.pressure_store`` selects."""
    cfg = settings.pressure_store
    if cfg.kind == "redis":
        return RedisPressure(limits, cfg.redis_host, cfg.redis_port, cfg.redis_db, cfg.key_prefix)
    return SqlitePressure(settings.pressure_path, limits, create=True)


# --------------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
  decision_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, action TEXT NOT NULL, channel TEXT NOT NULL,
  state TEXT NOT NULL, at_ms INTEGER NOT NULL, expires_ms INTEGER, seq INTEGER, in_features INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS contacts_customer ON contacts(customer_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('seq', 0);
"""
_COLUMNS = "decision_id, customer_id, action, channel, state, at_ms, expires_ms, seq, in_features"


def _contact(row) -> Contact:
    return Contact(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], bool(row[8]))


class SqlitePressure(PressureStore):
    """One SQLite file in WAL mode shared by the workers of one machine; writes under ``BEGIN IMMEDIATE``.

    The file is created only when ``create`` is set (at service start); a worker never recreates a
    store that disappeared underneath it: it reports it unavailable instead."""

    def __init__(self, path: Path | str, limits: Limits, create: bool = False):
        self.path, self.limits = Path(path), limits
        self.db = SqliteFile(path, "pressure store", PressureStoreUnavailable,
                             create=(lambda c: c.executescript(_SCHEMA)) if create else None)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_fd: int | None = None
        self._lock_guard = threading.Lock()
        self._thread_locks = [threading.Lock() for _ in range(64)]
        self._next_prune = 0.0

    def _rows(self, conn, ids: Sequence[str]) -> dict[str, list[Contact]]:
        out: dict[str, list[Contact]] = {}
        ids = list(dict.fromkeys(ids))
        for lo in range(0, len(ids), 500):
            part = ids[lo:lo + 500]
            q = f"SELECT {_COLUMNS} FROM contacts WHERE customer_id IN ({','.join('?' * len(part))})"
            for row in conn.execute(q, part):
                out.setdefault(row[1], []).append(_contact(row))
        return out

    def overlay(self, customer_ids: Sequence[str]) -> Overlay:
        with self.db.tx(immediate=False) as conn:
            watermark = conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0]
            return Overlay(watermark, self._rows(conn, customer_ids))

    def reserve(self, reservations: Sequence[Reservation], watermark: int, now_ms: int) -> list[bool]:
        if not reservations:
            return []
        with self.db.tx(immediate=True) as conn:
            rows = self._rows(conn, [r.customer_id for r in reservations])
            ok = []
            for r in reservations:
                mine = rows.setdefault(r.customer_id, [])
                held = next((x for x in mine if x.decision_id == r.decision_id and x.state != RESERVED), None)
                if held is not None:  # already sent or cancelled: a retried decision changes nothing
                    ok.append(held.state == SENT)
                    continue
                if not fits(r, mine, self.limits, now_ms, watermark):
                    ok.append(False)
                    continue
                conn.execute(
                    f"INSERT OR REPLACE INTO contacts ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,NULL,0)",
                    (r.decision_id, r.customer_id, r.action, r.channel, RESERVED, r.send_at_ms, r.expires_ms))
                mine.append(Contact(r.decision_id, r.customer_id, r.action, r.channel, RESERVED, r.send_at_ms,
                                    r.expires_ms))
                ok.append(True)
            if time.monotonic() > self._next_prune:  # housekeeping, a few times an hour per worker
                self._next_prune = time.monotonic() + PRUNE_EVERY_S
                conn.execute("DELETE FROM contacts WHERE (state != ? AND at_ms < ?) OR (state = ? AND expires_ms < ?)",
                             (RESERVED, now_ms - self.limits.keep_days * MS_DAY, RESERVED, now_ms - MS_DAY))
            return ok

    def _state(self, conn, decision_id: str) -> str | None:
        row = conn.execute("SELECT state FROM contacts WHERE decision_id = ?", (decision_id,)).fetchone()
        return None if row is None else row[0]

    def state(self, decision_id: str, customer_id: str) -> str | None:
        with self.db.tx(immediate=False) as conn:
            return self._state(conn, decision_id)

    def confirm(self, decision_id: str, customer_id: str, action: str, channel: str, at_ms: int,
                in_features: bool) -> str | None:
        with self.db.tx(immediate=True) as conn:
            before = self._state(conn, decision_id)
            if before == SENT:
                return before
            seq = conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'seq' RETURNING value").fetchone()[0]
            conn.execute(f"INSERT OR REPLACE INTO contacts ({_COLUMNS}) VALUES (?,?,?,?,?,?,NULL,?,?)",
                         (decision_id, customer_id, action, channel, SENT, at_ms, seq, int(in_features)))
            return before

    def cancel(self, decision_id: str, customer_id: str) -> str | None:
        with self.db.tx(immediate=True) as conn:
            before = self._state(conn, decision_id)
            if before == RESERVED:
                conn.execute("UPDATE contacts SET state = ? WHERE decision_id = ?", (CANCELLED, decision_id))
            return before

    @contextlib.contextmanager
    def customer_lock(self, customer_id: str):
        slot = int.from_bytes(hashlib.blake2b(customer_id.encode(), digest_size=4).digest(), "big") % LOCK_SLOTS
        with self._thread_locks[slot % len(self._thread_locks)]:  # fcntl locks are per process, not per thread
            with self._lock_guard:
                if self._lock_fd is None:
                    import os

                    self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.lockf(self._lock_fd, fcntl.LOCK_EX, 1, slot)
            try:
                yield
            finally:
                fcntl.lockf(self._lock_fd, fcntl.LOCK_UN, 1, slot)

    def ping(self) -> None:
        self.db.ping("SELECT value FROM meta WHERE key = 'seq'")

    def close(self) -> None:
        self.db.close()


# --------------------------------------------------------------------------- Redis

# One hash per customer (field: decision id, value: the contact as JSON); one counter for the sequence.
# Contact JSON: {"a": action, "c": channel, "s": state, "at": ms, "exp": ms|null, "seq": n|null, "f": 0|1}
_LUA_COUNTS = """
local function counts(x, now, watermark)
  if x.s == 'reserved' then return x.exp ~= cjson.null and x.exp > now end
  if x.s == 'sent' then return x.f == 0 or (x.seq ~= cjson.null and x.seq > watermark) end
  return false
end
local function in_window(x, now, days) return x.s == 'reserved' or x.at > now - days * 86400000 end
"""
# KEYS[1] customer hash; ARGV: decision, action, channel, send_at, expires, now, watermark, base_channel,
# base_overall, base_days_since (-1 = never), cap_max (-1 = none), cap_window, overall_max, overall_window,
# cooldown_days, keep_days
_LUA_RESERVE = _LUA_COUNTS + """
local now, watermark = tonumber(ARGV[6]), tonumber(ARGV[7])
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  local x = cjson.decode(held)
  if x.s ~= 'reserved' then if x.s == 'sent' then return 1 else return 0 end end
end
local on_channel, overall = 0, 0
local since = tonumber(ARGV[10])
local all = redis.call('HGETALL', KEYS[1])
local keep = now - tonumber(ARGV[16]) * 86400000
for i = 1, #all, 2 do
  local x = cjson.decode(all[i + 1])
  if (x.s ~= 'reserved' and x.at < keep) or (x.s == 'reserved' and x.exp ~= cjson.null and x.exp < now - 86400000) then
    redis.call('HDEL', KEYS[1], all[i])
  elseif all[i] ~= ARGV[1] and counts(x, now, watermark) then
    if x.c == ARGV[3] and in_window(x, now, tonumber(ARGV[12])) then on_channel = on_channel + 1 end
    if in_window(x, now, tonumber(ARGV[14])) then overall = overall + 1 end
    if x.a == ARGV[2] then
      local d = 0
      if x.s ~= 'reserved' then d = math.max(0, (now - x.at) / 86400000) end
      if since < 0 or d < since then since = d end
    end
  end
end
local cap = tonumber(ARGV[11])
if cap >= 0 and tonumber(ARGV[8]) + on_channel >= cap then return 0 end
if tonumber(ARGV[9]) + overall >= tonumber(ARGV[13]) then return 0 end
if since >= 0 and since < tonumber(ARGV[15]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({a = ARGV[2], c = ARGV[3], s = 'reserved',
  at = tonumber(ARGV[4]), exp = tonumber(ARGV[5]), seq = cjson.null, f = 0}))
return 1
"""
# KEYS[1] customer hash, KEYS[2] sequence; ARGV: decision, action, channel, at, in_features -> state before
_LUA_CONFIRM = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
local before = false
if held then before = cjson.decode(held).s end
if before == 'sent' then return before end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({a = ARGV[2], c = ARGV[3], s = 'sent', at = tonumber(ARGV[4]),
  exp = cjson.null, seq = seq, f = tonumber(ARGV[5])}))
return before
"""
_LUA_CANCEL = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return false end
local x = cjson.decode(held)
local before = x.s
if before == 'reserved' then x.s = 'cancelled'; redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(x)) end
return before
"""


class RedisPressure(PressureStore):
    """Redis: each reservation is checked and written by one Lua script, atomic per customer."""

    def __init__(self, limits: Limits, host: str, port: int, db: int = 0, prefix: str = "nextbest"):
        import redis

        self.limits, self.prefix = limits, prefix
        self.client = redis.Redis(host=host, port=port, db=db, socket_timeout=5, socket_connect_timeout=2)
        self._errors = (redis.RedisError, OSError)
        self._reserve = self.client.register_script(_LUA_RESERVE)
        self._confirm = self.client.register_script(_LUA_CONFIRM)
        self._cancel = self.client.register_script(_LUA_CANCEL)
        self._seq = f"{prefix}:pressure:seq"

    def _key(self, customer_id: str) -> str:
        return f"{self.prefix}:pressure:c:{customer_id}"

    @contextlib.contextmanager
    def _guard(self):
        try:
            yield
        except self._errors as e:
            raise PressureStoreUnavailable(f"pressure store redis: {type(e).__name__}: {e}") from None

    def overlay(self, customer_ids: Sequence[str]) -> Overlay:
        ids = list(dict.fromkeys(customer_ids))
        with self._guard():
            pipe = self.client.pipeline(transaction=False)
            pipe.get(self._seq)
            for cid in ids:
                pipe.hgetall(self._key(cid))
            res = pipe.execute()
        out: dict[str, list[Contact]] = {}
        for cid, fields in zip(ids, res[1:]):
            if fields:
                out[cid] = [self._decode(cid, k.decode(), v) for k, v in fields.items()]
        return Overlay(int(res[0] or 0), out)

    @staticmethod
    def _decode(customer_id: str, decision_id: str, raw: bytes) -> Contact:
        x = json.loads(raw)
        return Contact(decision_id, customer_id, x["a"], x["c"], x["s"], int(x["at"]), x.get("exp"), x.get("seq"),
                       bool(x.get("f")))

    def reserve(self, reservations: Sequence[Reservation], watermark: int, now_ms: int) -> list[bool]:
        lim = self.limits
        with self._guard():
            pipe = self.client.pipeline(transaction=False)
            for r in reservations:
                c, a = CHANNELS.index(r.channel), lim.actions.index(r.action)
                since = r.base_days_since if math.isfinite(r.base_days_since) else -1
                cap = lim.cap_max[c] if math.isfinite(lim.cap_max[c]) else -1
                self._reserve(keys=[self._key(r.customer_id)], client=pipe, args=[
                    r.decision_id, r.action, r.channel, r.send_at_ms, r.expires_ms, now_ms, watermark,
                    _n(r.base_channel), _n(r.base_overall), since, cap, lim.cap_window[c], lim.overall_max,
                    lim.overall_window, lim.cooldown_days[a], lim.keep_days])
            return [bool(x) for x in pipe.execute()]

    def confirm(self, decision_id: str, customer_id: str, action: str, channel: str, at_ms: int,
                in_features: bool) -> str | None:
        with self._guard():
            before = self._confirm(keys=[self._key(customer_id), self._seq],
                                   args=[decision_id, action, channel, at_ms, int(in_features)])
        return before.decode() if before else None

    def state(self, decision_id: str, customer_id: str) -> str | None:
        with self._guard():
            raw = self.client.hget(self._key(customer_id), decision_id)
        return None if raw is None else json.loads(raw)["s"]

    def cancel(self, decision_id: str, customer_id: str) -> str | None:
        with self._guard():
            before = self._cancel(keys=[self._key(customer_id)], args=[decision_id])
        return before.decode() if before else None

    @contextlib.contextmanager
    def customer_lock(self, customer_id: str):
        with self._guard():
            lock = self.client.lock(f"{self.prefix}:pressure:lock:{customer_id}", timeout=60, blocking_timeout=60)
            lock.acquire()
        try:
            yield
        finally:
            with contextlib.suppress(*self._errors):
                lock.release()

    def ping(self) -> None:
        with self._guard():
            self.client.ping()

    def close(self) -> None:
        self.client.close()
