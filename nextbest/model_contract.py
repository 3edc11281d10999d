"""The model contract: what a registered model carries and how it is loaded.

A trained head is a native ``lightgbm.Booster`` plus a small JSON-able
contract (inputs, kind, label definition, horizon, calibration map, feature
service) stored in the MLflow model's metadata. Training writes it; serving,
batch scoring and the analysis load ``@champion`` (or any version) from the
registry here, as native boosters, without MLflow's pyfunc layer.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nextbest.hours import EVIDENCE_INPUTS, evidence_counts, hour_posterior
from nextbest.settings import Settings
from nextbest.vocabulary import CHAMPION, HEADS


@dataclass
class Head:
    """A booster, its input list (in order) and, for binary heads, an isotonic calibration map.

    The send-time head also carries ``hour_kappa``: its booster is a prior over the engagement hour that reads
    all inputs but the last ``EVIDENCE_INPUTS`` (the customer's own hour shares and their number), which then
    update it (``nextbest.hours.hour_posterior``)."""

    name: str
    booster: object  # lightgbm.Booster
    features: list[str]
    calibration: dict | None  # {"x": [...], "y": [...]} isotonic map for binary heads
    compiled: object = None  # a compiled forest (lleaves) with the same predictions, when available
    hour_kappa: float | None = None  # send time: concentration of engagement hours around the preferred one

    def predict(self, X: np.ndarray, n_jobs: int = 1, threads: int | None = None,
                use_compiled: bool = True) -> np.ndarray:
        """Predictions for the rows of X (the head's inputs in order). `n_jobs` threads on batches of 10,000 rows
        or more (`threads`: exactly that many); `use_compiled=False` reads the booster even when compiled."""
        c = self.compiled if use_compiled else None
        n_jobs = threads or (n_jobs if len(X) >= 10_000 else 1)  # threads only pay off on big batches
        Xb = X if self.hour_kappa is None else np.ascontiguousarray(X[:, :-EVIDENCE_INPUTS])
        raw = c.predict(Xb, n_jobs=n_jobs) if c is not None else self.booster.predict(Xb, num_threads=n_jobs)
        if self.hour_kappa is not None:
            prior = np.asarray(raw).reshape(len(X), 24)
            return hour_posterior(prior, evidence_counts(X[:, -EVIDENCE_INPUTS:]), self.hour_kappa)
        if self.calibration is not None:
            return np.interp(raw, self.calibration["x"], self.calibration["y"])
        return raw

    def compile(self, cache: Path) -> bool:
        """Compile the trees to native code (lleaves/LLVM), cached on disk; ~5x faster small-batch predictions.

        Returns False (and keeps the booster) when the compiler is unavailable or disagrees with LightGBM.
        """
        try:
            import lleaves
        except ImportError:
            return False
        cache.parent.mkdir(parents=True, exist_ok=True)
        model_file = cache.with_suffix(".txt")
        # several workers may compile the same model at once: each writes its own file, then moves it in place
        mine = f".{os.getpid()}.{threading.get_ident()}"
        if not model_file.exists():
            tmp = model_file.with_name(model_file.name + mine)
            self.booster.save_model(str(tmp))
            os.replace(tmp, model_file)
        try:
            compiled = lleaves.Model(model_file=str(model_file))
            if cache.exists():
                compiled.compile(cache=str(cache))
            else:
                tmp = cache.with_name(cache.stem + mine + cache.suffix)
                compiled.compile(cache=str(tmp))
                os.replace(tmp, cache)
        except Exception:
            return False
        probe = np.random.default_rng(0).normal(size=(64, self.booster.num_feature())).astype(np.float32)
        probe[::7, ::3] = np.nan
        same = np.allclose(np.asarray(compiled.predict(probe, n_jobs=1)).reshape(-1),
                           np.asarray(self.booster.predict(probe, num_threads=1)).reshape(-1), atol=1e-6)
        if same:
            self.compiled = compiled
        return same


@dataclass
class LoadedModel:
    head: Head
    version: str
    contract: dict


def model_name(settings: Settings, head: str) -> str:
    """The registered model name of a head: ``<mlflow.model_prefix>-<head>``."""
    return f"{settings.mlflow.model_prefix}-{head}"


def connect(settings: Settings):
    """Point MLflow at the configured store (SQLite under mlruns/ by default); return the client.

    MLflow records absolute artifact locations. When the store was moved or mounted elsewhere (its recorded
    artifact root gone, the configured one present), the old experiment keeps its runs under another name and a
    new one at the configured root takes the experiment's name, so new runs write inside the store, not at
    the old place; what was logged before is read at its new place (:func:`local_artifacts`)."""
    import mlflow
    from mlflow import MlflowClient

    settings.path(settings.paths.mlruns_dir).mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    client = MlflowClient()
    name = settings.mlflow.experiment
    root = settings.path(settings.mlflow.artifact_root)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        old = _file_path(exp.artifact_location)
        if old is not None and old != root and not old.exists() and root.exists():
            client.rename_experiment(exp.experiment_id, f"{name} #{exp.experiment_id} (artifacts were at {old})")
            exp = None
    if exp is None:
        root.mkdir(parents=True, exist_ok=True)
        client.create_experiment(name, artifact_location=root.as_uri())
    mlflow.set_experiment(name)
    return client


def _file_path(uri: str | None) -> Path | None:
    """The local path of a ``file:`` URI; None for any other."""
    from urllib.parse import unquote, urlparse

    u = urlparse(uri or "")
    return Path(unquote(u.path)) if u.scheme == "file" else None


def local_artifacts(settings: Settings, location: str, experiment_id: str) -> Path | None:
    """Where the files MLflow recorded at `location` (a ``file:`` URI under the artifact root of experiment
    `experiment_id`) are: there, or - the store moved or mounted elsewhere - at the same place under the
    configured artifact root. None when neither holds them, or for a remote store."""
    from mlflow import MlflowClient

    path = _file_path(location)
    if path is None:
        return None
    if path.exists():
        return path
    old_root = _file_path(MlflowClient().get_experiment(experiment_id).artifact_location)
    if old_root is None or not path.is_relative_to(old_root):
        return None
    moved = settings.path(settings.mlflow.artifact_root) / path.relative_to(old_root)
    return moved if moved.exists() else None


def _contract_of(local_dir: Path) -> dict:
    import yaml

    meta = yaml.safe_load((local_dir / "MLmodel").read_text()).get("metadata") or {}
    if "nextbest" not in meta:
        raise ValueError(f"{local_dir}: model has no nextbest contract in its metadata")
    return meta["nextbest"]


def load_version(settings: Settings, head: str, ref: str) -> LoadedModel:
    """Load `models:/<name>/<version>` or `models:/<name>@<alias>` as a native booster + contract."""
    import lightgbm as lgb
    import mlflow

    client = connect(settings)
    name = model_name(settings, head)
    mv = client.get_model_version(name, str(ref)) if str(ref).isdigit() else client.get_model_version_by_alias(name, ref)
    local = None
    model_id = mv.model_id or (mv.source[len("models:/"):] if str(mv.source).startswith("models:/m-") else None)
    if model_id:  # a model logged with MLflow 3: its files where they are, or where the store now is
        logged = client.get_logged_model(model_id)
        local = local_artifacts(settings, logged.artifact_location, logged.experiment_id)
    if local is None:
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{mv.version}"))
    contract = _contract_of(local)
    booster = lgb.Booster(model_file=str(local / "model.lgb"))
    version = mv.version
    kappa = (contract.get("hour_evidence") or {}).get("kappa")
    return LoadedModel(Head(head, booster, contract["features"], contract.get("calibration"), hour_kappa=kappa),
                       str(version), contract)


def load_champions(settings: Settings, heads: Sequence[str] = HEADS,
                   aliases: Sequence[str] = (CHAMPION,)) -> tuple[dict, dict]:
    """{head: LoadedModel} for each head that has one of `aliases` (the first it has: @champion by default, or
    e.g. @challenger falling back to @champion); {head: reason} for the others."""
    from mlflow.exceptions import MlflowException

    loaded, missing = {}, {}
    for head in heads:
        for alias in aliases:
            try:
                loaded[head] = load_version(settings, head, alias)
                missing.pop(head, None)
                break
            except MlflowException as e:
                missing[head] = f"no @{alias} for {model_name(settings, head)} ({str(e).splitlines()[0][:120]})"
            except (OSError, ValueError) as e:
                missing[head] = f"cannot load {model_name(settings, head)}@{alias}: {e}"
    return loaded, missing
