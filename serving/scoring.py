"""Model scores for a batch of customers: the champions as native boosters on
numpy, one predict call per head, and the effect model's increments of the
options the policy asks about. Shared by the online service and batch scoring.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from features.message import (
    MESSAGE_INPUTS, OPTION_INPUTS, EffectInputs, effect_scale, message_columns, message_inputs, message_stat_features,
)
from nextbest.vocabulary import CHAMPION, CHANNELS, EFFECT_MODEL, HEADS
from serving.policy.common import DEFAULT_SEND_HOUR
from serving.policy.compile import CompiledPolicy
from serving.policy.rules import model_send_hour

log = logging.getLogger("nextbest.serving")
MANY_ROWS = 65_536  # option rows evaluated together by EffectIncrements.many


@dataclass
class Scores:
    p_activation: np.ndarray | None
    p_churn: np.ndarray | None
    p_response: np.ndarray | None  # [n, len(CHANNELS)] at each customer's best hour
    hour_dist: np.ndarray | None  # [n, 24]


class EffectIncrements:
    """The effect model's increments (currency, before cost) for one batch of customers: what the policy calls
    for the options it values (``serving.policy.rules.Increments``)."""

    def __init__(self, model, X: np.ndarray, index: dict, min_assignments: int, n_jobs: int = 1,
                 layout: EffectInputs | None = None):
        c = model.contract
        self.head, self.X, self.index, self.n_jobs = model.head, X, index, n_jobs
        self.layout = layout or EffectInputs(model.head.features, index)
        self._code = {a: i for i, a in enumerate(c["actions"])}
        # an action's increments are used once it had enough randomised sends (effects.min_assignments)
        self._learned = {a for a, n in c.get("assignments", {}).items() if n >= min_assignments}
        self._scaled = set(c.get("scaled_actions", ()))
        self._default = float(c.get("scale_default", 1.0))

    def learned(self, action: str) -> bool:
        return action in self._learned

    def __call__(self, rows, action, channel, p_response, p_activation, p_churn, hour):
        return self.many([(rows, action, channel, p_response, p_activation, p_churn, hour)])[0]

    def many(self, calls: list[tuple]) -> list[np.ndarray]:
        """The increments of several options (each a ``__call__``'s arguments) from one model evaluation: a
        request's options are laid out and valued together, not one small prediction per (action, channel)."""
        out: list[np.ndarray] = []
        start = 0
        while start < len(calls):  # batches of at most MANY_ROWS rows bound the memory on large batches
            stop, rows = start, 0
            while stop < len(calls) and (stop == start or rows + len(calls[stop][0]) <= MANY_ROWS):
                rows += len(calls[stop][0])
                stop += 1
            out += self._batch(calls[start:stop])
            start = stop
        return out

    def _batch(self, calls: list[tuple]) -> list[np.ndarray]:
        sizes = [len(c[0]) for c in calls]
        one = len(calls) == 1
        rows = np.asarray(calls[0][0], np.int64) if one else np.concatenate([c[0] for c in calls]).astype(np.int64)
        # p_response, p_activation, p_churn: one value per row of each call
        per_row = [np.asarray(calls[0][k] if one else np.concatenate([c[k] for c in calls]), np.float32)
                   for k in (3, 4, 5)]
        action = np.repeat([self._code[c[1]] for c in calls], sizes)
        channel = np.repeat([c[2] for c in calls], sizes)
        X = self.X[rows]
        inputs = self.layout(X, action, channel, *per_row)
        amount = np.repeat([c[1] in self._scaled for c in calls], sizes)
        pred = self.head.predict(inputs, self.n_jobs) * effect_scale(X, self.index, amount, self._default)
        ends = np.cumsum(sizes).tolist()
        return [pred[e - m:e] for e, m in zip(ends, sizes)]


@dataclass
class Scorer:
    """Champion heads bound to the column layout of the online feature vector."""

    feature_names: list[str]
    models: dict = field(default_factory=dict)  # head -> LoadedModel (the four heads)
    effect: object = None  # LoadedModel of the effect model, or None (decisions use the catalogue's priors)
    unavailable: dict = field(default_factory=dict)  # head -> reason
    _cols: dict = field(default_factory=dict)
    _index: dict = field(default_factory=dict)
    _msg: np.ndarray | None = None
    _stat_cols: np.ndarray | None = None
    _stat_index: dict = field(default_factory=dict)
    _stat_table: np.ndarray | None = None
    _effect_layout: EffectInputs | None = None
    n_jobs: int = 1  # threads per prediction: 1 online (small batches), more for batch scoring
    min_assignments: int = 1  # randomised sends an action needs before its learned increments are used
    compiled: dict | None = None  # head -> compiled trees in use (None until compilation finished)

    def __post_init__(self):
        index = self._index = {f: i for i, f in enumerate(self.feature_names)}
        if self.effect is not None:
            missing = [f for f in self.effect.head.features if f not in OPTION_INPUTS and f not in index]
            if missing:
                self.unavailable[EFFECT_MODEL] = (f"{EFFECT_MODEL} v{self.effect.version} needs features the "
                                                  f"feature service does not supply: {missing[:5]}")
                log.error("refusing model: %s", self.unavailable[EFFECT_MODEL])
                self.effect = None
            else:
                self._effect_layout = EffectInputs(self.effect.head.features, index)
        for head, m in list(self.models.items()):
            wanted = [f for f in m.head.features if f not in MESSAGE_INPUTS]
            missing = [f for f in wanted if f not in index]
            if missing:
                self.unavailable[head] = (
                    f"{head} v{m.version} needs features the feature service does not supply: {missing[:5]}"
                )
                log.error("refusing model: %s", self.unavailable[head])
                del self.models[head]
                continue
            self._cols[head] = np.array([index[f] for f in wanted], dtype=np.int64)
            if head == "channel":  # the message inputs this version was trained with, in its order
                self._msg = np.array([MESSAGE_INPUTS.index(f) for f in m.head.features if f in MESSAGE_INPUTS])
                stats = message_stat_features()
                self._stat_cols = np.array([index[f] for f in stats])
                self._stat_index = {f: i for i, f in enumerate(stats)}
                self._stat_table = message_columns(self._stat_index)

    @classmethod
    def from_registry(cls, settings, feature_names: list[str], compile: str = "background",
                      n_jobs: int = 1, aliases: tuple[str, ...] = (CHAMPION,),
                      versions: dict[str, str] | None = None) -> "Scorer":
        """Champions from the registry (or the first of `aliases` each model has; or exactly `versions`, {model:
        version}, e.g. what another process decides with). compile: "background" (serve at once, switch to
        compiled trees when ready), "now" (compile before returning) or "no"."""
        from nextbest.model_contract import load_champions, load_version

        if versions is None:
            loaded, missing = load_champions(settings, (*HEADS, EFFECT_MODEL), aliases)
        else:
            loaded, missing = {h: load_version(settings, h, v) for h, v in versions.items()}, {}
        effect = loaded.pop(EFFECT_MODEL, None)
        scorer = cls(list(feature_names), loaded, effect, dict(missing), n_jobs=n_jobs,
                     min_assignments=settings.effects.min_assignments)
        cache = settings.data_dir / "serving" / "compiled"
        if compile == "now":
            scorer.compile(cache)
        elif compile == "background":
            threading.Thread(target=scorer.compile, args=(cache,), name="compile-trees", daemon=True).start()
        return scorer

    def compile(self, cache_dir) -> dict[str, bool]:
        """Compile every head's trees to native code (cached per model content); keep boosters on failure."""
        done = {}
        models = {**self.models, **({EFFECT_MODEL: self.effect} if self.effect is not None else {})}
        for head, m in models.items():
            digest = hashlib.sha1(m.head.booster.model_to_string().encode()).hexdigest()[:12]
            done[head] = m.head.compile(cache_dir / f"{head}-v{m.version}-{digest}.so")
            if not done[head]:
                log.warning("%s: compiled trees unavailable, LightGBM predicts", head)
        self.compiled = done
        return done

    @property
    def versions(self) -> dict[str, str]:
        out = {h: m.version for h, m in self.models.items()}
        if self.effect is not None:
            out[EFFECT_MODEL] = self.effect.version
        return out

    def increments(self, X: np.ndarray) -> EffectIncrements | None:
        """The effect model bound to the rows of X (None without an effect model: the catalogue's priors)."""
        return None if self.effect is None else EffectIncrements(self.effect, X, self._index, self.min_assignments,
                                                                 self.n_jobs, self._effect_layout)

    def score(self, X: np.ndarray, policy: CompiledPolicy | None = None, channels: np.ndarray | None = None) -> Scores:
        """Scores for the rows of X; the channel head is asked at the hour the policy would send at
        (:func:`model_send_hour`; without a policy, any hour is allowed and the default is 10:00), on the
        channels marked in ``channels`` [n, C] (every channel without it; NaN on the others)."""
        n = len(X)
        out = {}
        for head in ("activation", "churn"):
            m = self.models.get(head)
            out[head] = None if m is None or n == 0 else m.head.predict(X[:, self._cols[head]], self.n_jobs)
        hour_dist = None
        m = self.models.get("send_time")
        if m is not None and n:
            hour_dist = m.head.predict(X[:, self._cols["send_time"]], self.n_jobs).reshape(n, 24)
        p_response = None
        m = self.models.get("channel")
        if m is not None and n:
            if policy is None:
                best_hour = model_send_hour(hour_dist, n, np.ones(24, bool), DEFAULT_SEND_HOUR)
            else:
                best_hour = model_send_hour(hour_dist, n, policy.allowed_hours, policy.default_hour)
            k = len(CHANNELS)
            ask = np.ones((n, k), bool) if channels is None else np.asarray(channels, bool)
            row, code = np.nonzero(ask)  # one row per (customer, channel) asked about
            p_response = np.full((n, k), np.nan, np.float32)
            if len(row):
                extra = message_inputs(X[np.ix_(row, self._stat_cols)], self._stat_index, code, best_hour[row],
                                       self._stat_table)
                inputs = np.hstack([X[np.ix_(row, self._cols["channel"])], extra[:, self._msg]])
                p_response[row, code] = m.head.predict(inputs, self.n_jobs)
        return Scores(out["activation"], out["churn"], p_response, hour_dist)
