"""The input data contract: `customers` and `events` tables, and optional `assignments` (CSV or Parquet).

Everything downstream reads data through :func:`load_world` and
:func:`load_assignments`, which validate first. :func:`validate_dir` reports
every violation at once, each naming the file, the column, how many rows and
example row numbers, so a data engineer knows what to fix.

``assignments`` records who was eligible and *randomised* to which option -
controls who received nothing included (``action_id = no_action``, and when
the log knows it the ``holdout_action`` they were held out from) - with the
probability the assigning process gave that option: a campaign export with a
random control group, an A/B/n test, or this product's own decision log. The
outcomes are the ordinary events that follow. Effect models learn from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence
from zoneinfo import available_timezones

import numpy as np
import pandas as pd

from nextbest.vocabulary import CHANNELS, EVENT_TYPES, MESSAGE_EVENTS, NO_ACTION



@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "string" | "timestamp" | "bool" | "float" | "timezone"
    required: bool
    doc: str
    allowed: tuple[str, ...] | None = None
    default: object = None


CUSTOMER_COLUMNS: tuple[Column, ...] = (
    Column("customer_id", "string", True, "unique customer identifier"),
    Column("registered_at", "timestamp", True, "registration time, ISO-8601 with offset (tz-aware)"),
    Column("timezone", "timezone", False, "IANA timezone of the customer, e.g. Europe/Paris", default="UTC"),
    Column("segment", "string", False, "b2c / b2b or any business segment", default="unknown"),
    Column("region", "string", False, "region or store area", default="unknown"),
    Column("company_size", "string", False, "B2B company size band (micro, small, medium, large)", default="unknown"),
    Column("sector", "string", False, "B2B sector or B2C store type", default="unknown"),
    *(Column(f"consent_{c}", "bool", False, f"GDPR consent to be contacted by {c}", default=False) for c in CHANNELS),
    *(
        Column(f"reachable_{c}", "bool", False, f"we hold a working address / device for {c}", default=False)
        for c in CHANNELS
    ),
)

EVENT_COLUMNS: tuple[Column, ...] = (
    Column("customer_id", "string", True, "a customer_id of the customers table"),
    Column("event_timestamp", "timestamp", True, "when it happened, ISO-8601 with offset (tz-aware)"),
    Column("event_type", "string", True, "what happened", allowed=EVENT_TYPES),
    Column("channel", "string", False, "channel of a message event (required for message_* events)", allowed=CHANNELS),
    Column("amount", "float", False, "purchase value, >= 0 (required for purchase events)"),
    Column("action_id", "string", False, "action of the catalogue behind a message"),
    Column("campaign_id", "string", False, "campaign or decision that sent a message"),
)

ASSIGNMENT_COLUMNS: tuple[Column, ...] = (
    Column("customer_id", "string", True, "a customer_id of the customers table"),
    Column("assigned_at", "timestamp", True, "when the option was assigned (sent or held out), ISO-8601 with offset"),
    Column("action_id", "string", True, f"an action of the catalogue, or `{NO_ACTION}` for a customer deliberately held out"),
    Column("channel", "string", False, f"channel of the assigned message; empty for `{NO_ACTION}`", allowed=CHANNELS),
    Column("propensity", "float", False, "probability the assigning process gave this option, in (0, 1]; empty when "
                                         "unknown (the row is then treated as not randomised)"),
    Column("campaign_id", "string", False, "campaign (or A/B test) of the assignment"),
    Column("decision_id", "string", False, "decision of this product behind the assignment"),
    Column("holdout_action", "string", False, f"for a `{NO_ACTION}` row of a control group: the action the customer "
                                              "was held out from (what the campaign would have sent); empty otherwise"),
)

TABLES = {"customers": CUSTOMER_COLUMNS, "events": EVENT_COLUMNS}
OPTIONAL_TABLES = {"assignments": ASSIGNMENT_COLUMNS}
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}
MAX_EXAMPLES = 5


class ContractError(ValueError):
    """Input data violates the contract; the message lists every violation."""

    def __init__(self, violations: list["Violation"]):
        self.violations = violations
        super().__init__(
            f"{len(violations)} contract violation(s):\n" + "\n".join("  " + v.describe() for v in violations)
        )


@dataclass
class Violation:
    file: str
    column: str
    problem: str
    rows: list[int] = field(default_factory=list)  # 1-based data row numbers (header excluded)
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def describe(self) -> str:
        where = f"{self.file}: column '{self.column}': {self.problem}"
        if self.count:
            rows = ", ".join(str(r) for r in self.rows[:MAX_EXAMPLES])
            ex = "; ".join(self.examples[:MAX_EXAMPLES])
            where += f" - {self.count} row(s), e.g. rows {rows}" + (f" (values: {ex})" if ex else "")
        return where


def find_table(directory: Path, name: str) -> Path | None:
    for ext in (".parquet", ".csv"):
        p = directory / f"{name}{ext}"
        if p.exists():
            return p
    return None


def read_raw(path: Path) -> pd.DataFrame:
    """A table as stored (CSV cells as text), before validation."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def _violation(file: str, column: str, problem: str, mask: np.ndarray, values: pd.Series | None = None) -> Violation:
    idx = np.flatnonzero(mask)
    ex = [] if values is None else [repr(values.iloc[i]) for i in idx[:MAX_EXAMPLES]]
    return Violation(file, column, problem, rows=[int(i) + 1 for i in idx[:MAX_EXAMPLES]], count=int(len(idx)), examples=ex)


def _parse_timestamp(s: pd.Series, file: str, col: str, out: list[Violation]) -> pd.Series:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(s.dtype):
        out.append(_violation(file, col, "timestamps have no timezone; write them with an offset (e.g. +00:00)", np.ones(len(s), bool)))
        return pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    text = s.astype("string")
    present = text.notna().to_numpy()
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    bad = present & parsed.isna().to_numpy()
    if bad.any():
        out.append(_violation(file, col, "not an ISO-8601 timestamp", bad, text))
    naive = present & ~bad & ~text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True, na=False).to_numpy()
    if naive.any():
        out.append(_violation(file, col, "timestamp has no timezone offset; write e.g. 2025-01-31T09:00:00+00:00", naive, text))
    return parsed


def _coerce(df: pd.DataFrame, columns: tuple[Column, ...], file: str, out: list[Violation]) -> pd.DataFrame:
    result = {}
    n = len(df)
    for col in columns:
        if col.name not in df.columns:
            if col.required:
                out.append(Violation(file, col.name, "required column is missing"))
                continue
            result[col.name] = pd.Series([col.default] * n, index=df.index) if col.default is not None else pd.Series(
                [None] * n, index=df.index, dtype="object"
            )
            if col.kind == "bool":
                result[col.name] = result[col.name].astype(bool)
            if col.kind == "float":
                result[col.name] = result[col.name].astype(float)
            continue
        s = df[col.name]
        missing = s.isna().to_numpy()
        if col.required and missing.any():
            out.append(_violation(file, col.name, "required value is empty", missing))
        if col.kind == "timestamp":
            result[col.name] = _parse_timestamp(s, file, col.name, out)
        elif col.kind == "bool":
            if pd.api.types.is_bool_dtype(s.dtype):
                result[col.name] = s.astype(bool)
            else:
                text = s.astype("string").str.strip().str.lower().fillna("")
                bad = ~text.isin(_TRUE | _FALSE).to_numpy()
                if bad.any():
                    out.append(_violation(file, col.name, "not a boolean (use true/false or 1/0)", bad, s))
                result[col.name] = text.isin(_TRUE).to_numpy()
        elif col.kind == "float":
            num = pd.to_numeric(s, errors="coerce")
            bad = ~missing & num.isna().to_numpy()
            if bad.any():
                out.append(_violation(file, col.name, "not a number", bad, s))
            result[col.name] = num.astype(float)
        else:  # text: checked and converted once per distinct value (a column of millions holds few)
            codes, uniq = pd.factorize(s, use_na_sentinel=True)
            values = pd.array(uniq, dtype="string")
            if col.default is not None and (codes < 0).any():
                values = pd.array([*values, col.default], dtype="string")
                codes = np.where(codes < 0, len(values) - 1, codes)
            text = pd.Series(values)
            as_object = np.append(np.asarray(values, dtype=object), None)  # [-1]: empty
            if col.kind == "timezone":
                zones = available_timezones() | {"UTC"}
                unknown = np.array([z not in zones for z in values.tolist()] + [False], bool)  # [-1]: empty
                if unknown.any():
                    out.append(_violation(file, col.name, "unknown IANA timezone", unknown[codes],
                                          pd.Series(as_object[codes])))
            if col.allowed is not None:
                bad = np.append(~text.isin(col.allowed).to_numpy(), False)[codes]  # [-1]: empty
                if bad.any():
                    out.append(
                        _violation(file, col.name, f"value not allowed (allowed: {', '.join(col.allowed)})", bad,
                                   pd.Series(as_object[codes]))
                    )
            result[col.name] = pd.Series(as_object[codes], index=df.index, dtype=object)
    return pd.DataFrame(result, index=df.index)


def validate_tables(customers: pd.DataFrame, events: pd.DataFrame, names: tuple[str, str] = ("customers", "events")):
    """Validate two raw frames; return (customers, events, violations) with coerced types."""
    out: list[Violation] = []
    cfile, efile = names
    cust = _coerce(customers.reset_index(drop=True), CUSTOMER_COLUMNS, cfile, out)
    ev = _coerce(events.reset_index(drop=True), EVENT_COLUMNS, efile, out)
    if "customer_id" in cust:
        dup = cust["customer_id"].duplicated(keep=False).to_numpy() & cust["customer_id"].notna().to_numpy()
        if dup.any():
            out.append(_violation(cfile, "customer_id", "duplicate customer id", dup, cust["customer_id"]))
    if "customer_id" in ev and "customer_id" in cust:
        unknown = (~ev["customer_id"].isin(cust["customer_id"]) & ev["customer_id"].notna()).to_numpy()
        if unknown.any():
            out.append(_violation(efile, "customer_id", "customer not in the customers table", unknown, ev["customer_id"]))
    if {"event_type", "channel"} <= set(ev.columns):
        msg = ev["event_type"].isin(MESSAGE_EVENTS).to_numpy() & ev["channel"].isna().to_numpy()
        if msg.any():
            out.append(_violation(efile, "channel", "message events need a channel", msg, ev["event_type"]))
    if {"event_type", "amount"} <= set(ev.columns):
        purchase = ev["event_type"].eq("purchase").to_numpy()
        amount = ev["amount"].to_numpy()
        bad = purchase & (np.isnan(amount) | (amount < 0))
        if bad.any():
            out.append(_violation(efile, "amount", "purchase events need an amount >= 0", bad, ev["amount"]))
    return cust, ev, out


def validate_dir(directory: Path | str, catalogue: Mapping | None = None, assignments: bool = True):
    """Validate `customers`, `events` and (when present and `assignments`) `assignments` in a folder against the
    contract and the action catalogue; return (customers, events, violations)."""
    directory = Path(directory)
    out: list[Violation] = []
    paths = {}
    for name in TABLES:
        p = find_table(directory, name)
        if p is None:
            out.append(Violation(str(directory / f"{name}.csv"), "*", f"no {name}.csv or {name}.parquet in {directory}"))
        paths[name] = p
    if out:
        return None, None, out
    try:
        raw_c, raw_e = read_raw(paths["customers"]), read_raw(paths["events"])
        a_path = find_table(directory, "assignments") if assignments else None
        raw_a = read_raw(a_path) if a_path is not None else None
    except Exception as e:  # unreadable file: say which
        return None, None, [Violation(str(directory), "*", f"cannot read: {e}")]
    cust, ev, out = validate_tables(raw_c, raw_e, (str(paths["customers"]), str(paths["events"])))
    if raw_a is not None:
        out += validate_assignments(raw_a, cust, catalogue, str(a_path))[1]
    return cust, ev, out


def validate_assignments(assignments: pd.DataFrame, customers: pd.DataFrame | None, catalogue: Mapping | None,
                         file: str = "assignments") -> tuple[pd.DataFrame, list[Violation]]:
    """Validate a raw assignments frame against the customers table and the action catalogue (id -> Action);
    return (assignments with coerced types, violations)."""
    out: list[Violation] = []
    a = _coerce(assignments.reset_index(drop=True), ASSIGNMENT_COLUMNS, file, out)
    if {"customer_id", "action_id", "assigned_at"} - set(a.columns):
        return a, out
    if customers is not None and "customer_id" in customers:
        known = a["customer_id"].isin(customers["customer_id"]).to_numpy() | a["customer_id"].isna().to_numpy()
        if (~known).any():
            out.append(_violation(file, "customer_id", "customer not in the customers table", ~known, a["customer_id"]))
        if "registered_at" in customers:
            reg = a["customer_id"].map(customers.drop_duplicates("customer_id").set_index("customer_id")["registered_at"])
            early = (a["assigned_at"] < reg).fillna(False).to_numpy(bool)
            if early.any():
                out.append(_violation(file, "assigned_at", "assigned before the customer registered", early,
                                      a["assigned_at"].astype(str)))
    action = a["action_id"]
    held = action.eq(NO_ACTION).to_numpy()
    if catalogue is not None:
        unknown = (action.notna() & ~action.isin([*catalogue, NO_ACTION])).to_numpy()
        if unknown.any():
            out.append(_violation(file, "action_id", f"not an action of the catalogue (nor {NO_ACTION})", unknown, action))
    channel = a["channel"]
    has_channel = channel.notna().to_numpy()
    if (held & has_channel).any():
        out.append(_violation(file, "channel", f"{NO_ACTION} sends nothing: leave its channel empty", held & has_channel,
                              channel))
    missing = ~held & action.notna().to_numpy() & ~has_channel
    if missing.any():
        out.append(_violation(file, "channel", "an assigned action needs its channel", missing, action))
    if catalogue is not None:
        allowed = {k: set(v.cost) for k, v in catalogue.items()}
        wrong = np.array([bool(c) and act in allowed and c not in allowed[act]
                          for act, c in zip(action.tolist(), channel.fillna("").tolist())])
        if wrong.any():
            out.append(_violation(file, "channel", "the catalogue does not allow this action on this channel", wrong,
                                  action + " by " + channel.fillna("")))
    holdout = a["holdout_action"]
    sent_with_holdout = ~held & holdout.notna().to_numpy()
    if sent_with_holdout.any():
        out.append(_violation(file, "holdout_action", f"only a {NO_ACTION} row is held out: leave it empty on a send",
                              sent_with_holdout, holdout))
    if catalogue is not None:
        unknown = (holdout.notna() & ~holdout.isin(list(catalogue))).to_numpy()
        if unknown.any():
            out.append(_violation(file, "holdout_action", "not an action of the catalogue", unknown, holdout))
    p = a["propensity"].to_numpy(float)
    bad = ~np.isnan(p) & ((p <= 0) | (p > 1))
    if bad.any():
        out.append(_violation(file, "propensity", "a propensity must be in (0, 1]", bad, a["propensity"]))
    return a, out


def load_assignments(directory: Path | str, catalogue: Mapping | None = None,
                     customers: pd.DataFrame | None = None,
                     customer_ids: Sequence[str] | None = None) -> pd.DataFrame | None:
    """The validated assignments of a folder (sorted by time, ``randomised`` = a propensity is known), or None
    when the folder has none; only those of ``customer_ids`` when given; raise ContractError."""
    directory = Path(directory)
    path = find_table(directory, "assignments")
    if path is None:
        return None
    raw = read_raw(path) if customer_ids is None else _read_rows_of(path, customer_ids)
    a, violations = validate_assignments(raw, customers, catalogue, str(path))
    if violations:
        raise ContractError(violations)
    a["randomised"] = a["propensity"].notna()
    return a.sort_values(["assigned_at", "customer_id"], kind="stable").reset_index(drop=True)


def load_world(directory: Path | str, in_time_order: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validated customers and events (UTC timestamps; events sorted by time, then customer, unless
    `in_time_order` is False: file order, for readers that order them their own way); raise ContractError.
    The assignments are left to :func:`load_assignments`."""
    cust, ev, violations = validate_dir(directory, assignments=False)
    if violations:
        raise ContractError(violations)
    return cust, _in_time_order(ev) if in_time_order else ev


def _in_time_order(events: pd.DataFrame) -> pd.DataFrame:
    """Events sorted by (time, customer id), ties in file order; each distinct id is compared once."""
    if not len(events):
        return events.reset_index(drop=True)
    codes, ids = pd.factorize(events["customer_id"], use_na_sentinel=True)
    rank = np.append(np.argsort(np.argsort(np.asarray(ids, dtype=str), kind="stable")), len(ids))  # [-1]: no id
    order = np.lexsort((rank[codes], pd.DatetimeIndex(events["event_timestamp"]).asi8))
    if (order == np.arange(len(order))).all():
        return events.reset_index(drop=True)
    return events.iloc[order].reset_index(drop=True)


def load_world_part(directory: Path | str, customer_ids: Sequence[str],
                    in_time_order: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`load_world` for some customers only (events in file order unless ``in_time_order``): their rows
    and events (Parquet reads only those rows; a CSV is read whole, then filtered), validated the same way;
    raise ContractError."""
    directory = Path(directory)
    frames = []
    for name in TABLES:
        path = find_table(directory, name)
        if path is None:
            raise ContractError([Violation(str(directory / f"{name}.csv"), "*", f"no {name}.csv or {name}.parquet in {directory}")])
        frames.append(_read_rows_of(path, customer_ids))
    cust, ev, violations = validate_tables(*frames, (str(find_table(directory, "customers")),
                                                     str(find_table(directory, "events"))))
    if violations:
        raise ContractError(violations)
    return cust, _in_time_order(ev) if in_time_order else ev


def _read_rows_of(path: Path, customer_ids: Sequence[str]) -> pd.DataFrame:
    """A table's raw rows of some customers (Parquet reads only those rows; a CSV is read whole, then filtered)."""
    ids = [str(c) for c in customer_ids]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path, filters=[("customer_id", "in", ids)]).to_pandas()
    raw = read_raw(path)
    return raw[raw["customer_id"].isin(ids)].reset_index(drop=True)


def write_world(directory: Path | str, customers: pd.DataFrame, events: pd.DataFrame,
                assignments: pd.DataFrame | None = None, fmt: str = "parquet") -> Path:
    """Write a world in the contract's layout (assignments only when given; an older assignments file is removed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for ext in (".csv", ".parquet"):
        (directory / f"assignments{ext}").unlink(missing_ok=True)
    tables = [("customers", customers), ("events", events)]
    if assignments is not None:
        tables.append(("assignments", assignments))
    for name, df in tables:
        for ext in (".csv", ".parquet"):
            (directory / f"{name}{ext}").unlink(missing_ok=True)
        if fmt == "parquet":
            df.to_parquet(directory / f"{name}.parquet", index=False)
        else:
            out = df.copy()
            for c in out.columns:
                if isinstance(out[c].dtype, pd.DatetimeTZDtype):
                    out[c] = out[c].dt.strftime("%Y-%m-%dT%H:%M:%S%z").str.replace(r"(\d\d)(\d\d)$", r"\1:\2", regex=True)
            out.to_csv(directory / f"{name}.csv", index=False)
    return directory


def contract_markdown() -> str:
    """The contract as Markdown tables (the README's section is generated from this)."""
    lines = []
    for name, cols in {**TABLES, **OPTIONAL_TABLES}.items():
        lines += [f"**{name}**", "", "| column | type | required | meaning |", "|---|---|---|---|"]
        for c in cols:
            allowed = f" Allowed: {', '.join(c.allowed)}." if c.allowed else ""
            default = f" Default: `{c.default}`." if c.default is not None and not c.required else ""
            lines.append(f"| `{c.name}` | {c.kind} | {'yes' if c.required else 'no'} | {c.doc}.{allowed}{default} |")
        lines.append("")
    return "\n".join(lines)
