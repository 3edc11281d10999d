"""Splitting a world by customer: every row lands in its customer's part, once, whatever the file format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.contract import ContractError, write_world
from nextbest.partition import customer_ids, id_ranges, load_part, part_count, split_world
from tests.features.world import make_world


@pytest.fixture(scope="module")
def world():
    return make_world(n_customers=90, days=60, seed=5)


def test_part_count_keeps_parts_under_the_limit():
    assert part_count(0, 50) == 1
    assert part_count(120, 50) == 3
    assert part_count(120, 500) == 1
    assert part_count(120, 500, at_least=4) == 4
    assert part_count(3, 1, at_least=8) == 3  # never more parts than customers


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_every_row_goes_to_its_customers_part_once(world, tmp_path, fmt):
    customers, events = world
    write_world(tmp_path / "w", customers, events, fmt=fmt)
    ids = customer_ids(tmp_path / "w")
    assert list(ids) == sorted(customers["customer_id"].astype(str))
    ranges = id_ranges(ids, 4)
    dirs = split_world(tmp_path / "w", tmp_path / "parts", ranges)
    assert [d.name for d in dirs] == [f"part-{k:05d}" for k in range(4)]
    seen_c, seen_e = [], []
    for d, r in zip(dirs, ranges):
        c, e = load_part(d, tmp_path / "w")
        assert set(c["customer_id"]) == set(r)
        assert set(e["customer_id"]) <= set(r)
        seen_c.append(c)
        seen_e.append(e)
    got = pd.concat(seen_e, ignore_index=True)
    assert len(pd.concat(seen_c)) == len(customers) and len(got) == len(events)
    key = ["customer_id", "event_timestamp", "event_type"]
    want = events.assign(event_timestamp=pd.to_datetime(events["event_timestamp"], utc=True))
    pd.testing.assert_frame_equal(got[key].sort_values(key, ignore_index=True),
                                  want[key].astype({"customer_id": str}).sort_values(key, ignore_index=True),
                                  check_dtype=False)


def test_an_event_of_an_unknown_customer_is_reported_by_its_part(world, tmp_path):
    customers, events = world
    stray = events.iloc[:1].assign(customer_id="NOBODY")
    write_world(tmp_path / "w", customers, pd.concat([events, stray], ignore_index=True))
    dirs = split_world(tmp_path / "w", tmp_path / "parts", id_ranges(customer_ids(tmp_path / "w"), 3))
    with pytest.raises(ContractError) as err:
        load_part(dirs[0], tmp_path / "w")
    assert "events.parquet" in str(err.value) and "NOBODY" in str(err.value)
    for d in dirs[1:]:
        load_part(d, tmp_path / "w")


def test_a_table_with_no_rows_gives_empty_parts_with_its_columns(world, tmp_path):
    customers, events = world
    write_world(tmp_path / "w", customers, events.iloc[:0])
    dirs = split_world(tmp_path / "w", tmp_path / "parts", id_ranges(customer_ids(tmp_path / "w"), 2))
    for d in dirs:
        c, e = load_part(d, tmp_path / "w")
        assert len(c) > 0 and len(e) == 0 and "event_type" in e


def test_id_ranges_are_contiguous_and_cover_every_id():
    ids = np.array([f"C{i:03d}" for i in range(10)])[::-1]
    ranges = id_ranges(ids, 3)
    assert [len(r) for r in ranges] == [4, 3, 3]
    assert list(np.concatenate(ranges)) == sorted(ids)


def test_a_table_without_customer_ids_is_a_contract_error_naming_the_column(world, tmp_path):
    customers, events = world
    write_world(tmp_path / "w", customers, events.drop(columns=["customer_id"]), fmt="csv")
    with pytest.raises(ContractError) as err:
        split_world(tmp_path / "w", tmp_path / "parts", id_ranges(customer_ids(tmp_path / "w"), 2))
    assert "events.csv" in str(err.value) and "customer_id" in str(err.value)
    write_world(tmp_path / "v", customers.drop(columns=["customer_id"]), events)
    with pytest.raises(ContractError, match="customer_id"):
        customer_ids(tmp_path / "v")
