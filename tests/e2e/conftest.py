"""The real thing: a built installation and a real BentoML server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, settings_env

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-secret-token"
BIN = Path(sys.executable).parent


def start_server(cmd: list[str], env: dict, log, port: int, ready_timeout: float = 120) -> subprocess.Popen:
    """Start `cmd` (a server on 127.0.0.1:`port`) in a process group of its own; return once /readyz says 200."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + ready_timeout
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {Path(log.name).read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    except BaseException:  # never leave a server behind, whatever stopped the wait
        stop_server(proc)
        raise
    stop_server(proc)
    raise RuntimeError(f"server did not become ready in {ready_timeout:.0f} s: {Path(log.name).read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)  # the server (its workers die with it)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()


def client_for(port: int, token: str | None = None) -> httpx.Client:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60)


@contextlib.contextmanager
def running_server(cmd: list[str], env: dict, log_path: Path, port: int, token: str | None = None,
                   ready_timeout: float = 120):
    """Start `cmd` (a server on 127.0.0.1:`port`), wait for /readyz, yield an httpx client, stop it."""
    with open(log_path, "w") as log:
        proc = start_server(cmd, env, log, port, ready_timeout)
        try:
            with client_for(port, token) as client:
                client.server_process = proc  # the server's process (its group holds the whole server)
                yield client
        finally:
            stop_server(proc)


def serve_cmd(port: int) -> list[str]:
    """`nextbest serve` (settings from the environment: workers, clock, stores) on 127.0.0.1:`port`."""
    return [str(BIN / "nextbest"), "serve", "--port", str(port)]


def bentoml_cmd(port: int) -> list[str]:
    """The BentoML server alone (one worker, settings from the environment) on 127.0.0.1:`port`."""
    return [str(BIN / "bentoml"), "serve", "serving.service:NextBest", "--host", "127.0.0.1", "--port", str(port)]


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
    with running_server(bentoml_cmd(port), env, installation.data_dir / "server.log", port, token=TOKEN) as client:
        yield client
