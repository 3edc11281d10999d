"""The real thing: a built installation and a real BentoML server on 127.0.0.1."""

from __future__ import annotations

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(installation):
    """`bentoml serve serving.service:NextBest` on a free port, with bearer-token auth on."""
    port = _free_port()
    env = {**os.environ, **settings_env(installation), "NEXTBEST__SERVING__AUTH_TOKEN": TOKEN,
           "PYTHONPATH": str(ROOT), "BENTOML_DO_NOT_TRACK": "true"}
    log = open(installation.data_dir / "server.log", "w")
    bentoml = Path(sys.executable).with_name("bentoml")
    proc = subprocess.Popen([str(bentoml), "serve", "serving.service:NextBest", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {(installation.data_dir / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("server did not become ready in 120 s")
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
