"""`nextbest serve`: start the BentoML service in the foreground."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from nextbest.settings import PROJECT_ROOT, Settings

SERVICE = "serving.service:NextBest"


def serve_command(settings: Settings, port: int | None = None) -> list[str]:
    bentoml = Path(sys.executable).with_name("bentoml")
    return [str(bentoml), "serve", SERVICE, "--host", settings.serving.host,
            "--port", str(port or settings.serving.port)]


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve(settings: Settings, port: int | None = None) -> int:
    """Run the service until interrupted; return its exit code."""
    port = port or settings.serving.port
    if not port_free(settings.serving.host, port):
        raise SystemExit(
            f"serving.port: {settings.serving.host}:{port} is already in use - stop the other server, or pick "
            f"another port with --port or NEXTBEST__SERVING__PORT")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(serve_command(settings, port), cwd=PROJECT_ROOT, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()
