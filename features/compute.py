"""Point-in-time feature snapshots, computed.

A snapshot at time ``t`` describes each customer registered before ``t`` using
only the events strictly before ``t``. :func:`build_snapshots` computes them
every ``features.cadence_days`` from the first event plus one at the data's
end; :func:`snapshot_at` computes one time (real-time refresh uses it, so
online and offline features come from the same code); :class:`SnapshotPlan`
computes them a customer chunk at a time for :func:`features.pipeline.build`,
which writes them.

Everything is vectorised: events are sorted by (group, time) with the group a
customer, a (customer, channel) or a (customer, action) pair, and each
(snapshot row, time) question is one ``np.searchsorted`` into those keys;
window counts and sums are differences of prefix sums. No loop runs per
customer or per snapshot row.
"""

from __future__ import annotations

import zlib
from typing import Iterable

import numpy as np
import pandas as pd

from features.context import local_hour_weekday_codes
from features.names import customer_features, views
from nextbest.vocabulary import ATTRIBUTES, CHANNELS, EVENT_TYPES, RFM_SEGMENTS

DAY_NS = 86_400 * 1_000_000_000
NAN = np.float32("nan")
ATTRIBUTE_CODE_MODULUS = 997
# purchase counts (last 365 days) behind the monthly RFM segments (codes: vocabulary.RFM_SEGMENTS)
RFM_LOYAL_MIN_PURCHASES_365D = 12
RFM_REGULAR_MIN_PURCHASES_365D = 4
ENGAGEMENT_TYPES = ("message_opened", "message_clicked", "visit", "purchase")  # timing view
RESPONSE_TYPES = ("message_opened", "message_clicked", "message_converted")  # a response to a message
_MAX_CHUNK_ROWS = 400_000
_MAX_CHUNK_EVENTS = 3_000_000


# --------------------------------------------------------------------------- inputs


def attribute_code(values: Iterable) -> np.ndarray:
    """Stable integer code of attribute values: crc32(utf-8 text) mod 997 (missing -> code of 'unknown')."""
    vals = pd.Series(values, dtype=object).fillna("unknown").astype(str)
    uniq, inv = np.unique(vals.to_numpy(dtype=str), return_inverse=True)
    codes = np.array([zlib.crc32(u.encode()) % ATTRIBUTE_CODE_MODULUS for u in uniq], dtype=np.float32)
    return codes[inv] if len(uniq) else np.zeros(len(vals), np.float32)


def _ts_ns(s: pd.Series) -> np.ndarray:
    s = pd.to_datetime(s, utc=True)
    return s.dt.as_unit("ns").astype("int64").to_numpy() if len(s) else np.zeros(0, np.int64)


def to_ns(t) -> int:
    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.as_unit("ns").value)


class CustomerArrays:
    def __init__(self, customers: pd.DataFrame):
        c = customers.reset_index(drop=True)
        self.ids = c["customer_id"].astype(str).to_numpy(dtype=object)
        self.index = pd.Index(self.ids)
        self.n = len(c)
        self.reg = _ts_ns(c["registered_at"])
        tz = c["timezone"] if "timezone" in c else pd.Series(["UTC"] * self.n)
        self.tz = tz.astype(object).fillna("UTC").astype(str).to_numpy(dtype=object)  # categoricals too
        self.tz_codes, uniq = pd.factorize(self.tz)
        self.tz_names = list(uniq)
        self.attrs = {
            a: attribute_code(c[a] if a in c else ["unknown"] * self.n) for a in ATTRIBUTES
        }
        self.consent = {ch: _flag(c, f"consent_{ch}", self.n) for ch in CHANNELS}
        self.reachable = {ch: _flag(c, f"reachable_{ch}", self.n) for ch in CHANNELS}


def _flag(df: pd.DataFrame, col: str, n: int) -> np.ndarray:
    if col not in df:
        return np.zeros(n, np.float32)
    return df[col].fillna(False).astype(bool).to_numpy().astype(np.float32)


class EventArrays:
    """Events as arrays, sorted by (customer code, time); ``action`` indexes the catalogue's ``actions``."""

    TYPES = EVENT_TYPES

    def __init__(self, events: pd.DataFrame, cust: CustomerArrays, actions: tuple[str, ...]):
        self.actions = actions
        code = cust.index.get_indexer(events["customer_id"].astype(str)) if len(events) else np.zeros(0, np.int64)
        keep = code >= 0
        ts = _ts_ns(events["event_timestamp"]) if len(events) else np.zeros(0, np.int64)
        etype = _categorical(events, "event_type", self.TYPES)
        chan = _categorical(events, "channel", CHANNELS)
        action = _categorical(events, "action_id", actions)
        amount = (
            pd.to_numeric(events["amount"], errors="coerce").fillna(0.0).to_numpy(np.float64)
            if "amount" in events and len(events)
            else np.zeros(len(events))
        )
        code, ts, etype, chan, action, amount = (a[keep] for a in (code, ts, etype, chan, action, amount))
        order = np.lexsort((ts, code))
        self.rows = np.flatnonzero(keep)[order]  # each event's row in the frame given
        self.code = code[order].astype(np.int64)
        self.ts = ts[order]
        self.type = etype[order]
        self.channel = chan[order]
        self.action = action[order]
        self.amount = amount[order]

    def type_code(self, name: str) -> int:
        return self.TYPES.index(name)

    def __len__(self) -> int:
        return len(self.code)


def _categorical(df: pd.DataFrame, col: str, cats: tuple[str, ...]) -> np.ndarray:
    if col not in df or not len(df):
        return np.full(len(df), -1, np.int16)
    return pd.Categorical(df[col], categories=list(cats)).codes.astype(np.int16)


# --------------------------------------------------------------------------- times


def data_end(customers: pd.DataFrame, events: pd.DataFrame) -> pd.Timestamp:
    """The data's end: the UTC midnight after the last event or registration (every event is before it)."""
    last = pd.Timestamp(0, tz="UTC")
    if len(events):
        last = max(last, pd.to_datetime(events["event_timestamp"], utc=True).max())
    if len(customers):
        last = max(last, pd.to_datetime(customers["registered_at"], utc=True).max())
    return last.floor("D") + pd.Timedelta(days=1)


def snapshot_times(customers: pd.DataFrame, events: pd.DataFrame, cadence_days: int) -> pd.DatetimeIndex:
    """Every ``cadence_days`` after the first event's UTC midnight, then the data's end."""
    end = data_end(customers, events)
    if len(events):
        first = pd.to_datetime(events["event_timestamp"], utc=True).min().floor("D")
    elif len(customers):
        first = pd.to_datetime(customers["registered_at"], utc=True).min().floor("D")
    else:
        return pd.DatetimeIndex([end])
    step = pd.Timedelta(days=cadence_days)
    times = list(pd.date_range(first + step, end, freq=step, inclusive="left"))
    return pd.DatetimeIndex(times + [end]).as_unit("ns")


def _month_start(ns: np.ndarray) -> np.ndarray:
    return np.asarray(ns, dtype=np.int64).astype("datetime64[ns]").astype("datetime64[M]").astype("datetime64[ns]").astype(np.int64)


# --------------------------------------------------------------------------- the core


class _Family:
    """Events of one kind keyed by (group, time rank), with optional prefix sums of per-event values."""

    def __init__(self, group: np.ndarray, rank: np.ndarray, ts: np.ndarray, m: int, values: np.ndarray | None = None):
        key = group.astype(np.int64) * m + rank
        order = np.argsort(key, kind="stable")
        self.m = m
        self.key = key[order]
        self.rank = np.append(rank[order], 0)
        self.ts = np.append(ts[order], 0)
        self.cum = None
        if values is not None:
            v = values[order]
            self.cum = np.zeros((len(v) + 1,) + v.shape[1:], dtype=v.dtype)
            np.cumsum(v, axis=0, out=self.cum[1:])

    def pos(self, group: np.ndarray, rank: np.ndarray, side: str = "left") -> np.ndarray:
        """Index of the first event of ``group`` at or after ``rank`` (side='left': strictly before = count)."""
        return np.searchsorted(self.key, group.astype(np.int64) * self.m + rank, side=side)

    def start(self, group: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.key, group.astype(np.int64) * self.m, side="left")


class _Timeline:
    """Dense ranks of every timestamp that is compared (exact, so keys fit in int64).

    ``ranks`` holds the rank of each value of the first array (the events).
    """

    def __init__(self, first: np.ndarray, *arrays: np.ndarray):
        allv = np.concatenate([np.asarray(a, np.int64).ravel() for a in (first, *arrays)])
        order = np.argsort(allv, kind="stable")
        sv = allv[order]
        new = np.ones(len(sv), bool)
        new[1:] = sv[1:] != sv[:-1]
        inv = np.empty(len(sv), np.int64)
        inv[order] = np.cumsum(new) - 1
        self.values = sv[new]
        self.ranks = inv[: len(first)]
        self.m = len(self.values) + 1

    def rank(self, ts: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.values, ts)


def _days(t: np.ndarray, then: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.where(valid, (t - then) / DAY_NS, np.nan)


def _rfm_segment(n: np.ndarray, recency_days: np.ndarray, f365: np.ndarray, at_risk: int, lapsed: int) -> np.ndarray:
    """Segment code (index in ``RFM_SEGMENTS``), first match of: never bought, lapsed, loyal, regular, occasional."""
    code = {name: float(i) for i, name in enumerate(RFM_SEGMENTS)}
    seg = np.full(len(n), code["occasional"])
    recent = recency_days < at_risk
    seg[recent & (f365 >= RFM_REGULAR_MIN_PURCHASES_365D)] = code["regular"]
    seg[recent & (f365 >= RFM_LOYAL_MIN_PURCHASES_365D)] = code["loyal"]
    seg[recency_days >= lapsed] = code["lapsed"]
    seg[n == 0] = code["never_bought"]
    return seg


def _chunk(cust: CustomerArrays, ev: EventArrays, lo: int, hi: int, times: np.ndarray, settings) -> tuple:
    """Feature columns (float32 [features, rows], ``names.customer_features`` order), customer codes and times
    of the snapshot rows of customers lo..hi, ordered by customer then time."""
    fs = settings.features
    feature_list = customer_features(ev.actions)
    nc = hi - lo
    reg = cust.reg[lo:hi]
    # snapshot rows: (customer, t) for every customer registered strictly before t
    # (ordered by customer then time, so every searchsorted below gets nearly sorted queries)
    times = np.sort(times)
    first_t = np.searchsorted(times, reg, side="right")  # index of the first snapshot after registration
    per_c = len(times) - first_t
    rc = np.repeat(np.arange(nc, dtype=np.int64), per_c)
    offsets = np.arange(len(rc)) - np.repeat(np.cumsum(per_c) - per_c, per_c)
    rt = times[np.repeat(first_t, per_c) + offsets]
    n_rows = len(rc)
    out: dict[str, np.ndarray] = {}
    if n_rows == 0:
        return np.zeros((len(feature_list), 0), np.float32), rc + lo, rt

    e0, e1 = np.searchsorted(ev.code, [lo, hi])
    code = ev.code[e0:e1] - lo
    ts = ev.ts[e0:e1]
    etype = ev.type[e0:e1]
    chan = ev.channel[e0:e1].astype(np.int64)
    action = ev.action[e0:e1].astype(np.int64)
    amount = ev.amount[e0:e1]

    # every compared time: events, snapshot times and the window / month boundaries derived from them
    ut = np.unique(rt)
    w = {d: ut - d * DAY_NS for d in (7, 30, 90, 365)}
    m_now = _month_start(ut)
    m_prev = _month_start(m_now - DAY_NS)
    tl = _Timeline(ts, ut, *w.values(), m_now, m_prev, m_now - 365 * DAY_NS, m_prev - 365 * DAY_NS)
    M = tl.m
    rank_ev = tl.ranks
    t_idx = np.searchsorted(ut, rt)  # row -> unique time

    def row_rank(values_per_ut: np.ndarray) -> np.ndarray:
        return tl.rank(values_per_ut)[t_idx]

    r_t = row_rank(ut)
    r_w = {d: row_rank(v) for d, v in w.items()}
    m_now_row, m_prev_row = m_now[t_idx], m_prev[t_idx]
    r_m, r_mp = row_rank(m_now), row_rank(m_prev)
    r_m365, r_mp365 = row_rank(m_now - 365 * DAY_NS), row_rank(m_prev - 365 * DAY_NS)

    nch, nact = len(CHANNELS), len(ev.actions)
    is_t = {name: etype == ev.type_code(name) for name in ev.TYPES}
    has_ch = chan >= 0

    # ---- profile
    out["tenure_days"] = np.floor((rt - reg[rc]) / DAY_NS)
    for a in ATTRIBUTES:
        out[f"{a}_code"] = cust.attrs[a][lo:hi][rc]
    sel = is_t["unsubscribed"] & has_ch
    fam_unsub = _Family(code[sel] * nch + chan[sel], rank_ev[sel], ts[sel], M)
    for k, ch in enumerate(CHANNELS):
        g = rc * nch + k
        unsubscribed = fam_unsub.pos(g, r_t) > fam_unsub.start(g)
        out[f"consent_{ch}"] = np.where(unsubscribed, 0.0, cust.consent[ch][lo:hi][rc])
        out[f"reachable_{ch}"] = cust.reachable[ch][lo:hi][rc]

    # ---- lifecycle + RFM (purchases)
    sel = is_t["purchase"]
    P = _Family(code[sel], rank_ev[sel], ts[sel], M, values=amount[sel])
    p_start = P.start(np.arange(nc))[rc]
    p_pos = P.pos(rc, r_t)
    n_p = p_pos - p_start
    bought, two = n_p > 0, n_p > 1
    first = P.ts[p_start]
    second = P.ts[np.minimum(p_start + 1, len(P.ts) - 1)]
    last = P.ts[np.maximum(p_pos - 1, 0)]
    since_first = _days(rt, first, bought)
    since_last = _days(rt, last, bought)
    window = fs.activation_window_days
    stage = np.full(n_rows, 2.0)  # active
    stage[since_last >= fs.at_risk_days] = 3.0
    stage[since_last >= fs.lapsed_days] = 4.0
    stage[(n_p == 1) & (since_first <= window)] = 1.0
    stage[~bought] = 0.0
    gap2 = _days(second, first, two)
    second_in_window = np.full(n_rows, np.nan)
    second_in_window[two & (gap2 <= window)] = 1.0
    second_in_window[two & (gap2 > window)] = 0.0
    second_in_window[(n_p == 1) & (since_first > window)] = 0.0
    out["stage_code"] = stage
    out["days_since_registration"] = (rt - reg[rc]) / DAY_NS
    out["days_since_first_purchase"] = since_first
    out["days_since_last_purchase"] = since_last
    out["n_purchases"] = n_p
    out["second_purchase_in_window"] = second_in_window
    for d in (30, 90, 365):
        p_w = P.pos(rc, r_w[d])
        out[f"frequency_{d}d"] = p_pos - p_w
    for d in (30, 90, 365):
        p_w = P.pos(rc, r_w[d])
        out[f"monetary_{d}d"] = P.cum[p_pos] - P.cum[p_w]

    def segment_at(r_month: np.ndarray, r_month365: np.ndarray, month_ns: np.ndarray) -> np.ndarray:
        pos = P.pos(rc, r_month)
        n = pos - p_start
        rec = _days(month_ns, P.ts[np.maximum(pos - 1, 0)], n > 0)
        f365 = pos - P.pos(rc, r_month365)
        return _rfm_segment(n, np.nan_to_num(rec, nan=np.inf), f365, fs.at_risk_days, fs.lapsed_days)

    seg_now = segment_at(r_m, r_m365, m_now_row)
    seg_prev = segment_at(r_mp, r_mp365, m_prev_row)
    out["rfm_segment"] = seg_now
    out["rfm_segment_prev"] = seg_prev
    out["rfm_dropped"] = (seg_now < seg_prev).astype(np.float64)

    # ---- engagement per channel + pressure
    def by_channel(types: tuple[str, ...]) -> _Family:
        s = np.zeros(len(code), bool)
        for t_ in types:
            s |= is_t[t_]
        s &= has_ch
        return _Family(code[s] * nch + chan[s], rank_ev[s], ts[s], M)

    sends = by_channel(("message_sent",))
    fams = {"opened": by_channel(("message_opened",)), "clicked": by_channel(("message_clicked",)),
            "converted": by_channel(("message_converted",))}
    responses = by_channel(RESPONSE_TYPES)
    all_groups = np.arange(nc * nch)
    sent_7d_total = np.zeros(n_rows)
    sent_30d_total = np.zeros(n_rows)
    for k, ch in enumerate(CHANNELS):
        g = rc * nch + k
        s_start = sends.start(all_groups)[g]
        s_pos = sends.pos(g, r_t)
        sent = s_pos - s_start
        out[f"sent_{ch}"] = sent
        counts = {}
        for name, fam in fams.items():
            counts[name] = fam.pos(g, r_t) - fam.start(all_groups)[g]
            out[f"{name}_{ch}"] = counts[name]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"open_rate_{ch}"] = np.where(sent > 0, np.minimum(counts["opened"] / np.maximum(sent, 1), 1.0), np.nan)
            out[f"click_rate_{ch}"] = np.where(sent > 0, np.minimum(counts["clicked"] / np.maximum(sent, 1), 1.0), np.nan)
        r_pos = responses.pos(g, r_t)
        responded = r_pos > responses.start(all_groups)[g]
        last_r_rank = responses.rank[np.maximum(r_pos - 1, 0)]
        after = np.where(responded, sends.pos(g, last_r_rank, side="right"), s_start)
        out[f"consecutive_ignores_{ch}"] = s_pos - after
        out[f"days_since_response_{ch}"] = _days(rt, responses.ts[np.maximum(r_pos - 1, 0)], responded)
        s7 = s_pos - sends.pos(g, r_w[7])
        s30 = s_pos - sends.pos(g, r_w[30])
        out[f"sent_7d_{ch}"] = s7
        out[f"sent_30d_{ch}"] = s30
        sent_7d_total += s7
        sent_30d_total += s30
    out["sent_7d_total"] = sent_7d_total
    out["sent_30d_total"] = sent_30d_total
    sel = is_t["message_sent"] & (action >= 0)
    by_action = _Family(code[sel] * nact + action[sel], rank_ev[sel], ts[sel], M)
    for k, a in enumerate(ev.actions):
        g = rc * nact + k
        pos = by_action.pos(g, r_t)
        sent_before = pos > by_action.start(g)
        out[f"days_since_action_{a}"] = _days(rt, by_action.ts[np.maximum(pos - 1, 0)], sent_before)

    # ---- timing: local hour / weekday of engagement events
    sel = np.zeros(len(code), bool)
    for t_ in ENGAGEMENT_TYPES:
        sel |= is_t[t_]
    hour, wday = local_hour_weekday_codes(ts[sel], cust.tz_codes[lo:hi][code[sel]], cust.tz_names)
    onehot = np.zeros((int(sel.sum()), 31), np.int32)
    onehot[np.arange(len(hour)), hour] = 1
    onehot[np.arange(len(wday)), 24 + wday] = 1
    E = _Family(code[sel], rank_ev[sel], ts[sel], M, values=onehot)
    e_start = E.start(np.arange(nc))[rc]
    e_pos = E.pos(rc, r_t)
    n_e = (e_pos - e_start).astype(np.float64)
    counts = (E.cum[e_pos] - E.cum[e_start]).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(n_e[:, None] > 0, counts / np.maximum(n_e, 1)[:, None], np.nan)
    for h in range(24):
        out[f"hour_share_{h:02d}"] = shares[:, h]
    for d in range(7):
        out[f"weekday_share_{d}"] = shares[:, 24 + d]
    out["n_engagements"] = n_e

    cols = np.empty((len(feature_list), n_rows), np.float32)  # a contiguous row per feature: Arrow takes it as is
    for j, name in enumerate(feature_list):
        cols[j] = out.pop(name)
    assert not out, f"computed features missing from names.py: {sorted(out)}"
    return cols, rc + lo, rt


def _chunks(cust: CustomerArrays, ev: EventArrays, times: np.ndarray, breaks: tuple[int, ...] = ()) -> list[tuple[int, int]]:
    """Customer ranges of at most ``_MAX_CHUNK_ROWS`` snapshot rows and ``_MAX_CHUNK_EVENTS`` events (at least
    one customer each); none spans a customer position in ``breaks``."""
    stops = sorted({b for b in breaks if 0 < b < cust.n} | {cust.n})
    rows_per_c = np.searchsorted(np.sort(times), cust.reg, side="right")
    rows_per_c = len(times) - rows_per_c  # snapshots after registration
    ev_per_c = np.bincount(ev.code, minlength=cust.n) if len(ev) else np.zeros(cust.n, np.int64)
    cr, ce = np.cumsum(rows_per_c), np.cumsum(ev_per_c)
    bounds, lo = [], 0
    while lo < cust.n:
        base_r = cr[lo - 1] if lo else 0
        base_e = ce[lo - 1] if lo else 0
        hi = min(np.searchsorted(cr, base_r + _MAX_CHUNK_ROWS), np.searchsorted(ce, base_e + _MAX_CHUNK_EVENTS)) + 1
        hi = int(min(max(hi, lo + 1), next(b for b in stops if b > lo)))
        bounds.append((lo, hi))
        lo = hi
    return bounds or [(0, 0)]


def view_columns(columns, tz: np.ndarray, actions: tuple[str, ...]):
    """Yield (view, {column name: array}) in the feature service's layout: ``columns[j]`` is feature j of
    ``names.customer_features``; the profile view also carries the timezone. Key columns are the caller's."""
    j = 0
    for view, feats in views(actions).items():
        cols = {f: columns[j + k] for k, f in enumerate(feats)}
        j += len(feats)
        if view == "customer_profile":
            cols["timezone"] = tz
        yield view, cols


def _frames(cols: np.ndarray, ids: np.ndarray, ts: np.ndarray, tz: np.ndarray,
            actions: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    key = {
        "customer_id": ids,
        "event_timestamp": pd.DatetimeIndex(ts.astype("datetime64[ns]"), tz="UTC") if len(ts) else pd.DatetimeIndex([], tz="UTC"),
    }
    return {view: pd.DataFrame({**key, **c}) for view, c in view_columns(cols, tz, actions)}


class SnapshotPlan:
    """One snapshot computation: the customers and events as arrays, the snapshot times and the customer
    chunks (:meth:`chunk` computes one; chunks are independent, so they may run on several threads). The
    customers of ``first`` (ids) come first, in chunks of their own."""

    def __init__(self, customers: pd.DataFrame, events: pd.DataFrame, settings, times: Iterable | None = None,
                 first: np.ndarray | None = None):
        self.settings = settings
        if times is None:
            times = snapshot_times(customers, events, settings.features.cadence_days)
        breaks: tuple[int, ...] = ()
        if first is not None:
            lead = customers["customer_id"].astype(str).isin(pd.Index(np.asarray(first, dtype=str))).to_numpy()
            customers = pd.concat([customers[lead], customers[~lead]])
            breaks = (int(lead.sum()),)
        self.customers = customers  # in the order of the customer codes
        self.cust = CustomerArrays(customers)
        self.ev = EventArrays(events, self.cust, tuple(settings.actions))
        self.times_ns = np.unique(np.array([to_ns(t) for t in times], dtype=np.int64))
        self.bounds = _chunks(self.cust, self.ev, self.times_ns, breaks)

    def chunk(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chunk ``k``'s (feature columns [features, rows], customer codes, times ns), rows ordered by time then
        customer."""
        lo, hi = self.bounds[k]
        cols, codes, ts = _chunk(self.cust, self.ev, lo, hi, self.times_ns, self.settings)
        if len(ts):
            order = np.lexsort((codes, ts))
            cols, codes, ts = cols[:, order], codes[order], ts[order]
        return cols, codes, ts


def build_snapshots(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    settings,
    times: Iterable | None = None,
) -> dict[str, pd.DataFrame]:
    """Point-in-time snapshots of every view, in memory: {view: DataFrame(customer_id, event_timestamp, features...)}.

    ``times`` defaults to :func:`snapshot_times`. A row at ``t`` exists for each
    customer registered strictly before ``t`` and uses only events strictly
    before ``t``. Rows are ordered by time, then by the customers table.
    (:func:`features.pipeline.build` writes the same rows chunk by chunk without holding them.)
    """
    plan = SnapshotPlan(customers, events, settings, times)
    parts = [plan.chunk(k) for k in range(len(plan.bounds))]
    cols = np.concatenate([p[0] for p in parts], axis=1)
    codes = np.concatenate([p[1] for p in parts])
    ts = np.concatenate([p[2] for p in parts])
    if len(ts):
        order = np.lexsort((codes, ts))
        cols, codes, ts = cols[:, order], codes[order], ts[order]
    return _frames(cols, plan.cust.ids[codes], ts, plan.cust.tz[codes], tuple(settings.actions))


def snapshot_at(customers: pd.DataFrame, events: pd.DataFrame, t, settings) -> dict[str, pd.DataFrame]:
    """The snapshot at one time ``t`` (events strictly before ``t``): same code as the pipeline."""
    return build_snapshots(customers, events, settings, times=[t])
