"""The decision: every rule of serving/policy/rules.py applied in order to n customers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from features.context import DAY_PART_OF_HOUR
from nextbest.settings import Settings
from serving.policy.clock import _timezone_codes, iso_with_offset, local_clock, send_times
from nextbest.vocabulary import CHANNELS
from serving.policy.common import _NS_HOUR, FALLBACKS
from serving.policy.compile import CompiledPolicy, compile_policy
from serving.policy.inputs import DecisionInputs, _Columns
from serving.policy.output import Decisions, decision_ids
from serving.policy.rules import (
    ChannelMask,
    _increments,
    _restriction_mask,
    activation_scores,
    assignment_propensity,
    best_expected_value,
    best_hours,
    candidate_actions,
    channel_mask,
    churn_scores,
    context_boosts,
    control_group,
    exploration,
    hour_scores,
    lifecycle_stage,
    option_values,
    response_scores,
)


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
    early = _early_rules(inputs, pol)
    col = early.col
    found = inputs.found
    unscored = np.zeros(n, bool) if inputs.scored is None else found & ~inputs.scored
    fb = np.zeros((n, len(FALLBACKS)), bool)
    R = pol.reason_index
    reasons = np.zeros((n, len(pol.reason_codes)), bool)

    # 1. stage
    F = {name: k for k, name in enumerate(FALLBACKS)}
    stage, fb[:, F["stage"]] = early.stage, early.stage_defaulted
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
    restrict, restricted = early.restrict, early.restricted
    cand, cooling = candidate_actions(pol, stage, col, p_churn, restrict)
    reasons[:, R["restricted"]] = restricted
    for a, name in enumerate(pol.actions):
        reasons[:, R[f"cooldown:{name}"]] = cooling[:, a]

    # 4. channels
    ch = early.channels
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
    best_a, best_c, best_ev, n_options, learned = best_expected_value(
        pol, cand, ch.open, p_boosted, p_act, p_churn, top_hours[:, 0], inputs.effects)
    has_option = n_options > 0
    act = has_option & (best_ev > pol.min_expected_value)
    would_a = np.where(act, best_a, -1).astype(np.int16)
    would_c = np.where(act, best_c, -1).astype(np.int8)

    # 6. control group, then exploration among the options every rule above left open (no_action included)
    ids = decision_ids(inputs.customer_ids, inputs.request_id)
    control = control_group(inputs.customer_ids, pol)
    options = cand[:, :, None] & pol.allowed[None, :, :] & ch.open[:, None, :]
    explored, drawn_a, drawn_c, n_choices = exploration(pol, options, ids)
    explored &= ~control
    pick_a = np.where(explored, drawn_a, would_a).astype(np.int16)
    pick_c = np.where(explored, drawn_c, would_c).astype(np.int8)
    pick_ev = np.where(act, best_ev, 0.0).astype(np.float32)
    pick_learned = act & learned
    rows = np.flatnonzero(explored)
    if len(rows):
        pick_ev[rows], pick_learned[rows] = option_values(
            pol, pick_a[rows], pick_c[rows], p_boosted[rows], p_act[rows], p_churn[rows], top_hours[rows, 0],
            _Subset(inputs.effects, rows) if inputs.effects is not None else None)
    send = (pick_a >= 0) & ~control
    action_idx = np.where(send, pick_a, -1).astype(np.int16)
    channel_idx = np.where(send, pick_c, -1).astype(np.int8)
    propensity = assignment_propensity(pol, (action_idx == would_a) & (channel_idx == would_c), action_idx < 0,
                                       n_choices)
    ev = np.where(send, pick_ev, 0.0).astype(np.float32)

    fb[:, F["effect_model"]] = (pick_a >= 0) & ~pick_learned
    no_channel = ~ch.contactable.any(axis=1)
    no_candidate = ~cand.any(axis=1)
    reasons[:, R["no_consented_channel"]] = no_channel
    reasons[:, R["cap_reached:overall"]] = ch.overall_capped & ~no_channel
    reasons[:, R["no_eligible_action"]] = no_candidate
    reasons[:, R["no_open_channel"]] = ~has_option & ~no_channel & ~ch.overall_capped & ~no_candidate
    reasons[:, R["nothing_worth_cost"]] = has_option & ~act & ~explored
    reasons[:, R["best_ev"]] = act & ~explored
    reasons[:, R["exploration"]] = explored
    reasons[:, R["control_group"]] = control
    for k, key in enumerate(pol.boost_keys):
        boosted = pol.boost_factor[k] != 1.0
        reasons[:, R[f"context:{key}"]] = (pick_a >= 0) & ctx_on[:, k] & boosted[np.maximum(pick_c, 0)]

    # 7. send time
    send_iso = np.full(n, None, dtype=object)
    send_utc = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    rows = np.flatnonzero(send)
    if len(rows):
        utc, offset = send_times(inputs.now[rows], top_hours[rows, 0], tz_codes[rows], tz_names)
        send_utc[rows] = utc.view("datetime64[ns]")
        send_iso[rows] = iso_with_offset(utc, offset)

    # customers without any option were not scored: no model fell short for them, and no score is reported
    if unscored.any():
        for name in ("activation_model", "churn_model", "response_model", "send_time_model"):
            fb[unscored, F[name]] = False
        p_act, p_churn, p_resp = p_act.copy(), p_churn.copy(), p_resp.copy()
        p_act[unscored], p_churn[unscored], p_resp[unscored] = np.nan, np.nan, np.nan

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
        learned=pick_learned,
        n_options=n_options,
        reasons=reasons,
        control_group=control,
        holdout_action_idx=would_a,
        holdout_channel_idx=would_c,
        cold_start=~found,
        fallbacks=fb,
        propensity=propensity,
        exploration=explored,
        decision_id=ids,
        model_versions=dict(model_versions or {}),
    )


def channels_to_score(inputs: DecisionInputs, policy: CompiledPolicy) -> np.ndarray:
    """[n, C] bool: the channels on which the models' scores can change a customer's decision - known customers,
    channels where at least one action the rules leave open whatever the scores say may go out (the churn
    requirement, the one rule that reads a score, counted as met). A customer with none gets ``no_action`` from
    the rules alone (no consented open channel, every eligible action cooling down or capped...), so no tree
    is evaluated for them; the channel head is asked only about the channels marked."""
    n = inputs.n
    early = _early_rules(inputs, policy)
    cand, _ = candidate_actions(policy, early.stage, early.col, np.full(n, np.inf, np.float32), early.restrict)
    open_ = early.channels.open
    return inputs.found[:, None] & (cand[:, :, None] & policy.allowed[None, :, :] & open_[:, None, :]).any(axis=1)


@dataclass
class _EarlyRules:
    """The rules that read no model score, for one decision pass: computed once, for ``channels_to_score``
    before the models run and for :func:`decide` after."""

    policy: CompiledPolicy
    col: _Columns
    stage: np.ndarray
    stage_defaulted: np.ndarray
    restrict: np.ndarray | None
    restricted: np.ndarray
    channels: ChannelMask


def _early_rules(inputs: DecisionInputs, policy: CompiledPolicy) -> _EarlyRules:
    early = inputs.early
    if early is None or early.policy is not policy:
        col = _Columns(inputs, policy)
        stage, defaulted = lifecycle_stage(col("stage_code"), inputs.found)
        restrict, restricted = _restriction_mask(inputs.restrict_actions, policy, inputs.n)
        early = inputs.early = _EarlyRules(policy, col, stage, defaulted, restrict, restricted,
                                           channel_mask(policy, col))
    return early


class _Subset:
    """An effect model (``serving.policy.rules.Increments``) seen through a subset of its rows."""

    def __init__(self, effects, rows: np.ndarray):
        self.effects, self.rows = effects, rows

    def learned(self, action: str) -> bool:
        return self.effects.learned(action)

    def __call__(self, rows, action, channel, p_response, p_activation, p_churn, hour):
        return self.effects(self.rows[rows], action, channel, p_response, p_activation, p_churn, hour)

    def many(self, calls: list[tuple]) -> list[np.ndarray]:
        return _increments(self.effects, [(self.rows[c[0]], *c[1:]) for c in calls])
