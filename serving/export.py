"""`nextbest export-log`: the product's own decisions and what followed, as the data contract's tables.

The decision log (``serving.history``) becomes the contract's ``assignments``: one row per decision -
``no_action`` for control members (with the ``holdout_action`` they were held out from) and every other decision
that sent nothing - with the propensity the decision carried (empty when the service withheld the send: not
randomised), the decision as its ``campaign_id`` and ``decision_id``. The feedback becomes ``events``:
``message_sent`` ... ``unsubscribed``, and a purchase for every converted amount (``serving.history.contract_events``),
the decision again as the campaign, so the outcomes of an assignment (``training/outcomes.py``) count its own
message's conversions and redemptions.

Nothing is counted twice: the log keeps one row per decision (a retried request is answered from it) and one
per decision and feedback event (a repeated event is recognised), and the export drops duplicates again when it
merges with a data folder's own tables. Assignments are intention to treat: a recommended send the journey
engine did not make is still the assignment of that option.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.contract import (
    ContractError,
    find_table,
    load_assignments,
    load_world,
    read_raw,
    validate_dir,
    write_world,
)
from nextbest.settings import Settings
from nextbest.vocabulary import NO_ACTION
from serving.history import ContactHistory, contract_events

EVENT_KEY = ["customer_id", "event_timestamp", "event_type", "channel", "action_id", "campaign_id"]


def log_assignments(decisions: pd.DataFrame) -> pd.DataFrame:
    """The decision log's rows as the contract's assignments (one per decision)."""
    d = decisions.drop_duplicates("decision_id")
    sent = d["action"].ne(NO_ACTION).to_numpy()
    holdout = d["holdout_action"].to_numpy(object)
    held = ~sent & d["holdout_action"].notna().to_numpy() & (holdout != NO_ACTION)
    return pd.DataFrame({
        "customer_id": d["customer_id"].astype(str).to_numpy(),
        "assigned_at": pd.to_datetime(d["decided_at"], utc=True, format="ISO8601"),
        "action_id": d["action"].to_numpy(),
        "channel": np.where(sent, d["channel"].to_numpy(object), None),
        "propensity": pd.to_numeric(d["propensity"], errors="coerce").to_numpy(float),
        "campaign_id": d["decision_id"].to_numpy(),
        "decision_id": d["decision_id"].to_numpy(),
        "holdout_action": np.where(held, holdout, None),
    }).reset_index(drop=True)


def log_events(feedback: pd.DataFrame) -> pd.DataFrame:
    """The feedback as the contract's events, each (decision, event) once."""
    return contract_events(feedback.drop_duplicates(["decision_id", "event"]))


def _customers(directory: Path) -> pd.DataFrame:
    """The data folder's customers table as it is stored (validated with the export)."""
    path = find_table(directory, "customers")
    if path is None:
        raise SystemExit(f"export-log needs the customers table of the data folder: none in {directory}")
    return read_raw(path)


def export_log(settings: Settings, out: Path | str, log_path: Path | str | None = None, merge: bool = False,
               data_dir: Path | str | None = None) -> dict:
    """Write the decision log and its feedback to `out` as ``customers``, ``events`` and ``assignments`` (the
    customers copied from the data folder, ``settings.world_dir`` unless `data_dir`), then validate the folder
    against the contract; return counts.

    Decisions for customers the data folder does not know (cold starts), or dated before their registration,
    are left out and counted. With `merge`, the data folder's own events and assignments are written too (without
    duplicates), so `out` is a complete data folder the next retrain reads."""
    base = Path(data_dir or settings.world_dir)
    history = ContactHistory(log_path or settings.serving_dir / "history.db", create=False)
    try:
        decisions, feedback = history.decisions_frame(), history.feedback_frame()
    finally:
        history.close()
    assignments, events = log_assignments(decisions), log_events(feedback)
    if merge:
        customers, base_events = load_world(base)
        base_assign = load_assignments(base, settings.actions, customers)
    else:
        customers, base_events, base_assign = _customers(base), None, None
    registered = pd.Series(pd.to_datetime(customers["registered_at"], utc=True, format="ISO8601").to_numpy(),
                           index=customers["customer_id"].astype(str)).groupby(level=0).first()
    reg = assignments["customer_id"].map(registered)
    known = reg.notna().to_numpy()
    before = known & (assignments["assigned_at"] < reg).fillna(False).to_numpy(bool)
    kept = assignments[known & ~before]
    decided = set(kept["decision_id"])
    events = events[events["campaign_id"].isin(decided).to_numpy()]
    if merge:
        if base_assign is not None:
            theirs = base_assign.drop(columns=["randomised"])
            theirs = theirs[~theirs["decision_id"].isin(decided).to_numpy()]
            kept = pd.concat([theirs, kept], ignore_index=True)
        events = pd.concat([base_events, events], ignore_index=True).drop_duplicates(EVENT_KEY)
    events = events.sort_values(["event_timestamp", "customer_id"], kind="stable").reset_index(drop=True)
    kept = kept.sort_values(["assigned_at", "customer_id"], kind="stable").reset_index(drop=True)
    out = Path(out)
    write_world(out, customers, events, kept)
    _, _, violations = validate_dir(out, settings.actions)
    if violations:
        raise ContractError(violations)
    mine = kept["decision_id"].isin(decided).to_numpy()
    return {
        "out": str(out), "decisions": int(len(decisions)), "assignments": int(mine.sum()),
        "controls": int((mine & kept["action_id"].eq(NO_ACTION).to_numpy()).sum()),
        "not_randomised": int((mine & kept["propensity"].isna().to_numpy()).sum()),
        "unknown_customers": int((~known).sum()), "before_registration": int(before.sum()),
        "feedback_events": int(events["campaign_id"].isin(decided).sum()),
        "purchases": int((events["campaign_id"].isin(decided) & events["event_type"].eq("purchase")).sum()),
        "merged": merge,
    }
