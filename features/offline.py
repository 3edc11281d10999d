"""A Feast offline store for point-in-time snapshot files: the file store with a fast join.

Feast's file (Dask) offline store joins every entity row with every snapshot
of its customer before filtering, which takes minutes and gigabytes for a
year of weekly snapshots. :class:`SnapshotOfflineStore` keeps the file store
for everything else (materialization, pulls, saved datasets) and answers
``get_historical_features`` with one ``pandas.merge_asof`` per feature view:

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

_ROW = "__snapshot_row"


class SnapshotOfflineStoreConfig(DaskOfflineStoreConfig):
    """Offline store config: Parquet files, point-in-time joins with ``merge_asof``."""

    type: Literal["features.offline.SnapshotOfflineStore"] = "features.offline.SnapshotOfflineStore"  # type: ignore[assignment]


def _simple(fv: FeatureView) -> bool:
    src = fv.batch_source
    return (
        isinstance(src, FileSource)
        and not src.created_timestamp_column
        and not src.field_mapping
        and str(src.path).endswith(".parquet")
    )


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
    """The file offline store with a ``merge_asof`` point-in-time join."""

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
            left = out[[ts_col]].copy()
            left[_ROW] = np.arange(len(out))
            columns: dict[str, np.ndarray] = {}
            for fv, feats in fv_features.items():
                entity_cols = [c.name for c in fv.entity_columns]
                join_keys = [fv.projection.join_key_map.get(c, c) for c in entity_cols]
                src = fv.batch_source
                path = FileSource.get_uri_for_file_path(config.repo_path, src.path)
                tsf = src.timestamp_field
                names = {f: (f"{fv.projection.name_to_use()}__{f}" if full_feature_names else f) for f in feats}
                ttl = pd.Timedelta(fv.ttl) if fv.ttl and fv.ttl.total_seconds() > 0 else None
                lk_all = left.copy()
                for jk in join_keys:
                    lk_all[jk] = out[jk].to_numpy()
                best_ts = np.full(len(out), np.iinfo(np.int64).min, np.int64)  # newest match so far per entity row
                values: dict[str, np.ndarray] = {}
                for part in snapshot_parts(path):  # one part (a customer chunk of the build) in memory at a time
                    right = pq.read_table(part, columns=list(dict.fromkeys([*entity_cols, tsf, *feats]))).to_pandas()
                    right = right.rename(columns=dict(zip(entity_cols, join_keys)))
                    right[tsf] = pd.to_datetime(right[tsf], utc=True).dt.as_unit("ns")
                    right = right.rename(columns={tsf: "__snapshot_ts"}).dropna(subset=["__snapshot_ts"])
                    inside = np.ones(len(lk_all), bool)
                    for jk in join_keys:
                        kind = right[jk].dtype
                        if (kind == object or pd.api.types.is_string_dtype(kind)) and lk_all[jk].dtype != object:
                            lk_all[jk] = lk_all[jk].astype(str).astype(object)
                        if kind == object or pd.api.types.is_string_dtype(kind):
                            right[jk] = right[jk].astype(str).astype(object)
                        inside &= lk_all[jk].isin(right[jk].unique()).to_numpy()
                    if not inside.any():
                        continue
                    merged = pd.merge_asof(
                        lk_all[inside].sort_values(ts_col, kind="stable"), right.sort_values("__snapshot_ts", kind="stable"),
                        left_on=ts_col, right_on="__snapshot_ts", by=join_keys,
                        direction="backward", allow_exact_matches=True, tolerance=ttl,
                    )
                    got = merged["__snapshot_ts"]
                    t = pd.DatetimeIndex(got).as_unit("ns").asi8  # NaT (no snapshot yet) is masked just below
                    rows = merged[_ROW].to_numpy()
                    newer = got.notna().to_numpy() & (t > best_ts[rows])
                    rows = rows[newer]
                    best_ts[rows] = t[newer]
                    for f in feats:
                        col = merged[f].to_numpy()
                        if f not in values:  # text stays text; numbers become floats (NaN where no snapshot)
                            values[f] = (np.full(len(out), None, object) if col.dtype == object
                                         else np.full(len(out), np.nan, col.dtype if col.dtype.kind == "f" else np.float64))
                        values[f][rows] = col[newer]
                for f in feats:
                    columns[names[f]] = values.get(f, np.full(len(out), np.nan))
            feats_df = pd.DataFrame(columns, index=out.index)
            return pd.concat([out.drop(columns=[c for c in columns if c in out]), feats_df], axis=1)

        return SnapshotRetrievalJob(evaluate, full_feature_names, odfvs, metadata)
