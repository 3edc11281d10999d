"""The decision policy: which action, on which channel, at what time - or nothing, and why.

One vectorised pass over ``n`` customers serves both the online endpoint
(1-500 customers per call) and batch scoring (millions of customers). Every
rule is one named function below, applied by :func:`decide` in this order:

1. :func:`lifecycle_stage` - stage from ``stage_code``; an unknown customer
   (``found`` False) is a cold start, treated as ``registered``.
2. Scores, with rule-based defaults when a model head is missing or gave
   NaN for a row (flagged ``fallback:<head>``); :func:`channels_to_score` says
   which customers the models need asking about at all (those with an
   option left; the others' scores are reported empty) and on which channels: :func:`activation_scores`,
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
   Then :func:`exploration`: ``serving.exploration_share`` of the other
   decisions (by a hash of the decision id, so a retried request draws the
   same) take an option at random among the k the rules above left open,
   no_action included; every decision carries the probability of the option
   it returned (:func:`assignment_propensity`), explored or not.
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

from serving.policy.clock import local_clock, send_times
from serving.policy.common import FALLBACKS
from serving.policy.compile import CompiledPolicy, compile_policy
from serving.policy.decide import channels_to_score, decide
from serving.policy.inputs import DecisionInputs
from serving.policy.output import Decisions, decision_ids
from serving.policy.rules import stable_unit

__all__ = ["CompiledPolicy", "DecisionInputs", "Decisions", "FALLBACKS", "compile_policy", "decide", "decision_ids",
           "local_clock", "channels_to_score", "send_times", "stable_unit"]
