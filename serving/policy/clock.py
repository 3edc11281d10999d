"""Local time of each customer: UTC offsets per timezone, vectorised, and the next send time."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from serving.policy.common import _NS_DAY, _NS_HOUR

_SMALL = 64  # rows below which plain Python factorises faster than pandas


def _timezone_codes(timezones: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Factorised timezones (codes into names) and the mask of rows that fell back to UTC."""
    if len(timezones) <= _SMALL:  # a request's few customers: a dict beats pandas' set-up
        seen: dict = {}
        codes = np.array([-1 if z is None or pd.isna(z) else seen.setdefault(z, len(seen)) for z in list(timezones)],
                         np.int64)
        uniques = list(seen)
    else:
        codes, uniques = pd.factorize(timezones, use_na_sentinel=True)
    names, bad_code = [], []
    for z in uniques:
        try:
            ZoneInfo(str(z))
            names.append(str(z)), bad_code.append(False)
        except (ValueError, KeyError, OSError):  # unknown or malformed IANA name
            names.append("UTC"), bad_code.append(True)
    names.append("UTC")  # code -1 (missing) -> last name
    bad = np.append(np.array(bad_code, bool), True)[codes]
    return codes.astype(np.int32), names, bad


def _by_timezone(codes: np.ndarray, names: list[str]):
    """Yield (timezone name, row positions) for each timezone present."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    bounds = np.flatnonzero(np.diff(sorted_codes)) + 1
    for rows in np.split(order, bounds):
        if len(rows):
            yield names[codes[rows[0]]], rows


class _Offsets:
    """UTC offsets of one timezone over a time span, as arrays: exact, vectorised, from zoneinfo.

    The zone is sampled once a day (UTC midnights) and every change of offset
    is located to the second by bisection, so ``at(u)`` is one ``searchsorted``
    (this assumes no two transitions within a day, which holds for the IANA
    zones). Tables are cached per (zone, span of days): see :func:`_offsets`.
    """

    _STEP = 86_400

    def __init__(self, zone: ZoneInfo, first_day: int, last_day: int):
        def off(t: int) -> int:
            return int(datetime.fromtimestamp(t, zone).utcoffset().total_seconds())

        grid = list(range(first_day * self._STEP, (last_day + 1) * self._STEP + 1, self._STEP))
        offsets = [off(t) for t in grid]
        trans, vals = [], [offsets[0]]
        for k in range(1, len(grid)):
            if offsets[k] != offsets[k - 1]:
                lo, hi = grid[k - 1], grid[k]  # off(lo) is the old offset, off(hi) the new one
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if off(mid) == offsets[k - 1]:
                        lo = mid
                    else:
                        hi = mid
                trans.append(hi)
                vals.append(offsets[k])
        self.transitions = np.array(trans, np.int64) * 1_000_000_000
        self.offsets = np.array(vals, np.int64) * 1_000_000_000

    def at(self, utc_ns: np.ndarray) -> np.ndarray:
        """Offset (ns) in force at each UTC instant."""
        return self.offsets[np.searchsorted(self.transitions, utc_ns, side="right")]

    def wall_to_utc(self, wall_ns: np.ndarray) -> np.ndarray:
        """The instant of a local wall-clock time, like zoneinfo with fold=0: an ambiguous time
        (fall-back) takes the earlier instant, a time in a gap (spring-forward) is read with the
        offset before the gap, so it moves forward by the gap (02:00 -> 03:00)."""
        before = self.at(wall_ns - 15 * _NS_HOUR)  # offsets span -12h..+14h: probes bracket every candidate
        after = self.at(wall_ns + 15 * _NS_HOUR)
        c_before, c_after = wall_ns - before, wall_ns - after
        ok_before = self.at(c_before) == before
        ok_after = self.at(c_after) == after
        only_after = ok_after & ~ok_before
        return np.where(ok_before & ok_after, np.minimum(c_before, c_after), np.where(only_after, c_after, c_before))


@lru_cache(maxsize=4096)
def _offsets_cached(tz: str, first_day: int, last_day: int) -> _Offsets:
    return _Offsets(ZoneInfo(tz), first_day, last_day)


def _offsets(tz: str, start_ns: int, end_ns: int) -> _Offsets:
    """Offsets of `tz` covering [start - 2 days, end + 4 days] (room for the send-time search)."""
    return _offsets_cached(tz, start_ns // _NS_DAY - 2, end_ns // _NS_DAY + 4)


def local_clock(now_ns: np.ndarray, codes: np.ndarray, names: list[str]) -> np.ndarray:
    """Local wall-clock time (int64 ns, naive) of each customer's ``now``."""
    out = np.empty_like(now_ns)
    for tz, rows in _by_timezone(codes, names):
        now = now_ns[rows]
        out[rows] = now + _offsets(tz, int(now.min()), int(now.max())).at(now)
    return out


def send_times(
    now_ns: np.ndarray, hour: np.ndarray, codes: np.ndarray, names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Next ``hour``:00 local strictly after ``now``: (UTC int64 ns, UTC offset in minutes).

    Vectorised per timezone. An ambiguous wall time (fall-back) takes the
    earlier instant; one inside a spring-forward gap moves forward by the gap.
    """
    utc_out = np.empty_like(now_ns)
    off_out = np.empty(len(now_ns), np.int32)
    for tz, rows in _by_timezone(codes, names):
        now = now_ns[rows]
        zone = _offsets(tz, int(now.min()), int(now.max()))
        wall_now = now + zone.at(now)
        wall = wall_now - wall_now % _NS_DAY + hour[rows].astype(np.int64) * _NS_HOUR
        wall = np.where(wall <= wall_now, wall + _NS_DAY, wall)
        utc = zone.wall_to_utc(wall)
        late = utc <= now
        while late.any():  # only around DST changes
            wall[late] += _NS_DAY
            utc[late] = zone.wall_to_utc(wall[late])
            late = utc <= now
        utc_out[rows] = utc
        off_out[rows] = zone.at(utc) // 60_000_000_000
    return utc_out, off_out


def iso_with_offset(utc_ns: np.ndarray, offset_min: np.ndarray) -> np.ndarray:
    """ISO-8601 local timestamps with their UTC offset, e.g. ``2025-03-04T10:00:00+01:00``."""
    if len(utc_ns) == 0:
        return np.array([], dtype="U25")
    wall = (utc_ns + offset_min.astype(np.int64) * 60_000_000_000).view("datetime64[ns]")
    text = np.datetime_as_string(wall, unit="s")
    uniq, inv = np.unique(offset_min, return_inverse=True)
    suffix = np.array([f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}" for m in uniq])[inv]
    return np.char.add(text, suffix)
