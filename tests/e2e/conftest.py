"""The real thing: a built installation and a real BentoML server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import settings_env

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-secret-token"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(cmd: list[str], env: dict, log_path: Path, port: int, token: str | None = None,
                   ready_timeout: float = 120):
    """Start `cmd` (a server on 127.0.0.1:`port`), wait for /readyz, yield an httpx client, stop it."""
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + ready_timeout
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"server did not become ready in {ready_timeout:.0f} s: {log_path.read_text()[-3000:]}")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            yield client
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)  # the server and its workers
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def server(installation):
    """`bentoml serve serving.service:NextBest` on a free port, with bearer-token auth on.

    Its decisions use the catalogue's priors (no action has enough randomised sends in this small world:
    effects.min_assignments is set out of reach), so the case studies test the rules - eligibility,
    consent, caps, relay, cooldowns, context - on predictable values; the learned effects are served and
    tested in test_catalogue.py and tests/training/test_effects.py."""
    port = free_port()
    env = {**settings_env(installation), "NEXTBEST__SERVING__AUTH_TOKEN": TOKEN,
           "NEXTBEST__EFFECTS__MIN_ASSIGNMENTS": "1000000000"}
    cmd = [str(BIN / "bentoml"), "serve", "serving.service:NextBest", "--host", "127.0.0.1", "--port", str(port)]
    with running_server(cmd, env, installation.data_dir / "server.log", port, token=TOKEN) as client:
        yield client
