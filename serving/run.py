"""`nextbest serve`: start the BentoML service in the foreground."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nextbest.settings import PROJECT_ROOT, Settings

SERVICE = "serving.service:NextBest"


def serve_command(settings: Settings, port: int | None = None) -> list[str]:
    bentoml = Path(sys.executable).with_name("bentoml")
    return [str(bentoml), "serve", SERVICE, "--host", settings.serving.host,
            "--port", str(port or settings.serving.port)]


def serve(settings: Settings, port: int | None = None) -> int:
    """Run the service until interrupted; return its exit code."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(serve_command(settings, port), cwd=PROJECT_ROOT, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()
