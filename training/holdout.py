"""Calibration / holdout: does the churn head rank who buys again as well as BG/NBD?

The classic test of customer-base models (Fader, Hardie & Lee, 2005): keep a purchase log up to a
calibration end, then rank every customer by whether they buy at all in the holdout period that follows.
Both sides see the same purchases. The churn head is trained the project's way on the calibration log
alone (features built, labels from inside it, the champion gate) and scores every customer at the
calibration end through the feature service; BG/NBD (:mod:`training.btyd`) is fitted on the same
purchases. The figures are added to the churn champion's MLflow run (``holdout_*`` metrics and
``holdout.json``), beside the test-window figures of its training.

On the CDNOW sample the calibration period is 1997-01-01..1997-09-30 and the holdout the 39 weeks after.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.settings import Settings

CDNOW_CALIBRATION_END = pd.Timestamp("1997-10-01", tz="UTC")  # the first instant after the calibration period
CDNOW_HOLDOUT_DAYS = 39 * 7  # 1997-10-01 .. 1998-06-30


def compare(settings: Settings, log_path: Path | str, calibration_end: pd.Timestamp = CDNOW_CALIBRATION_END,
            holdout_days: int = CDNOW_HOLDOUT_DAYS) -> dict:
    """Import the purchase log, train on its calibration part, score at ``calibration_end``; return the AUCs.

    ``settings``: an installation of its own (its world is replaced by the calibration log). Every customer
    with a purchase before ``calibration_end`` is ranked; the label is a purchase in the ``holdout_days`` after it.
    Returns customers, holdout_buyers, auc (churn_head, btyd, btyd_p_alive, recency, frequency), btyd_params,
    churn_version and churn_horizon_days.
    """
    import mlflow

    from features import pipeline, store
    from nextbest.contract import write_world
    from nextbest.importer import import_transactions
    from nextbest.model_contract import connect, load_version, model_name
    from nextbest.vocabulary import CHAMPION
    from training import btyd
    from training.models import roc_auc_score
    from training.train import train_all

    end = pd.Timestamp(calibration_end).tz_convert("UTC")
    holdout_end = end + pd.Timedelta(days=holdout_days)
    customers, events = import_transactions(log_path, settings.world_dir)
    purchases = btyd.purchase_days(events)
    customers = customers[customers["registered_at"] < end]
    write_world(settings.world_dir, customers, events[events["event_timestamp"] < end])
    pipeline.build(settings)
    store.apply(settings)
    (churn,) = train_all(settings, heads=["churn"], use_tuned=False)
    if churn.status != "trained":
        raise RuntimeError(f"the churn head did not train on the calibration log: {churn.message}")

    champion = load_version(settings, "churn", CHAMPION)
    rows = pd.DataFrame({"customer_id": customers["customer_id"].astype(str).to_numpy(), "event_timestamp": end})
    feats = store.historical_features(settings, rows)
    p_churn = champion.head.predict(feats.reindex(columns=champion.head.features).to_numpy(np.float32))
    model = btyd.fit(purchases, end, btyd.compile_dir(settings))
    bg = btyd.scores_at(model, purchases, rows, holdout_days)
    holdout = purchases[(purchases["event_timestamp"] >= end) & (purchases["event_timestamp"] < holdout_end)]
    y = rows["customer_id"].isin(set(holdout["customer_id"])).to_numpy()
    scores = {"churn_head": -p_churn, "btyd": bg["expected_purchases"].to_numpy(),
              "btyd_p_alive": bg["p_alive"].to_numpy(),
              "recency": -feats["days_since_last_purchase"].to_numpy(), "frequency": feats["n_purchases"].to_numpy()}
    result = {
        "calibration_end": end.isoformat(), "holdout_end": holdout_end.isoformat(),
        "customers": int(len(y)), "holdout_buyers": int(y.sum()),
        "auc": {name: float(roc_auc_score(y, s)) for name, s in scores.items()},
        "btyd_params": model.params, "churn_version": champion.version,
        "churn_horizon_days": settings.training.churn_horizon_days,
    }
    client = connect(settings)
    run_id = client.get_model_version(model_name(settings, "churn"), champion.version).run_id
    with mlflow.start_run(run_id=run_id):
        auc = result["auc"]
        mlflow.log_metrics({"holdout_auc": auc["churn_head"], **{f"holdout_baseline_{k}_auc": v for k, v in auc.items()
                                                                   if k != "churn_head"}})
        mlflow.log_dict(result, "holdout.json")
    return result
