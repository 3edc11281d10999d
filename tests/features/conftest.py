"""Fixtures for the feature tests: tiny worlds, settings on temporary data folders, a real redis-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory):
    """A real redis-server on 127.0.0.1 and a free port, stopped at the end of the session."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; `make test` installs it)")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.terminate()
        pytest.fail(f"redis-server did not answer on 127.0.0.1:{port}")
    yield port
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
