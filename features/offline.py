"""A Feast offline store for point-in-time snapshot files: the file store with a fast join.

Feast's file (Dask) offline store joins every entity row with every snapshot
of its customer before filtering, which takes minutes and gigabytes for a
year of weekly snapshots. :class:`SnapshotOfflineStore` keeps the file store
for everything else (materialization, pulls, saved datasets) and answers
``get_historical_features`` with an array join per feature view (keys and
times ranked into one sorted integer, one binary search per entity row):

- the latest source row with ``timestamp <= entity timestamp`` (within the
  view's ttl when it has one), per join key;
- every entity row is kept, in the caller's order; rows without a snapshot
  get nulls (the Dask store drops them and deduplicates (key, time) pairs);
- a source folder (a Parquet dataset, as the feature pipeline writes one
  part per customer chunk) is joined one part at a time, so memory holds one
  part and the entity rows, never the whole history;
- on-demand views run through Feast's own ``transform_arrow`` on just their
  input columns.

Sources it cannot handle the same way (not a ``FileSource``, a created
timestamp column, a field mapping, or a non-pandas entity frame) fall back to
the Dask implementation. Select it with
``offline_store: {type: features.offline.SnapshotOfflineStore}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Literal, Optional, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast.feature_view import FeatureView
from feast.infra.offline_stores.dask import DaskOfflineStore, DaskOfflineStoreConfig
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.utils import _get_requested_feature_views_to_features_dict, _get_requested_on_demand_feature_views

from features.pipeline import snapshot_parts



def _ns(col: pa.ChunkedArray) -> np.ndarray:
    """A timestamp column as int64 nanoseconds since the epoch (UTC); nulls as the smallest int64."""
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.timestamp("ns", tz="UTC"))
    else:
        col = pa.chunked_array([pa.array(pd.to_datetime(col.to_pandas(), utc=True).dt.as_unit("ns"))])
    return col.cast(pa.int64()).fill_null(np.iinfo(np.int64).min).to_numpy()


class _EntityKeys:
    """The entity rows' join keys as one integer code per row, and the same codes for source rows (-1 for a key
    no entity row has). Text keys match as text; each distinct value is hashed once."""

    def __init__(self, columns: list[pd.Series]):
        self._text = [c.dtype == object or pd.api.types.is_string_dtype(c.dtype) for c in columns]
        self._index, codes, size = [], np.zeros(len(columns[0]), np.int64), 1
        for col, text in zip(columns, self._text):
            values = col.astype(str) if text else col
            uniques = pd.Index(pd.unique(values.to_numpy()))
            c = uniques.get_indexer(values)
            codes = codes * len(uniques) + c
            size *= max(len(uniques), 1)
            self._index.append(uniques)
        if size >= 2**31:
            raise ValueError("too many distinct entity keys for one point-in-time join")
        self.left = codes

    def codes(self, columns: list[pa.ChunkedArray]) -> np.ndarray:
        codes = None
        for col, index, text in zip(columns, self._index, self._text):
            col = col.combine_chunks()
            if text and not pa.types.is_dictionary(col.type):
                col = col.cast(pa.string()) if not pa.types.is_string(col.type) else col
                col = col.dictionary_encode()
            if pa.types.is_dictionary(col.type):
                dict_values = col.dictionary.to_pandas()
                per_value = index.get_indexer(dict_values.astype(str) if text else dict_values)
                ind = col.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
                c = np.where(ind >= 0, per_value[np.maximum(ind, 0)], -1)
            else:
                c = index.get_indexer(col.to_pandas())
            c = c.astype(np.int64)
            codes = c if codes is None else np.where((codes >= 0) & (c >= 0), codes * len(index) + c, -1)
        return codes


class _Rows:
    """Entity rows sorted once by (key, time), so every part's binary search runs over sorted needles."""

    def __init__(self, codes: np.ndarray, ts: np.ndarray):
        self.order = np.lexsort((ts, codes))
        self.codes, self.ts = codes[self.order], ts[self.order]


def _as_of(left: _Rows, right_codes: np.ndarray, right_ts: np.ndarray, ttl: int | None) -> np.ndarray:
    """For each entity row (in the caller's order), the index of the newest source row with the same key and a
    time at or before the row's (not older than `ttl` ns when given); -1 when there is none. A source row is
    keyed ``key << 32 | rank of its time`` and an entity row ``key << 32 | number of source times at or before
    it``, so the newest match is the last source key at or below the entity's: one binary search, over only the
    entity rows whose key this source has (a part holds some customers: the cost follows the part)."""
    out = np.full(len(left.codes), -1, np.int64)
    r_idx = np.flatnonzero((right_codes >= 0) & (right_ts != np.iinfo(np.int64).min))
    if not len(r_idx):
        return out
    times = np.unique(right_ts[r_idx])
    r_key = (right_codes[r_idx] << 32) | (np.searchsorted(times, right_ts[r_idx]) + 1)
    order = np.argsort(r_key, kind="stable")
    r_key, r_idx = r_key[order], r_idx[order]
    # the entity rows (sorted by key) whose key is among the source's: one range per key
    keys = np.unique(r_key >> 32)
    lo, hi = np.searchsorted(left.codes, keys, "left"), np.searchsorted(left.codes, keys, "right")
    n = hi - lo
    if not n.sum():
        return out
    sel = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(n.sum())
    codes, ts = left.codes[sel], left.ts[sel]
    l_key = (codes << 32) | np.searchsorted(times, ts, side="right")
    pos = np.maximum(np.searchsorted(r_key, l_key, side="right") - 1, 0)
    j = r_idx[pos]
    hit = ((r_key[pos] >> 32) == codes) & (right_ts[j] <= ts)
    if ttl is not None:
        hit &= ts - right_ts[j] <= ttl
    out[left.order[sel]] = np.where(hit, j, -1)
    return out


class SnapshotOfflineStoreConfig(DaskOfflineStoreConfig):
    """Offline store config: Parquet files, point-in-time joins on sorted arrays."""

    type: Literal["features.offline.SnapshotOfflineStore"] = "features.offline.SnapshotOfflineStore"  # type: ignore[assignment]


def _simple(fv: FeatureView) -> bool:
    src = fv.batch_source
    return (
        isinstance(src, FileSource)
        and not src.created_timestamp_column
        and not src.field_mapping
        and str(src.path).endswith(".parquet")
    )


def _snapshots(config, view: str, registered: str) -> str:
    """Where a view's snapshots are: at the path the registry holds, or - the feature folder moved or mounted
    elsewhere (Feast keeps absolute paths) - under the same name beside this store's registry."""
    if Path(registered).exists():
        return registered
    here = Path(config.registry.path).parent / Path(registered).name
    if here.exists():
        return str(here)
    raise FileNotFoundError(f"feature view {view}: no snapshots at {registered} (nor at {here}); build the features "
                            "(`nextbest features build`) or point the settings at the folder that holds them")


class SnapshotRetrievalJob(RetrievalJob):
    def __init__(self, evaluate, full_feature_names: bool, odfvs: list[OnDemandFeatureView], metadata: RetrievalMetadata):
        self._evaluate = evaluate
        self._full_feature_names = full_feature_names
        self._odfvs = odfvs
        self._metadata = metadata

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> List[OnDemandFeatureView]:
        return self._odfvs

    @property
    def metadata(self) -> Optional[RetrievalMetadata]:
        return self._metadata

    def _to_df_internal(self, timeout: Optional[int] = None) -> pd.DataFrame:
        return self._evaluate()

    def _to_arrow_internal(self, timeout: Optional[int] = None) -> pa.Table:
        return pa.Table.from_pandas(self._evaluate(), preserve_index=False)

    def to_arrow(self, validation_reference=None, timeout: Optional[int] = None) -> pa.Table:
        if validation_reference is not None:
            return super().to_arrow(validation_reference=validation_reference, timeout=timeout)
        table = self._to_arrow_internal(timeout=timeout)
        requested = {}
        for ref in self._metadata.features if self._metadata else []:
            view, _, feat = ref.partition(":")
            requested.setdefault(view, set()).add(feat)
        for odfv in self._odfvs:
            # hand the transformation only its inputs (python-mode views convert them to lists)
            inputs = [f.name for src in odfv.source_request_sources.values() for f in src.schema]
            for proj in odfv.source_feature_view_projections.values():
                for f in proj.features:
                    inputs += [f.name, f"{proj.name_to_use()}__{f.name}"]
            cols = [c for c in dict.fromkeys(inputs) if c in table.column_names]
            out = odfv.transform_arrow(table.select(cols), self._full_feature_names)
            wanted = requested.get(odfv.projection.name_to_use()) or {f.name for f in odfv.features}
            for f in odfv.features:
                if f.name not in wanted:
                    continue
                name = f"{odfv.projection.name_to_use()}__{f.name}" if self._full_feature_names else f.name
                if name in out.column_names and name not in table.column_names:
                    table = table.append_column(name, out[name])
        return table

    def persist(self, storage, allow_overwrite: bool = False, timeout: Optional[int] = None):
        raise NotImplementedError("saved datasets: use the file offline store")


class SnapshotOfflineStore(DaskOfflineStore):
    """The file offline store with a fast point-in-time join."""

    @staticmethod
    def get_historical_features(
        config,
        feature_views: List[FeatureView],
        feature_refs: List[str],
        entity_df: Optional[Union[pd.DataFrame, Any, str]],
        registry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs,
    ) -> RetrievalJob:
        if not isinstance(entity_df, pd.DataFrame) or not all(_simple(fv) for fv in feature_views):
            return DaskOfflineStore.get_historical_features(
                config, feature_views, feature_refs, entity_df, registry, project,
                full_feature_names=full_feature_names, filter_by_created_timestamp=filter_by_created_timestamp,
                **kwargs,
            )
        ts_col = DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
        if ts_col not in entity_df.columns:
            raise ValueError(f"the entity dataframe needs a column named {ts_col!r}")
        odfvs = _get_requested_on_demand_feature_views(feature_refs, config.project, registry)
        fv_features, _ = _get_requested_feature_views_to_features_dict(feature_refs, feature_views, odfvs)
        ts_all = pd.to_datetime(entity_df[ts_col], utc=True)
        metadata = RetrievalMetadata(
            features=feature_refs,
            keys=[c for c in entity_df.columns if c != ts_col],
            min_event_timestamp=ts_all.min().to_pydatetime() if len(ts_all) else None,
            max_event_timestamp=ts_all.max().to_pydatetime() if len(ts_all) else None,
        )

        def evaluate() -> pd.DataFrame:
            out = entity_df.reset_index(drop=True).copy()
            out[ts_col] = pd.to_datetime(out[ts_col], utc=True).dt.as_unit("ns")
            left_ts = pd.DatetimeIndex(out[ts_col]).asi8
            columns: dict[str, np.ndarray] = {}
            for fv, feats in fv_features.items():
                entity_cols = [c.name for c in fv.entity_columns]
                join_keys = [fv.projection.join_key_map.get(c, c) for c in entity_cols]
                src = fv.batch_source
                path = _snapshots(config, fv.name, FileSource.get_uri_for_file_path(config.repo_path, src.path))
                tsf = src.timestamp_field
                names = {f: (f"{fv.projection.name_to_use()}__{f}" if full_feature_names else f) for f in feats}
                ttl = int(pd.Timedelta(fv.ttl).value) if fv.ttl and fv.ttl.total_seconds() > 0 else None
                keys = _EntityKeys([out[jk] for jk in join_keys])
                left = _Rows(keys.left, left_ts)
                best_ts = np.full(len(out), np.iinfo(np.int64).min, np.int64)  # newest match so far per entity row
                values: dict[str, np.ndarray] = {}
                for part in snapshot_parts(path):  # one part (a customer chunk of the build) in memory at a time
                    # text keys read as codes (other types are read as they are): each value matched once
                    file = pq.ParquetFile(part, read_dictionary=entity_cols)
                    # the keys first: a part without any entity row's key is never read further
                    key_table = file.read(columns=list(dict.fromkeys([*entity_cols, tsf])))
                    right_codes = keys.codes([key_table[c] for c in entity_cols])
                    if not (right_codes >= 0).any():
                        continue
                    right_ts = _ns(key_table[tsf])
                    j = _as_of(left, right_codes, right_ts, ttl)
                    rows = np.flatnonzero(j >= 0)
                    newer = right_ts[j[rows]] > best_ts[rows]
                    rows, j = rows[newer], j[rows][newer]
                    if not len(rows):
                        continue
                    best_ts[rows] = right_ts[j]
                    table = file.read(columns=list(feats))
                    for f in feats:
                        col = table[f].to_numpy()
                        if f not in values:  # text stays text; numbers become floats (NaN where no snapshot)
                            values[f] = (np.full(len(out), None, object) if col.dtype == object
                                         else np.full(len(out), np.nan, col.dtype if col.dtype.kind == "f" else np.float64))
                        values[f][rows] = col[j]
                for f in feats:
                    columns[names[f]] = values.get(f, np.full(len(out), np.nan))
            feats_df = pd.DataFrame(columns, index=out.index)
            return pd.concat([out.drop(columns=[c for c in columns if c in out]), feats_df], axis=1)

        return SnapshotRetrievalJob(evaluate, full_feature_names, odfvs, metadata)
