"""The Feast store built from settings: register, read for training, fill and read the online store.

- :func:`get_store` / :func:`apply`: the repository of ``features/definitions.py``
  with the registry, the Parquet offline store (``features/offline.py``) and the
  online store (SQLite by default, Redis when ``online_store.kind: redis``)
  under the configured folder.
- :func:`feature_names` / :func:`historical_features`: training reads through
  the one feature service (point-in-time correct, rows in the caller's order).
- :func:`materialize`: the latest snapshot of every customer into the online
  store as one packed float32 vector per customer (view ``customer_vector``),
  written in large batches through the online store's ``online_write_batch``;
  ``plain=True`` runs Feast's standard materialization of the scalar views.
- :class:`OnlineFeatures`: one online-store read per request, decoded with
  ``np.frombuffer`` into the feature service's order.

Real-time refresh of a few customers from new events is in :mod:`features.live`.
"""

from __future__ import annotations

import json
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from features import pipeline
from features.names import CONTEXT, CONTEXT_REQUEST, VIEW_NAMES, customer_features, views
from nextbest.vocabulary import ENTITY_KEY
from nextbest.vocabulary import TIMESTAMP_FIELD as TS

if TYPE_CHECKING:  # feast is slow to import: only the functions that need it load it
    from feast import FeatureStore

STATE_FILE = "online_state.json"


# --------------------------------------------------------------------------- store


def feast_definitions():
    """The Feast repository module (``features/definitions.py``), imported on first use.

    Feast's modules install warning filters of their own when first imported ("once" for every
    DeprecationWarning): they are imported inside catch_warnings so the process keeps its own filters."""
    with warnings.catch_warnings():
        from features import definitions

    return definitions


def online_store_path(settings) -> Path | None:
    """The SQLite online store's file (None when the online store is Redis)."""
    return None if settings.online_store.kind == "redis" else settings.features_dir / "online_store.db"


def _online_config(settings) -> dict:
    os_cfg = settings.online_store
    if os_cfg.kind == "redis":
        return {"type": "redis", "connection_string": f"{os_cfg.redis_host}:{os_cfg.redis_port}"}
    return {"type": "sqlite", "path": str(online_store_path(settings))}


def repo_config(settings):
    """RepoConfig in code: registry + SQLite/Redis online store under ``settings.features_dir``."""
    from feast import RepoConfig
    from feast.repo_config import RegistryConfig

    fd = settings.features_dir
    online = _online_config(settings)
    return RepoConfig(
        project=feast_definitions().PROJECT,
        provider="local",
        registry=RegistryConfig(registry_type="file", path=str(fd / "registry.db"), cache_ttl_seconds=60),
        offline_store={"type": "features.offline.SnapshotOfflineStore"},
        online_store=online,
        entity_key_serialization_version=3,
        repo_path=str(Path(__file__).resolve().parent),
    )


def get_store(settings) -> "FeatureStore":
    """A ``feast.FeatureStore`` for these settings (the folder is created if needed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from feast import FeatureStore

        settings.features_dir.mkdir(parents=True, exist_ok=True)
        return FeatureStore(config=repo_config(settings))


class CatalogueMismatch(RuntimeError):
    """The feature tables or the online store were built for another action catalogue (or feature list)."""


def _rebuild_hint(what: str, missing, extra) -> str:
    parts = []
    if missing:
        parts.append(f"missing {', '.join(sorted(missing)[:5])}")
    if extra:
        parts.append(f"no longer configured {', '.join(sorted(extra)[:5])}")
    return (f"{what} was built for another action catalogue ({'; '.join(parts) or 'another order'}): rebuild it with "
            "`nextbest features build && nextbest features apply && nextbest features materialize`")


def check_built_catalogue(settings) -> None:
    """The feature tables under ``settings.features_dir`` hold the configured catalogue's features."""
    built = pipeline.read_meta(settings.features_dir).get("actions")
    if built is not None and list(built) != list(settings.actions):
        raise CatalogueMismatch(_rebuild_hint(f"the feature tables in {settings.features_dir}",
                                              set(settings.actions) - set(built), set(built) - set(settings.actions)))


def check_registered_catalogue(settings, names: Sequence[str]) -> None:
    """The registered feature service's stored features are the configured catalogue's."""
    want = customer_features(tuple(settings.actions))
    got = [f for f in names if f not in CONTEXT]
    if list(got) != list(want):
        raise CatalogueMismatch(_rebuild_hint(
            f"the feature store in {settings.features_dir} (feature service {settings.features.feature_service!r})",
            set(want) - set(got), set(got) - set(want)))


def _write_cli_config(settings) -> Path:
    """A feature_store.yaml beside the registry, so the Feast CLI can inspect it (`feast -c <dir> ...`)."""
    import yaml

    cfg = repo_config(settings)
    fd = settings.features_dir
    online = _online_config(settings)
    doc = {
        "project": cfg.project, "provider": "local",
        "registry": {"registry_type": "file", "path": str(fd / "registry.db"), "cache_ttl_seconds": 60},
        "offline_store": {"type": "features.offline.SnapshotOfflineStore"},
        "online_store": online, "entity_key_serialization_version": 3,
    }
    path = fd / "feature_store.yaml"
    path.write_text("# written by `nextbest features apply`; lets the Feast CLI read this registry\n"
                    + yaml.safe_dump(doc, sort_keys=False))
    return path


def apply(settings) -> dict:
    """Register the repository's objects (sources under ``settings.features_dir``); return a summary."""
    check_built_catalogue(settings)
    d = feast_definitions()
    objs = d.feast_objects(settings.features_dir, settings.features.feature_service, tuple(settings.actions))
    pipeline.vector_placeholder(settings.features_dir)
    store = get_store(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store.apply(
            [
                objs["entity"],
                *objs["views"].values(),
                objs["vector_push"],
                objs["vector_view"],
                objs["request_source"],
                objs["context_view"],
                objs["feature_service"],
            ]
        )
    names = feature_names(settings, store=store)
    _write_cli_config(settings)
    return {
        "project": d.PROJECT,
        "registry": str(settings.features_dir / "registry.db"),
        "online_store": settings.online_store.kind,
        "feature_service": settings.features.feature_service,
        "feature_views": [*VIEW_NAMES, d.VECTOR_VIEW],
        "on_demand_feature_views": [d.CONTEXT_VIEW],
        "n_features": len(names),
    }


def feature_names(settings, store: "FeatureStore | None" = None) -> list[str]:
    """The feature service's features, in its order (customer views, then the request context)."""
    store = store or get_store(settings)
    fs = store.get_feature_service(settings.features.feature_service)
    return [f.name for proj in fs.feature_view_projections for f in proj.features]


def customer_feature_names(settings, store: "FeatureStore | None" = None) -> list[str]:
    """The stored (non on-demand) features of the service: what the packed online vector holds."""
    return [f for f in feature_names(settings, store) if f not in CONTEXT]


def snapshot_times(settings) -> list[pd.Timestamp]:
    """The snapshot times of the last build (from ``snapshots.json``)."""
    meta = pipeline.read_meta(settings.features_dir)
    if not meta:
        raise FileNotFoundError(f"no feature build in {settings.features_dir}: run `nextbest features build` first")
    return [pd.Timestamp(t) for t in meta["times"]]


# --------------------------------------------------------------------------- training


def _neutral_request(df: pd.DataFrame) -> pd.DataFrame:
    from features.context import NEUTRAL_REQUEST

    out = df.copy()
    if "trigger_timestamp" not in out:
        out["trigger_timestamp"] = out[TS]
    else:
        out["trigger_timestamp"] = pd.to_datetime(out["trigger_timestamp"], utc=True).fillna(out[TS])
    for col, default in NEUTRAL_REQUEST.items():
        if col not in out:
            out[col] = default
        else:
            out[col] = out[col].fillna(default)
    out["near_store"] = out["near_store"].astype("int64")
    return out


def historical_features(settings, entity_df: pd.DataFrame, store: "FeatureStore | None" = None) -> pd.DataFrame:
    """Point-in-time features of the feature service for ``entity_df`` rows (customer_id, event_timestamp).

    Returns ``entity_df``'s columns (index reset) followed by the service's
    features and the customer's ``timezone`` (string, None when unknown; not a
    model feature), row for row in ``entity_df``'s order; rows without a
    snapshot get NaN. Missing request-context columns get neutral values
    (``trigger_timestamp`` = ``event_timestamp``, no trigger, no channel).
    """
    store = store or get_store(settings)
    names = feature_names(settings, store)
    base = entity_df.reset_index(drop=True)
    if base.empty:
        return base.assign(**{n: pd.Series(dtype=np.float32) for n in names}, timezone=pd.Series(dtype=object))
    query = base[[ENTITY_KEY, TS, *[c for c in CONTEXT_REQUEST if c in base]]].copy()
    query[ENTITY_KEY] = query[ENTITY_KEY].astype(str)
    query[TS] = pd.to_datetime(query[TS], utc=True)
    query = _neutral_request(query)
    query[TS] = query[TS].dt.as_unit("ns")
    query["_row"] = np.arange(len(query), dtype=np.int64)
    fs = store.get_feature_service(settings.features.feature_service)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = store.get_historical_features(entity_df=query, features=fs).to_df()
    rows = res["_row"].to_numpy() if "_row" in res else np.zeros(0, np.int64)
    if len(rows) == len(query) and np.array_equal(np.sort(rows), query["_row"].to_numpy()):
        merged = res.set_index("_row").reindex(query["_row"].to_numpy())
    else:  # an offline store that drops or deduplicates rows: join back by key
        res[TS] = pd.to_datetime(res[TS], utc=True).dt.as_unit("ns")
        res[ENTITY_KEY] = res[ENTITY_KEY].astype(str)
        keys = [ENTITY_KEY, TS]
        merged = query[keys].merge(res[keys + names].drop_duplicates(keys), on=keys, how="left", validate="m:1")
    feats = merged[names].astype(np.float32)
    if "timezone" in merged and "timezone" not in base:
        feats["timezone"] = merged["timezone"].astype(object).where(merged["timezone"].notna(), None)
    feats.index = base.index
    return pd.concat([base.drop(columns=[c for c in names if c in base]), feats], axis=1)


# --------------------------------------------------------------------------- materialize


def _newest_rows(parts: list[Path], columns: list[str], complete_ns: int | None):
    """One row per customer, its newest snapshot: (ids, times ns, pyarrow table of ``columns``).

    With ``complete_ns`` (the build's guarantee that every customer has a row at that time, its newest) only the
    rows at that time are read - a row group of their own in each part; otherwise each part's newest row per
    customer, then the newest across parts. One part is held at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = list(dict.fromkeys([ENTITY_KEY, TS, *columns]))
    if complete_ns is not None:
        when = pd.Timestamp(complete_ns, tz="UTC")
        tbl = pa.concat_tables([pq.read_table(p, columns=cols, filters=[(TS, "==", when)]) for p in parts])
        return (tbl.column(ENTITY_KEY).to_numpy(zero_copy_only=False), tbl.column(TS).cast("int64").to_numpy(),
                tbl)
    best = [_per_customer_newest(pq.read_table(p, columns=cols)) for p in parts]
    tbl = pa.concat_tables(best)
    if len(best) > 1:  # a customer in several parts: keep the newest
        tbl = _per_customer_newest(tbl)
    return tbl.column(ENTITY_KEY).to_numpy(zero_copy_only=False), tbl.column(TS).cast("int64").to_numpy(), tbl


def _per_customer_newest(tbl):
    """The rows of a table holding each customer's newest time, in table order."""
    codes, _ = pd.factorize(tbl.column(ENTITY_KEY).to_numpy(zero_copy_only=False))
    order = np.lexsort((tbl.column(TS).cast("int64").to_numpy(), codes))
    last = np.ones(len(order), bool)
    last[:-1] = codes[order][1:] != codes[order][:-1]
    return tbl.take(np.sort(order[last]))


def latest_snapshot(settings, names: Sequence[str] | None = None,
                    part: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(customer ids, snapshot times ns, X float32 [n, F] in ``names`` order, timezones) of each customer's latest
    row; with ``part`` (a part file's name, the same in every view) of that part's customers only."""
    names = list(names or customer_features(tuple(settings.actions)))
    pos = {f: j for j, f in enumerate(names)}
    fd = settings.features_dir
    meta = pipeline.read_meta(fd)
    complete = pd.Timestamp(meta["complete_at"]).value if meta.get("complete_at") else None
    ids = ts = tz = X = None
    for view, feats in views(tuple(settings.actions)).items():
        parts = pipeline.snapshot_parts(fd / f"{view}.parquet")
        if part is not None:
            parts = [p for p in parts if p.name == part]
        if not parts:
            raise FileNotFoundError(f"{fd / f'{view}.parquet'} is missing: run `nextbest features build` first")
        wanted = [f for f in feats if f in pos] + (["timezone"] if view == "customer_profile" else [])
        cid, t, tbl = _newest_rows(parts, wanted, complete)
        if ids is None:
            ids, ts = np.asarray(cid, dtype=object), t
            X = np.full((len(ids), len(names)), np.nan, np.float32)
            tz = np.full(len(ids), "UTC", dtype=object)
            where, take = np.arange(len(ids)), np.arange(len(ids))
        elif len(cid) == len(ids) and (cid == ids).all():  # the same rows as the first view (the pipeline's layout)
            where, take = np.arange(len(ids)), np.arange(len(ids))
        else:
            where = pd.Index(ids).get_indexer(np.asarray(cid, dtype=object))
            take, where = np.flatnonzero(where >= 0), where[where >= 0]
        for f in wanted:
            col = tbl.column(f).to_numpy(zero_copy_only=False)[take]
            if f == "timezone":
                tz[where] = col
            else:
                X[where, pos[f]] = col
    return ids, ts, X, tz


def pack_vectors(X: np.ndarray, timezones: Sequence[str]) -> list[bytes]:
    """Row i -> float32 little-endian bytes of ``X[i]`` followed by the UTF-8 timezone."""
    X = np.ascontiguousarray(X, dtype="<f4")
    raw = X.tobytes()
    rb = X.shape[1] * 4
    tzb = {z: str(z).encode() for z in set(timezones)}
    return [raw[i * rb : (i + 1) * rb] + tzb[z] for i, z in enumerate(timezones)]


def _vector_rows(ids: Sequence[str], ts_ns: np.ndarray, blobs: list[bytes]) -> list:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    field = feast_definitions().VECTOR_FIELD
    uniq = {int(t): datetime.fromtimestamp(int(t) / 1e9, tz=timezone.utc) for t in np.unique(ts_ns)}
    return [
        (
            EntityKeyProto(join_keys=[ENTITY_KEY], entity_values=[ValueProto(string_val=cid)]),
            {field: ValueProto(bytes_val=blob)},
            uniq[int(t)],
            None,
        )
        for cid, t, blob in zip(ids, ts_ns, blobs)
    ]


def _check_vector_view(view, names: list[str], settings) -> None:
    d = feast_definitions()
    want = d.feature_list_hash(tuple(names))
    got = view.tags.get(d.HASH_TAG)
    if got != want or view.tags.get(d.SERVICE_TAG) != settings.features.feature_service:
        raise CatalogueMismatch(
            f"the registered {d.VECTOR_VIEW} view (service {view.tags.get(d.SERVICE_TAG)!r}, features {got}) does not "
            f"match feature service {settings.features.feature_service!r} (features {want}): run `nextbest features apply`"
        )


def write_vectors(settings, store, ids, ts_ns, X, timezones, progress: bool = False) -> int:
    """Write packed vectors through the online store's ``online_write_batch`` in batches; return rows written."""
    d = feast_definitions()
    view = store.get_feature_view(d.VECTOR_VIEW)
    provider = store._get_provider()
    batch = settings.online_store.write_batch_size
    n = len(ids)
    for lo in range(0, n, batch):
        hi = min(lo + batch, n)
        rows = _vector_rows(ids[lo:hi], ts_ns[lo:hi], pack_vectors(X[lo:hi], timezones[lo:hi]))
        provider.online_write_batch(store.config, view, rows, progress=None)
        if progress:
            print(f"  online store: {hi:,}/{n:,} customers", flush=True)
    return n


def _write_part(settings, names: list[str], part: str) -> tuple[int, float]:
    """One feature part's newest vectors written to the online store (a Dask task: each worker writes its own
    customers to the shared Redis); returns (customers, read seconds)."""
    t0 = time.perf_counter()
    ids, ts, X, tz = latest_snapshot(settings, names, part=part)
    t_read = time.perf_counter() - t0
    return write_vectors(settings, get_store(settings), ids, ts, X, tz), t_read


def online_state(settings) -> dict:
    """What the last online-store refresh recorded (layout, mode, time), {} before the first one."""
    p = settings.features_dir / STATE_FILE
    return json.loads(p.read_text()) if p.exists() else {}


def _set_state(settings, **kv) -> None:
    st = online_state(settings)
    st.update(kv)
    (settings.features_dir / STATE_FILE).write_text(json.dumps(st, indent=2, default=str))


def materialize(settings, progress: bool = False, plain: bool = False, store: "FeatureStore | None" = None) -> dict:
    """Write every customer's latest snapshot to the online store; return timings.

    Default: one packed vector per customer (``customer_vector``), batched
    through ``online_write_batch``; with ``engine.kind: dask`` and Redis, each
    feature part is written by a Dask worker, in parallel. ``plain=True``: Feast's standard
    ``materialize`` of the six scalar views (much slower; for
    ``get_online_features`` users and as a baseline). Customers with real-time
    events newer than the build are then refreshed again, so a rebuild of the
    online store never hides them.
    """
    store = store or get_store(settings)
    t0 = time.perf_counter()
    stats: dict[str, Any] = {"online_store": settings.online_store.kind, "mode": "plain" if plain else "packed"}
    if plain:
        import pyarrow.parquet as pq

        path = settings.features_dir / "customer_profile.parquet"
        ts = pq.read_table(path, columns=[TS]).column(TS)
        import pyarrow.compute as pc

        lo, hi = pc.min(ts).as_py(), pc.max(ts).as_py()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            store.materialize(
                start_date=lo - pd.Timedelta(seconds=1),
                end_date=hi + pd.Timedelta(seconds=1),
                feature_views=list(VIEW_NAMES),
                disable_event_timestamp=False,
            )
        n = pq.read_table(path, columns=[ENTITY_KEY]).column(ENTITY_KEY).unique()
        stats.update(customers=len(n), n_features=len(customer_features(tuple(settings.actions))))
        _set_state(settings, plain_materialized=True, plain_at=datetime.now(timezone.utc).isoformat())
    else:
        names = customer_feature_names(settings, store)
        check_registered_catalogue(settings, names)
        _check_vector_view(store.get_feature_view(feast_definitions().VECTOR_VIEW), names, settings)
        if settings.engine.kind == "dask" and settings.online_store.kind == "redis":
            from nextbest.engine import Engine

            parts = [p.name for p in pipeline.snapshot_parts(settings.features_dir / "customer_profile.parquet")]
            with Engine(settings, progress=progress) as engine:
                done = engine.map(_write_part, [(settings, names, p) for p in parts], label="online store parts")
            n, t_read = sum(c for c, _ in done), sum(r for _, r in done)
            stats.update(engine="dask", parts=len(parts))
        else:
            ids, ts, X, tz = latest_snapshot(settings, names)
            t_read = time.perf_counter() - t0
            n = write_vectors(settings, store, ids, ts, X, tz, progress=progress)
        stats.update(customers=int(n), n_features=len(names), read_seconds=round(t_read, 2))
        _set_state(settings, packed_materialized=True, packed_at=datetime.now(timezone.utc).isoformat(),
                   packed_layout=feast_definitions().feature_list_hash(tuple(names)))
    t_write = time.perf_counter() - t0
    from features.live import refresh_live

    refreshed = refresh_live(settings, store)
    stats.update(seconds=round(time.perf_counter() - t0, 2), write_seconds=round(t_write, 2), live_refreshed=refreshed)
    stats["customers_per_second"] = round(stats["customers"] / max(t_write, 1e-9))
    return stats


# --------------------------------------------------------------------------- online reads


def check_serving_layout(settings, store: "FeatureStore | None" = None):
    """Refuse to serve features laid out for another catalogue: the registered feature service, the packed
    view and the vectors last written must all be the configured catalogue's. Returns the packed view."""
    d = feast_definitions()
    store = store or get_store(settings)
    names = feature_names(settings, store)
    check_registered_catalogue(settings, names)
    view = store.get_feature_view(d.VECTOR_VIEW)
    customer = [f for f in names if f not in CONTEXT]
    _check_vector_view(view, customer, settings)
    layout = online_state(settings).get("packed_layout")
    if layout is not None and layout != d.feature_list_hash(tuple(customer)):
        raise CatalogueMismatch(
            f"the online store in {settings.features_dir} holds vectors of another feature list (another "
            "action catalogue): refill it with `nextbest features materialize`")
    return view


class OnlineFeatures:
    """Online feature reads for serving; construct once at service start.

    ``read(ids)`` returns ``X`` (float32 ``[n, len(names)]`` in the feature
    service's order: the customer features from the packed online vector, then
    the request context computed by ``features.context.compute_context``),
    ``found`` (bool ``[n]``) and each customer's timezone (``"UTC"`` when
    unknown). Unknown customers get NaN customer features and ``found=False``.
    """

    def __init__(self, settings, store: "FeatureStore | None" = None):
        d = feast_definitions()
        self.settings = settings
        self.store = store or get_store(settings)
        self.config = self.store.config
        self.names = feature_names(settings, self.store)
        self.customer_names = [f for f in self.names if f not in CONTEXT]
        self.context_names = [f for f in self.names if f in CONTEXT]
        self.n_customer = len(self.customer_names)
        self.view = check_serving_layout(settings, self.store)
        self._provider = self.store._get_provider()
        self._field = d.VECTOR_FIELD
        self._index = {n: i for i, n in enumerate(self.names)}
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self._EntityKey, self._Value = EntityKey, Value
        self._ctx_pos = [self._index[c] for c in self.context_names]

    def index(self, name: str) -> int:
        return self._index[name]

    def read_customer(self, customer_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Customer features only: (X float32 [n, n_customer], found, timezones)."""
        keys = [self._EntityKey(join_keys=[ENTITY_KEY], entity_values=[self._Value(string_val=str(c))]) for c in customer_ids]
        rows = self._provider.online_read(self.config, self.view, keys, [self._field]) if keys else []
        n, F = len(keys), self.n_customer
        X = np.full((n, F), np.nan, np.float32)
        found = np.zeros(n, bool)
        tz = ["UTC"] * n
        nb = 4 * F
        for i, (_, vals) in enumerate(rows):
            if not vals:
                continue
            blob = vals[self._field].bytes_val
            if len(blob) < nb:
                continue
            X[i] = np.frombuffer(blob, "<f4", count=F)
            found[i] = True
            tz[i] = blob[nb:].decode() or "UTC"
        return X, found, tz

    def read(
        self,
        customer_ids: Sequence[str],
        context: dict | pd.DataFrame | None = None,
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(X float32 [n, len(names)], found bool [n], timezones) for ``customer_ids``.

        ``context``: request fields (``names.CONTEXT_REQUEST``) as a dict of
        scalars or per-row lists, or a DataFrame; missing fields get neutral
        values and ``trigger_timestamp`` defaults to now.
        """
        Xc, found, tz = self.read_customer(customer_ids)
        if not self.context_names:
            return Xc, found, tz
        from features.context import NEUTRAL_REQUEST, compute_context

        n = len(tz)
        ctx_in = dict(context) if isinstance(context, dict) else (
            {c: context[c].tolist() for c in context.columns} if isinstance(context, pd.DataFrame) else {}
        )
        ts = ctx_in.get("trigger_timestamp")
        if ts is None:
            ts = [datetime.now(timezone.utc)] * n
        elif not isinstance(ts, (list, tuple, np.ndarray, pd.Series, pd.Index)):
            ts = [ts] * n
        ctx = compute_context(
            ts,
            tz,
            ctx_in.get("trigger_event", NEUTRAL_REQUEST["trigger_event"]),
            ctx_in.get("trigger_channel", NEUTRAL_REQUEST["trigger_channel"]),
            ctx_in.get("near_store", NEUTRAL_REQUEST["near_store"]),
            ctx_in.get("weather", NEUTRAL_REQUEST["weather"]),
        )
        X = np.empty((n, len(self.names)), np.float32)
        cust_pos = [self._index[c] for c in self.customer_names]
        X[:, cust_pos] = Xc
        for name, j in zip(self.context_names, self._ctx_pos):
            X[:, j] = ctx[name]
        return X, found, tz

    def push(self, events: pd.DataFrame, customers: pd.DataFrame | None = None, now=None) -> dict:
        """Real-time refresh through this reader's store (see :func:`features.live.push`)."""
        from features.live import push

        return push(self.settings, events, customers=customers, now=now, store=self.store)
