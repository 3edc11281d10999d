"""Shared fixtures: the real data shipped in tests/data, and a built installation."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="session")
def cdnow_path() -> Path:
    """The CDNOW sample (tests/data/README.md says where it comes from)."""
    return DATA / "cdnow" / "CDNOW_sample.txt"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def installation(tmp_path_factory):
    """A simulated world with the case-study customers, features materialised, four heads trained."""
    from tests.support import build_installation

    return build_installation(tmp_path_factory.mktemp("nextbest"))
