"""The rules of the decision, one function each: stage, scores and their defaults, eligibility, channels,
value of the options, control group."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from nextbest.vocabulary import CHANNELS, NO_ACTION, STAGES
from serving.policy.common import _C, ACTIVATION_PRIOR, CHANNEL_BASE_RATE, CHURN_PRIOR, RESPONSE_PRIOR_SENDS, nan_as
from serving.policy.compile import CompiledPolicy
from serving.policy.inputs import _Columns


def lifecycle_stage(stage_code: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stage index per customer and a mask of rows whose stage was defaulted.

    Unknown customers are cold starts in ``registered``; a known customer
    without a valid stage code is also put in ``registered`` and flagged.
    """
    code = nan_as(stage_code, -1.0)
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
    """P(click) per channel [n, 5]; default: own clicks/sends smoothed toward the channel base rate, for customers
    the model did not score. A channel the model was not asked about (closed to every eligible action) stays NaN."""
    base = np.array([CHANNEL_BASE_RATE[c] for c in CHANNELS], np.float32)
    sent = nan_as(col.many([f"sent_{c}" for c in CHANNELS])).clip(0)
    clicked = nan_as(col.many([f"clicked_{c}" for c in CHANNELS])).clip(0)
    prior = ((clicked + RESPONSE_PRIOR_SENDS * base) / (sent + RESPONSE_PRIOR_SENDS)).clip(0, 1)
    if p is None:
        return prior.astype(np.float32), np.ones(len(prior), bool)
    missing = np.isnan(p).all(axis=1) | ~found
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
        scores = _read_in_neighbours(dist)
        missing = ~np.isfinite(dist).all(axis=1) | ~found | (dist.sum(axis=1) <= 0)
    rows = np.flatnonzero(missing)
    if len(rows):
        share = col.many([f"hour_share_{h:02d}" for h in range(24)], rows)
        share_ok = np.isfinite(share).all(axis=1) & (nan_as(share).sum(axis=1) > 0)
        default = -np.abs(np.arange(24) - policy.default_hour).astype(np.float32)  # peak at the default hour
        # a tiny preference for the default hour breaks ties in flat distributions
        scores[rows] = np.where(share_ok[:, None], nan_as(share) + 1e-6 * default, default)
    scores[:, ~policy.allowed_hours] = -np.inf
    return scores, missing


def _read_in_neighbours(dist: np.ndarray) -> np.ndarray:
    """A message is read in the hour it lands and the next ones: each hour scored with its neighbours
    (circular weights 1/4, 1/2, 1/4), which favours the centre of a customer's active period."""
    return 0.5 * dist + 0.25 * np.roll(dist, 1, axis=1) + 0.25 * np.roll(dist, -1, axis=1)


def model_send_hour(dist: np.ndarray | None, n: int, allowed_hours: np.ndarray, default_hour: int) -> np.ndarray:
    """The local hour [n] (float32) the channel head is asked at: the best allowed hour of the send-time
    model's distribution scored as :func:`hour_scores` scores it; the default hour without a distribution."""
    if dist is None:
        return np.full(n, default_hour, np.float32)
    scores = np.where(allowed_hours[None, :], _read_in_neighbours(dist), -np.inf)
    hour = scores.argmax(axis=1)
    unknown = ~np.isfinite(scores.max(axis=1))
    return np.where(unknown, default_hour, hour).astype(np.float32)


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
    tenure = nan_as(col("tenure_days"))
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
    sent = nan_as(col.many(policy.cap_features))
    capped = contactable & (sent >= policy.cap_max[None, :])
    overall = nan_as(col(policy.overall_feature)) >= policy.overall_max
    relay = CHANNELS[policy.relay_channel]
    relayed = nan_as(col(f"consecutive_ignores_{relay}")) >= policy.relay_after
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


class Increments(Protocol):
    """What sending an option changes against sending nothing, in currency, before its cost (an effect model, or
    the oracle of a simulated world)."""

    def learned(self, action: str) -> bool:
        """Whether the action's increments are estimated (else the catalogue's prior is used)."""

    def __call__(self, rows: np.ndarray, action: str, channel: int, p_response: np.ndarray,
                 p_activation: np.ndarray, p_churn: np.ndarray, hour: np.ndarray) -> np.ndarray:
        """The increment of `action` on `channel` for the customers at positions `rows`, given their P(click)
        on it (context boosts included), outcome scores and local send hour."""


def prior_increment(policy: CompiledPolicy, a: int, p_response: np.ndarray, p_activation: np.ndarray,
                    p_churn: np.ndarray) -> np.ndarray:
    """The catalogue's prior increment [n, C] of action `a`: P(click) x driver score x (lift x value - incentive),
    the driver score being 1, P(activation) or P(churn)."""
    g = (np.ones(len(p_activation), np.float32), p_activation, p_churn)[policy.driver[a]]
    return p_response * (policy.scale[a] * g)[:, None]


def _increments(effects: Increments, calls: list[tuple]) -> list[np.ndarray]:
    """The effect model's increments for several (rows, action, channel, ...) calls: in one batch when it can
    (``many``: one model evaluation for every option of a request), else call by call."""
    many = getattr(effects, "many", None)
    return many(calls) if many is not None else [effects(*call) for call in calls]


def _values_of_actions(policy: CompiledPolicy, oks: dict[int, np.ndarray], p_response: np.ndarray,
                       p_activation: np.ndarray, p_churn: np.ndarray, hour: np.ndarray,
                       effects: Increments | None) -> dict[int, tuple[np.ndarray, bool]]:
    """For each action `a` of `oks`: value net of cost [n, C] on its options ``oks[a]`` [n, C] (-inf elsewhere),
    and whether it is the effect model's (else the catalogue's prior). The learned options of every action are
    valued together."""
    out: dict[int, tuple[np.ndarray, bool]] = {}
    calls, targets = [], []
    if not oks:
        return out
    actions = list(oks)
    n_channels = next(iter(oks.values())).shape
    open_anywhere = np.stack([oks[a] for a in actions]).any(axis=1).tolist()  # [A][C]: someone has the option
    nothing = np.full(n_channels, -np.inf, np.float32)  # shared by the actions nobody may take (never written)
    for a, anywhere in zip(actions, open_anywhere):
        ok = oks[a]
        name = policy.actions[a]
        learned = effects is not None and effects.learned(name)
        channels = [c for c, on in enumerate(anywhere) if on]
        if not channels:  # no customer has this option open
            out[a] = (nothing, learned)
            continue
        if not learned:
            prior = prior_increment(policy, a, p_response, p_activation, p_churn) - policy.cost[a]
            out[a] = (np.where(ok, prior, -np.inf).astype(np.float32), False)
            continue
        ev = np.full(ok.shape, -np.inf, np.float32)
        for c in channels:
            r = np.flatnonzero(ok[:, c])
            calls.append((r, name, c, p_response[r, c], p_activation[r], p_churn[r], hour[r]))
            targets.append((ev, r, a, c))
        out[a] = (ev, True)
    if calls:
        for (ev, r, a, c), inc in zip(targets, _increments(effects, calls)):
            ev[r, c] = inc - policy.cost[a, c]
    return out


def best_expected_value(
    policy: CompiledPolicy,
    candidates: np.ndarray,
    open_channels: np.ndarray,
    p_response: np.ndarray,
    p_activation: np.ndarray,
    p_churn: np.ndarray,
    hour: np.ndarray,
    effects: Increments | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best (action, channel) by incremental value net of the send's cost:
    (action idx, channel idx, value, number of options, value learned?).

    value = increment - cost[c]; the increment is the effect model's estimate for actions it has learned and
    the catalogue's prior (:func:`prior_increment`) for the others. Only open, eligible options are valued.
    Rows without any option get action -1, channel -1, value -inf. ``p_response`` carries the context boosts.
    """
    n = len(p_activation)
    best_ev = np.full(n, -np.inf, np.float32)
    best_a = np.full(n, -1, np.int16)
    best_c = np.full(n, -1, np.int8)
    best_learned = np.zeros(n, bool)
    n_options = np.zeros(n, np.int16)
    rows = np.arange(n)
    oks = {a: open_channels & policy.allowed[a] & candidates[:, a, None] for a in range(len(policy.actions))}
    values = _values_of_actions(policy, oks, p_response, p_activation, p_churn, hour, effects)
    for a, ok in oks.items():
        n_options += ok.sum(axis=1, dtype=np.int16)
        ev, learned = values[a]
        c = ev.argmax(axis=1)
        v = ev[rows, c]
        better = v > best_ev
        best_ev = np.where(better, v, best_ev)
        best_a[better] = a
        best_c[better] = c[better]
        best_learned[better] = learned
    return best_a, best_c, best_ev, n_options, best_learned


def option_values(policy: CompiledPolicy, action: np.ndarray, channel: np.ndarray, p_response: np.ndarray,
                  p_activation: np.ndarray, p_churn: np.ndarray, hour: np.ndarray,
                  effects: Increments | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Value net of cost [n] of one given option per customer (action -1: nothing, worth 0), valued as
    :func:`best_expected_value` values it, and whether that value is the effect model's."""
    n = len(action)
    value, learned = np.zeros(n, np.float32), np.zeros(n, bool)
    rows = np.arange(n)
    oks = {}
    for a in np.unique(action[action >= 0]):
        oks[int(a)] = np.zeros((n, _C), bool)
        mine = np.flatnonzero(action == a)
        oks[int(a)][mine, channel[mine]] = True
    for a, (ev, is_learned) in _values_of_actions(policy, oks, p_response, p_activation, p_churn, hour,
                                                  effects).items():
        mine = np.flatnonzero(action == a)
        value[mine] = ev[rows[mine], channel[mine]]
        learned[mine] = is_learned
    return value, learned


def exploration(policy: CompiledPolicy, options: np.ndarray,
                decision_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which decisions explore, and the option each draws: (explored [n], action idx [n] (-1 = no_action),
    channel idx [n], number of options k [n], no_action included).

    ``options`` [n, A, C] are the eligible options *after* every rule (stage, condition, tenure, cooldown,
    restriction, consent and reachability, caps, relay): exploration never opens anything they close. One
    number ``u = stable_unit(decision_id, f"{experiment}:explore")`` per decision: the decision explores when
    ``u < serving.exploration_share`` and then takes option ``floor(u / share * k)`` of the k options (the
    eligible (action, channel) pairs in catalogue x channel order, then no_action), so every option has
    probability share / k. Decision ids derive from (request id, customer), so a retried request draws the
    same option.
    """
    n = len(options)
    flat = options.reshape(n, -1)
    k = flat.sum(axis=1).astype(np.int64) + 1
    action, channel = np.full(n, -1, np.int16), np.full(n, -1, np.int8)
    share = policy.exploration_share
    if share <= 0 or n == 0:
        return np.zeros(n, bool), action, channel, k
    u = stable_unit(decision_ids, f"{policy.experiment}:explore")
    explored = u < share
    pick = np.minimum((u / share * k).astype(np.int64), k - 1)  # k - 1: no_action
    rows = np.flatnonzero(explored & (pick < k - 1))
    if len(rows):
        pos = (np.cumsum(flat[rows], axis=1) > pick[rows, None]).argmax(axis=1)
        action[rows], channel[rows] = pos // _C, pos % _C
    return explored, action, channel, k


def assignment_propensity(policy: CompiledPolicy, greedy: np.ndarray, nothing: np.ndarray,
                          k: np.ndarray) -> np.ndarray:
    """The probability the whole assignment - the control group's hash, then exploration - gives a customer the
    option returned, given the customer's features: what off-policy estimates divide by.

    With c = ``control_share``, e = ``exploration_share`` and k options (no_action included), option o has
    ``(1 - c) x ((1 - e) [o is the greedy option] + e / k) + c [o is no_action]``: a control member's no_action
    and anyone else's no_action are the same option, so both carry its whole probability. ``greedy``: the
    returned option is the greedy one; ``nothing``: the returned option is no_action.
    """
    c, e = policy.control_share, policy.exploration_share
    return (1.0 - c) * ((1.0 - e) * greedy + e / k) + c * nothing


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
