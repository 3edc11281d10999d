"""Transactions-only import on the real CDNOW sample."""

from __future__ import annotations

import pandas as pd
import pytest

from nextbest.contract import load_world
from nextbest.importer import ImportError_, import_transactions


def test_cdnow_sample_imports_into_the_contract(cdnow_path, tmp_path):
    import_transactions(cdnow_path, tmp_path)
    cust, ev = load_world(tmp_path)  # passes the validator
    assert len(cust) == 2357
    purchases = ev[ev.event_type == "purchase"]
    assert len(purchases) == 6919
    assert (ev.event_type == "registration").sum() == 2357
    assert purchases["amount"].sum() == pytest.approx(pd.read_csv(cdnow_path, sep=r"\s+", header=None)[4].sum())
    first = purchases.groupby("customer_id").event_timestamp.min()
    reg = cust.set_index("customer_id").registered_at
    assert (reg.loc[first.index] < first).all()  # registered just before the first purchase
    assert first.min() >= pd.Timestamp("1997-01-01", tz="UTC") and first.max() < pd.Timestamp("1997-04-01", tz="UTC")
    # no consent in a purchase log: every channel closed by default
    assert not cust.filter(like="consent_").any().any()


def test_declared_consent(cdnow_path, tmp_path):
    cust, _ = import_transactions(cdnow_path, tmp_path, consent=("email",))
    assert cust.consent_email.all() and cust.reachable_email.all() and not cust.consent_sms.any()


def test_csv_with_header_and_bad_rows(tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("client,day,value\nx,2024-03-01,10\ny,2024-03-02,abc\nz,not-a-date,3\n")
    with pytest.raises(ImportError_) as e:
        import_transactions(src, tmp_path / "out", customer_col="client", date_col="day", amount_col="value")
    assert "date" in str(e.value) and "rows [3]" in str(e.value) and "amount" in str(e.value) and "rows [2]" in str(e.value)


def test_csv_missing_column_says_what_exists(tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("client,day,value\nx,2024-03-01,10\n")
    with pytest.raises(ImportError_) as e:
        import_transactions(src, tmp_path / "out")
    assert "customer_id" in str(e.value) and "client" in str(e.value)
