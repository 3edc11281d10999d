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
