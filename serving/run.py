"""`nextbest serve`: start the BentoML service in the foreground.

The service process reads its settings again at start-up (BentoML imports
``serving.service`` in a worker process): the configuration folder is handed
on as ``NEXTBEST_CONFIG_DIR`` and the environment overrides are inherited, so
the worker serves exactly the settings ``serve`` was given.
"""

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
    """Whether a server could listen on host:port now (connections left in TIME-WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class PortInUse(RuntimeError):
    """Another process listens on the configured port."""


class CannotServe(RuntimeError):
    """The configuration and what was built disagree (e.g. another action catalogue): the message says what to run."""


def _preflight(settings: Settings) -> None:
    """Check, before BentoML starts, what the service would refuse at start-up (so the user sees one clear line)."""
    from features.store import CatalogueMismatch, check_serving_layout

    if not (settings.features_dir / "registry.db").exists():
        return  # nothing built yet: the service answers rules-only, flagged (see /health)
    try:
        check_serving_layout(settings)
    except CatalogueMismatch as e:
        raise CannotServe(str(e)) from None


def serve(settings: Settings, port: int | None = None) -> int:
    """Run the service until interrupted; return its exit code."""
    port = port or settings.serving.port
    _preflight(settings)
    if not port_free(settings.serving.host, port):
        raise PortInUse(
            f"serving.port: {settings.serving.host}:{port} is already in use - stop the other server, or pick "
            f"another port with --port or NEXTBEST__SERVING__PORT")
    env = {**os.environ, "NEXTBEST_CONFIG_DIR": str(settings.config_dir),
           "PYTHONPATH": str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(serve_command(settings, port), cwd=PROJECT_ROOT, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()
