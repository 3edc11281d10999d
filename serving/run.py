"""`nextbest serve`: start the BentoML service in the foreground.

The service process reads its settings again at start-up (BentoML imports
``serving.service`` in a worker process): the configuration folder is handed
on as ``NEXTBEST_CONFIG_DIR`` and the environment overrides are inherited, so
the worker serves exactly the settings ``serve`` was given; ``serving.workers``
becomes BentoML's worker count. The BentoML server dies with ``nextbest serve``
and each worker with the server (``PR_SET_PDEATHSIG``), so a crash leaves no
orphan holding the port, and the port check binds with ``SO_REUSEADDR`` as the
server does, so a restart right after a crash is not refused.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from nextbest.settings import PROJECT_ROOT, Settings

SERVICE = "serving.service:NextBest"
PR_SET_PDEATHSIG = 1


def server_env(settings: Settings, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a server process needs to serve ``settings``: the configuration folder, the
    import path of this checkout and BentoML's worker count (``serving.workers``)."""
    environ = dict(os.environ if environ is None else environ)
    overrides = {"services": {"nextbest": {"workers": settings.serving.worker_count}}}
    return {**environ, "NEXTBEST_CONFIG_DIR": str(settings.config_dir),
            "PYTHONPATH": str(PROJECT_ROOT) + os.pathsep + environ.get("PYTHONPATH", ""),
            "BENTOML_CONFIG_OVERRIDES": json.dumps(overrides)}


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


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (even by kill -9), so no
    orphan keeps answering on the port; exit at once if the parent is already gone."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() == 1:
        os._exit(1)


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
    proc = subprocess.Popen(serve_command(settings, port), cwd=PROJECT_ROOT, env=server_env(settings),
                            preexec_fn=functools.partial(die_with_parent, signal.SIGTERM))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()
