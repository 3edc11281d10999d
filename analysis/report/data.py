"""The report's sources, read lazily and once: the world's tables, the feature snapshots, the batch scores and
the model registry (versions with their run's metrics, tags, params and artifacts).

Feature tables are read straight from the pipeline's Parquet files (two snapshots, a few columns: well under a
second on the 20k demo world, where a point-in-time read through the feature service takes about 20 s).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.settings import Settings


class _Context:
    """The report's sources, read lazily and once."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.facts: dict[str, float] = {}  # headline figures (also logged as MLflow metrics)
        self.summary: list[tuple[str, str, str]] = []  # (figure, label, tone) cards at the top
        self._cache: dict = {}

    # --- world ------------------------------------------------------------------
    @property
    def simulated(self) -> bool:
        return (self.settings.world_dir / "truth.parquet").exists()

    def _table(self, name: str, columns: list[str]) -> pd.DataFrame:
        from nextbest.contract import find_table

        path = find_table(self.settings.world_dir, name)
        if path is None:
            raise FileNotFoundError(f"no {name} table in {self.settings.world_dir}")
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            have = set(pq.read_schema(path).names)
            df = pd.read_parquet(path, columns=[c for c in columns if c in have])
        else:
            head = pd.read_csv(path, nrows=0).columns
            df = pd.read_csv(path, usecols=[c for c in columns if c in head], dtype=str)
            for c in ("registered_at", "event_timestamp"):
                if c in df:
                    df[c] = pd.to_datetime(df[c], utc=True, format="ISO8601")
            if "amount" in df:
                df["amount"] = pd.to_numeric(df["amount"], errors="coerce")
        for c in columns:
            if c not in df:
                df[c] = None
        return df

    def customers(self) -> pd.DataFrame:
        if "customers" not in self._cache:
            cols = ["customer_id", "registered_at", "timezone", "segment"]
            df = self._table("customers", cols)
            df["customer_id"] = df["customer_id"].astype(str)
            df["timezone"] = df["timezone"].astype(object).where(df["timezone"].notna(), "UTC").astype(str)
            self._cache["customers"] = df
        return self._cache["customers"]

    def events(self) -> pd.DataFrame:
        if "events" not in self._cache:
            df = self._table("events", ["customer_id", "event_timestamp", "event_type", "amount"])
            df["event_type"] = df["event_type"].astype("category")
            self._cache["events"] = df
        return self._cache["events"]

    def event_types(self) -> set[str]:
        return {str(t) for t in self.events()["event_type"].dropna().unique()}

    # --- features -----------------------------------------------------------------
    def snapshot_times(self) -> list[pd.Timestamp]:
        if "times" not in self._cache:
            from features.store import snapshot_times

            self._cache["times"] = snapshot_times(self.settings)
        return self._cache["times"]

    def view(self, view: str, columns: list[str], times: list[pd.Timestamp]) -> pd.DataFrame:
        """Rows of one feature view at the given snapshot times, straight from the pipeline's Parquet file."""
        import pyarrow as pa
        import pyarrow.dataset as ds

        path = self.settings.features_dir / f"{view}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `nextbest features build`")
        d = ds.dataset(path)
        ts_type = d.schema.field("event_timestamp").type
        have = set(d.schema.names)
        cols = ["customer_id", "event_timestamp", *[c for c in columns if c in have]]
        table = d.to_table(columns=cols, filter=ds.field("event_timestamp").isin(pa.array(list(times), type=ts_type)))
        df = table.to_pandas()
        df["customer_id"] = df["customer_id"].astype(str)
        df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
        for c in columns:
            if c not in df:
                df[c] = np.nan
        return df

    def latest(self, view: str, columns: list[str]) -> pd.DataFrame:
        t = self.snapshot_times()[-1]
        return self.view(view, columns, [t]).set_index("customer_id")

    # --- scores -------------------------------------------------------------------
    def scores(self) -> tuple[pd.DataFrame, Path, bool]:
        """Batch decisions for the whole base at the data's end; (frame, path, produced now)."""
        if "scores" not in self._cache:
            path = self.settings.data_dir / "scores" / "latest.parquet"
            made = False
            if not path.exists():
                from serving.batch import score

                score(self.settings, None, path)
                made = True
            self._cache["scores"] = (pd.read_parquet(path), path, made)
        return self._cache["scores"]


def _previous_snapshot(times: list[pd.Timestamp], days: int) -> pd.Timestamp | None:
    if len(times) < 2:
        return None
    target = times[-1] - pd.Timedelta(days=days)
    return min(times[:-1], key=lambda t: abs(t - target))


@dataclass
class _Version:
    version: str
    aliases: list[str]
    run_id: str | None
    created: pd.Timestamp
    metrics: dict
    tags: dict
    params: dict


def _versions(client, name: str) -> list[_Version]:
    try:
        found = client.search_model_versions(f"name='{name}'")
    except Exception:
        return []
    aliases: dict[str, list[str]] = {}
    for alias in ("champion", "challenger"):  # version searches do not always carry the aliases
        try:
            aliases.setdefault(str(client.get_model_version_by_alias(name, alias).version), []).append(alias)
        except Exception:
            pass
    out = []
    for v in found:
        run = None
        if v.run_id:
            try:
                run = client.get_run(v.run_id)
            except Exception:
                run = None
        out.append(_Version(
            str(v.version), sorted(set(v.aliases or []) | set(aliases.get(str(v.version), []))), v.run_id,
            pd.Timestamp(int(v.creation_timestamp), unit="ms", tz="UTC"),
            dict(run.data.metrics) if run else {}, dict(run.data.tags) if run else {},
            dict(run.data.params) if run else {}))
    return sorted(out, key=lambda v: int(v.version))


def _artifact(settings: Settings, run_id: str | None, path: str, tmp: Path):
    """A run artifact as a local path, or None when it was not logged: read in place from a local store (also
    one moved since, ``local_artifacts``), downloaded from a remote one."""
    if not run_id:
        return None
    import os

    import mlflow
    from mlflow import MlflowClient

    from nextbest.model_contract import local_artifacts

    try:
        info = MlflowClient().get_run(run_id).info
    except Exception:
        return None
    base = local_artifacts(settings, info.artifact_uri, info.experiment_id)
    if base is not None:
        return base / path if (base / path).exists() else None
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    saved = os.environ.get(key)
    os.environ[key] = "false"
    try:
        local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path,
                                                         dst_path=str(tmp / run_id)))
    except Exception:
        return None
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved
    return local if local.exists() else None


def _json_artifact(settings: Settings, run_id, path, tmp) -> dict | None:
    p = _artifact(settings, run_id, path, tmp)
    if p is None:
        return None
    try:
        return json.loads(p.read_text())
    except ValueError:
        return None
