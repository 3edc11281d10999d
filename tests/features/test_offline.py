"""The offline store's point-in-time join: the newest source row at or before each entity row, per key."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features.offline import _as_of, _EntityKeys, _Rows


def _expected(left: pd.DataFrame, right: pd.DataFrame, ttl: pd.Timedelta | None) -> np.ndarray:
    """pandas' merge_asof answer: the matched source row's index per entity row (-1 without one)."""
    merged = pd.merge_asof(left.assign(_row=np.arange(len(left))).sort_values("t", kind="stable"),
                           right.assign(_j=np.arange(len(right))).sort_values("t", kind="stable"),
                           on="t", by="k", direction="backward", allow_exact_matches=True, tolerance=ttl)
    out = np.full(len(left), -1)
    hit = merged["_j"].notna().to_numpy()
    out[merged["_row"].to_numpy()[hit]] = merged["_j"].to_numpy()[hit].astype(int)
    return out


@pytest.mark.parametrize("ttl", [None, pd.Timedelta(days=10)])
def test_the_join_picks_the_newest_row_at_or_before_each_entity_row(ttl):
    rng = np.random.default_rng(5)
    t0 = pd.Timestamp("2025-01-01", tz="UTC")
    grid = t0 + pd.to_timedelta(np.arange(0, 70, 7), unit="D")  # weekly snapshots
    right = pd.DataFrame({"k": [f"c{i}" for i in rng.integers(0, 50, 400)],
                          "t": grid[rng.integers(0, len(grid), 400)]})
    right = right.drop_duplicates().reset_index(drop=True)
    left = pd.DataFrame({"k": [f"c{i}" for i in rng.integers(0, 60, 3000)],  # c50..c59 have no rows
                         "t": t0 + pd.to_timedelta(rng.integers(-5 * 86400, 80 * 86400, 3000), unit="s")})
    left.loc[:20, "t"] = grid[3]  # exactly at a snapshot: that snapshot counts
    keys = _EntityKeys([left["k"]])
    codes = keys.codes([pa.chunked_array([pa.array(right["k"])])])
    got = _as_of(_Rows(keys.left, pd.DatetimeIndex(left["t"]).asi8), codes, pd.DatetimeIndex(right["t"]).asi8,
                 None if ttl is None else int(ttl.value))
    want = _expected(left, right, ttl)
    np.testing.assert_array_equal(got, want)
    assert (got >= 0).sum() > 1000 and (got < 0).sum() > 100  # both cases are exercised
    unknown = left["k"].isin([f"c{i}" for i in range(50, 60)]).to_numpy()
    assert (got[unknown] == -1).all()


def test_source_keys_no_entity_row_has_are_left_out():
    keys = _EntityKeys([pd.Series(["a", "b", "a"])])
    codes = keys.codes([pa.chunked_array([pa.array(["b", "zz", None, "a"]).dictionary_encode()])])
    assert codes.tolist() == [keys.left[1], -1, -1, keys.left[0]]
