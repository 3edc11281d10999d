"""Batch scoring: every customer, the same decisions as the online service."""

from __future__ import annotations

import pandas as pd
import pytest

from serving.batch import score

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scorer(installation):
    from features.store import feature_names
    from serving.scoring import Scorer

    return Scorer.from_registry(installation, feature_names(installation), compile="no")


def test_batch_decides_for_everyone_like_the_online_service(installation, scorer, tmp_path):
    from serving.engine import Engine
    from serving.history import ContactHistory
    from serving.policy import compile_policy
    from serving.pressure import Limits, SqlitePressure
    from serving.schemas import NextActionRequest

    stats = score(installation, None, tmp_path / "all.parquet", scorer=scorer)
    out = pd.read_parquet(tmp_path / "all.parquet")
    customers = pd.read_parquet(installation.world_dir / "customers.parquet", columns=["customer_id"])
    assert len(out) == len(customers) == stats["customers"] and out["customer_id"].is_unique
    assert not out["cold_start"].any() and (out["action"] != "no_action").any()
    t = pd.Timestamp(stats["as_of"])
    # simulated customers only: the end-to-end tests push feedback for the scenario customers ("S-...")
    sample = out[out["customer_id"].str.startswith("C")].sample(200, random_state=1)
    pressure = SqlitePressure(tmp_path / "p.db", Limits.from_policy(compile_policy(installation)), create=True)
    engine = Engine(installation, scorer=scorer, history=ContactHistory(tmp_path / "h.db"), pressure=pressure)
    req = NextActionRequest(customer_ids=sample["customer_id"].tolist(), context={"trigger_timestamp": t},
                            request_id=f"batch:{t.isoformat()}")
    online = pd.DataFrame(engine.decide(req, now=t.to_pydatetime()))
    assert online["action"].tolist() == sample["action"].astype(str).tolist()
    assert online["channel"].fillna("").tolist() == sample["channel"].astype(object).fillna("").tolist()
    assert online["decision_id"].tolist() == sample["decision_id"].tolist()


def test_listed_ids_and_unknown_ones(installation, scorer, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("S-second-use\nnobody-like-this\n")
    score(installation, None, tmp_path / "few.csv", ids=ids, scorer=scorer)
    out = pd.read_csv(tmp_path / "few.csv")
    assert out["customer_id"].tolist() == ["S-second-use", "nobody-like-this"]
    assert out["cold_start"].tolist() == [False, True]


def test_point_in_time_scoring_and_a_clear_error_for_naive_times(installation, scorer, tmp_path):
    from features.store import snapshot_times

    past = snapshot_times(installation)[-5]
    stats = score(installation, past.isoformat(), tmp_path / "past.parquet", scorer=scorer)
    assert pd.Timestamp(stats["as_of"]) == past
    with pytest.raises(SystemExit, match="no timezone"):
        score(installation, "2025-01-01T00:00:00", tmp_path / "x.parquet", scorer=scorer)
