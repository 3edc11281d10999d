"""Real-time events: the next online read sees them, new customers arrive with their registration, and a
rebuild of the online store keeps them."""

from __future__ import annotations

import pandas as pd

from nextbest.contract import write_world
from tests.features.conftest import settings_for


def test_push_makes_the_next_read_see_a_new_purchase(tmp_path, tiny_world):
    from features import live, pipeline, store

    s = settings_for(tmp_path / "data")
    write_world(s.world_dir, *tiny_world)
    pipeline.build(s)
    store.apply(s)
    store.materialize(s)
    of = store.OnlineFeatures(s)
    cid = tiny_world[0]["customer_id"].iloc[5]
    X0, _, _ = of.read([cid])
    n0 = X0[0, of.index("n_purchases")]
    now = pd.Timestamp.now(tz="UTC")
    ev = pd.DataFrame({"customer_id": [cid], "event_timestamp": [now - pd.Timedelta(seconds=1)],
                       "event_type": ["purchase"], "amount": [30.0]})
    res = of.push(ev)
    assert res["customers"] == 1 and res["seconds"] < 1.0
    X1, found, _ = of.read([cid])
    assert found[0] and X1[0, of.index("n_purchases")] == n0 + 1
    assert X1[0, of.index("days_since_last_purchase")] < 1 / 24
    assert X1[0, of.index("frequency_30d")] >= 1
    # a new customer arrives with its registration
    newc = tiny_world[0].iloc[[0]].assign(customer_id="BRAND-NEW", registered_at=now - pd.Timedelta(minutes=1))
    reg = pd.DataFrame({"customer_id": ["BRAND-NEW"], "event_timestamp": [now - pd.Timedelta(minutes=1)], "event_type": ["registration"]})
    assert live.push(s, reg, customers=newc)["customers"] == 1
    X2, f2, _ = of.read(["BRAND-NEW"])
    assert f2[0] and X2[0, of.index("stage_code")] == 0 and X2[0, of.index("n_purchases")] == 0
    # a rebuild of the online store keeps the real-time state
    stats = store.materialize(s)
    assert stats["live_refreshed"] == 2
    X3, _, _ = of.read([cid])
    assert X3[0, of.index("n_purchases")] == n0 + 1
