"""BG/NBD beside the churn head: the classic model is fitted right, and the comparison is reproducible and logged.

Figures on the CDNOW sample (calibration 1997-01-01..1997-09-30, holdout the following 39 weeks, 2,357
customers, 684 of whom buy in the holdout) are in the README.
"""

from __future__ import annotations

import pandas as pd
import pytest

from training import btyd
from training.holdout import CDNOW_CALIBRATION_END, CDNOW_HOLDOUT_DAYS

# Fader, Hardie & Lee (2005), "Counting your customers the easy way", CDNOW sample, weeks
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
# the margin by which the churn head should out-rank BG/NBD on the holdout (issue: "beaten in the open")
TARGET_MARGIN = 0.02


def _log(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [c for c, _ in rows], "event_type": "purchase",
                         "event_timestamp": pd.to_datetime([t for _, t in rows], utc=True)})


def test_rfm_counts_repeat_days_in_weeks_from_purchases_before_the_time():
    log = _log([("a", "1997-01-01T12:00"), ("a", "1997-01-01T18:00"), ("a", "1997-01-15T12:00"),
                ("a", "1997-02-12T12:00"), ("b", "1997-01-29T12:00"), ("c", "1997-02-20T09:00")])
    r = btyd.rfm(btyd.purchase_days(log), pd.Timestamp("1997-02-12", tz="UTC")).set_index("customer_id")
    assert list(r.index) == ["a", "b"]  # c buys later; a's purchase on 02-12 is not before midnight
    assert r.loc["a"].to_dict() == {"frequency": 1.0, "recency": 2.0, "T": pytest.approx(41 / 7)}
    assert r.loc["b"].to_dict() == {"frequency": 0.0, "recency": 0.0, "T": pytest.approx(13 / 7)}


def test_only_a_plain_purchase_log_counts_as_transactions_only():
    log = _log([("a", "1997-01-01")])
    assert btyd.transactions_only(log)
    assert not btyd.transactions_only(pd.concat([log, log.assign(event_type="message_sent")]))
    assert not btyd.transactions_only(log.iloc[:0])


@pytest.mark.slow
def test_bg_nbd_recovers_the_published_cdnow_parameters(cdnow_path, tmp_path):
    from nextbest.importer import import_transactions

    _, events = import_transactions(cdnow_path, tmp_path / "world")
    purchases = btyd.purchase_days(events)
    model = btyd.fit(purchases, CDNOW_CALIBRATION_END, tmp_path / "compiled")
    assert model.params == pytest.approx(PUBLISHED, rel=0.005) and model.customers == 2357
    inputs = btyd.rfm(purchases, CDNOW_CALIBRATION_END).set_index("customer_id", drop=False)
    s = model.scores(inputs, CDNOW_HOLDOUT_DAYS)
    assert (s["p_alive"][inputs["frequency"] == 0] == 1).all()  # no repeat purchase: no sign of dropping out
    assert s.loc["0001", "p_alive"] == pytest.approx(0.727, abs=0.001)  # 3 purchase days, the last 8.4 weeks ago
    holdout = purchases[purchases["event_timestamp"] >= CDNOW_CALIBRATION_END]
    actual = holdout.groupby("customer_id")["day"].nunique().sum()  # 1,882 purchase days in the 39 weeks
    assert s["expected_purchases"].sum() == pytest.approx(actual, rel=0.15)


@pytest.fixture(scope="module")
def cdnow_holdout(tmp_path_factory, cdnow_path):
    from tests.support import settings_for
    from training.holdout import compare

    s = settings_for(tmp_path_factory.mktemp("cdnow-holdout"))
    return s, compare(s, cdnow_path)


@pytest.mark.slow
def test_holdout_comparison_ranks_every_customer_and_is_logged_to_the_churn_run(cdnow_holdout):
    from nextbest.model_contract import connect, model_name

    s, result = cdnow_holdout
    assert (result["customers"], result["holdout_buyers"]) == (2357, 684)
    auc = result["auc"]
    assert auc["btyd"] == pytest.approx(0.7725, abs=0.001)
    assert auc["recency"] == pytest.approx(0.7714, abs=0.001)
    assert auc["btyd_p_alive"] < 0.5  # P(alive) is 1 for every one-time buyer: no use for ranking alone
    assert 0.6 < auc["churn_head"] < 0.9
    client = connect(s)
    run = client.get_run(client.get_model_version(model_name(s, "churn"), result["churn_version"]).run_id)
    m = run.data.metrics
    assert m["holdout_auc"] == auc["churn_head"] and m["holdout_baseline_btyd_auc"] == auc["btyd"]
    # the training run's own test window has BG/NBD beside the recency baseline (a transactions-only log)
    assert {"test_auc", "baseline_auc", "baseline_btyd_auc", "baseline_btyd_p_alive_auc"} <= set(m)
    assert 0.6 < m["baseline_btyd_auc"] < 0.9


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="not met on CDNOW: churn head 0.723, BG/NBD 0.773, and models fitted on the "
                                       "holdout labels themselves reach 0.778 at most (README, 'Against BG/NBD')")
def test_churn_head_beats_bg_nbd_on_the_cdnow_holdout(cdnow_holdout):
    auc = cdnow_holdout[1]["auc"]
    assert auc["churn_head"] >= auc["btyd"] + TARGET_MARGIN, auc
