"""`nextbest evaluate --logged DIR`: candidate policies judged on logged, randomised assignments (off-policy).

The log is a contract folder (``customers``, ``events``, ``assignments`` with propensities): the product's own
decisions (``nextbest export-log``) or any randomised campaign. Each assignment whose outcome horizon is observed
is one logged decision; its outcome is measured as the effect model's training measures it
(``training/outcomes.py``). Each candidate decides again for the same customer at the same moment, from the
point-in-time features of the configured feature store, with the control group and exploration off:

* ``champion`` - the serving path: the champion heads and effect model;
* ``response_ranked`` - the same without the effect model (the catalogue's priors);
* ``calendar`` - the stage's calendar action on the first open channel;
* ``no_action`` - nothing (worth 0: values are increments against doing nothing).

Their values are estimated with IPS, self-normalised IPS and doubly robust estimators (``analysis/ope.py``). The
doubly robust outcome model is the champion's effect model's increment of an option (the catalogue's prior for
actions it has not learned), net of cost, on top of the outcome without contact, fitted on the log's no_action
decisions from the customers' features (cross-fitted on two halves of the log).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.evaluation.policies import Choice, calendar_choice, choice_of, eligibility, no_action
from analysis.ope import estimate
from nextbest.settings import Settings
from nextbest.vocabulary import CHANNELS, NO_ACTION

CANDIDATES = ("champion", "response_ranked", "calendar", "no_action")
LABELS = {"champion": "nextbest champion (learned effects)", "response_ranked": "response-ranked (catalogue priors)",
          "calendar": "calendar baseline", "no_action": "no action"}
MAX_ROWS = 200_000  # logged decisions evaluated (a uniform sample of larger logs)
MIN_BASELINE_ROWS = 200  # no_action rows a half of the log needs for its outcome model (else their mean)
BASELINE_PARAMS = {"num_leaves": 15, "min_data_in_leaf": 50, "lambda_l2": 10.0}


@dataclasses.dataclass
class Logged:
    """The logged decisions with their outcomes, as the estimators and the candidates read them."""

    frame: pd.DataFrame  # the assignments with y (treated) and y_<action> (controls), outcomes.outcomes
    action: np.ndarray  # int [n]: catalogue index of the logged option, -1 for no_action
    channel: np.ndarray  # int [n]: channel index, -1 for no_action
    stage: np.ndarray  # int [n]: lifecycle stage at the decision (from the features)

    @property
    def nothing(self) -> np.ndarray:
        return self.action < 0

    @property
    def group(self) -> list[str]:
        """Where a row's options were randomised: its campaign when the campaign holds several rows (a campaign
        fixes its channel and draws among its actions), else the whole log (the product's decisions, each its own
        campaign, draw among every eligible option)."""
        camp = self.frame["campaign_id"].astype(object)
        size = camp.map(camp.value_counts()).fillna(0).to_numpy()
        return [str(c) if k > 1 else "" for c, k in zip(camp.tolist(), size)]

    def tried(self) -> set:
        """The (group, stage, action, channel) options the log holds: a candidate's option outside them has no
        support (nothing in the log says what it does there)."""
        return set(zip(self.group, self.stage.tolist(), self.action.tolist(), self.channel.tolist()))


def read_log(settings: Settings, directory: Path | str, seed: int = 0) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The randomised assignments of a contract folder with their outcomes (horizon observed by the newest event),
    measured as the effect model measures them (``effects.stop_at_other_conversion``)."""
    from nextbest.contract import load_assignments, load_world
    from training.outcomes import outcomes

    customers, events = load_world(directory)
    assignments = load_assignments(directory, settings.actions, customers)
    if assignments is None or not assignments["randomised"].any():
        raise SystemExit(f"{directory}: no assignments with a propensity: nothing was randomised, so no policy "
                         "can be judged off-policy (export the product's decisions with `nextbest export-log`)")
    data_end = pd.Timestamp(events["event_timestamp"].max())
    frame = outcomes(assignments[assignments["randomised"]], events, settings.actions, data_end,
                     stop_at_other_conversion=settings.effects.stop_at_other_conversion)
    if frame.empty:
        longest = max(a.objective.horizon_days for a in settings.actions.values())
        raise SystemExit(f"{directory}: no logged assignment's outcome is observed yet (events end {data_end}; "
                         f"objectives run up to {longest} days)")
    if len(frame) > MAX_ROWS:
        frame = frame.sample(MAX_ROWS, random_state=seed).sort_values("assigned_at", kind="stable")
    return frame.reset_index(drop=True), data_end


def outcome_without_contact(settings: Settings, X: np.ndarray, names: list[str], frame: pd.DataFrame,
                            nothing: np.ndarray) -> np.ndarray:
    """The outcome without contact [n, A], valued as each action values it: per objective, a LightGBM regression
    of the logged no_action rows' outcome on the customer's features, cross-fitted (each half of the log is
    predicted by the model of the other half, stopped early on the newest fifth of its rows); the mean where a
    half has too few no_action rows."""
    from training.effects import fit_regression, objective_key

    n, actions = len(frame), list(settings.actions)
    out = np.zeros((n, len(actions)))
    half = np.arange(n) % 2
    groups: dict[str, list[int]] = {}
    for k, a in enumerate(actions):
        groups.setdefault(objective_key(settings.actions[a]), []).append(k)
    for key, members in groups.items():
        first = settings.actions[actions[members[0]]]
        if first.objective.event == "message_converted" or first.value <= 0:  # only the message converts
            continue
        units = frame[f"y_{actions[members[0]]}"].to_numpy(float) / first.value
        pred = np.zeros(n)
        for h in (0, 1):
            fit = np.flatnonzero(nothing & (half != h) & np.isfinite(units))
            rows = half == h
            if len(fit) < MIN_BASELINE_ROWS:
                pred[rows] = units[fit].mean() if len(fit) else 0.0
                continue
            cut = int(0.8 * len(fit))
            booster = fit_regression(X[fit[:cut]], units[fit[:cut]], X[fit[cut:]], units[fit[cut:]], names,
                                     settings.training.seed, rounds=200, params=BASELINE_PARAMS)
            pred[rows] = booster.predict(X[rows], num_threads=2)
        for k in members:
            out[:, k] = settings.actions[actions[k]].value * pred
    return out


def candidate_terms(settings: Settings, log: Logged, choice: Choice, value_of, baseline: np.ndarray,
                    tried: set) -> dict:
    """What the estimators read for one deterministic candidate (see ``analysis/ope.py``).

    ``value_of(action, channel)``: the outcome model's increment of options net of cost; ``baseline`` [n, A]:
    its outcome without contact valued as each action values it; ``tried``: the (group, stage, action, channel)
    the log holds (:meth:`Logged.tried`)."""
    f, n = log.frame, len(log.frame)
    rows = np.arange(n)
    actions = list(settings.actions)
    cost = np.array([[settings.actions[a].cost.get(c, 0.0) for c in CHANNELS] for a in actions])
    d_a, d_c = choice.action.astype(int), choice.channel.astype(int)
    sends = d_a >= 0
    p_logged = np.where(log.nothing, ~sends, (d_a == log.action) & (d_c == log.channel)).astype(float)
    without = np.column_stack([f[f"y_{a}"].to_numpy(float) for a in actions])  # controls: valued per action
    own = f["y"].to_numpy(float) - cost[np.maximum(log.action, 0), np.maximum(log.channel, 0)]
    reward = np.where(log.nothing, np.where(sends, without[rows, np.maximum(d_a, 0)], 0.0), own)
    increment = np.where(sends, value_of(d_a, d_c), 0.0)
    logged_value = np.where(log.nothing, 0.0, value_of(log.action, log.channel))
    q_logged = np.where(log.nothing, np.where(sends, baseline[rows, np.maximum(d_a, 0)], 0.0),
                        baseline[rows, np.maximum(log.action, 0)] + logged_value)
    # a send needs its option tried, and no_action too (what it adds is measured against it); nothing is worth 0
    unsupported = np.array([send and ((g, s, a, c) not in tried or (g, s, -1, -1) not in tried)
                            for send, g, s, a, c in zip(sends.tolist(), log.group, log.stage.tolist(), d_a.tolist(),
                                                        d_c.tolist())], bool)
    return dict(propensity=f["propensity"].to_numpy(float), nothing=log.nothing, p_logged=p_logged, reward=reward,
                q_logged=q_logged, q_increment=increment, unsupported=unsupported)


@dataclasses.dataclass
class Window:
    """A logged window ready for candidates: the logged decisions, their point-in-time features, the champion's
    decisions (its scores feed the outcome model) and the doubly robust outcome model."""

    settings: Settings
    log: Logged
    X: np.ndarray
    index: dict
    found: np.ndarray
    timezones: list
    now: pd.DatetimeIndex
    policy: object  # CompiledPolicy with the control group and exploration off
    scorer: object  # the champion Scorer
    champion: object  # its Decisions on the window
    baseline: np.ndarray  # [n, A] outcome without contact, valued per action
    data_end: pd.Timestamp

    @property
    def ids(self) -> np.ndarray:
        return self.log.frame["customer_id"].astype(str).to_numpy(dtype=object)

    def decide(self, scorer, policy=None, tag: str = "candidate"):
        """A candidate's decisions on the window: `scorer`'s models under `policy` (default: the window's)."""
        from serving.engine import decide_arrays

        return decide_arrays(policy or self.policy, scorer, self.index, self.ids, self.X, self.found, self.timezones,
                             self.now, request_id=f"ope:{tag}")

    def value_of(self, a: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The champion's increment of each row's option (a, c) net of cost (0 for nothing)."""
        from serving.policy.rules import option_values

        d = self.champion
        v, _ = option_values(self.policy, np.where(a >= 0, a, -1).astype(np.int16), np.maximum(c, 0).astype(np.int8),
                             d.p_response, d.p_activation, d.p_churn, d.best_hours[:, 0], self.scorer.increments(self.X))
        return v.astype(float)

    def terms(self, choice: Choice) -> dict:
        return candidate_terms(self.settings, self.log, choice, self.value_of, self.baseline, self.log.tried())


def open_window(settings: Settings, directory: Path | str, scorer=None, progress=None) -> Window:
    """Read the log of `directory`, its features at each decision's time, decide with the champion (`scorer`,
    default: the registry's) and fit the outcome without contact."""
    from features.store import feature_names, get_store, historical_features
    from serving.policy import DecisionInputs, compile_policy
    from serving.policy.inputs import _Columns
    from serving.scoring import Scorer

    step = progress or (lambda msg: None)
    step(f"reading the log of {directory}")
    frame, data_end = read_log(settings, directory, settings.training.seed)
    step(f"reading the features of {len(frame):,} logged decisions at their time")
    store = get_store(settings)
    names = feature_names(settings, store)
    index = {f: i for i, f in enumerate(names)}
    feats = historical_features(settings, frame[["customer_id", "assigned_at"]].rename(
        columns={"assigned_at": "event_timestamp"}), store)
    X = feats.reindex(columns=names).to_numpy(dtype=np.float32)
    found = feats[[f for f in names if not f.startswith("ctx_")]].notna().any(axis=1).to_numpy()
    tz = feats["timezone"].fillna("UTC").tolist()
    now = pd.DatetimeIndex(frame["assigned_at"])
    scorer = scorer or Scorer.from_registry(settings, names, compile="no", n_jobs=2)
    pol = dataclasses.replace(compile_policy(settings), control_share=0.0, exploration_share=0.0)
    ids = frame["customer_id"].astype(str).to_numpy(dtype=object)
    col = _Columns(DecisionInputs(customer_ids=ids, X=X, feature_index=index, found=found, timezones=tz, now=now), pol)
    stage, _, _ = eligibility(pol, col, found)
    code = {a: i for i, a in enumerate(settings.actions)}
    log = Logged(frame, frame["action_id"].map(code).fillna(-1).to_numpy(int),
                 frame["channel"].map({c: i for i, c in enumerate(CHANNELS)}).fillna(-1).to_numpy(int), stage)
    step("fitting the outcome without contact on the logged no_action decisions")
    baseline = outcome_without_contact(settings, X, names, frame, log.nothing)
    w = Window(settings, log, X, index, found, tz, now, pol, scorer, None, baseline, data_end)
    step("deciding again with the champion")
    w.champion = w.decide(scorer, tag="champion")
    return w


def evaluate_logged(settings: Settings, directory: Path | str, scorer=None, n_boot: int = 500,
                    progress=None, keep: bool = False) -> dict:
    """Every candidate's estimated value on the log of `directory` (see the module docstring); with `keep`, also
    the logged decisions (``frame``), each candidate's ``choices`` on them and the champion's send ``hours`` (the
    estimates judge actions and channels; a send goes out at the logging policy's hour)."""
    from serving.policy.inputs import _Columns
    from serving.policy import DecisionInputs
    from simulator.legacy import LEGACY_WEIGHTS

    step = progress or (lambda msg: None)
    t0 = time.perf_counter()
    w = open_window(settings, directory, scorer, progress)
    n, frame = len(w.log.frame), w.log.frame
    step("deciding again with the other candidates")
    col = _Columns(DecisionInputs(customer_ids=w.ids, X=w.X, feature_index=w.index, found=w.found,
                                  timezones=w.timezones, now=w.now), w.policy)
    stage, eligible, open_ = eligibility(w.policy, col, w.found)
    choices = {"champion": choice_of(w.champion),
               "response_ranked": choice_of(w.decide(dataclasses.replace(w.scorer, effect=None),
                                                     tag="response_ranked")),
               "calendar": calendar_choice(settings, LEGACY_WEIGHTS, w.policy, stage, eligible, open_),
               "no_action": no_action(n)}
    step("estimating each candidate's value (IPS, self-normalised IPS, doubly robust)")
    policies = {}
    for name in CANDIDATES:
        r = estimate(**w.terms(choices[name]), n_boot=n_boot, seed=settings.training.seed)
        policies[name] = {"label": LABELS[name], **r.as_dict(), "send_rate": float(choices[name].sends.mean())}
    extra = {"frame": frame, "choices": choices, "hours": w.champion.best_hours[:, 0]} if keep else {}
    return extra | {
        "logged": str(directory), "decisions": n, "controls": int(w.log.nothing.sum()),
        "from": str(frame["assigned_at"].min()), "to": str(frame["assigned_at"].max()),
        "data_end": str(w.data_end),
        "actions_logged": {a: int((frame["action_id"] == a).sum()) for a in [*settings.actions, NO_ACTION]},
        "model_versions": dict(w.scorer.versions), "policies": policies,
        "seconds": round(time.perf_counter() - t0, 1),
    }
