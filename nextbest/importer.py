"""Turn a plain purchase log (customer, date, amount) into the data contract.

Two input shapes are understood:

* ``cdnow``: whitespace-separated, no header, five columns
  (customer id in the full data, customer id in the sample, YYYYMMDD date,
  quantity, amount), as in the public CDNOW sample;
* ``csv``: a CSV with a header; name the columns with ``customer_col``,
  ``date_col`` and ``amount_col``.

Registration is the first purchase (a log has no sign-up dates). A purchase
log carries no consent: by default nobody may be contacted on any channel
(GDPR-safe); pass ``consent=("email", ...)`` to declare channels for which
consent and a working address are known to exist for every customer.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nextbest.contract import CUSTOMER_COLUMNS, write_world
from nextbest.settings import CHANNELS


class ImportError_(ValueError):
    """The purchase log cannot be read; the message says what to fix."""


def _read_log(path: Path, fmt: str, customer_col: str, date_col: str, amount_col: str) -> pd.DataFrame:
    if not path.exists():
        raise ImportError_(f"{path}: file not found")
    if fmt == "auto":
        first = path.read_text(errors="replace").lstrip().splitlines()[:1]
        fmt = "csv" if first and any(ch.isalpha() for ch in first[0]) else "cdnow"
    if fmt == "cdnow":
        raw = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, engine="python")
        if raw.shape[1] != 5:
            raise ImportError_(f"{path}: expected 5 whitespace-separated columns (CDNOW layout), found {raw.shape[1]}")
        log = pd.DataFrame({"customer": raw[1], "date": raw[2], "amount": raw[4]})
    elif fmt == "csv":
        raw = pd.read_csv(path, dtype=str)
        missing = [c for c in (customer_col, date_col, amount_col) if c not in raw.columns]
        if missing:
            raise ImportError_(
                f"{path}: column(s) {missing} not found; it has {list(raw.columns)} "
                "(name them with --customer-col / --date-col / --amount-col)"
            )
        log = pd.DataFrame({"customer": raw[customer_col], "date": raw[date_col], "amount": raw[amount_col]})
    else:
        raise ImportError_(f"unknown format {fmt!r}; use auto, cdnow or csv")
    return log


def import_transactions(
    path: Path | str,
    out_dir: Path | str,
    fmt: str = "auto",
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str = "amount",
    consent: tuple[str, ...] = (),
    timezone: str = "UTC",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Convert a purchase log into contract tables under out_dir; return (customers, events)."""
    path = Path(path)
    unknown = [c for c in consent if c not in CHANNELS]
    if unknown:
        raise ImportError_(f"unknown channel(s) {unknown} in consent; allowed: {', '.join(CHANNELS)}")
    log = _read_log(path, fmt, customer_col, date_col, amount_col)
    cust = log["customer"].str.strip()
    date_text = log["date"].str.strip()
    dates = pd.to_datetime(date_text, format="%Y%m%d", errors="coerce")
    iso = dates.isna()
    if iso.any():
        dates[iso] = pd.to_datetime(date_text[iso], errors="coerce", format="ISO8601")
    amount = pd.to_numeric(log["amount"], errors="coerce")
    problems = []
    for name, bad in (
        ("customer", cust.isna() | (cust == "")),
        ("date", dates.isna()),
        ("amount", amount.isna() | (amount < 0)),
    ):
        if bad.any():
            rows = (bad[bad].index[:5] + 1).tolist()
            problems.append(f"{name}: {int(bad.sum())} unreadable value(s), e.g. rows {rows}")
    if problems:
        raise ImportError_(f"{path}: " + "; ".join(problems))
    # a purchase date has no time of day: put it at noon so that local days stay the same day
    ts = (dates.dt.tz_localize(None) + pd.Timedelta(hours=12)).dt.tz_localize(timezone).dt.tz_convert("UTC")
    events = pd.DataFrame(
        {
            "customer_id": cust.values,
            "event_timestamp": ts.values,
            "event_type": "purchase",
            "channel": None,
            "amount": amount.values.astype(float),
            "action_id": None,
            "campaign_id": None,
        }
    )
    events["event_timestamp"] = pd.to_datetime(events["event_timestamp"], utc=True)
    events = events.sort_values(["customer_id", "event_timestamp"], kind="stable").reset_index(drop=True)
    first = events.groupby("customer_id", sort=True)["event_timestamp"].min()
    customers = pd.DataFrame({"customer_id": first.index, "registered_at": first.values - pd.Timedelta(seconds=1)})
    customers["registered_at"] = pd.to_datetime(customers["registered_at"], utc=True)
    for col in CUSTOMER_COLUMNS:
        if col.name in customers:
            continue
        if col.name.startswith(("consent_", "reachable_")):
            customers[col.name] = col.name.split("_", 1)[1] in consent
        elif col.name == "timezone":
            customers[col.name] = timezone
        else:
            customers[col.name] = col.default
    registrations = pd.DataFrame(
        {
            "customer_id": customers["customer_id"],
            "event_timestamp": customers["registered_at"],
            "event_type": "registration",
            "channel": None,
            "amount": float("nan"),
            "action_id": None,
            "campaign_id": None,
        }
    )
    events = pd.concat([registrations, events], ignore_index=True)
    events = events.sort_values(["event_timestamp", "customer_id"], kind="stable").reset_index(drop=True)
    write_world(out_dir, customers, events)
    return customers, events
