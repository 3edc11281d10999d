"""The decision policy: which action, on which channel, at what time - or nothing, and why.

One vectorised pass over ``n`` customers serves both the online endpoint
(1-500 customers per call) and batch scoring (millions of customers). Every
rule is one named function below, applied by :func:`decide` in this order:

1. :func:`lifecycle_stage` - stage from ``stage_code``; an unknown customer
   (``found`` False) is a cold start, treated as ``registered``.
2. Scores, with rule-based defaults when a model head is missing or gave
   NaN for a row (flagged ``fallback:<head>``): :func:`activation_scores`,
   :func:`churn_scores` (priors by stage), :func:`response_scores` (the
   customer's own click rate smoothed toward channel base rates) and
   :func:`hour_scores` (the customer's ``hour_share_HH`` features, else
   10:00 local).
3. :func:`candidate_actions` - stage, ``requires`` condition, tenure,
   cooldown and the request's restriction.
4. :func:`channel_mask` - consented AND reachable, per-channel and overall
   caps, e-mail ignore relay.
5. :func:`context_boosts` and :func:`best_expected_value` - for every open
   (action, channel)::

       EV = p_response[c] * boost[c] * lift * value * g - cost[c]
       g  = P(activation) | P(churn) | 1   for driver activation | churn | response

   ``no_action`` is worth 0 and wins unless the best EV is strictly above
   ``contact_policy.min_expected_value``.
6. :func:`control_group` - ``blake2b(f"{experiment}:{customer_id}")`` read
   as a number in [0, 1); below ``serving.control_share`` the customer gets
   ``no_action`` and the would-be action is kept in ``holdout_action``.
7. :func:`send_times` - the best allowed hour (outside quiet hours) as the
   next concrete local timestamp strictly after ``now``, ISO-8601 with the
   customer's UTC offset.
8. :func:`decision_ids` - deterministic from (request_id, customer_id) when a
   request id is given, random otherwise.

Reasons are a fixed vocabulary of codes (compiled once from the settings,
so texts quote the configured numbers), held as a boolean matrix; they are
turned into ``[{code, text}]`` only by :meth:`Decisions.to_records` and
:meth:`Decisions.to_frame`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timezone
from typing import Mapping, Sequence
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from features.context import DAY_PART_OF_HOUR
from features.names import CONTEXT
from nextbest.settings import Settings
from nextbest.vocabulary import CHANNELS, DAY_PARTS, DRIVERS, NO_ACTION, STAGES, TRIGGERS, WEATHER
FALLBACKS: tuple[str, ...] = (
    "activation_model",
    "churn_model",
    "response_model",
    "send_time_model",
    "stage",
    "timezone",
)

# --- rule-based defaults, used when a model head (or an input) is missing ----
ACTIVATION_PRIOR: dict[str, float] = {
    "registered": 0.10,
    "activating": 0.35,
    "active": 0.60,
    "at_risk": 0.25,
    "lapsed": 0.08,
}
CHURN_PRIOR: dict[str, float] = {
    "registered": 0.40,
    "activating": 0.30,
    "active": 0.12,
    "at_risk": 0.45,
    "lapsed": 0.70,
}
CHANNEL_BASE_RATE: dict[str, float] = {"email": 0.03, "sms": 0.05, "push": 0.02, "in_app": 0.06, "print": 0.01}
RESPONSE_PRIOR_SENDS = 20.0  # pseudo-sends at the base rate when smoothing a customer's own click rate
DEFAULT_SEND_HOUR = 10  # local time, when nothing is known about the customer's hours

_NS_HOUR = 3_600_000_000_000
_NS_DAY = 24 * _NS_HOUR
_C = len(CHANNELS)
_CH = {c: i for i, c in enumerate(CHANNELS)}


# =============================================================================
# compiled policy: the catalogue and the contact policy as arrays, built once
# =============================================================================


@dataclass(frozen=True, eq=False)
class CompiledPolicy:
    """Settings turned into arrays once; :func:`decide` only reads them."""

    settings: Settings
    actions: tuple[str, ...]  # catalogue order; index -1 in results = no_action
    stage_ok: np.ndarray  # bool [S, A]
    allowed: np.ndarray  # bool [A, C]: channel listed in Action.cost
    cost: np.ndarray  # float32 [A, C] (0 where not allowed)
    scale: np.ndarray  # float32 [A]: lift * value
    driver: np.ndarray  # int8 [A]: index into DRIVERS
    cooldown_days: np.ndarray  # float32 [A]
    max_tenure_days: np.ndarray  # float32 [A] (inf = no limit)
    requires_missing_email: np.ndarray  # bool [A]
    requires_churn: np.ndarray  # bool [A]
    cap_features: tuple[str, ...]  # per channel: sent_7d_<c> or sent_30d_<c>
    cap_max: np.ndarray  # float32 [C]
    overall_feature: str
    overall_max: float
    allowed_hours: np.ndarray  # bool [24]
    default_hour: int
    relay_channel: int
    relay_after: int
    boost_keys: tuple[str, ...]
    boost_kind: tuple[str, ...]  # near_store | day_part | weather | trigger
    boost_code: np.ndarray  # int [K]: code of the context value (unused for near_store)
    boost_factor: np.ndarray  # float32 [K, C] (1 where the channel is not boosted)
    min_expected_value: float
    churn_threshold: float
    control_share: float
    experiment: str
    reason_codes: tuple[str, ...]
    reason_texts: tuple[str, ...]
    reason_index: Mapping[str, int]
    required_features: tuple[str, ...]

    @property
    def relay_code(self) -> str:
        return f"{CHANNELS[self.relay_channel]}_ignored_relay"


def compile_policy(settings: Settings) -> CompiledPolicy:
    """Precompute the catalogue and contact policy as arrays (do it once per process)."""
    cp = settings.contact_policy
    actions = tuple(settings.actions)
    A = len(actions)
    stage_ok = np.zeros((len(STAGES), A), bool)
    allowed = np.zeros((A, _C), bool)
    cost = np.zeros((A, _C), np.float32)
    for a, name in enumerate(actions):
        act = settings.actions[name]
        for s in act.stages:
            stage_ok[STAGES.index(s), a] = True
        for c, v in act.cost.items():
            allowed[a, _CH[c]] = True
            cost[a, _CH[c]] = v
    acts = [settings.actions[a] for a in actions]

    cap_features, cap_max = [], np.full(_C, np.inf, np.float32)
    for i, c in enumerate(CHANNELS):
        cap = cp.caps.per_channel.get(c)
        cap_features.append(f"sent_{_window(cap.days if cap else 30)}_{c}")
        if cap is not None:
            cap_max[i] = cap.max
    overall = cp.caps.overall

    qh = cp.quiet_hours
    hours = np.arange(24)
    if qh.start == qh.end:
        quiet = np.zeros(24, bool)
    elif qh.start < qh.end:
        quiet = (hours >= qh.start) & (hours < qh.end)
    else:
        quiet = (hours >= qh.start) | (hours < qh.end)
    allowed_hours = ~quiet
    if not allowed_hours.any():
        raise ValueError("contact_policy.quiet_hours leaves no hour to send in")
    default_hour = next(h % 24 for h in range(DEFAULT_SEND_HOUR, DEFAULT_SEND_HOUR + 24) if allowed_hours[h % 24])

    keys, kinds, codes, factors = [], [], [], []
    for key, boost in cp.context_boosts.items():
        kind, code = _context_kind(key)
        f = np.ones(_C, np.float32)
        for c in boost.channels:
            f[_CH[c]] = boost.factor
        keys.append(key), kinds.append(kind), codes.append(code), factors.append(f)

    relay = cp.ignore_relay
    vocab = _reason_vocabulary(settings, actions, keys)
    required = (
        "stage_code",
        "tenure_days",
        "rfm_dropped",
        *(f"consent_{c}" for c in CHANNELS),
        *(f"reachable_{c}" for c in CHANNELS),
        *dict.fromkeys(cap_features),
        f"sent_{_window(overall.days)}_total",
        f"consecutive_ignores_{relay.channel}",
        *(f"days_since_action_{a}" for a in actions),
        *(f"sent_{c}" for c in CHANNELS),
        *(f"clicked_{c}" for c in CHANNELS),
        *(f"hour_share_{h:02d}" for h in range(24)),
    )
    return CompiledPolicy(
        settings=settings,
        actions=actions,
        stage_ok=stage_ok,
        allowed=allowed,
        cost=cost,
        scale=np.array([a.lift * a.value for a in acts], np.float32),
        driver=np.array([DRIVERS.index(a.driver) for a in acts], np.int8),
        cooldown_days=np.array([a.cooldown_days for a in acts], np.float32),
        max_tenure_days=np.array([a.max_tenure_days or np.inf for a in acts], np.float32),
        requires_missing_email=np.array([a.requires == "missing_email" for a in acts], bool),
        requires_churn=np.array([a.requires == "churn_or_rfm_drop" for a in acts], bool),
        cap_features=tuple(cap_features),
        cap_max=cap_max,
        overall_feature=f"sent_{_window(overall.days)}_total",
        overall_max=float(overall.max),
        allowed_hours=allowed_hours,
        default_hour=int(default_hour),
        relay_channel=_CH[relay.channel],
        relay_after=relay.after_ignored,
        boost_keys=tuple(keys),
        boost_kind=tuple(kinds),
        boost_code=np.array(codes, np.int16),
        boost_factor=np.array(factors, np.float32).reshape(len(keys), _C),
        min_expected_value=float(cp.min_expected_value),
        churn_threshold=float(cp.churn_offer_threshold),
        control_share=float(settings.serving.control_share),
        experiment=settings.serving.experiment,
        reason_codes=tuple(c for c, _ in vocab),
        reason_texts=tuple(t for _, t in vocab),
        reason_index={c: i for i, (c, _) in enumerate(vocab)},
        required_features=tuple(dict.fromkeys(required)),
    )


def _window(days: int) -> str:
    """Rolling-window feature for a cap: up to 7 days -> the 7-day count, else the 30-day count."""
    return "7d" if days <= 7 else "30d"


def _context_kind(key: str) -> tuple[str, int]:
    if key == "near_store":
        return "near_store", -1
    for kind, vocab in (("day_part", DAY_PARTS), ("weather", WEATHER), ("trigger", TRIGGERS)):
        if key in vocab:
            return kind, vocab.index(key)
    raise ValueError(
        f"contact_policy.context_boosts: unknown context {key!r}; use near_store, a day-part "
        f"{list(DAY_PARTS)}, a weather {list(WEATHER)} or a trigger {list(TRIGGERS)}"
    )


def _reason_vocabulary(settings: Settings, actions: tuple[str, ...], boost_keys: list[str]) -> list[tuple[str, str]]:
    cp, sv = settings.contact_policy, settings.serving
    caps, relay = cp.caps, cp.ignore_relay
    v = [("cold_start", "unknown customer: treated as a new registrant and scored with default rates")]
    v += [(f"stage:{s}", f"lifecycle stage: {s}") for s in STAGES]
    v += [
        (
            "control_group",
            f"in the control group of experiment {sv.experiment!r} ({sv.control_share:.0%} held out): nothing is sent",
        ),
        ("best_ev", "highest expected value among the eligible (action, channel) pairs"),
        ("nothing_worth_cost", f"no eligible (action, channel) is worth more than {cp.min_expected_value:g}"),
        ("no_eligible_action", "no catalogue action is eligible (stage, condition, tenure, cooldown or restriction)"),
        ("no_consented_channel", "no channel is both consented and reachable"),
        (
            "cap_reached:overall",
            f"overall contact cap reached: {caps.overall.max} sends in {caps.overall.days} days",
        ),
        ("no_open_channel", "eligible actions exist but none of the channels they use is open (caps, relay)"),
    ]
    for c in CHANNELS:
        cap = caps.per_channel.get(c)
        text = f"{c} cap reached: {cap.max} sends in {cap.days} days" if cap else f"{c} cap reached"
        v.append((f"cap_reached:{c}", text))
    v.append(
        (
            f"{relay.channel}_ignored_relay",
            f"{relay.after_ignored}+ {relay.channel} messages ignored in a row: {relay.channel} is not used, "
            f"the contact goes to {', '.join(relay.relay_to)}",
        )
    )
    for a in actions:
        v.append((f"cooldown:{a}", f"{a} was sent less than {settings.actions[a].cooldown_days} days ago"))
    v.append(("restricted", "the request restricted the candidate actions"))
    for k in boost_keys:
        b = cp.context_boosts[k]
        v.append((f"context:{k}", f"context {k} raises the response on {', '.join(b.channels)} (x{b.factor:g})"))
    texts = {
        "activation_model": "activation model unavailable: prior of the stage used",
        "churn_model": "churn model unavailable: prior of the stage used",
        "response_model": "response model unavailable: own click rate smoothed toward channel base rates used",
        "send_time_model": "send-time model unavailable: own engagement hours or the default hour used",
        "stage": "lifecycle stage unknown: treated as registered",
        "timezone": "timezone missing or unknown: UTC used",
    }
    v += [(f"fallback:{k}", texts[k]) for k in FALLBACKS]
    return v


# =============================================================================
# inputs
# =============================================================================


@dataclass
class DecisionInputs:
    """Everything one decision pass reads, as arrays over ``n`` customers.

    Flexible types are accepted and normalised in place: a single ``now`` or
    ``request_id`` applies to every customer; context fields take codes or
    names (``TRIGGERS``, ``CHANNELS``, ``DAY_PARTS``, ``WEATHER`` of
    ``features.names``). Model outputs left ``None`` (or NaN in a row) are
    replaced by rule-based defaults and flagged.
    """

    customer_ids: Sequence[str] | np.ndarray
    X: np.ndarray  # float32 [n, F]; NaN = unknown
    feature_index: Mapping[str, int]  # feature name -> column of X
    found: np.ndarray | None = None  # bool [n]; False = unknown customer (cold start)
    timezones: Sequence[str | None] | np.ndarray | None = None  # IANA; None = UTC (flagged)
    now: datetime | np.ndarray | Sequence[datetime] | None = None  # tz-aware; default: current UTC time
    p_activation: np.ndarray | None = None  # [n]
    p_churn: np.ndarray | None = None  # [n]
    p_response: np.ndarray | None = None  # [n, 5] P(click) per channel, CHANNELS order
    hour_dist: np.ndarray | None = None  # [n, 24] send-time distribution over local hours
    trigger: np.ndarray | Sequence[str] | str | None = None  # trigger event
    trigger_channel: np.ndarray | Sequence[str | None] | str | None = None  # validated; no rule reads it yet
    near_store: np.ndarray | Sequence[bool] | bool | None = None
    day_part: np.ndarray | Sequence[str] | str | None = None  # None / -1: from the local hour of `now`
    weather: np.ndarray | Sequence[str] | str | None = None
    restrict_actions: Sequence[Sequence[str] | None] | None = None  # per customer; None = every action
    request_id: str | Sequence[str | None] | None = None
    # ``names.CONTEXT`` arrays as made by ``features.context.compute_context``; they fill the context
    # fields left None above (so do ctx_* columns of X when feature_index has them)
    context: Mapping[str, Sequence] | None = None

    def __post_init__(self) -> None:
        ids = np.asarray(self.customer_ids, dtype=object)
        if ids.ndim != 1:
            raise ValueError("customer_ids: expected a 1-d sequence of ids")
        n = len(ids)
        self.customer_ids = ids
        X = np.asarray(self.X)
        if X.ndim != 2 or X.shape[0] != n:
            raise ValueError(f"X: expected shape ({n}, n_features), got {X.shape}")
        self.X = X if X.dtype == np.float32 else X.astype(np.float32)
        self.found = _bool_array(self.found, n, "found", default=True)
        self.timezones = _object_array(self.timezones, n, "timezones")
        self.now = _now_ns(self.now, n)
        self._read_context()
        self.p_activation = _scores(self.p_activation, (n,), "p_activation")
        self.p_churn = _scores(self.p_churn, (n,), "p_churn")
        self.p_response = _scores(self.p_response, (n, _C), "p_response")
        self.hour_dist = _scores(self.hour_dist, (n, 24), "hour_dist", clip=False)
        self.trigger = _codes(self.trigger, TRIGGERS, n, "trigger", default=0)
        self.trigger_channel = _codes(self.trigger_channel, CHANNELS, n, "trigger_channel", default=-1)
        self.near_store = _bool_array(self.near_store, n, "near_store", default=False)
        self.day_part = None if self.day_part is None else _codes(self.day_part, DAY_PARTS, n, "day_part", -1)
        self.weather = _codes(self.weather, WEATHER, n, "weather", default=0)
        if self.restrict_actions is not None and len(self.restrict_actions) != n:
            raise ValueError(
                f"restrict_actions: expected {n} entries (None = no restriction), got {len(self.restrict_actions)}"
            )
        if self.request_id is not None and not isinstance(self.request_id, str):
            self.request_id = _object_array(self.request_id, n, "request_id")

    @property
    def n(self) -> int:
        return len(self.customer_ids)

    def _read_context(self) -> None:
        ctx = dict(self.context or {})
        unknown = sorted(set(ctx) - set(CONTEXT))
        if unknown:
            raise ValueError(f"context: unknown key(s) {unknown}; expected names of features.names.CONTEXT")
        for name in CONTEXT:
            if name not in ctx and name in self.feature_index:
                ctx[name] = self.X[:, self.feature_index[name]]
        if self.trigger is None and "ctx_trigger_code" in ctx:
            self.trigger = np.asarray(ctx["ctx_trigger_code"], np.float32)
        if self.trigger_channel is None and "ctx_trigger_channel_code" in ctx:  # 0 = none, 1 + channel index
            self.trigger_channel = np.asarray(ctx["ctx_trigger_channel_code"], np.float32) - 1
        if self.near_store is None and "ctx_near_store" in ctx:
            self.near_store = np.asarray(ctx["ctx_near_store"], np.float32) == 1
        if self.day_part is None and "ctx_day_part" in ctx:
            self.day_part = np.asarray(ctx["ctx_day_part"], np.float32)
        if self.weather is None and "ctx_weather_code" in ctx:
            self.weather = np.asarray(ctx["ctx_weather_code"], np.float32)


def _bool_array(v, n: int, name: str, default: bool) -> np.ndarray:
    if v is None:
        return np.full(n, default)
    a = np.asarray(v)
    if a.ndim == 0:
        return np.full(n, bool(a))
    if a.shape != (n,):
        raise ValueError(f"{name}: expected {n} values, got shape {a.shape}")
    return a.astype(bool)


def _object_array(v, n: int, name: str) -> np.ndarray:
    if v is None:
        return np.full(n, None, dtype=object)
    if isinstance(v, str):
        return np.full(n, v, dtype=object)
    a = np.asarray(v, dtype=object)
    if a.shape != (n,):
        raise ValueError(f"{name}: expected {n} values, got shape {a.shape}")
    return a


def _now_ns(v, n: int) -> np.ndarray:
    """Decision time as int64 UTC nanoseconds per customer."""
    if v is None:
        v = datetime.now(timezone.utc)
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError("now: timestamp has no timezone; pass a tz-aware datetime (e.g. UTC)")
        return np.full(n, pd.Timestamp(v).tz_convert("UTC").value, np.int64)
    a = np.asarray(v)
    if a.dtype.kind == "M":  # numpy datetime64 holds UTC instants
        a = a.astype("datetime64[ns]").astype(np.int64)
    elif a.dtype.kind != "i":
        idx = pd.DatetimeIndex(list(a) if a.dtype == object else a)
        if idx.tz is None:
            raise ValueError("now: timestamps have no timezone; pass tz-aware datetimes (e.g. UTC)")
        a = idx.tz_convert("UTC").asi8
    if a.ndim == 0:
        return np.full(n, int(a), np.int64)
    if a.shape != (n,):
        raise ValueError(f"now: expected {n} timestamps, got shape {a.shape}")
    return a.astype(np.int64)


def _scores(v, shape: tuple[int, ...], name: str, clip: bool = True) -> np.ndarray | None:
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float32)
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    return np.clip(a, 0.0, 1.0) if clip else a


def _codes(v, vocab: tuple[str, ...], n: int, name: str, default: int) -> np.ndarray:
    """Names or integer codes -> int16 codes into `vocab` (-1 = none/unknown)."""
    if v is None:
        return np.full(n, default, np.int16)
    if isinstance(v, str) or np.ndim(v) == 0:
        v = [v] * n
    a = np.asarray(v)
    if a.shape != (n,):
        raise ValueError(f"{name}: expected {n} values, got shape {a.shape}")
    if a.dtype.kind in "iuf":
        codes = np.nan_to_num(a.astype(np.float64), nan=-1).astype(np.int16)
        if (codes >= len(vocab)).any() or (codes < -1).any():
            raise ValueError(f"{name}: codes must be -1..{len(vocab) - 1} ({list(vocab)})")
        return codes
    a = a.astype(object)
    inv, uniq = pd.factorize(a, use_na_sentinel=True) if n > 64 else (None, list(dict.fromkeys(a.tolist())))
    lookup = {v: i for i, v in enumerate(vocab)}
    bad = sorted({str(v) for v in uniq if v is not None and v == v and v not in lookup})
    if bad:
        raise ValueError(f"{name}: unknown value(s) {bad}; allowed: {list(vocab)}")
    if inv is None:
        return np.array([lookup.get(v, -1) for v in a.tolist()], np.int16)
    return np.append(np.array([lookup.get(v, -1) for v in uniq], np.int16), np.int16(-1))[inv]


class _Columns:
    """Read named feature columns of X (float32, NaN = unknown)."""

    def __init__(self, inputs: DecisionInputs, policy: CompiledPolicy):
        missing = [f for f in policy.required_features if f not in inputs.feature_index]
        if missing:
            raise ValueError(
                f"feature_index: the decision policy needs features that are not supplied: {', '.join(missing)}"
            )
        self.X, self.index = inputs.X, inputs.feature_index

    def __call__(self, name: str) -> np.ndarray:
        return self.X[:, self.index[name]]

    def many(self, names: Sequence[str], rows: np.ndarray | None = None) -> np.ndarray:
        cols = [self.index[f] for f in names]
        return self.X[:, cols] if rows is None else self.X[np.ix_(rows, cols)]


# =============================================================================
# the rules, one function each
# =============================================================================


def lifecycle_stage(stage_code: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stage index per customer and a mask of rows whose stage was defaulted.

    Unknown customers are cold starts in ``registered``; a known customer
    without a valid stage code is also put in ``registered`` and flagged.
    """
    code = np.nan_to_num(stage_code, nan=-1.0)
    valid = (code >= 0) & (code < len(STAGES)) & (code == np.round(code))
    stage = np.where(found & valid, code, STAGES.index("registered")).astype(np.int8)
    return stage, found & ~valid


def _with_prior(model: np.ndarray | None, prior: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if model is None:
        return prior.astype(np.float32), np.ones(len(prior), bool)
    missing = np.isnan(model) | ~found
    return np.where(missing, prior, model).astype(np.float32), missing


def activation_scores(p: np.ndarray | None, stage: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(activation); the prior of the stage where the model is missing (or the customer unknown)."""
    prior = np.array([ACTIVATION_PRIOR[s] for s in STAGES], np.float32)[stage]
    return _with_prior(p, prior, found)


def churn_scores(p: np.ndarray | None, stage: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(churn); the prior of the stage where the model is missing (or the customer unknown)."""
    prior = np.array([CHURN_PRIOR[s] for s in STAGES], np.float32)[stage]
    return _with_prior(p, prior, found)


def response_scores(p: np.ndarray | None, col: _Columns, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(click) per channel [n, 5]; default: own clicks/sends smoothed toward the channel base rate."""
    base = np.array([CHANNEL_BASE_RATE[c] for c in CHANNELS], np.float32)
    sent = np.nan_to_num(col.many([f"sent_{c}" for c in CHANNELS]), nan=0.0).clip(0)
    clicked = np.nan_to_num(col.many([f"clicked_{c}" for c in CHANNELS]), nan=0.0).clip(0)
    prior = ((clicked + RESPONSE_PRIOR_SENDS * base) / (sent + RESPONSE_PRIOR_SENDS)).clip(0, 1)
    if p is None:
        return prior.astype(np.float32), np.ones(len(prior), bool)
    missing = np.isnan(p).any(axis=1) | ~found
    return np.where(missing[:, None], prior, p).astype(np.float32), missing


def hour_scores(
    dist: np.ndarray | None, col: _Columns, found: np.ndarray, policy: CompiledPolicy
) -> tuple[np.ndarray, np.ndarray]:
    """Send-time scores [n, 24], -inf on quiet hours, and the rows that used the default.

    Default: the customer's own ``hour_share_HH`` features when they hold any
    engagement, else a peak at the default hour (10:00, or the first allowed
    hour after it).
    """
    n = len(found)
    if dist is None:
        scores, missing = np.empty((n, 24), np.float32), np.ones(n, bool)
    else:
        # a message is read in the hour it lands and the next ones: score each hour with its neighbours
        # (circular weights 1/4, 1/2, 1/4), which favours the centre of a customer's active period
        scores = 0.5 * dist + 0.25 * np.roll(dist, 1, axis=1) + 0.25 * np.roll(dist, -1, axis=1)
        missing = ~np.isfinite(dist).all(axis=1) | ~found | (dist.sum(axis=1) <= 0)
    rows = np.flatnonzero(missing)
    if len(rows):
        share = col.many([f"hour_share_{h:02d}" for h in range(24)], rows)
        share_ok = np.isfinite(share).all(axis=1) & (np.nan_to_num(share).sum(axis=1) > 0)
        default = -np.abs(np.arange(24) - policy.default_hour).astype(np.float32)  # peak at the default hour
        # a tiny preference for the default hour breaks ties in flat distributions
        scores[rows] = np.where(share_ok[:, None], np.nan_to_num(share) + 1e-6 * default, default)
    scores[:, ~policy.allowed_hours] = -np.inf
    return scores, missing


def best_hours(scores: np.ndarray, k: int = 3) -> np.ndarray:
    """Top-k allowed local hours [n, k], best first."""
    s = scores.copy()
    rows = np.arange(len(s))
    out = np.empty((len(s), k), np.int8)
    for i in range(k):
        h = s.argmax(axis=1)
        out[:, i] = h
        s[rows, h] = -np.inf
    return out


def candidate_actions(
    policy: CompiledPolicy,
    stage: np.ndarray,
    col: _Columns,
    p_churn: np.ndarray,
    restrict: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Eligible actions [n, A] and the mask of actions blocked only by their cooldown [n, A].

    Eligible = stage in ``Action.stages`` AND ``requires`` holds AND tenure
    within ``max_tenure_days`` AND not in cooldown AND allowed by the request.
    """
    ok = policy.stage_ok[stage]
    ok &= requirements_met(policy, col, p_churn)
    tenure = np.nan_to_num(col("tenure_days"), nan=0.0)
    ok &= tenure[:, None] <= policy.max_tenure_days[None, :]
    if restrict is not None:
        ok &= restrict
    since = col.many([f"days_since_action_{a}" for a in policy.actions])
    cooling = since < policy.cooldown_days[None, :]  # NaN (never sent) compares False
    return ok & ~cooling, ok & cooling


def requirements_met(policy: CompiledPolicy, col: _Columns, p_churn: np.ndarray) -> np.ndarray:
    """[n, A]: the action's ``requires`` condition holds (True for actions without one).

    missing_email: no reachable e-mail, and SMS consented and reachable.
    churn_or_rfm_drop: P(churn) >= churn_offer_threshold, or rfm_dropped == 1.
    """
    n = len(p_churn)
    out = np.ones((n, len(policy.actions)), bool)
    if policy.requires_missing_email.any():
        missing_email = (col("reachable_email") != 1) & (col("consent_sms") == 1) & (col("reachable_sms") == 1)
        out[:, policy.requires_missing_email] = missing_email[:, None]
    if policy.requires_churn.any():
        at_risk = (p_churn >= policy.churn_threshold) | (col("rfm_dropped") == 1)
        out[:, policy.requires_churn] = at_risk[:, None]
    return out


@dataclass
class ChannelMask:
    open: np.ndarray  # bool [n, C]: usable now
    contactable: np.ndarray  # bool [n, C]: consented AND reachable
    capped: np.ndarray  # bool [n, C]: contactable but over its cap
    overall_capped: np.ndarray  # bool [n]
    relayed: np.ndarray  # bool [n]: relay channel ignored too often


def channel_mask(policy: CompiledPolicy, col: _Columns) -> ChannelMask:
    """Consent AND reachability, minus channels over their cap, all channels over the overall cap,
    and the relay channel (e-mail) after too many ignored messages in a row."""
    consent = col.many([f"consent_{c}" for c in CHANNELS]) == 1
    reach = col.many([f"reachable_{c}" for c in CHANNELS]) == 1
    contactable = consent & reach
    sent = np.nan_to_num(col.many(policy.cap_features), nan=0.0)
    capped = contactable & (sent >= policy.cap_max[None, :])
    overall = np.nan_to_num(col(policy.overall_feature), nan=0.0) >= policy.overall_max
    relay = CHANNELS[policy.relay_channel]
    relayed = np.nan_to_num(col(f"consecutive_ignores_{relay}"), nan=0.0) >= policy.relay_after
    open_ = contactable & ~capped & ~overall[:, None]
    open_[:, policy.relay_channel] &= ~relayed
    return ChannelMask(open_, contactable, capped, overall, relayed)


def context_boosts(
    policy: CompiledPolicy, near_store: np.ndarray, day_part: np.ndarray, weather: np.ndarray, trigger: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Multiplier on P(response) [n, C] and which configured contexts are active [n, K]."""
    n = len(near_store)
    boost = np.ones((n, _C), np.float32)
    active = np.zeros((n, len(policy.boost_keys)), bool)
    values = {"day_part": day_part, "weather": weather, "trigger": trigger}
    for k, kind in enumerate(policy.boost_kind):
        on = near_store if kind == "near_store" else values[kind] == policy.boost_code[k]
        active[:, k] = on
        boost = np.where(on[:, None], boost * policy.boost_factor[k], boost)
    return boost, active


def best_expected_value(
    policy: CompiledPolicy,
    candidates: np.ndarray,
    open_channels: np.ndarray,
    p_response: np.ndarray,
    p_activation: np.ndarray,
    p_churn: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best (action, channel) by expected value: (action idx, channel idx, EV, number of options).

    EV = p_response[c] * lift * value * g - cost[c], with g = 1 | P(activation) | P(churn)
    by driver. Rows without any option get action -1, channel -1, EV -inf.
    ``p_response`` already carries the context boosts.
    """
    n = len(p_activation)
    g = np.stack([np.ones(n, np.float32), p_activation, p_churn], axis=1)
    best_ev = np.full(n, -np.inf, np.float32)
    best_a = np.full(n, -1, np.int16)
    best_c = np.full(n, -1, np.int8)
    n_options = np.zeros(n, np.int16)
    rows = np.arange(n)
    for a in range(len(policy.actions)):
        ok = open_channels & policy.allowed[a] & candidates[:, a, None]
        n_options += ok.sum(axis=1, dtype=np.int16)
        ev = p_response * (policy.scale[a] * g[:, policy.driver[a]])[:, None] - policy.cost[a]
        ev = np.where(ok, ev, -np.inf)
        c = ev.argmax(axis=1)
        v = ev[rows, c]
        better = v > best_ev
        best_ev = np.where(better, v, best_ev)
        best_a[better] = a
        best_c[better] = c[better]
    return best_a, best_c, best_ev, n_options


def stable_unit(keys: Sequence[str], salt: str) -> np.ndarray:
    """A number in [0, 1) per key, stable across processes and machines:
    ``int.from_bytes(blake2b(f"{salt}:{key}".encode(), digest_size=8).digest(), "big") / 2**64``."""
    return np.frombuffer(_digests(keys, f"{salt}:", 8), dtype=">u8").astype(np.float64) / 2.0**64


def _digests(keys: Sequence[str], prefix: str, size: int) -> bytes:
    """Concatenated blake2b(prefix + key, digest_size=size) digests of every key."""
    h0 = hashlib.blake2b(prefix.encode(), digest_size=size)
    out = []
    for k in keys:
        h = h0.copy()
        h.update(str(k).encode())
        out.append(h.digest())
    return b"".join(out)


def control_group(customer_ids: Sequence[str], policy: CompiledPolicy) -> np.ndarray:
    """True for the share ``serving.control_share`` of customers held out of experiment ``serving.experiment``."""
    if policy.control_share <= 0:
        return np.zeros(len(customer_ids), bool)
    return stable_unit(customer_ids, policy.experiment) < policy.control_share


def _timezone_codes(timezones: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Factorised timezones (codes into names) and the mask of rows that fell back to UTC."""
    codes, uniques = pd.factorize(timezones, use_na_sentinel=True)
    names, bad_code = [], []
    for z in uniques:
        try:
            ZoneInfo(str(z))
            names.append(str(z)), bad_code.append(False)
        except (ValueError, KeyError, OSError):  # unknown or malformed IANA name
            names.append("UTC"), bad_code.append(True)
    names.append("UTC")  # code -1 (missing) -> last name
    bad = np.append(np.array(bad_code, bool), True)[codes]
    return codes.astype(np.int32), names, bad


def _by_timezone(codes: np.ndarray, names: list[str]):
    """Yield (timezone name, row positions) for each timezone present."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    bounds = np.flatnonzero(np.diff(sorted_codes)) + 1
    for rows in np.split(order, bounds):
        if len(rows):
            yield names[codes[rows[0]]], rows


class _Offsets:
    """UTC offsets of one timezone over a time span, as arrays: exact, vectorised, from zoneinfo.

    The zone is sampled once a day (UTC midnights) and every change of offset
    is located to the second by bisection, so ``at(u)`` is one ``searchsorted``
    (this assumes no two transitions within a day, which holds for the IANA
    zones). Tables are cached per (zone, span of days): see :func:`_offsets`.
    """

    _STEP = 86_400

    def __init__(self, zone: ZoneInfo, first_day: int, last_day: int):
        def off(t: int) -> int:
            return int(datetime.fromtimestamp(t, zone).utcoffset().total_seconds())

        grid = list(range(first_day * self._STEP, (last_day + 1) * self._STEP + 1, self._STEP))
        offsets = [off(t) for t in grid]
        trans, vals = [], [offsets[0]]
        for k in range(1, len(grid)):
            if offsets[k] != offsets[k - 1]:
                lo, hi = grid[k - 1], grid[k]  # off(lo) is the old offset, off(hi) the new one
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if off(mid) == offsets[k - 1]:
                        lo = mid
                    else:
                        hi = mid
                trans.append(hi)
                vals.append(offsets[k])
        self.transitions = np.array(trans, np.int64) * 1_000_000_000
        self.offsets = np.array(vals, np.int64) * 1_000_000_000

    def at(self, utc_ns: np.ndarray) -> np.ndarray:
        """Offset (ns) in force at each UTC instant."""
        return self.offsets[np.searchsorted(self.transitions, utc_ns, side="right")]

    def wall_to_utc(self, wall_ns: np.ndarray) -> np.ndarray:
        """The instant of a local wall-clock time, like zoneinfo with fold=0: an ambiguous time
        (fall-back) takes the earlier instant, a time in a gap (spring-forward) is read with the
        offset before the gap, so it moves forward by the gap (02:00 -> 03:00)."""
        before = self.at(wall_ns - 15 * _NS_HOUR)  # offsets span -12h..+14h: probes bracket every candidate
        after = self.at(wall_ns + 15 * _NS_HOUR)
        c_before, c_after = wall_ns - before, wall_ns - after
        ok_before = self.at(c_before) == before
        ok_after = self.at(c_after) == after
        only_after = ok_after & ~ok_before
        return np.where(ok_before & ok_after, np.minimum(c_before, c_after), np.where(only_after, c_after, c_before))


@lru_cache(maxsize=4096)
def _offsets_cached(tz: str, first_day: int, last_day: int) -> _Offsets:
    return _Offsets(ZoneInfo(tz), first_day, last_day)


def _offsets(tz: str, start_ns: int, end_ns: int) -> _Offsets:
    """Offsets of `tz` covering [start - 2 days, end + 4 days] (room for the send-time search)."""
    return _offsets_cached(tz, start_ns // _NS_DAY - 2, end_ns // _NS_DAY + 4)


def local_clock(now_ns: np.ndarray, codes: np.ndarray, names: list[str]) -> np.ndarray:
    """Local wall-clock time (int64 ns, naive) of each customer's ``now``."""
    out = np.empty_like(now_ns)
    for tz, rows in _by_timezone(codes, names):
        now = now_ns[rows]
        out[rows] = now + _offsets(tz, int(now.min()), int(now.max())).at(now)
    return out


def send_times(
    now_ns: np.ndarray, hour: np.ndarray, codes: np.ndarray, names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Next ``hour``:00 local strictly after ``now``: (UTC int64 ns, UTC offset in minutes).

    Vectorised per timezone. An ambiguous wall time (fall-back) takes the
    earlier instant; one inside a spring-forward gap moves forward by the gap.
    """
    utc_out = np.empty_like(now_ns)
    off_out = np.empty(len(now_ns), np.int32)
    for tz, rows in _by_timezone(codes, names):
        now = now_ns[rows]
        zone = _offsets(tz, int(now.min()), int(now.max()))
        wall_now = now + zone.at(now)
        wall = wall_now - wall_now % _NS_DAY + hour[rows].astype(np.int64) * _NS_HOUR
        wall = np.where(wall <= wall_now, wall + _NS_DAY, wall)
        utc = zone.wall_to_utc(wall)
        late = utc <= now
        while late.any():  # only around DST changes
            wall[late] += _NS_DAY
            utc[late] = zone.wall_to_utc(wall[late])
            late = utc <= now
        utc_out[rows] = utc
        off_out[rows] = zone.at(utc) // 60_000_000_000
    return utc_out, off_out


def iso_with_offset(utc_ns: np.ndarray, offset_min: np.ndarray) -> np.ndarray:
    """ISO-8601 local timestamps with their UTC offset, e.g. ``2025-03-04T10:00:00+01:00``."""
    if len(utc_ns) == 0:
        return np.array([], dtype="U25")
    wall = (utc_ns + offset_min.astype(np.int64) * 60_000_000_000).view("datetime64[ns]")
    text = np.datetime_as_string(wall, unit="s")
    uniq, inv = np.unique(offset_min, return_inverse=True)
    suffix = np.array([f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}" for m in uniq])[inv]
    return np.char.add(text, suffix)


def _format_uuids(raw: bytes, version: int) -> np.ndarray:
    """16 bytes per id -> canonical UUID strings with the given version and the RFC 4122 variant."""
    b = np.frombuffer(raw, np.uint8).reshape(-1, 16).copy()
    b[:, 6] = (b[:, 6] & 0x0F) | (version << 4)
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80
    n = len(b)
    hx = np.frombuffer(b.tobytes().hex().encode(), np.uint8).reshape(n, 32)
    out = np.full((n, 36), ord("-"), np.uint8)
    for dst, src, width in ((0, 0, 8), (9, 8, 4), (14, 12, 4), (19, 16, 4), (24, 20, 12)):
        out[:, dst : dst + width] = hx[:, src : src + width]
    return out.view("S36").ravel().astype("U36")


def decision_ids(customer_ids: np.ndarray, request_id: str | np.ndarray | None) -> np.ndarray:
    """Decision ids: a UUID (version 8) from blake2b(f"{request_id}:{customer_id}", digest_size=16)
    when a request id is given, so a retried request gets the same ids; a random UUID4 otherwise."""
    n = len(customer_ids)
    if isinstance(request_id, str):
        return _format_uuids(_digests(customer_ids, f"{request_id}:", 16), 8)
    out = np.empty(n, dtype="U36")
    given = np.zeros(n, bool) if request_id is None else pd.notna(request_id)
    rows = np.flatnonzero(given)
    if len(rows):
        det = b"".join([_digests([customer_ids[i]], f"{request_id[i]}:", 16) for i in rows])
        out[rows] = _format_uuids(det, 8)
    rows = np.flatnonzero(~given)
    if len(rows):
        out[rows] = _format_uuids(os.urandom(16 * len(rows)), 4)
    return out


def _restriction_mask(restrict: Sequence[Sequence[str] | None] | None, policy: CompiledPolicy, n: int):
    """[n, A] allowed by the request (None when nothing is restricted) and the rows restricted."""
    if restrict is None or all(r is None for r in restrict):
        return None, np.zeros(n, bool)
    index = {a: i for i, a in enumerate(policy.actions)}
    mask = np.ones((n, len(policy.actions)), bool)
    restricted = np.zeros(n, bool)
    for i, r in enumerate(restrict):
        if r is None:
            continue
        unknown = [a for a in r if a not in index and a != NO_ACTION]
        if unknown:
            raise ValueError(
                f"restrict_actions: unknown action(s) {unknown} for customer {i}; known: {list(policy.actions)}"
            )
        mask[i] = False
        mask[i, [index[a] for a in r if a in index]] = True
        restricted[i] = True
    return mask, restricted


# =============================================================================
# the decision
# =============================================================================


@dataclass
class Decisions:
    """Decisions for ``n`` customers as arrays (action/channel/stage as indices)."""

    policy: CompiledPolicy
    customer_ids: np.ndarray  # object [n]
    action_idx: np.ndarray  # int16 [n]; -1 = no_action
    channel_idx: np.ndarray  # int8 [n]; -1 = none
    send_at: np.ndarray  # object [n]: ISO-8601 with offset, None for no_action
    send_at_utc: np.ndarray  # datetime64[ns] [n], NaT for no_action
    stage_idx: np.ndarray  # int8 [n]
    p_activation: np.ndarray  # float32 [n]
    p_churn: np.ndarray  # float32 [n]
    p_response: np.ndarray  # float32 [n, C] (before context boosts)
    best_hours: np.ndarray  # int8 [n, 3]
    expected_value: np.ndarray  # float32 [n]: EV of `action` (0 for no_action)
    best_expected_value: np.ndarray  # float32 [n]: EV of the best option (-inf if none)
    n_options: np.ndarray  # int16 [n]: eligible (action, channel) pairs
    reasons: np.ndarray  # bool [n, R] over policy.reason_codes
    control_group: np.ndarray  # bool [n]
    holdout_action_idx: np.ndarray  # int16 [n]: would-be action (-1 = no_action); reported for control only
    holdout_channel_idx: np.ndarray  # int8 [n]
    cold_start: np.ndarray  # bool [n]
    fallbacks: np.ndarray  # bool [n, len(FALLBACKS)]
    decision_id: np.ndarray  # str [n]
    model_versions: dict[str, str]

    def __len__(self) -> int:
        return len(self.customer_ids)

    # -- names -----------------------------------------------------------------
    @property
    def action(self) -> np.ndarray:
        return np.array([*self.policy.actions, NO_ACTION], dtype=object)[self.action_idx]

    @property
    def channel(self) -> np.ndarray:
        return np.array([*CHANNELS, None], dtype=object)[self.channel_idx]

    @property
    def stage(self) -> np.ndarray:
        return np.array(STAGES, dtype=object)[self.stage_idx]

    @property
    def holdout_action(self) -> np.ndarray:
        names = np.array([*self.policy.actions, NO_ACTION], dtype=object)[self.holdout_action_idx]
        return np.where(self.control_group, names, None)

    @property
    def holdout_channel(self) -> np.ndarray:
        names = np.array([*CHANNELS, None], dtype=object)[self.holdout_channel_idx]
        return np.where(self.control_group, names, None)

    @property
    def fallback(self) -> np.ndarray:
        return self.fallbacks.any(axis=1)

    def reason_codes(self, i: int) -> list[str]:
        return [self.policy.reason_codes[r] for r in np.flatnonzero(self.reasons[i])]

    # -- outputs ---------------------------------------------------------------
    def to_records(self) -> list[dict]:
        """One dict per customer, shaped like ``serving.schemas.CustomerDecision``."""
        pol = self.policy
        n = len(self)

        def floats(a: np.ndarray) -> list:
            return np.round(a.astype(np.float64), 6).tolist()

        action, channel, stage = self.action.tolist(), self.channel.tolist(), self.stage.tolist()
        h_action, h_channel = self.holdout_action.tolist(), self.holdout_channel.tolist()
        p_act, p_churn, ev = floats(self.p_activation), floats(self.p_churn), floats(self.expected_value)
        p_resp, hours = floats(self.p_response), self.best_hours.tolist()
        control, cold, ids = self.control_group.tolist(), self.cold_start.tolist(), self.decision_id.tolist()
        reasons = _row_lists(self.reasons)
        fallbacks = _row_lists(self.fallbacks)
        out = []
        for i in range(n):
            out.append(
                {
                    "customer_id": str(self.customer_ids[i]),
                    "action": action[i],
                    "channel": channel[i],
                    "send_at": None if self.send_at[i] is None else str(self.send_at[i]),
                    "stage": stage[i],
                    "scores": {
                        "activation": p_act[i],
                        "churn": p_churn[i],
                        "response": dict(zip(CHANNELS, p_resp[i])),
                        "best_hours": hours[i],
                    },
                    "expected_value": ev[i],
                    "reasons": [
                        {"code": code, "text": self._reason_text(i, code, pol.reason_texts[r])}
                        for r in reasons[i]
                        for code in (pol.reason_codes[r],)
                    ],
                    "control_group": control[i],
                    "holdout_action": h_action[i],
                    "holdout_channel": h_channel[i],
                    "cold_start": cold[i],
                    "fallback": bool(fallbacks[i]),
                    "fallbacks": [FALLBACKS[k] for k in fallbacks[i]],
                    "model_versions": dict(self.model_versions),
                    "decision_id": ids[i],
                }
            )
        return out

    def _reason_text(self, i: int, code: str, text: str) -> str:
        if code == "best_ev":
            held = bool(self.control_group[i])
            a = int(self.holdout_action_idx[i] if held else self.action_idx[i])
            c = int(self.holdout_channel_idx[i] if held else self.channel_idx[i])
            return (
                f"{self.policy.actions[a]} by {CHANNELS[c]} {'would be' if held else 'is'} the best of "
                f"{int(self.n_options[i])} eligible option(s): expected value {float(self.best_expected_value[i]):.3f}"
            )
        if code == "nothing_worth_cost":
            return f"{text}: best of {int(self.n_options[i])} option(s) is {float(self.best_expected_value[i]):.3f}"
        return text

    def to_frame(self) -> pd.DataFrame:
        """A flat table for batch output: categoricals for names, ';'-joined reason and fallback codes."""
        pol = self.policy
        act_cats, no_action = [*pol.actions, NO_ACTION], len(pol.actions)
        holdout = np.where(self.holdout_action_idx < 0, no_action, self.holdout_action_idx)
        data = {
            "customer_id": self.customer_ids,
            "action": pd.Categorical.from_codes(np.where(self.action_idx < 0, no_action, self.action_idx), act_cats),
            "channel": pd.Categorical.from_codes(self.channel_idx.astype(np.int64), list(CHANNELS)),
            "send_at": self.send_at,
            "send_at_utc": pd.DatetimeIndex(self.send_at_utc, tz=None).tz_localize("UTC"),
            "stage": pd.Categorical.from_codes(self.stage_idx.astype(np.int64), list(STAGES)),
            "p_activation": self.p_activation,
            "p_churn": self.p_churn,
            **{f"p_response_{c}": self.p_response[:, j] for j, c in enumerate(CHANNELS)},
            **{f"best_hour_{k + 1}": self.best_hours[:, k] for k in range(self.best_hours.shape[1])},
            "expected_value": self.expected_value,
            "best_expected_value": self.best_expected_value,
            "reasons": _joined_codes(self.reasons, pol.reason_codes),
            "control_group": self.control_group,
            "holdout_action": pd.Categorical.from_codes(np.where(~self.control_group, -1, holdout), act_cats),
            "holdout_channel": pd.Categorical.from_codes(
                np.where(self.control_group, self.holdout_channel_idx, -1).astype(np.int64), list(CHANNELS)
            ),
            "cold_start": self.cold_start,
            "fallback": self.fallback,
            "fallbacks": _joined_codes(self.fallbacks, FALLBACKS),
            "decision_id": self.decision_id,
        }
        df = pd.DataFrame(data)
        for k, v in self.model_versions.items():
            df[f"model_version_{k}"] = v
        return df


def _row_lists(flags: np.ndarray) -> list[list[int]]:
    """Boolean flags [n, R] -> the indices set in each row."""
    rows, cols = np.nonzero(flags)
    bounds = np.searchsorted(rows, np.arange(len(flags) + 1))
    cols = cols.tolist()
    return [cols[bounds[i] : bounds[i + 1]] for i in range(len(flags))]


def _joined_codes(flags: np.ndarray, codes: Sequence[str]) -> pd.Categorical:
    """Boolean flags [n, R] -> ';'-joined codes per row, built once per distinct combination."""
    n = len(flags)
    if n == 0:
        return pd.Categorical([])
    packed = np.packbits(flags, axis=1)
    width = -(-packed.shape[1] // 8) * 8
    words = np.pad(packed, ((0, 0), (0, width - packed.shape[1]))).view(np.uint64)
    if words.shape[1] == 1:
        inv, _ = pd.factorize(words[:, 0])
        first = np.full(inv.max() + 1, -1)
        first[inv[::-1]] = np.arange(n)[::-1]  # first row of each combination
    else:
        _, first, inv = np.unique(words, axis=0, return_index=True, return_inverse=True)
        inv = inv.ravel()
    labels = [";".join(codes[j] for j in np.flatnonzero(flags[i])) for i in first]
    return pd.Categorical.from_codes(inv, labels)


def decide(
    inputs: DecisionInputs, policy: CompiledPolicy | Settings, model_versions: Mapping[str, str] | None = None
) -> Decisions:
    """Decide the next action for every customer of ``inputs``.

    Pass a :class:`CompiledPolicy` (from :func:`compile_policy`) on hot paths;
    a :class:`Settings` is compiled on the fly. Working memory is about 0.6 kB per
    customer on top of ``X``: score very large batches in chunks of about a
    million customers.
    """
    pol = policy if isinstance(policy, CompiledPolicy) else compile_policy(policy)
    n = inputs.n
    col = _Columns(inputs, pol)
    found = inputs.found
    fb = np.zeros((n, len(FALLBACKS)), bool)
    R = pol.reason_index
    reasons = np.zeros((n, len(pol.reason_codes)), bool)

    # 1. stage
    F = {name: k for k, name in enumerate(FALLBACKS)}
    stage, fb[:, F["stage"]] = lifecycle_stage(col("stage_code"), found)
    reasons[:, R["cold_start"]] = ~found
    reasons[np.arange(n), R["stage:registered"] + stage] = True

    # 2. scores (model heads or rule-based defaults)
    p_act, fb[:, F["activation_model"]] = activation_scores(inputs.p_activation, stage, found)
    p_churn, fb[:, F["churn_model"]] = churn_scores(inputs.p_churn, stage, found)
    p_resp, fb[:, F["response_model"]] = response_scores(inputs.p_response, col, found)
    hour_sc, fb[:, F["send_time_model"]] = hour_scores(inputs.hour_dist, col, found, pol)
    top_hours = best_hours(hour_sc)
    tz_codes, tz_names, fb[:, F["timezone"]] = _timezone_codes(inputs.timezones)

    # 3. candidate actions
    restrict, restricted = _restriction_mask(inputs.restrict_actions, pol, n)
    cand, cooling = candidate_actions(pol, stage, col, p_churn, restrict)
    reasons[:, R["restricted"]] = restricted
    for a, name in enumerate(pol.actions):
        reasons[:, R[f"cooldown:{name}"]] = cooling[:, a]

    # 4. channels
    ch = channel_mask(pol, col)
    for j, c in enumerate(CHANNELS):
        reasons[:, R[f"cap_reached:{c}"]] = ch.capped[:, j]
    reasons[:, R[pol.relay_code]] = ch.relayed & ch.contactable[:, pol.relay_channel]

    # 5. expected value, with context boosts
    day_part = np.full(n, -1, np.int16) if inputs.day_part is None else inputs.day_part
    unknown_part = np.flatnonzero(day_part < 0)
    if len(unknown_part) and "day_part" in pol.boost_kind:  # from the local clock, as features.context does
        local = local_clock(inputs.now[unknown_part], tz_codes[unknown_part], tz_names)
        day_part = day_part.copy()
        day_part[unknown_part] = DAY_PART_OF_HOUR.astype(np.int16)[(local // _NS_HOUR) % 24]
    boost, ctx_on = context_boosts(pol, inputs.near_store, day_part, inputs.weather, inputs.trigger)
    p_boosted = np.minimum(p_resp * boost, 1.0)
    best_a, best_c, best_ev, n_options = best_expected_value(pol, cand, ch.open, p_boosted, p_act, p_churn)
    has_option = n_options > 0
    act = has_option & (best_ev > pol.min_expected_value)
    no_channel = ~ch.contactable.any(axis=1)
    no_candidate = ~cand.any(axis=1)
    reasons[:, R["no_consented_channel"]] = no_channel
    reasons[:, R["cap_reached:overall"]] = ch.overall_capped & ~no_channel
    reasons[:, R["no_eligible_action"]] = no_candidate
    reasons[:, R["no_open_channel"]] = ~has_option & ~no_channel & ~ch.overall_capped & ~no_candidate
    reasons[:, R["nothing_worth_cost"]] = has_option & ~act
    reasons[:, R["best_ev"]] = act
    for k, key in enumerate(pol.boost_keys):
        boosted = pol.boost_factor[k] != 1.0
        reasons[:, R[f"context:{key}"]] = act & ctx_on[:, k] & boosted[np.maximum(best_c, 0)]

    would_a = np.where(act, best_a, -1).astype(np.int16)
    would_c = np.where(act, best_c, -1).astype(np.int8)

    # 6. control group
    control = control_group(inputs.customer_ids, pol)
    reasons[:, R["control_group"]] = control
    send = act & ~control
    action_idx = np.where(send, would_a, -1).astype(np.int16)
    channel_idx = np.where(send, would_c, -1).astype(np.int8)
    ev = np.where(send, best_ev, 0.0).astype(np.float32)

    # 7. send time
    send_iso = np.full(n, None, dtype=object)
    send_utc = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    rows = np.flatnonzero(send)
    if len(rows):
        utc, offset = send_times(inputs.now[rows], top_hours[rows, 0], tz_codes[rows], tz_names)
        send_utc[rows] = utc.view("datetime64[ns]")
        send_iso[rows] = iso_with_offset(utc, offset)

    # fallback reasons
    for k, name in enumerate(FALLBACKS):
        reasons[:, R[f"fallback:{name}"]] = fb[:, k]

    return Decisions(
        policy=pol,
        customer_ids=inputs.customer_ids,
        action_idx=action_idx,
        channel_idx=channel_idx,
        send_at=send_iso,
        send_at_utc=send_utc,
        stage_idx=stage,
        p_activation=p_act,
        p_churn=p_churn,
        p_response=p_resp,
        best_hours=top_hours,
        expected_value=ev,
        best_expected_value=best_ev,
        n_options=n_options,
        reasons=reasons,
        control_group=control,
        holdout_action_idx=would_a,
        holdout_channel_idx=would_c,
        cold_start=~found,
        fallbacks=fb,
        decision_id=decision_ids(inputs.customer_ids, inputs.request_id),
        model_versions=dict(model_versions or {}),
    )
