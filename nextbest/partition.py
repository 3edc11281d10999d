"""Split a world by customer in one streaming pass, into part folders read one at a time.

A base too large to hold whole is cut into ranges of customer ids (sorted as text, as the feature build orders
its partitions). Each table with a ``customer_id`` column is streamed once, a batch of rows at a time, and every
row is appended to its range's folder; a row whose customer is not in the customers table (or has no id) goes
to the first part, where validation reports it. Every part folder is a world of its own in the contract's
layout (Parquet), read with :func:`nextbest.contract.load_world`.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from nextbest.contract import TABLES, ContractError, Violation, find_table, read_raw, validate_tables

BATCH_ROWS = 2_000_000  # rows read and routed at a time


def part_count(n_customers: int, max_customers: int, at_least: int = 1) -> int:
    """Parts of at most ``max_customers`` customers each (and at least ``at_least`` when there are customers)."""
    if n_customers <= 0:
        return 1
    return max(1, min(n_customers, max(at_least, math.ceil(n_customers / max_customers))))


def customer_ids(world_dir: Path | str) -> np.ndarray:
    """Every distinct customer id of the customers table, as text, sorted."""
    import pyarrow.compute as pc

    table = _read_column(_table_path(Path(world_dir), "customers"), "customer_id")
    ids = pc.unique(pc.drop_null(_as_text(table)))
    return np.sort(np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object).astype(str))


def customer_sample(ids: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` of ``ids`` drawn at random without replacement (the same for the same ids and seed), sorted."""
    ids = np.sort(np.asarray(ids, dtype=str))
    if n >= len(ids):
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, n, replace=False))


def training_sample(settings, ids: np.ndarray) -> np.ndarray | None:
    """The customers training reads from a base of ``ids``: a random sample of ``training.max_customers`` of a
    larger base (sorted), None when it reads every customer. The feature build writes their snapshots in chunks
    of their own, so training's point-in-time reads skip the others'."""
    tr = settings.training
    if tr.max_customers is None or len(ids) <= tr.max_customers:
        return None
    return customer_sample(ids, tr.max_customers, tr.seed)


def newest_event(world_dir: Path | str):
    """The time of the world's newest event (UTC), reading that column only; None without events."""
    import pandas as pd

    times = _read_column(_table_path(Path(world_dir), "events"), "event_timestamp").to_pandas()
    newest = pd.to_datetime(times, utc=True, errors="coerce", format="ISO8601").max()
    return None if pd.isna(newest) else newest


def id_ranges(ids: np.ndarray, n_parts: int) -> list[np.ndarray]:
    """Sorted ids cut into ``n_parts`` contiguous ranges of (nearly) equal size."""
    return [chunk for chunk in np.array_split(np.sort(np.asarray(ids, dtype=str)), max(1, n_parts)) if len(chunk)]


def split_world(world_dir: Path | str, out_dir: Path | str, ranges: list[np.ndarray],
                tables: tuple[str, ...] = ("customers", "events"), progress: bool = False) -> list[Path]:
    """Write ``out_dir/part-00000 ...``, one folder per id range, each holding the rows of ``tables`` whose
    customer is in its range (tables the world does not have are skipped). Returns the folders in range order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    world_dir, out_dir = Path(world_dir), Path(out_dir)
    dirs = [out_dir / f"part-{k:05d}" for k in range(len(ranges))]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for name in tables:
        if name == "assignments" and find_table(world_dir, name) is None:
            continue
        path = _table_path(world_dir, name)
        _require(path, "customer_id")
        writers: list = [None] * len(dirs)
        route, rows = _Router(ranges), 0
        try:
            for batch in _batches(path):
                part = route(batch.column("customer_id"))
                order = np.argsort(part, kind="stable")
                bounds = np.searchsorted(part[order], np.arange(len(dirs) + 1))
                # ids as plain text: a part's file then holds its own ids, not the whole base's dictionary
                sorted_batch = batch.set_column(batch.schema.get_field_index("customer_id"), "customer_id",
                                                _as_text(batch.column("customer_id"))).take(pa.array(order))
                for k in range(len(dirs)):
                    if writers[k] is None:
                        writers[k] = pq.ParquetWriter(dirs[k] / f"{name}.parquet", sorted_batch.schema)
                    if bounds[k + 1] > bounds[k]:
                        writers[k].write_table(sorted_batch.slice(bounds[k], bounds[k + 1] - bounds[k]))
                if progress and (rows + batch.num_rows) // 10_000_000 > rows // 10_000_000:
                    print(f"  split {name}: {rows + batch.num_rows:,} rows into {len(dirs)} parts", file=sys.stderr)
                rows += batch.num_rows
        finally:
            for w in writers:
                if w is not None:
                    w.close()
        for k, w in enumerate(writers):
            if w is None:  # an empty table: empty parts with its columns
                _empty_like(path, dirs[k] / f"{name}.parquet")
    return dirs


def load_part(part_dir: Path | str, world_dir: Path | str):
    """A part folder's customers and events, validated as :func:`nextbest.contract.load_world` validates a world
    (events in file order); a violation names the world's file, with row numbers within the part. Raise
    ContractError."""
    part_dir, world_dir = Path(part_dir), Path(world_dir)
    frames = [read_raw(part_dir / f"{name}.parquet") for name in TABLES]
    names = tuple(str(find_table(world_dir, name) or part_dir / f"{name}.parquet") for name in TABLES)
    customers, events, violations = validate_tables(*frames, names)
    if violations:
        raise ContractError(violations)
    return customers, events


# --------------------------------------------------------------------------- reading and routing


def _table_path(world_dir: Path, name: str) -> Path:
    path = find_table(world_dir, name)
    if path is None:
        raise ContractError([Violation(str(world_dir / f"{name}.csv"), "*", f"no {name}.csv or {name}.parquet in {world_dir}")])
    return path


def _require(path: Path, column: str) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names if path.suffix == ".parquet" else list(pd.read_csv(path, nrows=0).columns)
    if column not in names:
        raise ContractError([Violation(str(path), column, "required column is missing")])


def _read_column(path: Path, column: str):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    _require(path, column)
    if path.suffix == ".parquet":
        return pq.read_table(path, columns=[column]).column(column)
    text = pd.read_csv(path, usecols=[column], dtype=str, keep_default_na=False, na_values=[""])[column]
    return pa.chunked_array([pa.array(text, pa.string(), from_pandas=True)])


def _batches(path: Path):
    """The table as pyarrow tables of at most BATCH_ROWS rows (CSV cells as text, as the contract reads them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        f = pq.ParquetFile(path)
        for batch in f.iter_batches(batch_size=BATCH_ROWS):
            yield pa.Table.from_batches([batch])
        return
    import pandas as pd

    for chunk in pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], chunksize=BATCH_ROWS):
        schema = pa.schema([(c, pa.string()) for c in chunk.columns])
        yield pa.Table.from_pandas(chunk, schema=schema, preserve_index=False)


def _as_text(column):
    """A customer id column as plain text (dictionary-encoded or numeric ids included)."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column if pa.types.is_string(column.type) else column.cast(pa.string())


class _Router:
    """Each row's part: the range holding its customer id; unknown or missing ids go to part 0. A dictionary-
    encoded column routes each distinct id once (and a dictionary repeated from the last batch not again)."""

    def __init__(self, ranges: list[np.ndarray]):
        import pyarrow as pa

        self.value_set = pa.array(np.concatenate(ranges) if ranges else np.zeros(0, str), pa.string())
        self.starts = np.cumsum([0] + [len(r) for r in ranges[:-1]])
        self._dictionary, self._per_value = None, None

    def __call__(self, column) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if not pa.types.is_dictionary(column.type):
            return self._parts(pc.index_in(_as_text(column), value_set=self.value_set))
        if self._dictionary is None or not column.dictionary.equals(self._dictionary):
            self._dictionary = column.dictionary
            self._per_value = self._parts(pc.index_in(_as_text(column.dictionary), value_set=self.value_set))
        idx = column.indices.to_numpy(zero_copy_only=False)
        valid = column.indices.is_valid().to_numpy(zero_copy_only=False)
        if not len(self._per_value):
            return np.zeros(len(idx), np.int32)
        return np.where(valid, self._per_value[np.where(valid, idx, 0)], 0).astype(np.int32)

    def _parts(self, positions) -> np.ndarray:
        pos = np.asarray(positions.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        return np.where(pos >= 0, np.searchsorted(self.starts, pos, side="right") - 1, 0).astype(np.int32)


def _empty_like(source: Path, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if source.suffix == ".parquet":
        schema = pq.read_schema(source)
    else:
        import pandas as pd

        schema = pa.schema([(c, pa.string()) for c in pd.read_csv(source, nrows=0).columns])
    pq.write_table(schema.empty_table(), path)
