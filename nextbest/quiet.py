"""Silence known, harmless noise from third-party libraries, so the output shows the pipeline's own progress.

Called once by each entry point (the CLI, the service) before the heavy libraries are imported. Only
specific messages are filtered, by library and text; anything unexpected still shows.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

# (category name, module regex, message regex) of warnings that say nothing actionable to a nextbest user
_WARNINGS = (
    ("FutureWarning", r"(feast|mlflow|bentoml|pydantic|dask|pandas|sklearn)(\.|$)", r""),
    ("UserWarning", r"(feast|mlflow)(\.|$)", r""),
    ("Warning", r"sqlalchemy(\.|$)", r""),  # SADeprecationWarning / SAWarning from MLflow's SQLite store
)
# loggers whose warnings are about the environment, not the data (e.g. MLflow cannot find pip in a uv venv)
_LOGGERS = {
    "mlflow": logging.WARNING,  # "Successfully registered model ...", "Created version ..."
    "mlflow.utils.environment": logging.ERROR,
    "mlflow.models.model": logging.ERROR,
    "mlflow.store.db.utils": logging.ERROR,
    "alembic": logging.WARNING,
    "feast": logging.ERROR,
}


def quiet_third_party() -> None:
    """Install the filters (idempotent)."""
    import builtins

    for category, module, message in _WARNINGS:
        cls = getattr(builtins, category)
        warnings.filterwarnings("ignore", category=cls, module=module, message=message)
    for name, level in _LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    # OpenMP threads that spin while waiting starve each other when the cores are shared (LightGBM slowed 10x)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("FEAST_USAGE", "False")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@contextlib.contextmanager
def silenced_stderr():
    """Drop what a library prints straight to stderr meanwhile (MLflow's "Successfully registered model ...").
    Exceptions still propagate."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield
