"""LightGBM heads: fit, calibrate and measure.

A trained head is a :class:`nextbest.model_contract.Head`: a native booster,
its inputs and a calibration map - what serving loads without MLflow's pyfunc layer.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from nextbest.hours import EVIDENCE_INPUTS, KAPPAS, evidence_counts, hour_posterior
from nextbest.model_contract import Head
from nextbest.vocabulary import HEAD_KIND as KIND

DEFAULT_PARAMS = {
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.7,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 63,
    "verbosity": -1,
}
# the send-time head fits 24 trees per round: smaller trees, faster learning, fewer rounds
HEAD_PARAMS = {"send_time": {"num_leaves": 15, "learning_rate": 0.1, "min_data_in_leaf": 300}}
MAX_ROUNDS = {"send_time": 100}
ROW_SHARE = {"send_time": 0.35}  # share of training.max_rows the head samples


def lgb_params(head: str, params: dict | None, seed: int) -> dict:
    p = {**DEFAULT_PARAMS, **HEAD_PARAMS.get(head, {}), **(params or {}), "seed": seed, "num_threads": 2, "deterministic": True, "force_row_wise": True}
    if KIND[head] == "binary":
        p.update(objective="binary", metric="binary_logloss")
    else:
        p.update(objective="multiclass", num_class=24, metric="multi_logloss")
    return p


def fit(head: str, ds, params: dict | None = None, num_boost_round: int = 300, early_stopping: int = 30,
        seed: int = 7, callbacks: list | None = None) -> Head:
    """Train on ds.train, stop early on ds.valid, calibrate binary heads on ds.valid (isotonic). The send-time
    head's booster is the prior of its last inputs' evidence, whose concentration is chosen on ds.valid."""
    p = lgb_params(head, params, seed)
    nb = len(ds.features) - (EVIDENCE_INPUTS if head == "send_time" else 0)  # the booster's inputs
    dtrain = lgb.Dataset(ds.train.X[:, :nb], ds.train.y, feature_name=list(ds.features[:nb]), free_raw_data=False)
    dvalid = lgb.Dataset(ds.valid.X[:, :nb], ds.valid.y, reference=dtrain)
    booster = lgb.train(
        p, dtrain, num_boost_round=min(num_boost_round, MAX_ROUNDS.get(head, num_boost_round)), valid_sets=[dvalid],
        callbacks=[lgb.early_stopping(early_stopping, verbose=False), *(callbacks or [])],
    )
    calibration = None
    if KIND[head] == "binary":
        raw = booster.predict(ds.valid.X, num_threads=2)
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, ds.valid.y)
        calibration = {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    kappa = hour_concentration(booster.predict(ds.valid.X[:, :nb], num_threads=2), ds.valid.X[:, nb:],
                               ds.valid.y) if head == "send_time" else None
    return Head(head, booster, list(ds.features), calibration, hour_kappa=kappa)


def hour_concentration(prior: np.ndarray, evidence: np.ndarray, y: np.ndarray) -> float:
    """The concentration of engagement hours (``nextbest.hours.KAPPAS``) under which the prior updated by each
    row's own past hours best predicts the row's hour (log loss)."""
    counts = evidence_counts(evidence)
    rows = np.arange(len(y))
    loss = [-np.log(np.maximum(hour_posterior(prior, counts, k)[rows, y.astype(int)], 1e-12)).mean() for k in KAPPAS]
    return float(KAPPAS[int(np.argmin(loss))])


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: mean |observed rate - predicted| over equal-width bins, weighted by count."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    err = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            err += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(err)


def lift_top_decile(y: np.ndarray, p: np.ndarray) -> float:
    k = max(1, len(p) // 10)
    top = np.argsort(-p, kind="stable")[:k]
    base = y.mean()
    return float(y[top].mean() / base) if base > 0 else float("nan")


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {
        "auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])),
        "calibration_error": calibration_error(y, p),
        "lift_top_decile": lift_top_decile(y, p),
        "positive_rate": float(y.mean()),
    }


def topk_accuracy(y: np.ndarray, dist: np.ndarray, k: int) -> float:
    top = np.argsort(-dist, axis=1)[:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


def multiclass_metrics(y: np.ndarray, dist: np.ndarray) -> dict[str, float]:
    return {
        "top1_accuracy": topk_accuracy(y, dist, 1),
        "top3_accuracy": topk_accuracy(y, dist, 3),
        "log_loss": float(log_loss(y, np.clip(dist, 1e-9, 1), labels=list(range(24)))),
    }


def metrics(head: str, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return binary_metrics(y, pred) if KIND[head] == "binary" else multiclass_metrics(y, pred)


def importance(h: Head, top: int = 25) -> list[tuple[str, float]]:
    gain = h.booster.feature_importance("gain")
    order = np.argsort(-gain)[:top]
    total = gain.sum() or 1.0
    return [(h.features[i], float(gain[i] / total)) for i in order if gain[i] > 0]
