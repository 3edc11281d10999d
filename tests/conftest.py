"""Shared fixtures: paths to the real data shipped beside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NEXTBEST_SHARED_DIR", ROOT.parent / "shared"))
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="session")
def cdnow_path() -> Path:
    p = SHARED / "data" / "cdnow" / "CDNOW_sample.txt"
    if not p.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CDNOW sample not found at {p}: CI must have shared/ beside the clone")
        pytest.skip(f"CDNOW sample not found at {p} (set NEXTBEST_SHARED_DIR)")
    return p


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def installation(tmp_path_factory):
    """A simulated world with the case-study customers, features materialised, four heads trained."""
    from tests.support import build_installation

    return build_installation(tmp_path_factory.mktemp("nextbest"))
