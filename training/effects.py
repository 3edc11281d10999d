"""Effect models: what each action changes for a customer against doing nothing, learned from randomised logs.

From the contract's ``assignments`` (who was randomised to which option -
controls held out included - with the probability they had) and the events
that followed (``training/outcomes.py``), nextbest learns, for every customer
and every option (action, channel, at the hour it would go out), the
**incremental value**: the action's objective in currency, net of its
incentive, minus what the customer would have produced without a message.

The learner is an X-learner's treated side, pooled over options
(``fit_effects``):

1. *Outcome without contact* - one LightGBM regression per distinct objective
   (e.g. purchase amount over 30 days), fitted on the control rows only, with
   the customer's features, the activation and churn heads' scores and, where
   the log says it, the action each control was held out from
   (``holdout_action``; a treated row reads it as its own action): campaigns
   target on what they saw at that moment, which weekly features can miss, and
   a control is comparable with the customers sent the action it was held out
   from.
2. *Effect of the option* - the treated rows' outcomes minus that baseline,
   regressed with one LightGBM on the customer's features and the option:
   action, channel, the channel head's P(click) at the hour it went out, and the
   outcome scores. One model for every option shares what actions have in
   common while still splitting on the action; it predicts the increment of any
   option, at any hour, in one native call.

Amount outcomes are measured in baskets: divided by the customer's basket
estimate (``features.message.outcome_scale``: spend per purchase over the last
year) before fitting and multiplied back after, so a large account's noise
does not drown everyone's signal; then winsorised (0.1% / 99.9%).
Actions with fewer than ``effects.min_assignments`` randomised assignments in
the training window are not *learned*: serving falls back to the catalogue's
prior for them, flagged.

Quality is measured on a held-out time window, per action, against the
controls held out from it (``control_weights``; where the log does not say
what a control was held out from, the action's share among the treated of
the control's campaign and stage), with the Qini coefficient (area between
the model's uplift curve and random targeting) and the uplift among the top
30% the model ranks highest, beside the same for the prior's ranking
(P(click) x driver score, today's response-ranked policy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from features.message import MESSAGE_INPUTS, OPTION_INPUTS, effect_matrix, effect_scale, message_inputs
from nextbest.model_contract import Head
from nextbest.settings import Settings
from nextbest.vocabulary import CHANNELS, EFFECT_MODEL, NO_ACTION

WINSOR = (0.001, 0.999)
TOP_SHARE = 0.30  # "uplift in the top 30%"
CURVE_POINTS = 10
HELD_OUT_INPUT = "opt_held_out_code"  # the baseline's input: the action a row speaks for (EffectData.held_out)
BASE_PARAMS = {
    "objective": "regression", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 400,
    "feature_fraction": 0.7, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 10.0, "max_bin": 63,
    "verbosity": -1, "num_threads": 2, "deterministic": True, "force_row_wise": True,
}
# how finely the effect model may split: outcomes are noisy, so the grain is chosen on the validation window
GRAINS = (
    {"num_leaves": 31, "min_data_in_leaf": 400, "lambda_l2": 10.0},
    {"num_leaves": 15, "min_data_in_leaf": 2000, "lambda_l2": 50.0},
    {"num_leaves": 7, "min_data_in_leaf": 5000, "lambda_l2": 100.0},
)


class SkipEffects(Exception):
    """No effect model can be learned from this data; the message says why."""


def objective_key(action) -> str:
    o = action.objective
    return f"{o.event}_{o.measure}_{o.horizon_days}d"


@dataclass
class EffectData:
    """Assignment rows with their outcomes, point-in-time features and option inputs, split by time."""

    features: list[str]  # customer features, feature service order
    actions: list[str]  # catalogue order
    frame: pd.DataFrame  # customer_id, assigned_at, action_id, channel, propensity, y, y_<action>, split, stage
    X: np.ndarray  # float32 [n, F] customer features at assignment
    p_activation: np.ndarray
    p_churn: np.ndarray
    p_response: np.ndarray  # [n, C] the channel head's P(click) per channel at the assignment's local hour
    scale_default: float  # basket estimate of customers who never bought (features.message.outcome_scale)
    time_range: dict = field(default_factory=dict)

    @property
    def inputs(self) -> list[str]:
        return [*self.features, *OPTION_INPUTS]

    @cached_property
    def action_controls(self) -> np.ndarray:
        """[n, A] how much each control row speaks for each action (``control_weights``), computed once for
        every split and every model the data judges."""
        return control_weights(self.frame, self.actions)

    @cached_property
    def held_out(self) -> np.ndarray | None:
        """[n] the action each row speaks for: a treated row its own, a control the action it was held out from
        (the assignments' ``holdout_action``; NaN where the log does not say); None when no control says."""
        f = self.frame
        control = f["action_id"].eq(NO_ACTION).to_numpy()
        if "holdout_action" not in f or not f["holdout_action"][control].notna().any():
            return None
        return speaks_for(f, self.actions)

    @property
    def index(self) -> dict[str, int]:
        return {f: i for i, f in enumerate(self.features)}

    def option_matrix(self, rows: np.ndarray, action: np.ndarray, channel: np.ndarray,
                      model_features: list[str] | None = None) -> np.ndarray:
        """Model inputs for `rows` evaluated at the options (action index, channel index)."""
        return effect_matrix(model_features or self.inputs, self.X[rows], self.index, action, channel,
                             self.p_response[rows, channel], self.p_activation[rows], self.p_churn[rows])

    def action_scale(self, rows: np.ndarray, action: np.ndarray, amount_actions: np.ndarray) -> np.ndarray:
        """What an increment of `action` is measured against: the basket estimate for amount objectives, else 1."""
        return effect_scale(self.X[rows], self.index, amount_actions[np.asarray(action, int)], self.scale_default)


@dataclass
class EffectFit:
    """A fitted effect model: the booster that serving uses and the baselines kept for analysis."""

    effect: Head  # predicts the increment in baskets (amount objectives) or in currency (count objectives)
    baselines: dict[str, object]  # objective key -> lightgbm.Booster (outcome without contact, in baskets/units)
    learned: dict[str, int]  # action -> randomised training assignments (learned when >= min_assignments)
    seconds: float = 0.0


# --------------------------------------------------------------------------- data


def _head_scores(heads: dict, X: pd.DataFrame, local_hour: np.ndarray) -> tuple[np.ndarray, ...]:
    """P(activation), P(churn) and P(click) per channel at `local_hour` from the champion heads (NaN where a
    head is missing)."""
    n = len(X)
    out = []
    for h in ("activation", "churn"):
        m = heads.get(h)
        out.append(m.predict(X.reindex(columns=m.features).to_numpy(np.float32), n_jobs=2) if m is not None and n
                   else np.full(n, np.nan))
    resp = np.full((n, len(CHANNELS)), np.nan)
    m = heads.get("channel")
    if m is not None and n:
        cust = [f for f in m.features if f not in MESSAGE_INPUTS]
        index = {f: i for i, f in enumerate(X.columns)}
        base = X.reindex(columns=cust).to_numpy(np.float32)
        full = X.to_numpy(np.float32)
        msg_cols = [MESSAGE_INPUTS.index(f) for f in m.features if f in MESSAGE_INPUTS]
        for k in range(len(CHANNELS)):
            extra = message_inputs(full, index, np.full(n, k), local_hour)[:, msg_cols]
            resp[:, k] = m.predict(np.hstack([base, extra]).astype(np.float32), n_jobs=2)
    return out[0], out[1], resp


def build_effect_data(settings: Settings, src, heads: dict, assignments: pd.DataFrame | None) -> EffectData:
    """Outcomes, features and head scores of the randomised assignments, split train / valid / test by time."""
    from features.store import historical_features
    from training.labels import local_hour
    from training.outcomes import outcomes

    if assignments is None or assignments.empty:
        raise SkipEffects("effect: the data has no assignments table (who was randomised to which option, "
                          "controls included), so effects cannot be learned; decisions use the catalogue's priors")
    rand = assignments[assignments["randomised"]]
    dropped = len(assignments) - len(rand)
    if rand["action_id"].eq(NO_ACTION).sum() < settings.effects.min_controls:
        raise SkipEffects(f"effect: only {int(rand['action_id'].eq(NO_ACTION).sum())} randomised controls "
                          f"(effects.min_controls = {settings.effects.min_controls}); decisions use the priors")
    frame = outcomes(rand, src.events, settings.actions, src.data_end, partial_controls=True,
                     max_rows=settings.effects.max_rows, seed=settings.training.seed,
                     stop_at_other_conversion=settings.effects.stop_at_other_conversion)
    feats = historical_features(settings, frame[["customer_id", "assigned_at"]].rename(
        columns={"assigned_at": "event_timestamp"}))
    names = list(src.feature_list)
    tz = frame["customer_id"].map(src.customers.set_index("customer_id")["timezone"]).fillna("UTC")
    hour = local_hour(frame["assigned_at"], tz).astype(np.float32)
    p_act, p_churn, p_resp = _head_scores(heads, feats[names], hour)
    freq, spend = feats["frequency_365d"].to_numpy(float), feats["monetary_365d"].to_numpy(float)
    buyers = np.nan_to_num(freq) >= 1
    default = float(np.median(spend[buyers] / freq[buyers])) if buyers.any() else 1.0
    frame["stage"] = feats["stage_code"].to_numpy()
    frame["local_hour"] = hour
    t = frame["assigned_at"]
    test_start = t.max() - pd.Timedelta(days=settings.training.test_days)
    valid_start = test_start - pd.Timedelta(days=settings.training.validation_days)
    if (t < valid_start).mean() < 0.4:
        valid_start, test_start = t.quantile(0.6), t.quantile(0.8)
    frame["split"] = np.select([t < valid_start, t < test_start], ["train", "valid"], "test")
    time_range = {"train_from": str(t.min()), "valid_from": str(valid_start), "test_from": str(test_start),
                  "test_to": str(t.max()), "not_randomised_dropped": int(dropped)}
    return EffectData(names, list(settings.actions), frame, feats[names].to_numpy(np.float32),
                      p_act.astype(np.float32), p_churn.astype(np.float32), p_resp.astype(np.float32),
                      default, time_range)


# --------------------------------------------------------------------------- fit


def _winsor(y: np.ndarray) -> np.ndarray:
    lo, hi = np.nanquantile(y, WINSOR) if len(y) else (0.0, 0.0)
    return np.clip(y, lo, hi)


def fit_regression(X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, names: list[str], seed: int,
                   categorical: list[str] = (), rounds: int = 400, params: dict | None = None):
    """A LightGBM regression (``BASE_PARAMS`` updated by `params`), stopped early on (Xv, yv)."""
    import lightgbm as lgb

    params = {**BASE_PARAMS, **(params or {}), "seed": seed}
    cat = [c for c in categorical if c in names]
    dtrain = lgb.Dataset(X, y, feature_name=names, categorical_feature=cat or "auto", free_raw_data=False)
    dvalid = lgb.Dataset(Xv, yv, reference=dtrain)
    return lgb.train(params, dtrain, num_boost_round=rounds, valid_sets=[dvalid],
                     callbacks=[lgb.early_stopping(40, verbose=False)])


def _grain_that_ranks_best(settings: Settings, data: EffectData, X, y, Xv, yv, cats):
    """Fit the effect model at each grain of GRAINS (large leaves hold noisy outcomes still, small ones find
    narrow segments) and keep the one that best ranks who each action works for on the validation window
    (its Qini coefficient against the randomised controls): the squared error of such noisy outcomes barely
    tells the grains apart."""
    best, best_score = None, -np.inf
    grains = [g for g in GRAINS if len(y) >= 4 * g["min_data_in_leaf"]] or GRAINS[:1]
    for grain in grains:
        booster = fit_regression(X, y, Xv, yv, data.inputs, settings.training.seed, categorical=cats, params=grain)
        if len(grains) == 1:
            return booster
        score = uplift_report(settings, data, Head(EFFECT_MODEL, booster, data.inputs, None), split="valid")["qini"]
        if np.isfinite(score) and score > best_score or best is None:
            best, best_score = booster, score
    return best


def _baseline_inputs(data: EffectData, rows: np.ndarray) -> np.ndarray:
    cols = [data.X[rows], data.p_activation[rows, None], data.p_churn[rows, None]]
    if data.held_out is not None:
        cols.append(data.held_out[rows, None].astype(np.float32))
    return np.hstack(cols)


def fit_effects(settings: Settings, data: EffectData) -> EffectFit:
    """Baselines on the controls, then one pooled model of the options' increments on the treated rows."""
    t0 = time.perf_counter()
    f = data.frame
    cat = settings.actions
    split = f["split"].to_numpy()
    control = f["action_id"].eq(NO_ACTION).to_numpy()
    base_names = [*data.features, "opt_p_activation", "opt_p_churn"]
    if data.held_out is not None:
        base_names.append(HELD_OUT_INPUT)
    amount = amount_actions(settings, data.actions)
    baselines, base_pred = {}, {}
    treated = np.flatnonzero(~control)
    for key in sorted({objective_key(a) for a in cat.values()}):
        acts = [a for a, act in cat.items() if objective_key(act) == key]
        act = cat[acts[0]]
        if act.objective.event == "message_converted":  # only the message converts: nothing without it
            base_pred[key] = np.zeros(len(f))
            continue
        units = f[f"y_{acts[0]}"].to_numpy(float) / act.value if act.value > 0 else np.zeros(len(f))
        per = data.action_scale(np.arange(len(f)), np.full(len(f), data.actions.index(acts[0])), amount)
        units = units / per
        seen = np.isfinite(units)  # controls that have seen this objective's horizon
        tr = np.flatnonzero(control & seen & (split == "train"))
        va = np.flatnonzero(control & seen & (split == "valid"))
        if len(tr) < 50 or len(va) < 20:
            raise SkipEffects(f"effect: too few control rows to learn the outcome without contact ({key})")
        booster = fit_regression(_baseline_inputs(data, tr), _winsor(units[tr]), _baseline_inputs(data, va),
                         _winsor(units[va]), base_names, settings.training.seed, categorical=[HELD_OUT_INPUT])
        baselines[key] = booster
        base_pred[key] = np.zeros(len(f))
        base_pred[key][treated] = booster.predict(_baseline_inputs(data, treated), num_threads=2) * per[treated]
    # the increment of each treated row's own option: its outcome minus the baseline valued like its action
    action_idx = f["action_id"].map({a: i for i, a in enumerate(data.actions)}).to_numpy()
    channel_idx = f["channel"].map({c: i for i, c in enumerate(CHANNELS)}).to_numpy()
    d = np.full(len(f), np.nan)
    for a, act in cat.items():
        rows = (f["action_id"] == a).to_numpy()
        d[rows] = f["y"].to_numpy(float)[rows] - act.value * base_pred[objective_key(act)][rows]
    d = d / np.where(control, 1.0, data.action_scale(np.arange(len(f)), np.nan_to_num(action_idx).astype(int), amount))
    tr = np.flatnonzero(~control & (split == "train"))
    va = np.flatnonzero(~control & (split == "valid"))
    if len(tr) < 200 or len(va) < 50:
        raise SkipEffects("effect: too few randomised treated rows in the training and validation windows")
    cats = ["opt_action_code", "opt_channel_code"]
    Xtr = data.option_matrix(tr, action_idx[tr].astype(int), channel_idx[tr].astype(int))
    Xva = data.option_matrix(va, action_idx[va].astype(int), channel_idx[va].astype(int))
    booster = _grain_that_ranks_best(settings, data, Xtr, _winsor(d[tr]), Xva, _winsor(d[va]), cats)
    counts = f.iloc[tr]["action_id"].value_counts()
    learned = {a: int(counts.get(a, 0)) for a in data.actions}
    return EffectFit(Head(EFFECT_MODEL, booster, data.inputs, None), baselines, learned,
                     time.perf_counter() - t0)


# --------------------------------------------------------------------------- quality


def _curve(score: np.ndarray, y: np.ndarray, is_t: np.ndarray, weight: np.ndarray | None = None
           ) -> tuple[np.ndarray, float, float]:
    """Uplift per customer of targeting the top fraction f (f = 0.1 .. 1.0) ranked by `score`; its area minus
    the area of random targeting (the Qini coefficient); uplift among the top TOP_SHARE. `weight`: how much each
    row counts in its group's mean (the controls' ``control_weights``; 1 by default)."""
    order = np.argsort(-score, kind="stable")
    w = np.ones(len(y)) if weight is None else np.asarray(weight, float)
    y, is_t, w = y[order], is_t[order], w[order]
    n = len(y)

    def uplift(k: int) -> float:
        t, c = is_t[:k], ~is_t[:k]
        wt, wc = w[:k][t], w[:k][c]
        if wt.sum() <= 0 or wc.sum() <= 0:
            return float("nan")
        return float(np.average(y[:k][t], weights=wt) - np.average(y[:k][c], weights=wc))

    points = []
    for frac in np.linspace(0.1, 1.0, CURVE_POINTS):
        k = max(int(round(frac * n)), 1)
        u = uplift(k)
        points.append(0.0 if np.isnan(u) else u * k / n)
    points = np.array(points)
    overall = points[-1]
    area = points.mean() - overall * np.linspace(0.1, 1.0, CURVE_POINTS).mean()
    return points, float(area), uplift(max(int(round(TOP_SHARE * n)), 1))


def speaks_for(frame: pd.DataFrame, actions: list[str]) -> np.ndarray:
    """[n] the action (index in `actions`) each assignment row speaks for: a treated row its own, a control the
    action it was held out from (``holdout_action``); NaN where the log does not say."""
    index = {a: i for i, a in enumerate(actions)}
    own = frame["action_id"].map(index).to_numpy(float)
    if "holdout_action" not in frame:
        return own
    return np.where(frame["action_id"].eq(NO_ACTION).to_numpy(), frame["holdout_action"].map(index).to_numpy(float),
                    own)


def control_weights(frame: pd.DataFrame, actions: list[str]) -> np.ndarray:
    """[n, A] how much each control row speaks for each action. A control whose log says which action it was held
    out from (``holdout_action``) speaks for that action alone: it was drawn from exactly the customers sent it.
    Any other control speaks for each action by the action's share among the treated rows of the control's cell
    - its campaign (randomised within itself) and its lifecycle stage at assignment - so an action's controls
    are the customers its campaigns would have sent it to, in the same mix: a campaign that sends an offer only
    to at-risk customers is not compared with the active ones it never targeted. Rows without a campaign form
    one cell per stage. Treated rows weigh 0."""
    n = len(frame)
    control = frame["action_id"].eq(NO_ACTION).to_numpy()
    campaign = frame["campaign_id"] if "campaign_id" in frame else pd.Series(np.full(n, None), index=frame.index)
    cell, _ = pd.factorize(pd.MultiIndex.from_arrays([campaign.fillna("").astype(str).to_numpy(),
                                                      frame["stage"].to_numpy()]))
    action = frame["action_id"].map({a: i for i, a in enumerate(actions)}).fillna(-1).astype(int).to_numpy()
    counts = np.zeros((cell.max() + 1 if n else 0, len(actions)))
    sent = ~control & (action >= 0)
    np.add.at(counts, (cell[sent], action[sent]), 1.0)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    out = np.where(control[:, None], share[cell], 0.0)
    held = speaks_for(frame, actions)
    rows = np.flatnonzero(control & np.isfinite(held))
    out[rows] = 0.0
    out[rows, held[rows].astype(int)] = 1.0
    return out


def amount_actions(settings: Settings, actions: list[str]) -> np.ndarray:
    """[A] whether each action's objective is a purchase amount (its increments are learned in baskets)."""
    return np.array([settings.actions[a].objective.measure == "amount" for a in actions])


def predict_increments(settings: Settings, head: Head, data: EffectData, rows: np.ndarray, action: int,
                       channels: np.ndarray) -> np.ndarray:
    """The model's increment (currency) of `action` on each row's `channels` (index) at the row's hour."""
    X = data.option_matrix(rows, np.full(len(rows), action), channels, head.features)
    scale = data.action_scale(rows, np.full(len(rows), action), amount_actions(settings, data.actions))
    return head.predict(X, n_jobs=2) * scale


def _prior_score(settings: Settings, data: EffectData, a: int, rows: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """Today's response-ranked value of the option: P(click) x driver score x prior per click."""
    act = settings.actions[data.actions[a]]
    g = {"response": np.ones(len(rows)), "activation": data.p_activation[rows], "churn": data.p_churn[rows]}
    return np.nan_to_num(data.p_response[rows, channels]) * np.nan_to_num(g[act.driver], nan=0.5) * act.prior_per_click


def uplift_report(settings: Settings, data: EffectData, head: Head, split: str = "test") -> dict:
    """Per action, on the test window (or another `split`): treated vs the controls held out from it
    (``control_weights``), the increment with a 95% interval, and the Qini coefficient / top-30% uplift of
    the model's ranking beside the prior's."""
    f = data.frame
    test = f["split"].eq(split).to_numpy()
    control = f["action_id"].eq(NO_ACTION).to_numpy()
    out: dict = {"actions": {}}
    qini, weights = [], []
    for a, name in enumerate(data.actions):
        act = settings.actions[name]
        t_rows = np.flatnonzero(test & (f["action_id"] == name).to_numpy())
        c_rows = np.flatnonzero(test & control & (data.action_controls[:, a] > 0)
                                & np.isfinite(f[f"y_{name}"].to_numpy(float)))
        wc = data.action_controls[c_rows, a]
        n_eff = float(wc.sum() ** 2 / (wc ** 2).sum()) if len(wc) else 0.0  # controls' effective number
        entry: dict = {"treated": int(len(t_rows)), "controls": int(round(n_eff))}
        if len(t_rows) >= 30 and n_eff >= 30:
            yt = f["y"].to_numpy(float)[t_rows]
            yc = f[f"y_{name}"].to_numpy(float)[c_rows]
            mc = np.average(yc, weights=wc)
            diff = yt.mean() - mc
            se = float(np.sqrt(yt.var(ddof=1) / len(yt) + np.average((yc - mc) ** 2, weights=wc) / n_eff))
            entry.update(increment=float(diff), ci_low=float(diff - 1.96 * se), ci_high=float(diff + 1.96 * se))
            # the controls are scored on the action's channels they can be reached on, at their own hour
            t_ch = f["channel"].map({c: i for i, c in enumerate(CHANNELS)}).to_numpy()[t_rows].astype(int)
            allowed = [CHANNELS.index(c) for c in act.cost]
            c_ch = np.full(len(c_rows), allowed[0])
            rows = np.concatenate([t_rows, c_rows])
            ch = np.concatenate([t_ch, c_ch])
            y = np.concatenate([yt, yc])
            is_t = np.r_[np.ones(len(t_rows), bool), np.zeros(len(c_rows), bool)]
            w = np.r_[np.ones(len(t_rows)), wc]
            model = predict_increments(settings, head, data, rows, a, ch)
            prior = _prior_score(settings, data, a, rows, ch)
            pts, area, top = _curve(model, y, is_t, w)
            ppts, parea, ptop = _curve(prior, y, is_t, w)
            entry.update(qini=area, top30=top, curve=pts.round(4).tolist(), prior_qini=parea, prior_top30=ptop,
                         prior_curve=ppts.round(4).tolist())
            qini.append(area)
            weights.append(len(t_rows))
        out["actions"][name] = entry
    out["qini"] = float(np.average(qini, weights=weights)) if qini else float("nan")
    prior = [e["prior_qini"] for e in out["actions"].values() if "prior_qini" in e]
    out["prior_qini"] = float(np.average(prior, weights=weights)) if prior else float("nan")
    return out
