"""Shared fixtures: the real data shipped in tests/data, and a built installation."""

from __future__ import annotations

import shutil
import subprocess
import time
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
    """A simulated world with the case-study customers, features materialised, four heads trained.

    NEXTBEST_TEST_INSTALLATION=DIR reuses one built earlier in DIR (development only: building takes
    minutes, but the state the tests leave behind is not cleared)."""
    import os

    from tests.support import build_installation, reuse_installation

    reuse = os.environ.get("NEXTBEST_TEST_INSTALLATION")
    if reuse:
        return reuse_installation(Path(reuse))
    return build_installation(tmp_path_factory.mktemp("nextbest"))


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory):
    """A real redis-server on 127.0.0.1 and a free port, stopped at the end of the session."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; `make test` installs it)")
    from tests.support import free_port

    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        for _ in range(100):
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail(f"redis-server did not answer on 127.0.0.1:{port}")
    except BaseException:  # never leave the server behind, whatever stopped the wait
        proc.terminate()
        raise
    yield port
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
