"""Typed settings: `configs/*.yaml` validated at start, with environment overrides.

Environment variables of the form ``NEXTBEST__SECTION__KEY=value`` override a
key of ``configs/nextbest.yaml`` (values are parsed as YAML, so ``5000``,
``true`` and ``[a, b]`` work). A bad value fails with :class:`SettingsError`,
whose message names the file, the key and what is allowed.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nextbest.vocabulary import CHANNELS, DEFAULT_FEATURE_SERVICE, DRIVERS, NO_ACTION, OBJECTIVE_EVENTS, STAGES

ENV_PREFIX = "NEXTBEST__"
MAX_CUSTOMERS_PER_REQUEST = 10_000  # the largest serving.max_customers_per_request one may configure
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_DIR = PROJECT_ROOT / "configs"

Channel = Literal[CHANNELS]  # type: ignore[valid-type]
Stage = Literal[STAGES]  # type: ignore[valid-type]
Driver = Literal[DRIVERS]  # type: ignore[valid-type]
ObjectiveEvent = Literal[OBJECTIVE_EVENTS]  # type: ignore[valid-type]


class SettingsError(ValueError):
    """A configuration file or override holds a value that is not allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(_Strict):
    data_dir: Path = Path("data")
    mlruns_dir: Path = Path("mlruns")
    reports_dir: Path = Path("data/reports")


class World(_Strict):
    customers: int = Field(20000, ge=10, le=10_000_000)
    days: int = Field(365, ge=30, le=3650)
    seed: int = 7
    start: date | Literal["auto"] = "auto"  # "auto": the world ends today, so live calls meet fresh features

    @property
    def start_date(self) -> date:
        from datetime import timedelta

        return date.today() - timedelta(days=self.days) if self.start == "auto" else self.start


class Features(_Strict):
    feature_service: str = Field(DEFAULT_FEATURE_SERVICE, pattern=r"^[a-z][a-z0-9_]*$")
    cadence_days: int = Field(7, ge=1, le=90)
    activation_window_days: int = Field(11, ge=1, le=90)
    at_risk_days: int = Field(45, ge=1)
    lapsed_days: int = Field(120, ge=2)
    history_days: int = Field(365, ge=30)

    @model_validator(mode="after")
    def _ordered(self) -> "Features":
        if self.lapsed_days <= self.at_risk_days:
            raise ValueError(
                f"lapsed_days ({self.lapsed_days}) must be greater than at_risk_days ({self.at_risk_days})"
            )
        return self


class OnlineStore(_Strict):
    kind: Literal["sqlite", "redis"] = "sqlite"
    redis_host: str = "127.0.0.1"
    redis_port: int = Field(6379, ge=1, le=65535)
    write_batch_size: int = Field(50000, ge=100)


class PressureStore(_Strict):
    """Where contact pressure (reservations and confirmed sends) is shared by every worker of the service."""

    kind: Literal["sqlite", "redis"] = "sqlite"  # sqlite: one machine, any number of workers; redis: many machines
    sqlite_path: Path | None = None  # default: <data_dir>/serving/pressure.db
    redis_host: str = "127.0.0.1"
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_db: int = Field(0, ge=0)
    key_prefix: str = Field("nextbest", pattern=r"^[A-Za-z0-9_:.-]+$")


class Engine(_Strict):
    """Where the feature build and batch scoring run: in this process, or partitioned by customer on Dask."""

    kind: Literal["local", "dask"] = "local"
    address: str | None = None  # a Dask scheduler (tcp://host:8786); None: a local cluster of `workers` processes
    workers: int = Field(2, ge=1, le=1024)  # processes of the local cluster (one thread each)
    partitions: int | None = Field(None, ge=1)  # customer partitions of the feature build; default 2 per dask worker
    # a base larger than this is split by customer into parts of at most this many (memory grows with a part,
    # not with the base); on one machine the parts are built one per core at a time
    max_partition_customers: int = Field(50_000, ge=1)


class Training(_Strict):
    activation_horizon_days: int = Field(30, ge=1, le=365)
    churn_horizon_days: int = Field(60, ge=1, le=365)
    validation_days: int = Field(56, ge=7)
    test_days: int = Field(56, ge=7)
    min_positives: int = Field(50, ge=1)
    max_rows: int = Field(400000, ge=1000)
    # a larger base is trained on a random sample of this many customers (every row of theirs), read without
    # loading the rest; null = every customer
    max_customers: int | None = Field(200_000, ge=1000)
    num_boost_round: int = Field(300, ge=10)
    early_stopping_rounds: int = Field(30, ge=1)
    promotion_margin: float = Field(0.002, ge=0.0, le=0.5)
    # currency per decision by which a challenger policy's doubly robust value on logged decisions must beat the
    # champion's: the lower bound of the difference's 95% interval must be above it (nextbest gate --logged)
    policy_margin: float = Field(0.0, ge=0.0)
    seed: int = 7


class Effects(_Strict):
    """Learning what each action changes (training/effects.py)."""

    min_assignments: int = Field(300, ge=1)  # randomised sends an action needs before its learned effect is used
    min_controls: int = Field(200, ge=1)  # randomised controls needed to learn anything
    max_rows: int = Field(600000, ge=1000)  # assignment rows sampled for training
    stop_at_other_conversion: bool = True  # an outcome window ends at a conversion of another message


class MLflow(_Strict):
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_root: Path = Path("mlruns/artifacts")
    experiment: str = "nextbest"
    model_prefix: str = Field("nextbest", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")

    @field_validator("tracking_uri")
    @classmethod
    def _no_file_store(cls, v: str) -> str:
        if not v.startswith(("sqlite:///", "http://", "https://", "postgresql", "mysql")):
            raise ValueError(
                "use a database-backed store such as sqlite:///mlruns/mlflow.db or an http(s) server "
                "(MLflow 3's plain ./mlruns file store is in maintenance mode)"
            )
        return v


class Serving(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    max_customers_per_request: int = Field(500, ge=1, le=MAX_CUSTOMERS_PER_REQUEST)
    auth_token: str | None = None
    experiment: str = "nba-2025"
    control_share: float = Field(0.10, ge=0.0, lt=1.0)
    # share of decisions drawn at random among the eligible options (no_action included), logged with their
    # propensity so effects and new policies can be learned and judged from the product's own decisions; 0 = off
    exploration_share: float = Field(0.05, ge=0.0, lt=1.0)
    access_log: bool = False
    shadow: bool = False  # the registry's @challenger also decides on live requests; logged, never acted on
    # worker processes; they share the pressure store and the decision log; auto = one per core but one (a
    # worker decides concurrent requests together and keeps its core busy), at least 1, at most 4
    workers: int | Literal["auto"] = "auto"
    reservation_hold_minutes: int = Field(120, ge=1, le=7 * 24 * 60)  # a send's capacity is held until send_at + this
    reservation_retries: int = Field(2, ge=0, le=5)  # re-decisions of a customer whose reservation lost a race
    timestamp_past_days: int = Field(30, ge=1, le=3650)  # feedback and trigger timestamps: at most this old ...
    timestamp_future_minutes: int = Field(15, ge=0, le=24 * 60)  # ... and at most this far ahead of the clock
    max_feedback_amount: float = Field(1_000_000.0, gt=0, allow_inf_nan=False)  # largest `converted` amount
    max_body_bytes: int = Field(4_000_000, ge=10_000)  # larger request bodies are refused with 413
    decision_log_sync: Literal["normal", "full"] = "normal"  # normal: survives kill -9; full: also a power cut
    clock: str = "system"  # or a fixed ISO-8601 instant, e.g. 2025-06-30T10:00:00+00:00 (tests, replays)

    @field_validator("workers")
    @classmethod
    def _workers(cls, v):
        if v != "auto" and not 1 <= v <= 64:
            raise ValueError("use auto or a number of worker processes from 1 to 64")
        return v

    @property
    def worker_count(self) -> int:
        """The worker processes to start: ``workers``, or one per core but one (at least 1, at most 4) when auto."""
        return min(max((os.cpu_count() or 1) - 1, 1), 4) if self.workers == "auto" else int(self.workers)

    @field_validator("clock", mode="before")
    @classmethod
    def _clock(cls, v) -> str:
        from nextbest.clock import parse_instant

        if isinstance(v, datetime):  # YAML reads an unquoted timestamp as a datetime
            v = v.isoformat()
        v = str(v)
        if v != "system":
            try:
                parse_instant(v)
            except ValueError as e:
                raise ValueError(f"use 'system' or an ISO-8601 instant with its offset ({e})") from None
        return v


class Objective(_Strict):
    """What success of an action is: how much of an event the customer produces within a horizon."""

    event: ObjectiveEvent = "purchase"
    measure: Literal["amount", "count"] = "amount"  # amount: sum of the events' amounts (purchases only)
    horizon_days: int = Field(30, ge=1, le=365)

    @model_validator(mode="after")
    def _amount_of_purchases(self) -> "Objective":
        if self.measure == "amount" and self.event != "purchase":
            raise ValueError("measure 'amount' needs event 'purchase' (only purchases carry an amount); use 'count'")
        return self


class Action(_Strict):
    """One entry of the action catalogue (configs/actions.yaml, documented there)."""

    stages: tuple[Stage, ...]
    objective: Objective = Objective()
    value: float = Field(ge=0)  # currency per unit of the objective (amount: the margin share; count: per event)
    incentive: float = Field(0.0, ge=0)  # currency paid per conversion of this action's message (a voucher...)
    cost: dict[Channel, float]
    driver: Driver  # prior only: the outcome score that scales the prior increment
    lift: float = Field(ge=0)  # prior only: objective units an engaged (clicking) customer adds
    cooldown_days: int = Field(ge=0)
    requires: Literal["churn_or_rfm_drop", "missing_email"] | None = None
    max_tenure_days: int | None = Field(None, ge=1)
    label: str | None = Field(None, max_length=60)  # how marketers read it in the report (default: from the id)

    @field_validator("cost")
    @classmethod
    def _some_channel(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("an action needs at least one allowed channel with its cost")
        if any(c < 0 for c in v.values()):
            raise ValueError("costs must be >= 0")
        return v

    @property
    def prior_per_click(self) -> float:
        """The prior increment (currency) of one engaged customer, before the driver's score scales it."""
        return self.lift * self.value - self.incentive


class Cap(_Strict):
    days: int = Field(ge=1, le=365)
    max: int = Field(ge=0)


class Caps(_Strict):
    per_channel: dict[Channel, Cap]
    overall: Cap


class QuietHours(_Strict):
    start: int = Field(21, ge=0, le=23)
    end: int = Field(8, ge=0, le=23)


class IgnoreRelay(_Strict):
    channel: Channel = "email"
    after_ignored: int = Field(4, ge=1)
    relay_to: tuple[Channel, ...] = ("sms", "print")


class ContextBoost(_Strict):
    channels: tuple[Channel, ...]
    factor: float = Field(gt=0)


class ContactPolicy(_Strict):
    channels: tuple[Channel, ...] = CHANNELS
    caps: Caps
    quiet_hours: QuietHours = QuietHours()
    ignore_relay: IgnoreRelay = IgnoreRelay()
    churn_offer_threshold: float = Field(0.35, ge=0, le=1)
    min_expected_value: float = 0.0
    context_boosts: dict[str, ContextBoost] = {}

    @field_validator("channels")
    @classmethod
    def _all_channels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if set(v) != set(CHANNELS):
            raise ValueError(f"list every channel once: {list(CHANNELS)}")
        return tuple(CHANNELS)


class Settings(_Strict):
    paths: Paths = Paths()
    world: World = World()
    features: Features = Features()
    online_store: OnlineStore = OnlineStore()
    pressure_store: PressureStore = PressureStore()
    training: Training = Training()
    effects: Effects = Effects()
    mlflow: MLflow = MLflow()
    serving: Serving = Serving()
    engine: Engine = Engine()
    actions: dict[str, Action]
    contact_policy: ContactPolicy
    root: Path = PROJECT_ROOT
    config_dir: Path = DEFAULT_CONFIG_DIR  # the folder these settings were read from

    @field_validator("actions")
    @classmethod
    def _action_ids(cls, v: dict[str, Action]) -> dict[str, Action]:
        if NO_ACTION in v:
            raise ValueError(f"{NO_ACTION!r} is built in; do not list it in the catalogue")
        for name in v:
            if not name.replace("_", "").isalnum() or not name.islower():
                raise ValueError(f"action id {name!r} must be lower_snake_case")
        return v

    def path(self, p: Path) -> Path:
        """Resolve a configured path against the project root."""
        return p if p.is_absolute() else self.root / p

    @property
    def data_dir(self) -> Path:
        return self.path(self.paths.data_dir)

    @property
    def world_dir(self) -> Path:
        return self.data_dir / "world"

    @property
    def features_dir(self) -> Path:
        return self.data_dir / "features"

    @property
    def serving_dir(self) -> Path:
        """The service's own state: decision log, contact pressure (SQLite), compiled trees."""
        return self.data_dir / "serving"

    @property
    def pressure_path(self) -> Path:
        p = self.pressure_store.sqlite_path
        return self.serving_dir / "pressure.db" if p is None else self.path(p)

    @property
    def tracking_uri(self) -> str:
        uri = self.mlflow.tracking_uri
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            return "sqlite:///" + str(self.root / uri[len("sqlite:///"):])
        return uri


_FILES = {"nextbest.yaml": None, "actions.yaml": "actions", "contact_policy.yaml": "contact_policy"}


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SettingsError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise SettingsError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of keys at the top level")
    return data


def _apply_env(raw: dict, environ: dict[str, str]) -> list[str]:
    applied = []
    for key, value in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX):].split("__") if p]
        if not parts:
            continue
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SettingsError(f"{key}: {'.'.join(parts[:-1])} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(value) if value != "" else None
        except yaml.YAMLError:
            node[parts[-1]] = value
        applied.append(".".join(parts))
    return applied


def _source_of(loc: tuple, config_dir: Path, overridden: list[str]) -> str:
    dotted = ".".join(str(p) for p in loc)
    for o in overridden:
        if dotted == o or dotted.startswith(o + "."):
            return f"environment {ENV_PREFIX}{o.upper().replace('.', '__')}"
    top = str(loc[0]) if loc else ""
    for fname, section in _FILES.items():
        if section == top:
            return str(config_dir / fname)
    return str(config_dir / "nextbest.yaml")


def load_settings(config_dir: Path | str | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read and validate the configuration; raise SettingsError naming the bad key."""
    config_dir = Path(config_dir) if config_dir else Path(os.environ.get("NEXTBEST_CONFIG_DIR", DEFAULT_CONFIG_DIR))
    environ = dict(os.environ if environ is None else environ)
    raw = _read_yaml(config_dir / "nextbest.yaml")
    for fname, section in _FILES.items():
        if section is not None:
            data = _read_yaml(config_dir / fname)
            raw[section] = data.get(section, data)
    overridden = _apply_env(raw, environ)
    raw["config_dir"] = config_dir.resolve()
    try:
        return Settings.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = tuple(err["loc"])
            key = ".".join(str(p) for p in loc) or "(top level)"
            got = err.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{_source_of(loc, config_dir, overridden)}: {key}: {err['msg']}{got_s}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
