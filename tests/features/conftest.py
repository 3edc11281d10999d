"""Fixtures for the feature tests: tiny worlds, settings on temporary data folders."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nextbest.contract import write_world
from nextbest.settings import load_settings
from tests.features.world import make_world


def settings_for(data_dir: Path, config_dir: Path | None = None, **env: str):
    environ = {"NEXTBEST__PATHS__DATA_DIR": str(data_dir)}
    environ.update({f"NEXTBEST__{k.upper()}": v for k, v in env.items()})
    return load_settings(config_dir, environ=environ)


@pytest.fixture
def settings(tmp_path):
    return settings_for(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_world() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_world(n_customers=120, days=150, seed=3)


@pytest.fixture(scope="session")
def built(tmp_path_factory, tiny_world):
    """A built, applied and materialised store on SQLite (shared by the read-only store tests)."""
    from features import pipeline, store

    data = tmp_path_factory.mktemp("built") / "data"
    s = settings_for(data)
    write_world(s.world_dir, *tiny_world)
    summary = pipeline.build(s)
    store.apply(s)
    stats = store.materialize(s)
    return {"settings": s, "summary": summary, "materialize": stats}
