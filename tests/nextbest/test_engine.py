"""The pipeline on a local Dask cluster (two worker processes) gives the same features and the same decisions as
in one process, on the same small world."""

from __future__ import annotations

import pandas as pd
import pytest

from features.names import views

pytestmark = pytest.mark.slow


def on_dask(settings, **paths):
    update = {"engine": settings.engine.model_copy(update={"kind": "dask", "workers": 2, "partitions": 3})}
    if paths:
        update["paths"] = settings.paths.model_copy(update=paths)
    return settings.model_copy(update=update)


def as_values(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    df = df.sort_values(key, ignore_index=True, kind="stable")
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(object)
    return df


@pytest.fixture(scope="module")
def dask_build(installation, tmp_path_factory):
    """The installation's world built on a local Dask cluster in a folder of its own: (settings, build summary)."""
    from features import pipeline

    data = tmp_path_factory.mktemp("dask") / "data"
    data.mkdir()
    (data / "world").symlink_to(installation.world_dir)
    s = on_dask(installation, data_dir=data)
    return s, pipeline.build(s)


def test_features_built_on_dask_equal_the_single_process_build(installation, dask_build):
    from features import pipeline

    s, summary = dask_build
    assert summary["engine"] == "dask" and summary["parts"] >= 3  # one part per partition at least
    local = pipeline.read_meta(installation.features_dir)
    assert summary["rows"] == local["rows"]
    assert pipeline.read_meta(s.features_dir)["times"] == local["times"]
    for view in views(tuple(s.actions)):
        got = pd.read_parquet(s.features_dir / f"{view}.parquet")
        want = pd.read_parquet(installation.features_dir / f"{view}.parquet")
        key = ["customer_id", "event_timestamp"]
        pd.testing.assert_frame_equal(as_values(got, key), as_values(want, key), check_dtype=False)
    for table in ("customers", "events"):
        got = pd.read_parquet(s.features_dir / "history" / f"{table}.parquet")
        want = pd.read_parquet(installation.features_dir / "history" / f"{table}.parquet")
        key = ["customer_id"] if table == "customers" else list(want.columns)
        assert len(got) == len(want)
        pd.testing.assert_frame_equal(as_values(got, key), as_values(want, key), check_dtype=False)


def test_batch_scoring_on_dask_decides_as_the_single_process_run(installation, tmp_path):
    from serving.batch import score

    local = score(installation, None, tmp_path / "local.parquet")
    spread = score(on_dask(installation), None, tmp_path / "dask.parquet")
    assert spread["customers"] == local["customers"] > 2000
    got = as_values(pd.read_parquet(tmp_path / "dask.parquet"), ["customer_id"])
    want = as_values(pd.read_parquet(tmp_path / "local.parquet"), ["customer_id"])
    assert (want["action"] != "no_action").sum() > 50
    pd.testing.assert_frame_equal(got, want)


def test_the_online_store_filled_on_dask_serves_every_customer_newest_vector(installation, dask_build, redis_port):
    import numpy as np

    from features import store

    s, _ = dask_build
    s = s.model_copy(update={"online_store": s.online_store.model_copy(
        update={"kind": "redis", "redis_port": str(redis_port)})})
    store.apply(s)
    stats = store.materialize(s)
    assert stats["engine"] == "dask" and stats["parts"] >= 3  # each part written by a worker
    names = store.customer_feature_names(installation)
    ids, _, X, _ = store.latest_snapshot(installation, names)  # the single-process build's newest rows
    assert stats["customers"] == len(ids) > 2000
    online = store.OnlineFeatures(s)
    got, found, _ = online.read(list(ids) + ["nobody"])
    cols = [online.index(f) for f in names]
    assert found[:-1].all() and not found[-1]
    assert np.array_equal(got[:-1][:, cols], X, equal_nan=True)
