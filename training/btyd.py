"""BG/NBD, the classic "buy till you die" model (Fader, Hardie & Lee, 2005), as a baseline for the churn head.

A customer buys at a steady rate while alive and may drop out after any purchase day. From each customer's
repeat purchases, recency and age the model gives the expected number of purchases over a coming period and
the probability of still being alive. It is fitted with the CLV module of pymc-marketing, with flat priors
and a MAP fit (the maximum-likelihood estimate), on purchase days only, in weeks.

pymc-marketing compiles C code through pytensor on the first fit of a process (about 20 s, then cached in
the ``cache`` folder given to :func:`fit`); it is imported on first use, never when this module is imported.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from functools import cache as _once
from pathlib import Path

import numpy as np
import pandas as pd

WEEK_DAYS = 7
PARAMETERS = ("r", "alpha", "a", "b")  # purchase rate ~ Gamma(r, alpha) per week; dropout probability ~ Beta(a, b)
TRANSACTION_TYPES = frozenset({"registration", "purchase"})


def compile_dir(settings) -> Path:
    """Where pytensor keeps the compiled model code of an installation."""
    return settings.data_dir / "training" / "compiled"


@_once
def _library(cache: Path):
    """pymc-marketing's CLV module and its prior class; pytensor compiles under ``cache`` (first import wins)."""
    os.environ.setdefault("PYTENSOR_FLAGS", f"compiledir={cache}")
    logging.getLogger("pytensor.tensor.blas").setLevel(logging.ERROR)  # "Using NumPy C-API based implementation"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"arviz")  # ArviZ's refactoring notice
        from pymc_extras.prior import Prior
        from pymc_marketing import clv
    return clv, Prior


def transactions_only(events: pd.DataFrame) -> bool:
    """True for a plain purchase log (registrations and purchases; no messages, visits or unsubscriptions)."""
    return bool(len(events)) and set(events["event_type"].unique()) <= TRANSACTION_TYPES


def purchase_days(events: pd.DataFrame) -> pd.DataFrame:
    """customer_id, event_timestamp (UTC) and day (its UTC day, tz-naive) of every purchase."""
    p = events.loc[events["event_type"] == "purchase", ["customer_id", "event_timestamp"]].copy()
    p["customer_id"] = p["customer_id"].astype(str)
    p["event_timestamp"] = pd.to_datetime(p["event_timestamp"], utc=True)
    p["day"] = p["event_timestamp"].dt.tz_localize(None).dt.floor("D")
    return p.reset_index(drop=True)


def rfm(purchases: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    """The model's inputs at ``at``, from the purchases strictly before it; one row per customer who bought.

    ``purchases``: :func:`purchase_days`. frequency = purchase days after the first, recency = weeks from the
    first to the last purchase day, T = weeks from the first purchase day to the last day observed before ``at``
    (the conventions of ``pymc_marketing.clv.rfm_summary`` and of the BG/NBD paper).
    """
    at = pd.Timestamp(at).tz_convert("UTC")
    last_day = (at - pd.Timedelta(1, "ns")).tz_localize(None).floor("D")
    g = purchases.loc[purchases["event_timestamp"] < at].groupby("customer_id", sort=True)["day"]
    first, last = g.min(), g.max()
    week = pd.Timedelta(days=WEEK_DAYS)
    return pd.DataFrame({"customer_id": first.index.to_numpy(), "frequency": (g.nunique() - 1).to_numpy(float),
                         "recency": ((last - first) / week).to_numpy(float),
                         "T": ((last_day - first) / week).to_numpy(float)})


@dataclass
class BgNbd:
    """A fitted BG/NBD: its parameters (per week) and pymc-marketing's model."""

    params: dict[str, float]
    model: object  # pymc_marketing.clv.BetaGeoModel
    customers: int  # customers it was fitted on

    def scores(self, inputs: pd.DataFrame, horizon_days: float) -> pd.DataFrame:
        """expected_purchases over the next ``horizon_days`` and p_alive, indexed by customer_id, for :func:`rfm` rows."""
        out = pd.DataFrame({"expected_purchases": np.zeros(len(inputs)), "p_alive": np.zeros(len(inputs))},
                           index=pd.Index(inputs["customer_id"].to_numpy(), name="customer_id"))
        if len(inputs):
            ids = {"customer_id": out.index.to_numpy()}
            draws = ("chain", "draw")
            expected = self.model.expected_purchases(data=inputs, future_t=horizon_days / WEEK_DAYS).mean(draws)
            out["expected_purchases"] = expected.sel(ids).to_numpy()
            out["p_alive"] = self.model.expected_probability_alive(data=inputs).mean(draws).sel(ids).to_numpy()
        return out


def fit(purchases: pd.DataFrame, at: pd.Timestamp, cache: Path) -> BgNbd:
    """Fit BG/NBD on the purchases strictly before ``at`` (:func:`purchase_days`); ``cache``: :func:`compile_dir`."""
    clv, Prior = _library(Path(cache))
    inputs = rfm(purchases, at)
    repeaters = int((inputs["frequency"] > 0).sum())
    if repeaters < len(PARAMETERS):
        raise ValueError(f"BG/NBD needs customers with repeat purchases before {at}; found {repeaters}")
    flat = {k: Prior("HalfFlat") for k in PARAMETERS}  # flat priors: the MAP estimate is the likelihood's maximum
    model = clv.BetaGeoModel(data=inputs, model_config=flat)
    model.fit(method="map", progressbar=False)
    params = {k: float(model.fit_result[k].mean()) for k in PARAMETERS}
    return BgNbd(params, model, len(inputs))


def scores_at(model: BgNbd, purchases: pd.DataFrame, rows: pd.DataFrame, horizon_days: float) -> pd.DataFrame:
    """expected_purchases and p_alive for (customer_id, event_timestamp) rows, each from the purchases before its time.

    In ``rows``' order (index reset); NaN for a customer with no purchase before the row's time.
    """
    ts = pd.to_datetime(rows["event_timestamp"], utc=True).reset_index(drop=True)
    ids = rows["customer_id"].astype(str).reset_index(drop=True)
    out = pd.DataFrame({"expected_purchases": np.nan, "p_alive": np.nan}, index=ids.index)
    for t, idx in ts.groupby(ts).indices.items():
        inputs = rfm(purchases[purchases["customer_id"].isin(set(ids.iloc[idx]))], pd.Timestamp(t))
        out.iloc[idx] = model.scores(inputs, horizon_days).reindex(ids.iloc[idx]).to_numpy()
    return out
