"""Compiled trees: workers starting together compile the same model into one shared cache without clashing."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from nextbest.model_contract import Head


def test_concurrent_compilations_share_one_cache(tmp_path):
    pytest.importorskip("lleaves")
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = rng.random((500, 4))
    booster = lgb.train({"objective": "regression", "verbosity": -1, "num_leaves": 7},
                        lgb.Dataset(X, X @ np.array([1.0, -2.0, 0.5, 0.0])), num_boost_round=10)
    heads = [Head("h", booster, ["a", "b", "c", "d"], None) for _ in range(2)]
    cache = tmp_path / "compiled" / "h-v1-abc.so"
    done = [None, None]
    threads = [threading.Thread(target=lambda k: done.__setitem__(k, heads[k].compile(cache)), args=(k,))
               for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done == [True, True]
    assert sorted(p.name for p in cache.parent.iterdir()) == ["h-v1-abc.so", "h-v1-abc.txt"]
    probe = rng.random((20, 4)).astype(np.float32)
    for h in heads:
        np.testing.assert_allclose(h.predict(probe), booster.predict(probe), atol=1e-6)


def _settings_under(root):
    from nextbest.settings import load_settings

    return load_settings(environ={
        "NEXTBEST__PATHS__DATA_DIR": str(root / "data"), "NEXTBEST__PATHS__MLRUNS_DIR": str(root / "mlruns"),
        "NEXTBEST__MLFLOW__TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        "NEXTBEST__MLFLOW__ARTIFACT_ROOT": str(root / "mlruns" / "artifacts")})


def test_a_registry_moved_elsewhere_loads_its_champion_and_logs_new_runs_inside_itself(tmp_path):
    """MLflow records absolute artifact locations: a project folder moved (or a volume mounted at another path)
    still serves its champion, and new runs write under the moved store, not at the old place."""
    import shutil

    import lightgbm as lgb
    import mlflow
    from mlflow import MlflowClient

    from nextbest.model_contract import connect, load_version, model_name

    first = _settings_under(tmp_path / "first")
    connect(first)
    rng = np.random.default_rng(1)
    X = rng.random((300, 3))
    booster = lgb.train({"objective": "regression", "verbosity": -1, "num_leaves": 7},
                        lgb.Dataset(X, X[:, 0] - X[:, 2]), num_boost_round=5)
    name = model_name(first, "churn")
    with mlflow.start_run():
        info = mlflow.lightgbm.log_model(booster, name="model", registered_model_name=name, pip_requirements=[],
                                         metadata={"nextbest": {"features": ["a", "b", "c"]}})
    MlflowClient().set_registered_model_alias(name, "champion", info.registered_model_version)

    shutil.move(str(tmp_path / "first"), str(tmp_path / "second"))
    second = _settings_under(tmp_path / "second")
    loaded = load_version(second, "churn", "champion")
    assert loaded.version == "1" and loaded.head.features == ["a", "b", "c"]
    np.testing.assert_allclose(loaded.head.booster.predict(X), booster.predict(X))
    with mlflow.start_run() as run:
        mlflow.log_dict({"probe": 1}, "probe.json")
    assert (tmp_path / "second" / "mlruns" / "artifacts").as_uri() in run.info.artifact_uri
    assert not (tmp_path / "first").exists()  # nothing was written at the old place
    names = [e.name for e in MlflowClient().search_experiments()]
    assert "nextbest" in names and any(n.startswith("nextbest #") and "artifacts were at" in n for n in names)
