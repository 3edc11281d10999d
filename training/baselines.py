"""What each head must beat: a simple baseline, and (on a simulated world) the oracle.

* activation - recency: the fewer days since registration / first purchase, the likelier
* churn      - recency only: days since the last purchase
* channel    - the channel's overall click rate in the training window
* send_time  - the most popular engagement hour in the training window

and, for churn on a transactions-only log, BG/NBD (:mod:`training.btyd`), the field's classic model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training import models as M


def _col(ds, split, name: str) -> np.ndarray:
    return split.X[:, ds.features.index(name)].astype(float)


def baseline_scores(ds) -> tuple[str, np.ndarray]:
    test = ds.test
    if ds.head == "churn":
        return "recency (days since last purchase)", np.nan_to_num(_col(ds, test, "days_since_last_purchase"), nan=1e4)
    if ds.head == "activation":
        since = np.where(np.isnan(_col(ds, test, "days_since_first_purchase")),
                         _col(ds, test, "days_since_registration"), _col(ds, test, "days_since_first_purchase"))
        return "recency (days since registration or first purchase)", -np.nan_to_num(since, nan=1e4)
    if ds.head == "channel":
        ch_train = _col(ds, ds.train, "msg_channel_code")
        rates = {c: ds.train.y[ch_train == c].mean() for c in np.unique(ch_train)}
        return "channel click rate", np.array([rates.get(c, 0.0) for c in _col(ds, test, "msg_channel_code")])
    counts = np.bincount(ds.train.y.astype(int), minlength=24).astype(float)
    return "most popular hour", np.tile(counts / counts.sum(), (len(test.y), 1))


def baseline_metrics(ds) -> tuple[str, dict]:
    name, s = baseline_scores(ds)
    if ds.head == "send_time":
        return name, M.multiclass_metrics(ds.test.y, s)
    y = ds.test.y
    return name, {"auc": float(M.roc_auc_score(y, s))}


def btyd_metrics(ds, events: pd.DataFrame, settings) -> dict:
    """BG/NBD beside the churn head on a transactions-only log ({} otherwise): fitted on the purchases before
    the test window, it scores each test row from the purchases before the row's time. ``btyd_auc`` ranks by
    expected purchases over the head's horizon, ``btyd_p_alive_auc`` by the probability of being alive."""
    from training import btyd

    if ds.head != "churn" or not btyd.transactions_only(events):
        return {}
    purchases = btyd.purchase_days(events)
    try:
        model = btyd.fit(purchases, pd.Timestamp(ds.time_range["test_from"]), btyd.compile_dir(settings))
    except ValueError:  # too few repeat buyers before the test window
        return {}
    s = btyd.scores_at(model, purchases, ds.test.frame, ds.horizon_days)
    y = ds.test.y  # 1 = no purchase within the horizon: the fewer purchases expected, the likelier
    return {"btyd_auc": float(M.roc_auc_score(y, -s["expected_purchases"])),
            "btyd_p_alive_auc": float(M.roc_auc_score(y, -s["p_alive"]))}


def oracle_scores(ds, oracle, settings) -> np.ndarray | None:
    """The simulator's true probabilities for the test rows (None when there is no truth)."""
    if oracle is None:
        return None
    f = ds.test.frame
    ids = f["customer_id"].to_numpy()
    out = np.full(len(f), np.nan) if ds.head != "send_time" else None
    if ds.head == "send_time":
        return oracle.hour_distribution(ids)
    for t, idx in f.groupby("event_timestamp").indices.items():
        t = pd.Timestamp(t)
        if ds.head == "activation":
            out[idx] = oracle.p_activation(ids[idx], t, settings.training.activation_horizon_days)
        elif ds.head == "churn":
            out[idx] = oracle.p_churn(ids[idx], t, settings.training.churn_horizon_days)
    if ds.head == "channel":
        for ch, idx in f.groupby("channel").indices.items():
            out[idx] = oracle.p_response(ids[idx], ch, f["msg_local_hour"].to_numpy()[idx].astype(int))
    return out


def oracle_metrics(ds, oracle, settings) -> dict | None:
    s = oracle_scores(ds, oracle, settings)
    if s is None:
        return None
    if ds.head == "send_time":
        ok = np.isfinite(s).all(axis=1)
        return {**M.multiclass_metrics(ds.test.y[ok], s[ok]), "coverage": float(ok.mean())} if ok.sum() >= 10 else None
    ok = ~np.isnan(s)
    if ok.sum() < 10 or len(np.unique(ds.test.y[ok])) < 2:
        return None
    return {"auc": float(M.roc_auc_score(ds.test.y[ok], s[ok])), "coverage": float(ok.mean())}
