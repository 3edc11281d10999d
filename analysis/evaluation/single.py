"""One world, one decision per customer: what each policy's decisions are truly worth.

Decision time (``as_of``)
    The newest feature snapshot by default: after every row a model was
    fitted or stopped on. The oracle values every option from the world's
    hidden state at that time (``Oracle.incremental_value``).

Customers
    Everyone registered before ``as_of`` (a seeded sample of
    :data:`MAX_CUSTOMERS` when there are more). Every policy decides for the
    same customers, with the control group and exploration off (every customer gets
    the policy's own decision).

The policies are in ``analysis/evaluation/policies.py``; besides them the
evaluation runs nextbest with the true increments in place of the effect
model (what the effect model's error costs) and, with the catalogue's
hand-set lifts rotated between actions, nextbest and the response-ranked
policy again (``*_wrong_lifts``: how much each depends on the priors).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd

from analysis.evaluation.policies import (
    Choice,
    OracleIncrements,
    calendar_choice,
    choice_of,
    eligibility,
    no_action,
    random_choice,
)
from analysis.evaluation.accuracy import effect_accuracy
from analysis.evaluation.losses import where_lost
from analysis.evaluation.value import true_value
from nextbest.settings import Settings
from nextbest.vocabulary import CHANNELS, HEADS

MAX_CUSTOMERS = 50_000
ACTIVATION_DAYS, CHURN_DAYS = 30, 60  # horizons of the oracle's outcome scores fed to the oracle policy
POLICIES = ("oracle", "nextbest", "response_ranked", "calendar", "random", "no_action")
DIAGNOSTICS = ("oracle_true_scores", "nextbest_true_effects", "nextbest_wrong_lifts", "response_ranked_wrong_lifts")
LABELS = {
    "oracle": "oracle policy (same rules, true effects)",
    "nextbest": "nextbest (learned effects)",
    "response_ranked": "response-ranked (catalogue priors)",
    "calendar": "calendar baseline",
    "random": "random eligible option",
    "no_action": "no action",
    "oracle_true_scores": "oracle, conditions read with the true outcome scores",
    "nextbest_true_effects": "nextbest with the true effects",
    "nextbest_wrong_lifts": "nextbest, hand-set lifts wrong",
    "response_ranked_wrong_lifts": "response-ranked, hand-set lifts wrong",
}


def decision_time(settings: Settings, as_of=None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(as_of snapped back to a feature snapshot, the end of the data)."""
    from features import pipeline
    from features.store import snapshot_times

    try:
        times = sorted(snapshot_times(settings))
    except FileNotFoundError as e:
        raise SystemExit(f"evaluation needs the feature snapshots: {e}") from None
    meta = pipeline.read_meta(settings.features_dir)
    data_end = pd.Timestamp(meta.get("data_end") or times[-1])
    if as_of is None:
        return times[-1], data_end
    t = pd.Timestamp(as_of)
    if t.tzinfo is None:
        raise SystemExit(f"as_of: {as_of!r} has no timezone; write e.g. {t.isoformat()}+00:00")
    t = t.tz_convert("UTC")
    before = [s for s in times if s <= t]
    if t > data_end or not before:
        raise SystemExit(f"as_of: {t} is outside the data ({times[0]} .. {data_end})")
    return before[-1], data_end


def sample_customers(settings: Settings, as_of: pd.Timestamp, known: pd.Index, limit: int, seed: int) -> np.ndarray:
    """Customers registered before as_of and known to the truth, a seeded sample of at most `limit`."""
    c = pd.read_parquet(settings.world_dir / "customers.parquet", columns=["customer_id", "registered_at"])
    ids = c["customer_id"].astype(str).to_numpy(dtype=object)
    keep = (pd.to_datetime(c["registered_at"], utc=True) < as_of).to_numpy() & (known.get_indexer(ids) >= 0)
    ids = ids[keep]
    if len(ids) > limit:
        ids = np.sort(np.random.default_rng(seed).choice(ids, limit, replace=False))
    if not len(ids):
        raise SystemExit(f"no customer is registered before {as_of}")
    return ids


def nextbest_candidates(pol, col, decisions) -> np.ndarray:
    """[n, A] the actions nextbest's rules left eligible for each customer (its own churn scores)."""
    from serving.policy.rules import candidate_actions

    return candidate_actions(pol, decisions.stage_idx, col, decisions.p_churn, None)[0]


def wrong_lifts(settings: Settings) -> Settings:
    """The catalogue with its hand-set lifts rotated between actions (each action gets the next one's lift)."""
    names = list(settings.actions)
    lifts = [settings.actions[a].lift for a in names]
    rotated = lifts[1:] + lifts[:1]
    actions = {a: settings.actions[a].model_copy(update={"lift": lift}) for a, lift in zip(names, rotated)}
    return settings.model_copy(update={"actions": actions})


def oracle_decision_inputs(pol, truth: OracleIncrements, index: dict, X: np.ndarray, found: np.ndarray, tz, now,
                           scores, request_id: str):
    """The oracle policy's inputs, and the policy's view of the features (``_Columns``): the rules read what
    nextbest reads (the champions' outcome scores `scores` decide the conditions), the options are valued with
    their true increments at the customer's true best hour."""
    from serving.policy import DecisionInputs
    from serving.policy.inputs import _Columns
    from serving.policy.rules import best_hours, hour_scores

    oracle, ids = truth.oracle, truth.ids
    base = DecisionInputs(customer_ids=ids, X=X, feature_index=index, found=found, timezones=tz, now=now)
    col = _Columns(base, pol)
    true_dist = oracle.hour_distribution(ids).astype(np.float32)
    true_hour = best_hours(hour_scores(true_dist, col, found, pol)[0], 1)[:, 0]
    true_resp = np.column_stack([oracle.p_response(ids, c, true_hour.astype(float)) for c in CHANNELS])
    inputs = DecisionInputs(
        customer_ids=ids, X=X, feature_index=index, found=found, timezones=tz, now=now,
        p_activation=None if scores is None else scores.p_activation,
        p_churn=None if scores is None else scores.p_churn,
        p_response=true_resp, hour_dist=true_dist, effects=truth, request_id=request_id)
    return inputs, col


def evaluate_world(settings: Settings, oracle, as_of=None, customers: int | None = None, scorer=None,
                   progress=None) -> dict:
    """Every policy's decisions and their true value on the world of ``settings.world_dir``; returns a dict of
    per-policy figures plus ``choices`` and ``values`` arrays and ``ids``."""
    from features.store import feature_names, get_store, historical_features
    from serving.engine import decide_arrays
    from serving.policy import compile_policy, decide
    from serving.scoring import Scorer
    from simulator.legacy import LEGACY_WEIGHTS

    step = progress or (lambda msg: None)
    t0 = time.perf_counter()
    t, data_end = decision_time(settings, as_of)
    ids = sample_customers(settings, t, oracle.index, customers or MAX_CUSTOMERS, settings.training.seed)
    n = len(ids)
    step(f"reading the features of {n:,} customers at {t:%Y-%m-%d}")
    store = get_store(settings)
    names = feature_names(settings, store)
    index = {f: i for i, f in enumerate(names)}
    feats = historical_features(settings, pd.DataFrame({"customer_id": ids, "event_timestamp": t}), store)
    X = feats.reindex(columns=names).to_numpy(dtype=np.float32)
    found = feats[[f for f in names if not f.startswith("ctx_")]].notna().any(axis=1).to_numpy()
    tz = feats["timezone"].fillna("UTC").tolist()
    scorer = scorer or Scorer.from_registry(settings, names, compile="no", n_jobs=2)
    priors_only = dataclasses.replace(scorer, effect=None)
    now = t.to_pydatetime()

    def compiled(s: Settings):
        return dataclasses.replace(compile_policy(s), control_share=0.0, exploration_share=0.0)

    pol = compiled(settings)
    wrong = compiled(wrong_lifts(settings))
    step("deciding with every policy")
    run = lambda p, sc, tag: decide_arrays(p, sc, index, ids, X, found, tz, now, request_id=f"evaluate:{tag}")  # noqa: E731
    d_next = run(pol, scorer, "nextbest")
    choices: dict[str, Choice] = {
        "nextbest": choice_of(d_next),
        "response_ranked": choice_of(run(pol, priors_only, "response_ranked")),
        "nextbest_wrong_lifts": choice_of(run(wrong, scorer, "wrong")),
        "response_ranked_wrong_lifts": choice_of(run(wrong, priors_only, "wrong_priors")),
    }
    scores = scorer.score(X, pol) if found.any() else None
    truth = OracleIncrements(oracle, ids, t, settings)
    oracle_inputs, col = oracle_decision_inputs(pol, truth, index, X, found, tz, now, scores, "evaluate:oracle")
    choices["oracle"] = choice_of(decide(oracle_inputs, pol))
    choices["oracle_true_scores"] = choice_of(decide(dataclasses.replace(
        oracle_inputs, p_activation=oracle.p_activation(ids, t, ACTIVATION_DAYS),
        p_churn=oracle.p_churn(ids, t, CHURN_DAYS), request_id="evaluate:oracle_true_scores"), pol))
    choices["nextbest_true_effects"] = choice_of(decide(dataclasses.replace(
        oracle_inputs, p_response=None if scores is None else scores.p_response,
        hour_dist=None if scores is None else scores.hour_dist, request_id="evaluate:true_effects"), pol))
    stage, eligible, open_ = eligibility(pol, col, found)
    choices["calendar"] = calendar_choice(settings, LEGACY_WEIGHTS, pol, stage, eligible, open_)
    choices["random"] = random_choice(pol, eligible, open_, settings.training.seed)
    choices["no_action"] = no_action(n)
    accuracy = None
    if scorer.effect is not None:
        step("comparing the learned increments with the true ones")
        accuracy = effect_accuracy(pol, d_next, scorer.increments(X), truth, nextbest_candidates(pol, col, d_next),
                                   open_)
    step("valuing the decisions with the oracle")
    valued = {p: true_value(oracle, ids, c, t, settings, pol.actions) for p, c in choices.items()}
    total = {p: float(v.value.sum()) for p, v in valued.items()}
    ref = total["oracle"]
    policies = {}
    for p in (*POLICIES, *DIAGNOSTICS):
        c, v = choices[p], valued[p]
        sends = int(c.sends.sum())
        policies[p] = {
            "label": LABELS[p], "value": round(total[p], 4), "per_1000": round(total[p] / n * 1000, 4),
            "share_of_oracle": round(total[p] / ref, 4) if ref > 0 else None,
            "sends": sends, "send_rate": round(sends / n, 6),
            "value_per_send": round(total[p] / sends, 6) if sends else None,
            "harmful_sends": int((v.value[c.sends] < 0).sum()),
            "learned_sends": int(c.learned.sum()) if c.learned is not None else None,
            "consent_violations": v.consent_violations,
            "actions": {a: int((c.action == k).sum()) for k, a in enumerate(pol.actions) if (c.action == k).any()},
            "channels": {ch: int((c.channel == k).sum()) for k, ch in enumerate(CHANNELS) if (c.channel == k).any()},
        }
    return {
        "as_of": t.isoformat(), "data_end": data_end.isoformat(), "customers": n, "policies": policies,
        "model_versions": dict(scorer.versions), "unavailable_models": dict(scorer.unavailable),
        "heads": [h for h in HEADS if h in scorer.models], "effect_accuracy": accuracy,
        "losses": where_lost(pol.actions, choices["oracle"], choices["nextbest"], valued["oracle"].value,
                             valued["nextbest"].value),
        "seconds": round(time.perf_counter() - t0, 2),
        "ids": ids, "choices": choices, "values": {p: v.value for p, v in valued.items()},
    }
