from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.names import CONTEXT, customer_features, views
from nextbest.contract import write_world
from nextbest.vocabulary import TRIGGERS
from tests.features.conftest import settings_for

ROOT = Path(__file__).resolve().parents[2]


def _stored(settings) -> list[str]:
    """The stored customer features of the configured catalogue, in the feature service's order."""
    return list(customer_features(tuple(settings.actions)))


def _latest(settings) -> pd.DataFrame:
    wide = None
    for view in views(tuple(settings.actions)):
        df = pd.read_parquet(settings.features_dir / f"{view}.parquet")
        df = df[df["event_timestamp"] == df["event_timestamp"].max()]
        wide = df if wide is None else wide.merge(df, on=["customer_id", "event_timestamp"])
    return wide.set_index("customer_id")


def test_apply_registers_the_feature_service_in_order(built):
    from features import store

    s = built["settings"]
    names = store.feature_names(s)
    assert names == [*_stored(s), *CONTEXT]  # timezone feeds the context view, not the models
    st = store.get_store(s)
    assert {fv.name for fv in st.list_feature_views()} == {*views(tuple(s.actions)), "customer_vector"}
    assert [o.name for o in st.list_on_demand_feature_views()] == ["request_context"]
    assert [fs.name for fs in st.list_feature_services()] == ["nba_v1"]
    times = store.snapshot_times(s)
    assert times[-1] == pd.Timestamp(built["summary"]["data_end"])


def test_historical_features_keep_entity_order(built, tiny_world):
    from features import store

    s = built["settings"]
    customers, _ = tiny_world
    prof = pd.read_parquet(s.features_dir / "customer_lifecycle.parquet")
    rows = prof[["customer_id", "event_timestamp"]].sample(80, random_state=2)
    rows["event_timestamp"] = rows["event_timestamp"] + pd.Timedelta(hours=13)  # between snapshots
    extra = pd.DataFrame({
        "customer_id": ["nobody", customers["customer_id"].iloc[0], rows["customer_id"].iloc[0]],
        "event_timestamp": [pd.Timestamp("2025-03-01", tz="UTC"), pd.Timestamp("2020-01-01", tz="UTC"), rows["event_timestamp"].iloc[0]],
    })
    entity = pd.concat([rows, extra], ignore_index=True).sample(frac=1.0, random_state=3)  # shuffled, one duplicate
    entity.index = np.arange(100, 100 + len(entity))
    entity["label"] = np.arange(len(entity))
    out = store.historical_features(s, entity)
    names = store.feature_names(s)
    assert list(out.columns) == ["customer_id", "event_timestamp", "label", *names, "timezone"]
    assert out["label"].tolist() == list(range(len(entity)))
    assert len(out) == len(entity)
    # values are the latest snapshot at or before each time (point in time)
    ref = pd.merge_asof(
        entity.reset_index(drop=True).assign(i=lambda d: np.arange(len(d))).sort_values("event_timestamp"),
        prof.sort_values("event_timestamp"), on="event_timestamp", by="customer_id", direction="backward",
    ).sort_values("i")
    for f in ("n_purchases", "stage_code", "days_since_last_purchase"):
        assert np.allclose(out[f].to_numpy(), ref[f].to_numpy(np.float32), equal_nan=True), f
    unknown = out[out["customer_id"] == "nobody"]
    assert unknown[_stored(s)].isna().all(axis=None) and unknown["timezone"].isna().all()
    assert out.iloc[np.flatnonzero(out["event_timestamp"] == pd.Timestamp("2020-01-01", tz="UTC"))][_stored(s)].isna().all(axis=None)
    # neutral request context: trigger at the row's own time, in the customer's timezone
    known = out[out["n_purchases"].notna()]
    tz = customers.set_index("customer_id").loc[known["customer_id"], "timezone"].to_numpy()
    assert known["timezone"].tolist() == tz.tolist()
    hours = [ts.tz_convert(z).hour for ts, z in zip(known["event_timestamp"], tz)]
    assert known["ctx_local_hour"].tolist() == hours
    assert (known["ctx_trigger_code"] == 0).all()


def test_historical_features_use_request_context_when_given(built):
    from features import store

    s = built["settings"]
    prof = pd.read_parquet(s.features_dir / "customer_profile.parquet")
    row = prof.iloc[-1]
    entity = pd.DataFrame({
        "customer_id": [row["customer_id"]] * 2,
        "event_timestamp": [row["event_timestamp"]] * 2,
        "trigger_event": ["purchase", "visit"],
        "trigger_channel": ["sms", None],
        "weather": ["rain", None],
    })
    out = store.historical_features(s, entity)
    assert out["ctx_trigger_code"].tolist() == [TRIGGERS.index("purchase"), TRIGGERS.index("visit")]
    assert out["ctx_trigger_channel_code"].tolist() == [2.0, 0.0]
    assert out["ctx_weather_code"].tolist() == [3.0, 0.0]


def test_online_read_matches_the_latest_snapshot(built):
    from features import store

    s = built["settings"]
    of = store.OnlineFeatures(s)
    latest = _latest(s)
    ids = list(latest.index[:50]) + ["no-such-customer"]
    X, found, tz = of.read(ids)
    assert X.shape == (51, len(of.names)) and X.dtype == np.float32
    assert found[:50].all() and not found[50]
    want = latest.loc[ids[:50], _stored(s)].to_numpy(np.float32)
    cust = [of.index(f) for f in _stored(s)]
    assert np.array_equal(X[:50][:, cust], want, equal_nan=True)
    assert np.isnan(X[50, cust]).all()
    assert tz[:50] == latest.loc[ids[:50], "timezone"].tolist() and tz[50] == "UTC"
    Xc, fc, _ = of.read_customer(ids[:3])
    assert np.array_equal(Xc, X[:3, cust], equal_nan=True) and fc.all()
    X1, f1, _ = of.read([ids[0]], context={"trigger_event": "cart_abandoned", "trigger_channel": "push"})
    assert f1[0] and X1[0, of.index("ctx_trigger_code")] == TRIGGERS.index("cart_abandoned")
    assert built["materialize"]["customers"] == len(latest)


def test_plain_materialize_matches_the_packed_vector(tmp_path, tiny_world):
    from features import pipeline, store

    s = settings_for(tmp_path / "data")
    write_world(s.world_dir, *tiny_world)
    pipeline.build(s)
    store.apply(s)
    stats = store.materialize(s, plain=True)
    assert stats["mode"] == "plain" and stats["customers"] == len(tiny_world[0])
    store.materialize(s)
    of = store.OnlineFeatures(s)
    ids = tiny_world[0]["customer_id"].iloc[:20].tolist() + ["nobody"]
    t = pd.Timestamp("2025-06-01 09:00", tz="UTC")
    X, found, _ = of.read(ids, context={"trigger_timestamp": t, "trigger_event": "visit"})
    st = store.get_store(s)
    rows = [{"customer_id": c, "trigger_timestamp": t, "trigger_event": "visit", "trigger_channel": "",
             "near_store": 0, "weather": "unknown"} for c in ids]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = st.get_online_features(features=st.get_feature_service("nba_v1"), entity_rows=rows).to_dict()
    G = np.array([[np.nan if d[n][i] is None else d[n][i] for n in of.names] for i in range(len(ids))], np.float32)
    assert np.allclose(X, G, equal_nan=True)
    assert not found[-1]


def test_redis_online_store(tmp_path, tiny_world, redis_port):
    from features import pipeline, store

    s = settings_for(tmp_path / "data", online_store__kind="redis", online_store__redis_port=str(redis_port))
    write_world(s.world_dir, *tiny_world)
    pipeline.build(s)
    store.apply(s)
    stats = store.materialize(s)
    assert stats["online_store"] == "redis" and stats["customers"] == len(tiny_world[0])
    of = store.OnlineFeatures(s)
    latest = _latest(s)
    ids = list(latest.index[:30]) + ["nobody"]
    X, found, _ = of.read(ids)
    cust = [of.index(f) for f in _stored(s)]
    assert found[:30].all() and not found[30]
    assert np.array_equal(X[:30][:, cust], latest.loc[ids[:30], _stored(s)].to_numpy(np.float32), equal_nan=True)
    n0 = X[0, of.index("n_purchases")]
    ev = pd.DataFrame({"customer_id": [ids[0]], "event_timestamp": [pd.Timestamp.now(tz="UTC")],
                       "event_type": ["purchase"], "amount": [12.0]})
    of.push(ev)
    assert of.read([ids[0]])[0][0, of.index("n_purchases")] == n0 + 1


def test_cli_commands(tmp_path, tiny_world):
    from typer.testing import CliRunner

    from nextbest.cli import app

    data = tmp_path / "data"
    s = settings_for(data)
    write_world(s.world_dir, *tiny_world)
    env = {"NEXTBEST__PATHS__DATA_DIR": str(data)}
    runner = CliRunner()
    for args in (["build", "--quiet"], ["apply"], ["materialize"]):
        res = runner.invoke(app, ["features", *args, "--config-dir", str(ROOT / "configs")], env=env)
        assert res.exit_code == 0, (args, res.output, res.exception)
    assert "customers" in res.output and "packed" in res.output


def test_feast_cli_reads_the_applied_registry(built):
    """`nextbest features apply` leaves a feature_store.yaml beside the registry: the Feast CLI lists what it holds."""
    s = built["settings"]
    feast = Path(sys.executable).parent / "feast"
    env = {**os.environ, "FEAST_USAGE": "False"}
    res = subprocess.run([str(feast), "-c", str(s.features_dir), "feature-services", "list"],
                         capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    assert s.features.feature_service in res.stdout
    res = subprocess.run([str(feast), "-c", str(s.features_dir), "feature-views", "list"],
                         capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 0 and "customer_vector" in res.stdout and "customer_pressure" in res.stdout, res.stderr


def test_changed_catalogue_is_refused_with_a_rebuild_hint(tmp_path, built):
    """Features built for one catalogue are never served or registered for another: a clear error says to rebuild."""
    import shutil

    from features import store
    from tests.support import copy_configs

    s = built["settings"]
    data = tmp_path / "data"
    shutil.copytree(s.data_dir, data)
    configs = copy_configs(tmp_path / "configs", drop_actions=["win_back"])
    fewer = settings_for(data, config_dir=configs)
    assert "win_back" not in fewer.actions
    with pytest.raises(store.CatalogueMismatch, match="win_back.*nextbest features build"):
        store.OnlineFeatures(fewer)
    with pytest.raises(store.CatalogueMismatch, match="nextbest features build"):
        store.apply(fewer)


@pytest.mark.parametrize("module", ["features.compute", "features.pipeline", "features.store", "features.live", "features.context", "features.message"])
def test_modules_import_without_work(module):
    code = f"import sys; import {module}; assert 'feast' not in sys.modules, 'feast imported'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr


def test_a_build_written_in_many_parts_reads_like_the_whole(tmp_path, tiny_world, monkeypatch):
    """The build writes one part per customer chunk; point-in-time reads, the newest snapshot and the online
    store see exactly the rows the pipeline computes in one piece."""
    from features import compute, pipeline, store

    monkeypatch.setattr(compute, "_MAX_CHUNK_ROWS", 400)  # a few dozen customers per part
    s = settings_for(tmp_path / "data")
    customers, events = tiny_world
    write_world(s.world_dir, customers, events)
    summary = pipeline.build(s)
    assert summary["parts"] >= 5
    for view in views(tuple(s.actions)):
        assert len(pipeline.snapshot_parts(s.features_dir / f"{view}.parquet")) == summary["parts"]
    whole = compute.build_snapshots(*tiny_world, s, times=store.snapshot_times(s))
    key = ["event_timestamp", "customer_id"]
    for view, ref in whole.items():
        got = pd.read_parquet(s.features_dir / f"{view}.parquet").sort_values(key, ignore_index=True)
        pd.testing.assert_frame_equal(got, ref.sort_values(key, ignore_index=True), check_dtype=False)

    store.apply(s)
    prof = whole["customer_lifecycle"]
    entity = prof[["customer_id", "event_timestamp"]].sample(150, random_state=5)
    entity["event_timestamp"] += pd.Timedelta(hours=30)  # between snapshots
    entity = pd.concat([entity, pd.DataFrame({"customer_id": ["nobody"], "event_timestamp": [entity["event_timestamp"].iloc[0]]})])
    out = store.historical_features(s, entity)
    ref = pd.merge_asof(entity.reset_index(drop=True).assign(i=lambda d: np.arange(len(d))).sort_values("event_timestamp"),
                        prof.sort_values("event_timestamp"), on="event_timestamp", by="customer_id").sort_values("i")
    for f in ("n_purchases", "stage_code", "days_since_last_purchase", "days_since_first_purchase"):
        assert np.allclose(out[f].to_numpy(), ref[f].to_numpy(np.float32), equal_nan=True), f
    assert out[_stored(s)].iloc[-1].isna().all()

    names = _stored(s)
    ids, ts, X, tz = store.latest_snapshot(s, names)
    newest = _latest(s)
    assert sorted(ids) == sorted(customers["customer_id"]) and (ts == ts.max()).all()
    assert np.allclose(X, newest.loc[ids, names].to_numpy(np.float32), equal_nan=True)
    assert list(tz) == newest.loc[ids, "timezone"].tolist()
    parts = pipeline.snapshot_parts(s.features_dir / "customer_lifecycle.parquet")
    fast = store._newest_rows(parts, ["n_purchases"], int(ts.max()))
    slow = store._newest_rows(parts, ["n_purchases"], None)  # without the build's guarantee: every row read
    assert sorted(zip(fast[0], fast[2].column("n_purchases").to_pylist())) == \
        sorted(zip(slow[0], slow[2].column("n_purchases").to_pylist()))
    stats = store.materialize(s)
    assert stats["customers"] == len(customers)
    got, found, _ = store.OnlineFeatures(s).read_customer(list(ids[:5]))
    assert found.all() and np.allclose(got, X[:5], equal_nan=True)


def test_a_feature_folder_moved_elsewhere_reads_the_same_features_and_a_missing_one_is_named(tmp_path, built):
    """Feast keeps the snapshots' absolute paths in its registry: a data folder moved or mounted elsewhere reads
    its own snapshots, and a store whose snapshots are nowhere says so instead of answering NaN for everyone."""
    import shutil

    from features import store
    from tests.features.conftest import settings_for

    s = built["settings"]
    ids = pd.read_parquet(s.world_dir / "customers.parquet")["customer_id"].head(20)
    q = pd.DataFrame({"customer_id": ids, "event_timestamp": pd.Timestamp("2030-01-01", tz="UTC")})
    want = store.historical_features(s, q)
    first = tmp_path / "first" / "data"
    shutil.copytree(s.data_dir, first)
    store.apply(settings_for(first))  # the registry now records paths under first/
    shutil.move(str(first), str(tmp_path / "second"))
    moved = settings_for(tmp_path / "second")
    got = store.historical_features(moved, q)
    pd.testing.assert_frame_equal(got, want)
    assert got.drop(columns=["customer_id", "event_timestamp"]).notna().any(axis=1).all()
    for part in moved.features_dir.glob("*.parquet"):
        shutil.rmtree(part) if part.is_dir() else part.unlink()
    with pytest.raises(FileNotFoundError, match="feature view .*: no snapshots at .*nextbest features build"):
        store.historical_features(moved, q)
