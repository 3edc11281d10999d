"""`nextbest report`: the marketers' report, one self-contained HTML page.

:func:`write_report` writes ``<reports_dir>/report.html`` and logs it to
MLflow as an artifact of a run named ``report-<timestamp>`` (tag
``kind=report``). The page has five sections:

1. **The base** - customers by lifecycle stage and segment at the latest
   feature snapshot, and the movement over about a month (stage transitions
   against the snapshot closest to 30 days earlier; customers who dropped an
   RFM segment at the last monthly recompute).
2. **The models** - for each head, the ``@champion`` version: what it predicts
   (the contract's label definition), its quality beside the simple baseline
   and the oracle, a gains chart and a calibration chart from the held-out
   predictions (hour accuracy for the send-time head), its top drivers and how
   it compares with the previous version. A head without a model says why.
3. **Channels** - click rate per channel and segment, reachable share per
   channel, and engagement by local hour and weekday.
4. **The policy's what-if** on the current base (``data/scores/latest.parquet``,
   written by ``nextbest score``; produced here when missing): action x
   channel mix, contact pressure against the caps, why customers get nothing,
   expected value against no action, and against the calendar campaigns from
   ``nextbest evaluate``'s results (``<data_dir>/evaluation/latest.json``, else
   ``docs/evaluation.json`` when it describes the same data end).
5. **Control group and uplift** - treated vs control purchase rate with a 95%
   confidence interval and the incremental value: for the legacy campaigns of
   a simulated world (``world/targets.parquet``; a target converts when the
   customer buys within :data:`UPLIFT_DAYS` days of the planned send) and for
   the service's logged decisions with ``converted`` feedback
   (``<data_dir>/serving/history.db``).

A section whose source is missing says so in the page; one that fails is shown
as an error box (and logged) instead of failing the whole report.

Charts are inline SVG drawn by matplotlib without pyplot (no global backend
state); the page loads no script, style sheet, font or image from anywhere.
Feature tables are read straight from the pipeline's Parquet files (two
snapshots, a few columns: well under a second on the 20k demo world, where a
point-in-time read through the feature service takes about 20 s).
"""

from __future__ import annotations

import html
import io
import json
import logging
import re
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.settings import Settings
from nextbest.vocabulary import CHANNELS, HEADS, RFM_SEGMENTS, STAGES
from nextbest.vocabulary import HEAD_METRIC as PRIMARY

log = logging.getLogger(__name__)

MOVEMENT_DAYS = 30  # "movement" compares the latest snapshot with the one closest to a month earlier
UPLIFT_DAYS = 7  # a target converts when the customer buys within this many days of the planned send
CHANNEL_LABEL = {"email": "E-mail", "sms": "SMS", "push": "Push", "in_app": "In-app", "print": "Print"}
CHANNEL_COLOR = {"email": "#2563eb", "sms": "#059669", "push": "#d97706", "in_app": "#7c3aed", "print": "#6b7280"}
STAGE_COLOR = {"registered": "#93c5fd", "activating": "#60a5fa", "active": "#059669", "at_risk": "#f59e0b",
               "lapsed": "#dc2626"}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
INK, MUTED, MODEL, BASE, ORACLE, PREVIOUS, GOOD, BAD = (
    "#1f2937", "#6b7280", "#2563eb", "#9ca3af", "#059669", "#f59e0b", "#059669", "#dc2626")

HEAD_TEXT = {
    "activation": ("Activation", "who will buy soon: a first purchase for people who registered but never bought, "
                   "a second purchase inside the activation window for first-time buyers", "buyers"),
    "churn": ("Churn risk", "who is about to stop buying", "lost customers"),
    "channel": ("Channel response", "who clicks a message, given its channel and its local send hour", "clicks"),
    "send_time": ("Send time", "the local hour at which each customer engages", None),
}

GLOSSARY = (
    ("AUC", "the chance that the model scores a random customer who did it above one who did not: "
            "0.5 is a coin toss, 1 is perfect."),
    ("Lift", "how many times more of the outcome a group picked by the model holds than a random group of "
             "the same size."),
    ("Calibration", "whether a score can be read as a probability: of the customers scored 30%, do about 3 in 10 "
                    "really do it?"),
    ("Top-3 accuracy", "how often the hour at which a customer actually engaged is among the model's three best "
                       "hours for them."),
    ("Baseline", "the simple rule a model must beat to be worth using (for example: the more recent the last "
                 "purchase, the less likely to churn)."),
    ("Best possible", "the score reached with the simulator's hidden truth; known only on simulated data, it "
                      "shows how much room is left."),
    ("Control group", "a random share of the customers a campaign targets who receive nothing, so the effect of "
                      "the message is measured rather than guessed."),
    ("Uplift", "the purchase rate of the customers who got the message minus that of the control group."),
    ("95% confidence interval", "the range the true uplift lies in, 19 times out of 20, given the sample size."),
    ("Expected value", "probability of success x value of a success x the action's lift - cost of the message, "
                       "in the currency units of the action catalogue."),
)


# =============================================================================
# entry point
# =============================================================================


def write_report(settings: Settings, out: Path | None = None) -> Path:
    """Write the self-contained HTML report, log it to MLflow (run ``report-<timestamp>``); return its path."""
    import matplotlib

    t0 = time.perf_counter()
    out = Path(out) if out is not None else settings.path(settings.paths.reports_dir) / "report.html"
    ctx = _Context(settings)
    builders = (
        ("base", "1. The customer base", "Customer base", _section_base),
        ("models", "2. The models", "Models", _section_models),
        ("channels", "3. Channels and send times", "Channels", _section_channels),
        ("policy", "4. What the policy would do today", "Policy what-if", _section_policy),
        ("uplift", "5. Control group and uplift", "Uplift vs control", _section_uplift),
    )
    sections = []
    with matplotlib.rc_context(_RC):
        for anchor, title, short, build in builders:
            sec = _Section(anchor, title, short)
            try:
                build(ctx, sec)
            except Exception as e:  # one broken source must not take the whole report down
                sec.parts.append(_error_box(f"This section could not be built: {type(e).__name__}: {e}"))
                sec.errors.append(traceback.format_exc())
                log.warning("report section %r could not be built:\n%s", title, sec.errors[-1])
            sections.append(sec)
    page = _page(ctx, sections, time.perf_counter() - t0)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    _log_to_mlflow(settings, out, ctx, sections, time.perf_counter() - t0)
    return out


def _log_to_mlflow(settings: Settings, path: Path, ctx: "_Context", sections: list, seconds: float) -> str:
    import mlflow

    from nextbest.model_contract import connect

    connect(settings)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    with mlflow.start_run(run_name=f"report-{stamp}") as run:
        mlflow.set_tags({"kind": "report", "report_sections_failed": ",".join(s.anchor for s in sections if s.errors)})
        metrics = {k: float(v) for k, v in ctx.facts.items() if isinstance(v, (int, float, np.number))
                   and np.isfinite(v)}
        metrics["report_seconds"] = round(seconds, 2)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(path), "report")
        return run.info.run_id


# =============================================================================
# data access
# =============================================================================


class _Context:
    """The report's sources, read lazily and once."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.facts: dict[str, float] = {}  # headline figures (also logged as MLflow metrics)
        self.summary: list[tuple[str, str, str]] = []  # (figure, label, tone) cards at the top
        self._cache: dict = {}

    # --- world ------------------------------------------------------------------
    @property
    def simulated(self) -> bool:
        return (self.settings.world_dir / "truth.parquet").exists()

    def _table(self, name: str, columns: list[str]) -> pd.DataFrame:
        from nextbest.contract import find_table

        path = find_table(self.settings.world_dir, name)
        if path is None:
            raise FileNotFoundError(f"no {name} table in {self.settings.world_dir}")
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            have = set(pq.read_schema(path).names)
            df = pd.read_parquet(path, columns=[c for c in columns if c in have])
        else:
            head = pd.read_csv(path, nrows=0).columns
            df = pd.read_csv(path, usecols=[c for c in columns if c in head], dtype=str)
            for c in ("registered_at", "event_timestamp"):
                if c in df:
                    df[c] = pd.to_datetime(df[c], utc=True, format="ISO8601")
            if "amount" in df:
                df["amount"] = pd.to_numeric(df["amount"], errors="coerce")
        for c in columns:
            if c not in df:
                df[c] = None
        return df

    def customers(self) -> pd.DataFrame:
        if "customers" not in self._cache:
            cols = ["customer_id", "registered_at", "timezone", "segment"]
            df = self._table("customers", cols)
            df["customer_id"] = df["customer_id"].astype(str)
            df["timezone"] = df["timezone"].astype(object).where(df["timezone"].notna(), "UTC").astype(str)
            self._cache["customers"] = df
        return self._cache["customers"]

    def events(self) -> pd.DataFrame:
        if "events" not in self._cache:
            df = self._table("events", ["customer_id", "event_timestamp", "event_type", "amount"])
            df["event_type"] = df["event_type"].astype("category")
            self._cache["events"] = df
        return self._cache["events"]

    def event_types(self) -> set[str]:
        return {str(t) for t in self.events()["event_type"].dropna().unique()}

    # --- features -----------------------------------------------------------------
    def snapshot_times(self) -> list[pd.Timestamp]:
        if "times" not in self._cache:
            from features.store import snapshot_times

            self._cache["times"] = snapshot_times(self.settings)
        return self._cache["times"]

    def view(self, view: str, columns: list[str], times: list[pd.Timestamp]) -> pd.DataFrame:
        """Rows of one feature view at the given snapshot times, straight from the pipeline's Parquet file."""
        import pyarrow as pa
        import pyarrow.dataset as ds

        path = self.settings.features_dir / f"{view}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `nextbest features build`")
        d = ds.dataset(path)
        ts_type = d.schema.field("event_timestamp").type
        have = set(d.schema.names)
        cols = ["customer_id", "event_timestamp", *[c for c in columns if c in have]]
        table = d.to_table(columns=cols, filter=ds.field("event_timestamp").isin(pa.array(list(times), type=ts_type)))
        df = table.to_pandas()
        df["customer_id"] = df["customer_id"].astype(str)
        df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
        for c in columns:
            if c not in df:
                df[c] = np.nan
        return df

    def latest(self, view: str, columns: list[str]) -> pd.DataFrame:
        t = self.snapshot_times()[-1]
        return self.view(view, columns, [t]).set_index("customer_id")

    # --- scores -------------------------------------------------------------------
    def scores(self) -> tuple[pd.DataFrame, Path, bool]:
        """Batch decisions for the whole base at the data's end; (frame, path, produced now)."""
        if "scores" not in self._cache:
            path = self.settings.data_dir / "scores" / "latest.parquet"
            made = False
            if not path.exists():
                from serving.batch import score

                score(self.settings, None, path)
                made = True
            self._cache["scores"] = (pd.read_parquet(path), path, made)
        return self._cache["scores"]


def _previous_snapshot(times: list[pd.Timestamp], days: int) -> pd.Timestamp | None:
    if len(times) < 2:
        return None
    target = times[-1] - pd.Timedelta(days=days)
    return min(times[:-1], key=lambda t: abs(t - target))


# =============================================================================
# HTML building blocks
# =============================================================================


@dataclass
class _Section:
    anchor: str
    title: str
    short: str = ""
    lead: str = ""
    parts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, *parts: str) -> None:
        self.parts.extend(p for p in parts if p)


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _n(x) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:,.0f}"


def _pct(x, digits: int = 0) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}%"


def _signed(x, digits: int = 0) -> str:
    return f"{x:+,.{digits}f}"


def _p(text: str, cls: str = "") -> str:
    return f'<p class="{cls}">{text}</p>' if cls else f"<p>{text}</p>"


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _error_box(text: str) -> str:
    return f'<div class="error">{_e(text)}</div>'


def _missing(text: str) -> str:
    return f'<div class="missing">{text}</div>'


def _cards(items: list[tuple[str, str, str]]) -> str:
    """(figure, label, tone) -> a row of key-figure cards."""
    cells = "".join(
        f'<div class="card {tone}"><div class="figure">{_e(fig)}</div><div class="label">{_e(label)}</div></div>'
        for fig, label, tone in items)
    return f'<div class="cards">{cells}</div>'


def _table(df: pd.DataFrame, cls: str = "", shade: bool = False, index: bool = True) -> str:
    """A plain HTML table; `shade` tints numeric cells by their size within the table."""
    vals = df.select_dtypes("number").to_numpy(dtype=float) if shade else None
    top = np.nanmax(vals) if vals is not None and vals.size and np.isfinite(vals).any() else None
    head = "".join(f"<th>{_e(c)}</th>" for c in ([df.index.name or ""] if index else []) + list(df.columns))
    rows = []
    for idx, row in df.iterrows():
        cells = [f'<th scope="row">{_e(idx)}</th>'] if index else []
        for v in row:
            style = ""
            if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
                text = _n(v) if float(v).is_integer() or abs(v) >= 100 else f"{v:,.2f}"
                if top:
                    a = 0.08 + 0.5 * max(float(v), 0) / top
                    style = f' style="background:rgba(37,99,235,{a:.2f})"'
                cells.append(f'<td class="num"{style}>{text}</td>')
            else:
                cells.append(f"<td>{_e(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{_e(summary)}</summary>{body}</details>"


# =============================================================================
# charts (matplotlib, inline SVG)
# =============================================================================

_RC = {
    "svg.fonttype": "none",  # text stays text: small, sharp, searchable
    "svg.hashsalt": "nextbest-report",  # stable element ids
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.labelcolor": INK,
    "axes.edgecolor": "#d1d5db",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelcolor": INK,
    "ytick.labelcolor": INK,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "text.color": INK,
}


def _figure(w: float = 6.0, h: float = 3.4):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.06,
                metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    s = buf.getvalue()
    s = s[s.index("<svg"):]
    s = re.sub(r"<metadata>.*?</metadata>", "", s, flags=re.S)
    s = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", s)  # inline SVG in HTML needs no namespace declarations
    m = re.match(r'<svg([^>]*?)width="([\d.]+)pt" height="([\d.]+)pt"', s)
    if m:
        w = float(m.group(2)) * 4 / 3
        size = f'width="100%" overflow="visible" style="max-width:{w:.0f}px;height:auto"'
        s = s.replace(m.group(0), f"<svg{m.group(1)}{size}", 1)
    return s


def _chart(fig, title: str, note: str = "", wide: bool = False) -> str:
    svg = _svg(fig).replace("<svg", f'<svg role="img" aria-label="{_e(title)}"', 1)
    cap = f"<figcaption>{note}</figcaption>" if note else ""
    cls = "chart wide" if wide else "chart"
    return f'<figure class="{cls}"><div class="chart-title">{_e(title)}</div>{svg}{cap}</figure>'


def _grid(*charts: str) -> str:
    return '<div class="grid">' + "".join(c for c in charts if c) + "</div>"


def _barh_labels(ax, bars, texts, color=INK) -> None:
    xmax = ax.get_xlim()[1]
    for bar, text in zip(bars, texts):
        w = bar.get_width()
        ax.text(w + xmax * 0.01, bar.get_y() + bar.get_height() / 2, text, va="center", ha="left", fontsize=9,
                color=color)


# =============================================================================
# readable names
# =============================================================================

_FEATURE_TEXT = {
    "tenure_days": "tenure in days",
    "segment_code": "customer segment (B2C / B2B)",
    "region_code": "region",
    "company_size_code": "company size",
    "sector_code": "sector or store type",
    "stage_code": "lifecycle stage",
    "days_since_registration": "days since registration",
    "days_since_first_purchase": "days since first purchase",
    "days_since_last_purchase": "days since last purchase",
    "n_purchases": "number of purchases",
    "second_purchase_in_window": "second purchase in the activation window",
    "rfm_segment": "RFM segment this month",
    "rfm_segment_prev": "RFM segment last month",
    "rfm_dropped": "dropped an RFM segment this month",
    "n_engagements": "number of engagements",
    "sent_7d_total": "messages received in the last 7 days",
    "sent_30d_total": "messages received in the last 30 days",
    "msg_channel_code": "channel of the message",
    "msg_local_hour": "local hour the message is sent",
    "ctx_local_hour": "local hour of the trigger",
    "ctx_weekday": "weekday of the trigger",
    "ctx_day_part": "part of the day of the trigger",
    "ctx_trigger_code": "trigger event",
    "ctx_trigger_channel_code": "channel of the trigger",
    "ctx_near_store": "customer near a store",
    "ctx_weather_code": "weather",
}
_ENGAGEMENT_TEXT = {
    "sent": "{c} messages received to date",
    "opened": "{c} messages opened to date",
    "clicked": "{c} messages clicked to date",
    "converted": "{c} messages that led to a conversion",
    "open_rate": "{c} open rate",
    "click_rate": "{c} click rate",
    "consecutive_ignores": "{c} messages ignored in a row",
    "days_since_response": "days since last response to {c}",
}


_ACTION_TEXT = {
    "no_action": "No action",
    "activation_nudge_incentive": "Activation nudge with incentive",
    "second_use_nudge": "Second-use nudge",
    "cross_sell": "Cross-sell",
    "anti_attrition_offer": "Anti-attrition offer",
    "win_back": "Win-back",
}


def action_text(action: str) -> str:
    return _ACTION_TEXT.get(action) or action.replace("_", " ").capitalize()


def feature_text(name: str) -> str:
    """A feature name in words, e.g. ``click_rate_sms`` -> "SMS click rate"."""
    if name in _FEATURE_TEXT:
        return _FEATURE_TEXT[name]
    m = re.fullmatch(r"(frequency|monetary)_(\d+)d", name)
    if m:
        return f"{'purchases' if m.group(1) == 'frequency' else 'spend'} in the last {m.group(2)} days"
    m = re.fullmatch(r"(consent|reachable)_(\w+)", name)
    if m and m.group(2) in CHANNEL_LABEL:
        c = CHANNEL_LABEL[m.group(2)]
        return f"{c} consent" if m.group(1) == "consent" else f"{c} address known"
    m = re.fullmatch(r"hour_share_(\d\d)", name)
    if m:
        return f"share of activity at {m.group(1)}:00 local time"
    m = re.fullmatch(r"weekday_share_(\d)", name)
    if m:
        return f"share of activity on {WEEKDAY_NAMES[int(m.group(1))]}s"
    m = re.fullmatch(r"sent_(7d|30d)_(\w+)", name)
    if m and m.group(2) in CHANNEL_LABEL:
        return f"{CHANNEL_LABEL[m.group(2)]} messages in the last {m.group(1)[:-1]} days"
    m = re.fullmatch(r"days_since_action_(\w+)", name)
    if m:
        return f"days since the last '{action_text(m.group(1)).lower()}' message"
    for key, text in _ENGAGEMENT_TEXT.items():
        if name.startswith(key + "_") and name[len(key) + 1:] in CHANNEL_LABEL:
            return text.format(c=CHANNEL_LABEL[name[len(key) + 1:]])
    return name.replace("_", " ")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _rfm_label(segment: str) -> str:
    """An RFM segment name of the vocabulary as marketers read it: never_bought -> Never bought."""
    return segment.replace("_", " ").capitalize()


def _stage_labels(settings: Settings) -> dict[str, str]:
    f = settings.features
    return {
        "registered": "Registered, never bought",
        "activating": f"First purchase, in the {f.activation_window_days}-day window",
        "active": f"Active (bought in the last {f.at_risk_days} days)",
        "at_risk": f"At risk (last purchase {f.at_risk_days}-{f.lapsed_days} days ago)",
        "lapsed": f"Lapsed (no purchase for {f.lapsed_days}+ days)",
    }


def _short_stage(stage: str) -> str:
    return {"registered": "Registered", "activating": "First purchase", "active": "Active", "at_risk": "At risk",
            "lapsed": "Lapsed"}[stage]


def _date(t) -> str:
    t = pd.Timestamp(t)
    return f"{t.day} {t:%b %Y}"


# =============================================================================
# 1. the base
# =============================================================================


def _section_base(ctx: _Context, sec: _Section) -> None:
    s = ctx.settings
    times = ctx.snapshot_times()
    latest = times[-1]
    prev = _previous_snapshot(times, MOVEMENT_DAYS)
    lc = ctx.view("customer_lifecycle", ["stage_code"], [t for t in (latest, prev) if t is not None])
    now = lc[lc["event_timestamp"] == latest].set_index("customer_id")["stage_code"]
    now = now.dropna().astype(int).clip(0, len(STAGES) - 1)
    n = len(now)
    counts = now.value_counts().reindex(range(len(STAGES)), fill_value=0)
    before = None
    if prev is not None:
        b = lc[lc["event_timestamp"] == prev].set_index("customer_id")["stage_code"].dropna().astype(int)
        before = b.value_counts().reindex(range(len(STAGES)), fill_value=0)
    labels = _stage_labels(s)
    gap_days = (latest - prev).days if prev is not None else 0
    sec.lead = (f"Who is in which phase of the lifecycle on {_date(latest)} (the latest feature snapshot), "
                f"and how customers moved since {_date(prev)} ({gap_days} days earlier)." if prev is not None else
                f"Who is in which phase of the lifecycle on {_date(latest)} (the latest feature snapshot).")
    ctx.facts.update({"customers": n, **{f"stage_{st}": int(counts[i]) for i, st in enumerate(STAGES)}})

    # movement
    flows = None
    if prev is not None:
        m = pd.DataFrame({"now": now}).join(b.rename("before"), how="left")
        bef, nw = m["before"], m["now"]
        R, A, AC, AR, L = (STAGES.index(x) for x in ("registered", "active", "activating", "at_risk", "lapsed"))
        flows = [
            ("New registrations", int(bef.isna().sum()), GOOD),
            ("Made a first purchase", int(((bef == R) & (nw != R)).sum()), GOOD),
            ("Won back (at risk or lapsed → active)", int((bef.isin([AR, L]) & nw.isin([A, AC])).sum()), GOOD),
            ("Slipped to at risk", int((bef.isin([A, AC]) & (nw == AR)).sum()), BAD),
            ("Lapsed", int((bef.notna() & (bef != L) & (nw == L)).sum()), BAD),
        ]
        ctx.facts.update({"lapsed_recently": flows[4][1], "won_back_recently": flows[2][1]})

    # chart: customers per stage
    active_share = counts[STAGES.index("active")] / max(n, 1)
    fig = _figure(5.2, 2.9)
    ax = fig.add_subplot()
    order = list(range(len(STAGES)))[::-1]
    bars = ax.barh([labels[STAGES[i]] for i in order], [counts[i] for i in order],
                   color=[STAGE_COLOR[STAGES[i]] for i in order])
    ax.set_xlim(0, max(counts.max(), 1) * 1.32)
    ax.xaxis.set_major_locator(_ticks())
    texts = []
    for i in order:
        t = f"{counts[i]:,} ({counts[i] / max(n, 1):.0%})"
        if before is not None:
            t += f"  {_signed(counts[i] - before[i])}"
        texts.append(t)
    _barh_labels(ax, bars, texts)
    ax.set_xlabel("customers")
    ax.xaxis.set_major_formatter(_thousands())
    title = f"{active_share:.0%} of the {n:,} customers are active"
    if flows:
        title += f"; {flows[4][1]:,} lapsed in the last {gap_days} days"
    note = "Number of customers per lifecycle stage" + (
        f"; the signed figure is the change since {_date(prev)}." if prev is not None else ".")
    charts = [_chart(fig, title, note)]

    if flows:
        fig = _figure(5.2, 2.9)
        ax = fig.add_subplot()
        names = [f[0] for f in flows][::-1]
        vals = [f[1] for f in flows][::-1]
        bars = ax.barh(names, vals, color=[f[2] for f in flows][::-1])
        ax.set_xlim(0, max(max(vals), 1) * 1.2)
        _barh_labels(ax, bars, [f"{v:,}" for v in vals])
        ax.set_xlabel(f"customers, {_date(prev)} to {_date(latest)}")
        ax.xaxis.set_major_formatter(_thousands())
        good = flows[1][1] + flows[2][1]
        bad = flows[3][1] + flows[4][1]
        verdict = "more customers moved up than down" if good >= bad else "more customers moved down than up"
        charts.append(_chart(fig, f"Last {gap_days} days: {flows[2][1]:,} won back, {flows[4][1]:,} lapsed - "
                                  f"{verdict}",
                             "Moves between lifecycle stages; green moves are good news, red ones call for "
                             "anti-attrition or win-back programmes."))
    sec.add(_grid(*charts))

    # stage x customer segment
    cust = ctx.customers().set_index("customer_id")
    seg = cust["segment"].astype(object).reindex(now.index).fillna("unknown").astype(str)
    tab = pd.crosstab(now.map(lambda i: _short_stage(STAGES[i])), seg)
    tab = tab.reindex([_short_stage(x) for x in STAGES]).fillna(0).astype(int)
    tab.index.name = "lifecycle stage"
    tab.columns = [str(c).upper() if len(str(c)) <= 3 else str(c) for c in tab.columns]
    total = tab.sum(axis=1)
    if list(tab.columns) == ["unknown"] or len(tab.columns) > 8:
        tab = tab.iloc[:, :0]  # no usable segment attribute: totals only
    tab["all customers"] = total
    if before is not None:
        tab[f"change in {gap_days} days"] = [_signed(counts[i] - before[i]) for i in range(len(STAGES))]

    # RFM segments
    rfm = ctx.latest("customer_rfm", ["rfm_segment", "rfm_segment_prev", "rfm_dropped"])
    top = len(RFM_SEGMENTS) - 1
    rs = rfm["rfm_segment"].dropna().astype(int).clip(0, top)
    rp = rfm["rfm_segment_prev"].dropna().astype(int).clip(0, top)
    dropped = rfm[rfm["rfm_dropped"] == 1]
    n_drop = len(dropped)
    ctx.facts["rfm_dropped"] = n_drop
    month = latest.tz_convert("UTC").replace(day=1, hour=0, minute=0, second=0, microsecond=0, nanosecond=0)
    seg_tab = pd.DataFrame({
        "this month": rs.value_counts().reindex(range(top + 1), fill_value=0).to_numpy(),
        "last month": rp.value_counts().reindex(range(top + 1), fill_value=0).to_numpy(),
    }, index=pd.Index([_rfm_label(x) for x in RFM_SEGMENTS], name="RFM segment"))
    seg_tab["change"] = [_signed(v) for v in seg_tab["this month"] - seg_tab["last month"]]
    moves = ""
    if n_drop:
        label = lambda i: _rfm_label(RFM_SEGMENTS[i]).lower()  # noqa: E731
        pairs = (dropped["rfm_segment_prev"].astype(int).map(label) + " → "
                 + dropped["rfm_segment"].astype(int).map(label)).value_counts().head(3)
        moves = " Most common drops: " + ", ".join(f"{k} ({v:,})" for k, v in pairs.items()) + "."
    sec.add(
        '<div class="two">',
        "<div><h4>Customers by lifecycle stage" + (" and segment" if tab.shape[1] > 2 else "") + "</h4>"
        + _table(tab, shade=False) + "</div>",
        "<div><h4>Monthly RFM segments</h4>" + _table(seg_tab) + _p(
            f"<strong>{n_drop:,} customers dropped an RFM segment</strong> at the {month:%B %Y} recompute "
            f"- the trigger of the anti-attrition programme.{_e(moves)}") + "</div>",
        "</div>",
    )
    f = s.features
    sec.add(_note(
        f"Stages follow the configured windows: activation window {f.activation_window_days} days, at risk after "
        f"{f.at_risk_days} days without a purchase, lapsed after {f.lapsed_days}. RFM segments are recomputed at "
        "each month start from purchases: loyal = bought recently and 12+ times in a year, regular = 4+ times, "
        "occasional = any other buyer."))
    if prev is not None:
        before_names = m["before"].map(lambda i: _short_stage(STAGES[int(i)]) if pd.notna(i) else "Not yet registered")
        trans = pd.crosstab(before_names, m["now"].map(lambda i: _short_stage(STAGES[int(i)])))
        order_rows = [r for r in ["Not yet registered", *[_short_stage(x) for x in STAGES]] if r in trans.index]
        trans = trans.reindex(index=order_rows, columns=[_short_stage(x) for x in STAGES], fill_value=0)
        trans.index.name = f"{_date(prev)} \\ {_date(latest)}"
        sec.add(_details("All stage transitions (rows: stage before, columns: stage now)", _table(trans, shade=True)))
    ctx.summary += [
        (f"{n:,}", "customers", ""),
        (f"{active_share:.0%}", "active buyers", "good"),
    ]
    if flows:
        ctx.summary.append((f"{flows[4][1]:,}", f"lapsed in {gap_days} days", "bad"))
    ctx.summary.append((f"{n_drop:,}", "dropped an RFM segment", "bad" if n_drop else ""))


def _ticks(n: int = 4):
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(n, integer=True)


def _thousands():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda x, _: f"{x:,.0f}")


def _points():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda x, _: "0" if abs(x) < 1e-12 else f"{100 * x:+g}")


def _percent(digits: int = 0):
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda x, _: f"{100 * x:.{digits}f}%")


# =============================================================================
# 2. the models
# =============================================================================


@dataclass
class _Version:
    version: str
    aliases: list[str]
    run_id: str | None
    created: pd.Timestamp
    metrics: dict
    tags: dict
    params: dict


def _skip_reason(ctx: _Context, head: str) -> str:
    """Why a head has no model, in the words of training's own checks when the data explains it."""
    try:
        types = ctx.event_types()
    except Exception:
        types = set()
    if head == "channel" and "message_sent" not in types:
        return ("the data holds no sent messages (a transactions-only log), so there is nothing to learn "
                "channel responses from; decisions use the channels' base rates")
    if head == "send_time" and not types & {"message_opened", "message_clicked"}:
        return ("the data holds no message opens or clicks, so there are no engagement hours to learn from; "
                "messages go out at 10:00 local time")
    if head == "activation" and _registration_is_first_purchase(ctx):
        return ("every customer's registration is their first purchase (a purchase log has no sign-up dates), so "
                "there are no registrants who have yet to buy, and too few first-time buyers inside the activation "
                "window to learn from; decisions use the stage priors")
    return "no model is registered for this head (run `nextbest train`; its output says why a head was skipped)"


def _registration_is_first_purchase(ctx: _Context) -> bool:
    try:
        ev = ctx.events()
        cust = ctx.customers()
    except Exception:
        return False
    pur = ev[ev["event_type"] == "purchase"]
    if pur.empty or cust.empty:
        return False
    first = pur.groupby(pur["customer_id"].astype(str), observed=True)["event_timestamp"].min()
    reg = cust.set_index("customer_id")["registered_at"]
    gap = (first.reindex(reg.index) - pd.to_datetime(reg, utc=True)).dt.total_seconds()
    return bool((gap.notna() & (gap.abs() <= 86400)).mean() >= 0.99)


def _versions(client, name: str) -> list[_Version]:
    try:
        found = client.search_model_versions(f"name='{name}'")
    except Exception:
        return []
    aliases: dict[str, list[str]] = {}
    for alias in ("champion", "challenger"):  # version searches do not always carry the aliases
        try:
            aliases.setdefault(str(client.get_model_version_by_alias(name, alias).version), []).append(alias)
        except Exception:
            pass
    out = []
    for v in found:
        run = None
        if v.run_id:
            try:
                run = client.get_run(v.run_id)
            except Exception:
                run = None
        out.append(_Version(
            str(v.version), sorted(set(v.aliases or []) | set(aliases.get(str(v.version), []))), v.run_id,
            pd.Timestamp(int(v.creation_timestamp), unit="ms", tz="UTC"),
            dict(run.data.metrics) if run else {}, dict(run.data.tags) if run else {},
            dict(run.data.params) if run else {}))
    return sorted(out, key=lambda v: int(v.version))


def _artifact(run_id: str | None, path: str, tmp: Path):
    """A run artifact as a local path, or None when it was not logged."""
    if not run_id:
        return None
    import os

    import mlflow

    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    saved = os.environ.get(key)
    os.environ[key] = "false"
    try:
        local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path,
                                                         dst_path=str(tmp / run_id)))
    except Exception:
        return None
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved
    return local if local.exists() else None


def _json_artifact(run_id, path, tmp) -> dict | None:
    p = _artifact(run_id, path, tmp)
    if p is None:
        return None
    try:
        return json.loads(p.read_text())
    except ValueError:
        return None


def _section_models(ctx: _Context, sec: _Section) -> None:
    import tempfile

    from mlflow import MlflowClient

    from nextbest.model_contract import connect, model_name

    s = ctx.settings
    connect(s)
    client = MlflowClient()
    sec.lead = ("The four models behind every decision: the version in use (@champion), what it predicts, how "
                "well it did on recent data it never saw, and what it looks at.")
    sec.add(_glossary_inline(("AUC", "Lift", "Calibration", "Top-3 accuracy", "Baseline", "Best possible")))
    overview = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for head in HEADS:
            label, what, _ = HEAD_TEXT[head]
            versions = _versions(client, model_name(s, head))
            if not versions:
                reason = _skip_reason(ctx, head)
                sec.add(f'<h3 id="model-{head}">{_e(label)} model</h3>',
                        _missing(f"<strong>Not trained:</strong> {_e(reason)}."))
                overview.append((label, "not trained", "-", "-", "-"))
                continue
            champ = next((v for v in versions if "champion" in v.aliases), None)
            current = champ or versions[-1]
            earlier = [v for v in versions if int(v.version) < int(current.version)]
            previous = earlier[-1] if earlier else None
            sec.add(*_model_block(ctx, head, current, champ is not None, previous, versions, tmp))
            key = PRIMARY[head]
            mt, mb, mo = (current.metrics.get(f"{p}_{key}") for p in ("test", "baseline", "oracle"))
            fmt = (lambda x: "-" if x is None else f"{x:.3f}") if key == "auc" else (
                lambda x: "-" if x is None else f"{x:.0%}")
            overview.append((label, f"v{current.version}" + (" (@champion)" if champ else ""), fmt(mt), fmt(mb),
                             fmt(mo)))
            if mt is not None:
                ctx.facts[f"model_{head}_{key}"] = mt
    table = pd.DataFrame(overview, columns=["model", "version in use", "quality", "baseline", "best possible"])
    table = table.set_index("model")
    sec.parts.insert(1, _table(table, cls="compact") + _note(
        "Quality is AUC for activation, churn and channel response, top-3 accuracy for send time; all measured on "
        "the most recent weeks of data, held out from training."))
    trained = [o for o in overview if o[1] != "not trained"]
    ctx.summary.append((f"{len(trained)} of {len(HEADS)}", "models in use", "" if len(trained) == len(
        HEADS) else "bad"))


def _glossary_inline(terms: tuple[str, ...]) -> str:
    g = dict(GLOSSARY)
    items = "".join(f"<li><strong>{_e(t)}</strong>: {_e(g[t])}</li>" for t in terms)
    return f'<ul class="gloss">{items}</ul>'


def _model_block(ctx: _Context, head: str, v: _Version, is_champion: bool, previous: _Version | None,
                 versions: list[_Version], tmp: Path) -> list[str]:
    label, what, positives = HEAD_TEXT[head]
    key = PRIMARY[head]
    out = [f'<h3 id="model-{head}">{_e(label)} model <span class="tag">v{_e(v.version)}'
           f'{" @champion" if is_champion else " (no @champion yet)"}</span></h3>']
    contract = _json_artifact(v.run_id, "contract.json", tmp) or {}
    definition = contract.get("label_definition") or v.tags.get("label_definition", "")
    tr = contract.get("time_range") or {}
    text = f"<strong>Predicts</strong> {_e(what)}."
    if definition:
        text += f" <span class=\"muted\">Exact definition: {_e(definition)}.</span>"
    out.append(_p(text))
    mt, mb, mo = (v.metrics.get(f"{p}_{key}") for p in ("test", "baseline", "oracle"))
    baseline_name = v.tags.get("baseline", "simple rule")
    if key == "auc":
        def fmt(x):
            return "-" if x is None else f"{x:.3f}"
        cards = [(fmt(mt), "AUC of this model", "good" if mb is not None and mt is not None and mt > mb else ""),
                 (fmt(mb), f"baseline: {baseline_name}", "")]
    else:
        def fmt(x):
            return "-" if x is None else f"{x:.0%}"
        cards = [(fmt(mt), "top-3 accuracy of this model", "good" if mb is not None and mt is not None and mt > mb
                  else ""), (fmt(mb), f"baseline: {baseline_name}", "")]
    if mo is not None:
        cards.append((fmt(mo), "best possible (simulator's truth)", ""))
    if key == "auc" and "test_lift_top_decile" in v.metrics:
        cards.append((f"{v.metrics['test_lift_top_decile']:.1f}x", "lift in the top 10% of scores", ""))
    if previous is not None and f"test_{key}" in previous.metrics and mt is not None:
        d = mt - previous.metrics[f"test_{key}"]
        cards.append((f"{d:+.3f}" if key == "auc" else f"{100 * d:+.1f} pts",
                      f"vs previous version v{previous.version}", "good" if d > 0 else ("bad" if d < 0 else "")))
    out.append(_cards(cards))
    if tr.get("test_from"):
        out.append(_note(f"Tested on {_date(tr['test_from'])} - {_date(tr['test_to'])}, after the training period; "
                         f"{_n(float(v.params.get('rows_test', 'nan')))} test rows."))

    preds_path = _artifact(v.run_id, "evaluation/test_predictions.parquet", tmp)
    charts = []
    if preds_path is None:
        out.append(_missing("The held-out predictions of this version were not logged (it was trained before runs "
                            "logged them), so its gains and calibration charts cannot be drawn; they appear for every "
                            "version trained from now on."))
    else:
        preds = pd.read_parquet(preds_path)
        prev_preds = None
        if previous is not None:
            pp = _artifact(previous.run_id, "evaluation/test_predictions.parquet", tmp)
            prev_preds = pd.read_parquet(pp) if pp is not None else None
        if head == "send_time":
            charts.append(_hour_accuracy_chart(preds, v, label))
        else:
            charts.append(_gains_chart(preds, prev_preds, previous, label, positives))
            charts.append(_calibration_chart(preds, label))
    importance = _json_artifact(v.run_id, "feature_importance.json", tmp)
    if importance:
        charts.append(_drivers_chart(importance, label))
    charts.append(_comparison_panel(ctx, head, v, previous, versions, fmt))
    out.append(_grid(*charts))
    return out


def _comparison_panel(ctx: _Context, head: str, v: _Version, previous: _Version | None, versions: list[_Version],
                      fmt) -> str:
    """The version in use beside the previous one (and a challenger that was not promoted)."""
    key = PRIMARY[head]
    mt = v.metrics.get(f"test_{key}")
    name = "AUC" if key == "auc" else "top-3 accuracy"
    challenger = next((x for x in versions if "challenger" in x.aliases and x.version != v.version), None)
    if challenger is not None and int(challenger.version) < int(v.version):
        challenger = None
    if challenger is not None:
        title = (f"v{v.version} stays in use: the newer v{challenger.version} did not beat it by the margin "
                 f"({name} {fmt(challenger.metrics.get(f'test_{key}'))} vs {fmt(mt)})")
    elif previous is None:
        title = "First version of this model: nothing to compare with yet"
    elif f"test_{key}" in previous.metrics and mt is not None:
        d = mt - previous.metrics[f"test_{key}"]
        gap = f"{d:+.3f}" if key == "auc" else f"{100 * d:+.1f} points"
        if abs(d) < 5e-4:
            title = f"v{v.version} scores as well as the previous version v{previous.version} ({name} {fmt(mt)})"
        else:
            title = (f"v{v.version} {'beats' if d > 0 else 'trails'} the previous version v{previous.version} by "
                     f"{gap} {name}")
    else:
        title = f"v{v.version} replaces v{previous.version}; the previous version logged no comparable metric"
    rows = []
    f2 = (lambda y: "-" if y is None else f"{y:.3f}") if key == "auc" else (lambda y: "-" if y is None else f"{y:.1%}")
    for x in reversed(versions[-6:]):
        m = x.metrics
        rows.append({"version": f"v{x.version}", "aliases": ", ".join("@" + a for a in x.aliases) or "-",
                     "trained": x.created.strftime("%Y-%m-%d").replace("-", "\u2011"), name: f2(m.get(f"test_{key}")),
                     "test rows": _n(float(x.params.get("rows_test", "nan")))})
    notes = []
    if challenger is not None:
        notes.append(f"v{challenger.version} (@challenger) was not promoted: it did not beat v{v.version} by the "
                     f"margin of {ctx.settings.training.promotion_margin} on the same test window.")
    notes.append(f"A new version becomes @champion only when it beats the champion by "
                 f"{ctx.settings.training.promotion_margin} {name} on the same held-out window; each row's figures "
                 f"are on that version's own test window.")
    body = _table(pd.DataFrame(rows).set_index("version"), cls="compact") + "".join(_note(_e(t)) for t in notes)
    return f'<div class="panel"><div class="chart-title">{_e(title)}</div>{body}</div>'


def _gains(y: np.ndarray, p: np.ndarray, grid: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    order = np.lexsort((rng.random(len(p)), -p))  # ties in random order
    cum = np.concatenate([[0.0], np.cumsum(y[order])]) / max(y.sum(), 1)
    return np.interp(grid * len(p), np.arange(len(p) + 1), cum)


def _gains_chart(preds: pd.DataFrame, prev_preds, previous, label: str, positives: str) -> str:
    y = preds["label"].to_numpy(float)
    p = preds["prediction"].to_numpy(float)
    grid = np.linspace(0, 1, 101)
    g = _gains(y, p, grid)
    top = g[10]
    lift = top / 0.10
    fig = _figure(5.0, 3.5)
    ax = fig.add_subplot()
    ax.plot(grid, grid, color=BASE, ls="--", lw=1.2, label="random selection")
    if "oracle" in preds and preds["oracle"].notna().all():
        ax.plot(grid, _gains(y, preds["oracle"].to_numpy(float), grid), color=ORACLE, lw=1.2, ls=":",
                label="best possible")
    if prev_preds is not None and "prediction" in prev_preds:
        ax.plot(grid, _gains(prev_preds["label"].to_numpy(float), prev_preds["prediction"].to_numpy(float), grid),
                color=PREVIOUS, lw=1.4, label=f"previous version v{previous.version}")
    ax.plot(grid, g, color=MODEL, lw=2.2, label="this model")
    ax.scatter([0.1], [top], color=MODEL, zorder=5, s=22)
    ax.axvline(0.1, color=MUTED, lw=0.8, ls=":")
    ax.annotate(f"top 10%: {top:.0%}", (0.1, top), xytext=(8, -6), textcoords="offset points",
                fontsize=9, color=MODEL, va="top", fontweight="bold")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_formatter(_percent())
    ax.yaxis.set_major_formatter(_percent())
    ax.set_xlabel("customers contacted, highest scores first")
    ax.set_ylabel(f"share of all {positives} found")
    ax.grid(True)
    ax.legend(loc="lower right")
    title = f"{label} model: the top 10% of scores hold {top:.0%} of {positives} - {lift:.1f}x better than chance"
    note = (f"Gains chart on held-out data: contacting the customers the model scores highest first reaches "
            f"{positives} much faster than picking at random (dashed line). {len(y):,} test rows, "
            f"{y.mean():.1%} positive.")
    return _chart(fig, title, note)


def _calibration_chart(preds: pd.DataFrame, label: str) -> str:
    y = preds["label"].to_numpy(float)
    p = preds["prediction"].to_numpy(float)
    # ten equal-width score bands up to the 99.5th percentile (the last band takes the rest); sparse bands dropped
    top = float(np.quantile(p, 0.995)) or float(p.max()) or 1.0
    idx = np.minimum((p / top * 10).astype(int), 9)
    frame = pd.DataFrame({"b": idx, "p": p, "y": y}).groupby("b").agg(p=("p", "mean"), y=("y", "mean"),
                                                                        n=("y", "size"))
    frame = frame[frame["n"] >= max(20, len(p) // 1000)]
    ece = float((frame["n"] * (frame["p"] - frame["y"]).abs()).sum() / frame["n"].sum())
    fig = _figure(5.0, 3.5)
    ax = fig.add_subplot()
    hi = float(max(frame["p"].max(), frame["y"].max(), 0.05)) * 1.08
    hi = min(hi, 1.0)
    ax.plot([0, hi], [0, hi], color=BASE, ls="--", lw=1.2, label="perfectly calibrated")
    ax.plot(frame["p"], frame["y"], color=MODEL, lw=1.6, label="this model")
    ax.scatter(frame["p"], frame["y"], s=12 + 120 * np.sqrt(frame["n"] / frame["n"].max()), color=MODEL, zorder=5,
               alpha=0.85)
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.xaxis.set_major_formatter(_percent())
    ax.yaxis.set_major_formatter(_percent())
    ax.set_xlabel("predicted probability (group average)")
    ax.set_ylabel("observed rate in the group")
    ax.grid(True)
    ax.legend(loc="upper left")
    if ece < 0.02:
        title = f"{label} scores can be read as probabilities: predicted and observed rates differ by " \
                f"{100 * ece:.1f} points on average"
    else:
        title = f"{label} scores are off by {100 * ece:.1f} points on average: use them to rank customers, " \
                f"not as exact probabilities"
    note = ("Calibration on held-out data: customers are grouped into score bands; each dot compares the band's "
            "average score with how often the outcome really happened (bigger dot = more customers).")
    return _chart(fig, title, note)


def _circular(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a.astype(int) - b.astype(int)) % 24
    return np.minimum(d, 24 - d)


def _hour_accuracy_chart(preds: pd.DataFrame, v: _Version, label: str) -> str:
    y = preds["label"].to_numpy(int)
    ks = np.arange(0, 7)
    model = np.array([(_circular(y, preds["top1"].to_numpy()) <= k).mean() for k in ks])
    fixed_hour = int(np.bincount(y, minlength=24).argmax())
    fixed = np.array([(_circular(y, np.full(len(y), fixed_hour)) <= k).mean() for k in ks])
    fig = _figure(5.0, 3.5)
    ax = fig.add_subplot()
    ax.plot(ks, fixed, color=BASE, ls="--", marker="o", ms=4, lw=1.2,
            label=f"one hour for everyone ({fixed_hour}:00)")
    if "oracle_top1" in preds:
        orc = np.array([(_circular(y, preds["oracle_top1"].to_numpy()) <= k).mean() for k in ks])
        ax.plot(ks, orc, color=ORACLE, ls=":", marker="o", ms=4, lw=1.2, label="best possible")
    ax.plot(ks, model, color=MODEL, marker="o", ms=5, lw=2.2, label="this model's best hour")
    ax.set_xticks(ks, ["exact hour"] + [f"±{k} h" for k in ks[1:]])
    ax.yaxis.set_major_formatter(_percent())
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("gap between the recommended hour and the hour the customer engaged")
    ax.set_ylabel("share of engagements")
    ax.grid(True)
    ax.legend(loc="lower right")
    top3 = v.metrics.get("test_top3_accuracy")
    base3 = v.metrics.get("baseline_top3_accuracy")
    title = (f"{label} model: customers engage within ±1 hour of the recommended hour {model[1]:.0%} of the time, "
             f"against {fixed[1]:.0%} with one hour for everyone")
    note = ("Hour accuracy on held-out engagements (opens, clicks, visits, purchases)."
            + (f" The actual hour is among the model's three best hours {top3:.0%} of the time "
               f"(baseline {base3:.0%})." if top3 is not None and base3 is not None else ""))
    return _chart(fig, title, note)


def _drivers_chart(importance: dict, label: str, top: int = 8) -> str:
    items = sorted(((k, float(v)) for k, v in importance.items()), key=lambda kv: -kv[1])[:top]
    names = [_cap(feature_text(k)) for k, _ in items][::-1]
    vals = [v for _, v in items][::-1]
    fig = _figure(5.0, 0.36 * len(items) + 0.9)
    ax = fig.add_subplot()
    bars = ax.barh(names, vals, color=MODEL)
    ax.set_xlim(0, max(vals) * 1.22 if vals else 1)
    _barh_labels(ax, bars, [f"{v:.0%}" for v in vals])
    ax.xaxis.set_major_formatter(_percent())
    ax.set_xlabel("share of the model's total importance")
    lead, share = items[0] if items else ("", 0)
    title = f"What the {label.lower()} model looks at most: {feature_text(lead)} ({share:.0%})"
    note = "Top drivers: how much each customer feature contributes to the model's splits (gain), in % of the total."
    return _chart(fig, title, note)


# =============================================================================
# 3. channels and send times
# =============================================================================


def _section_channels(ctx: _Context, sec: _Section) -> None:
    sec.lead = ("Where customers respond, so that each message goes to the one channel the customer reacts to, "
                "and when they are active in their own time zone.")
    cols = [f"{m}_{c}" for c in CHANNELS for m in ("sent", "clicked")]
    eng = ctx.latest("customer_engagement", cols)
    rfm = ctx.latest("customer_rfm", ["rfm_segment"])
    prof = ctx.latest("customer_profile", [f"consent_{c}" for c in CHANNELS] + [f"reachable_{c}" for c in CHANNELS])
    charts = []
    sent_total = eng[[f"sent_{c}" for c in CHANNELS]].fillna(0).to_numpy().sum()
    if sent_total == 0:
        sec.add(_missing("<strong>No channel response to show:</strong> the data holds no sent messages (for example "
                         "a transactions-only purchase log). Decisions use the channels' base rates until message "
                         "events (sent, opened, clicked) are loaded."))
    else:
        charts.append(_click_heatmap(ctx, eng, rfm))
    charts.append(_reach_chart(prof))
    sec.add(_grid(*charts))
    sec.add(_send_time_heatmap(ctx))


def _click_heatmap(ctx: _Context, eng: pd.DataFrame, rfm: pd.DataFrame) -> str:
    seg = rfm["rfm_segment"].reindex(eng.index)
    groups: list[tuple[str, pd.Series]] = []
    for code, name in enumerate(RFM_SEGMENTS):
        groups.append((name.capitalize(), seg == code))
    cust = ctx.customers().set_index("customer_id")["segment"].astype(object).reindex(eng.index)
    cust = cust.fillna("unknown").astype(str)
    values = [v for v in cust.value_counts().index if v != "unknown"]
    if 1 < len(values) <= 6:
        for val in values:
            groups.append((f"{val.upper() if len(val) <= 3 else val} customers", cust == val))
    rows, sends = [], []
    for name, mask in groups:
        sub = eng[mask.to_numpy()]
        sent = np.array([sub[f"sent_{c}"].sum() for c in CHANNELS], float)
        clicked = np.array([sub[f"clicked_{c}"].sum() for c in CHANNELS], float)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(sent >= 100, clicked / np.maximum(sent, 1), np.nan)
        if np.isfinite(rate).any():
            rows.append((name, rate))
            sends.append(sent)
    rate = np.array([r for _, r in rows])
    names = [n for n, _ in rows]
    fig = _figure(5.2, 0.36 * len(rows) + 1.1)
    ax = fig.add_subplot()
    masked = np.ma.masked_invalid(rate)
    im = ax.imshow(masked, cmap="Blues", aspect="auto", vmin=0, vmax=np.nanmax(rate) * 1.15)
    for i in range(rate.shape[0]):
        best = np.nanargmax(rate[i]) if np.isfinite(rate[i]).any() else -1
        for j in range(rate.shape[1]):
            if np.isfinite(rate[i, j]):
                dark = rate[i, j] > np.nanmax(rate) * 0.6
                ax.text(j, i, f"{100 * rate[i, j]:.1f}%", ha="center", va="center", fontsize=9,
                        color="white" if dark else INK, fontweight="bold" if j == best else "normal")
            else:
                ax.text(j, i, "too few", ha="center", va="center", fontsize=8, color=MUTED)
    ax.set_xticks(range(len(CHANNELS)), [CHANNEL_LABEL[c] for c in CHANNELS])
    ax.set_yticks(range(len(names)), names)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    n_rfm = sum(1 for n in names if n.lower() in RFM_SEGMENTS)
    if 0 < n_rfm < len(names):
        ax.axhline(n_rfm - 0.5, color="white", lw=4)
    cb = fig.colorbar(im, ax=ax, shrink=0.8, format=_percent())
    cb.set_label("click rate (clicks per message sent)")
    cb.outline.set_visible(False)
    best = [CHANNEL_LABEL[CHANNELS[int(np.nanargmax(r))]] for r in rate[:n_rfm or len(rate)]]
    if len(set(best)) == 1:
        title = f"{best[0]} draws the most clicks in every segment"
    else:
        common = max(set(best), key=best.count)
        others = sorted({(b, n) for b, n in zip(best, names) if b != common}, key=lambda x: x[1])
        title = (f"{common} draws the most clicks in most segments; "
                 + ", ".join(f"{n.lower()} customers respond best to {b}" for b, n in others))
    for c in CHANNELS:
        tot_s = sum(x[CHANNELS.index(c)] for x in sends[:n_rfm or len(sends)])
        ctx.facts[f"click_rate_{c}"] = float(np.nansum([r[CHANNELS.index(c)] * x[CHANNELS.index(c)]
                                                        for (_, r), x in zip(rows, sends)][:n_rfm or len(rows)])
                                             / tot_s) if tot_s else float("nan")
    note = ("Click rate per message sent, all history to date, by RFM segment (this month)"
            + (" and by customer segment" if n_rfm < len(names) else "")
            + "; the best channel of each row is in bold. 'Too few' = under 100 messages sent.")
    return _chart(fig, title, note)


def _reach_chart(prof: pd.DataFrame) -> str:
    n = max(len(prof), 1)
    share = np.array([((prof[f"consent_{c}"] == 1) & (prof[f"reachable_{c}"] == 1)).sum() / n for c in CHANNELS])
    if share.max() == 0:
        return _missing("<strong>No customer can be contacted on any channel:</strong> the customer data records no "
                        "consent with a working address (a purchase log carries none; declare the channels when "
                        "importing, e.g. <code>nextbest import-transactions --consent email</code>).")
    fig = _figure(5.0, 2.6)
    ax = fig.add_subplot()
    order = np.argsort(share)
    bars = ax.barh([CHANNEL_LABEL[CHANNELS[i]] for i in order], share[order],
                   color=[CHANNEL_COLOR[CHANNELS[i]] for i in order])
    ax.set_xlim(0, 1.15)
    _barh_labels(ax, bars, [f"{share[i]:.0%}" for i in order])
    ax.xaxis.set_major_formatter(_percent())
    ax.set_xlabel("share of customers who consented and can be reached")
    best, worst = CHANNELS[order[-1]], CHANNELS[order[0]]
    title = (f"{CHANNEL_LABEL[best]} reaches {share[order[-1]]:.0%} of customers, "
             f"{CHANNEL_LABEL[worst]} only {share[order[0]]:.0%}")
    return _chart(fig, title, "A channel is usable only with consent and a working address or device (GDPR); "
                              "the policy never picks another one.")


def _send_time_heatmap(ctx: _Context) -> str:
    from features.context import local_hour_weekday_codes

    ev = ctx.events()
    kinds = ("message_opened", "message_clicked", "visit", "purchase")
    sel = ev[ev["event_type"].isin(kinds)]
    end = ev["event_timestamp"].max()
    sel = sel[sel["event_timestamp"] >= end - pd.Timedelta(days=365)]
    if sel.empty:
        return _missing("<strong>No engagement hours to show:</strong> the data holds no opens, clicks, visits or "
                        "purchases.")
    cust = ctx.customers()
    zones = pd.Index(cust["timezone"].astype(str).unique())
    tz_of = pd.Series(zones.get_indexer(cust["timezone"].astype(str)), index=cust["customer_id"].to_numpy())
    codes = tz_of.reindex(sel["customer_id"].astype(str).to_numpy()).fillna(max(zones.get_loc("UTC") if "UTC" in zones
                                                                                   else 0, 0)).to_numpy(int)
    ts = sel["event_timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    hour, wday = local_hour_weekday_codes(ts, codes, list(zones))
    grid = np.zeros((7, 24))
    np.add.at(grid, (wday.astype(int), hour.astype(int)), 1)
    grid /= grid.sum()
    if (grid.sum(axis=0) > 0).sum() <= 2:
        return _missing("<strong>No time of day in the data:</strong> engagements carry a date only (for example a "
                        "purchase log), so the best send hour cannot be read from them; messages go out at 10:00 "
                        "local time until opens, clicks or visits with a time are loaded.")
    qh = ctx.settings.contact_policy.quiet_hours
    fig = _figure(8.6, 3.2)
    ax = fig.add_subplot()
    im = ax.imshow(grid * 100, cmap="YlOrRd", aspect="auto", vmin=0)
    ax.set_yticks(range(7), WEEKDAYS)
    ax.set_xticks(range(0, 24, 2), [f"{h:02d}:00" for h in range(0, 24, 2)])
    ax.set_xlabel("customer's local hour")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if qh.start > qh.end:
        quiet = [h for h in range(24) if h >= qh.start or h < qh.end]
    else:
        quiet = [h for h in range(24) if qh.start <= h < qh.end]
    for h in quiet:
        ax.add_patch(_hatch(h))
    cb = fig.colorbar(im, ax=ax, shrink=0.85, format="%.1f%%")
    cb.set_label("share of engagements")
    cb.outline.set_visible(False)
    d, h = np.unravel_index(np.argmax(grid), grid.shape)
    by_hour = grid.sum(axis=0)
    top_hours = np.argsort(-by_hour)[:3]
    weekday_share = grid.sum(axis=1)
    title = (f"Customers engage most on {WEEKDAY_NAMES[d]}s around {h:02d}:00 local time; the three busiest hours "
             f"are {', '.join(f'{x:02d}:00' for x in sorted(top_hours))}")
    ctx.facts["peak_hour"] = int(h)
    note = (f"Opens, clicks, visits and purchases of the last 12 months ({len(sel):,} events), in each customer's "
            f"own time zone. Hatched hours are quiet hours ({qh.start:02d}:00-{qh.end:02d}:00): nothing is sent "
            f"then. Busiest weekday: {WEEKDAY_NAMES[int(np.argmax(weekday_share))]} ({weekday_share.max():.0%} of "
            f"engagements).")
    return _chart(fig, title, note, wide=True)


def _hatch(h: int):
    from matplotlib.patches import Rectangle

    return Rectangle((h - 0.5, -0.5), 1, 7, fill=False, hatch="///", edgecolor="#64748b", lw=0, alpha=0.45)


# =============================================================================
# 4. the policy's what-if
# =============================================================================


def _section_policy(ctx: _Context, sec: _Section) -> None:
    from serving.policy import compile_policy

    s = ctx.settings
    scores, path, made = ctx.scores()
    n = len(scores)
    acted = scores["action"].astype(str) != "no_action"
    control = scores["control_group"].astype(bool)
    as_of = pd.Timestamp(scores["as_of"].iloc[0]) if n else None
    sec.lead = (f"The policy's decision for every customer as of {_date(as_of)} (batch scoring with the same models "
                f"and rules as the live service): which action, on which channel, and what it is worth."
                if as_of is not None else "The policy's decisions for the base.")
    if n == 0:
        sec.add(_missing("The batch scores are empty."))
        return
    ev_total = float(scores.loc[acted, "expected_value"].sum())
    held = control & (scores["holdout_action"].astype(str).replace("nan", "no_action") != "no_action")
    held_value = float(scores.loc[held, "best_expected_value"].replace(-np.inf, 0).sum())
    ctx.facts.update({"policy_contacts": int(acted.sum()), "policy_expected_value": ev_total,
                      "policy_control_group": int(control.sum())})
    sec.add(_cards([
        (f"{int(acted.sum()):,}", f"customers contacted today ({acted.mean():.0%})", "good" if acted.any() else ""),
        (f"{int((~acted & ~control).sum()):,}", "customers left alone (nothing worth the cost or not allowed)", ""),
        (f"{int(control.sum()):,}", f"held out in the control group ({control.mean():.0%})", ""),
        (f"{ev_total:,.0f}", "expected value of today's contacts (currency units)", "good" if ev_total > 0 else ""),
    ]))
    ctx.summary.append((f"{int(acted.sum()):,}", "contacts recommended today", "good" if acted.any() else "bad"))
    if acted.any():
        sec.add(_grid(_mix_chart(scores, acted, n), _value_chart(scores, acted, ev_total)))
    else:
        sec.add(_missing("<strong>The policy recommends no contact today.</strong> The reasons below say why "
                         "(typically no consented and reachable channel, or nothing worth the cost of a message)."))
    sec.add(_pressure(ctx, scores, acted))

    # why no action
    pol = compile_policy(s)
    texts = dict(zip(pol.reason_codes, pol.reason_texts))
    reasons = scores.loc[~acted, "reasons"].astype(str).str.split(";").explode()
    reasons = reasons[~reasons.str.startswith(("stage:", "fallback:")) & (reasons != "") & (reasons != "nan")]
    top = reasons.value_counts().head(8)
    if len(top):
        why = pd.DataFrame({"customers": top.to_numpy(),
                            "share of those not contacted": [f"{v / max((~acted).sum(), 1):.0%}" for v in top]},
                           index=pd.Index([_reason_text(k, texts.get(k, k)) for k in top.index],
                                          name="why no message today"))
        sec.add("<h4>Why customers get no message today</h4>", _table(why, cls="compact"),
                _note("A customer can have several reasons; cooldowns and caps protect against over-contacting."))

    # against the calendar campaigns
    sec.add("<h4>Against no action and against the calendar campaigns</h4>")
    sec.add(_p(f"Sending nothing is worth 0 by definition. By the models' own estimate, today's "
               f"{int(acted.sum()):,} contacts are worth <strong>{ev_total:,.0f}</strong> currency units "
               f"({ev_total / max(int(acted.sum()), 1):.2f} per contact), net of message costs. The "
               f"{int(held.sum()):,} customers held out in the control group would have been worth "
               f"{held_value:,.0f}: that is the price of measuring the uplift (section 5)."))
    sec.add(_evaluation_block(ctx))
    if made:
        sec.add(_note(f"The batch scores were missing and were computed for this report: {_e(path)}."))
    else:
        sec.add(_note(f"Source: {_e(path)} (written by <code>nextbest score</code>)."))


def _reason_text(code: str, text: str) -> str:
    """The policy's reason text with action and channel ids in words."""
    if code.startswith("cooldown:"):
        action = code.split(":", 1)[1]
        text = text.replace(action, action_text(action), 1)
    for a in sorted(_ACTION_TEXT, key=len, reverse=True):
        text = re.sub(rf"\b{a}\b", action_text(a).lower(), text)
    text = re.sub(r"\bsends\b", "messages", text)
    text = re.sub(r"\b1 messages\b", "1 message", text)
    for c, label in CHANNEL_LABEL.items():
        text = re.sub(rf"\b{c}\b", label if label.isupper() else label.lower(), text)
    return _cap(text)


def _mix_chart(scores: pd.DataFrame, acted: pd.Series, n: int) -> str:
    sub = scores[acted]
    tab = pd.crosstab(sub["action"].astype(str), sub["channel"].astype(str))
    tab = tab.reindex(columns=[c for c in CHANNELS if c in tab.columns])
    tab = tab.loc[tab.sum(axis=1).sort_values().index]
    fig = _figure(5.2, 0.3 * max(len(tab), 3) + 1.2)
    ax = fig.add_subplot()
    left = np.zeros(len(tab))
    for c in tab.columns:
        ax.barh([action_text(a) for a in tab.index], tab[c], left=left, color=CHANNEL_COLOR[c],
                label=CHANNEL_LABEL[c])
        left += tab[c].to_numpy()
    ax.set_xlim(0, max(left.max(), 1) * 1.18)
    for i, v in enumerate(left):
        ax.text(v + left.max() * 0.01, i, f"{int(v):,}", va="center", fontsize=9)
    ax.set_xlabel("customers")
    ax.xaxis.set_major_formatter(_thousands())
    ax.legend(loc="lower right", title="channel", title_fontsize=9)
    if len(tab):
        a = tab.sum(axis=1).idxmax()
        c = tab.loc[a].idxmax()
        title = (f"The policy would contact {int(acted.sum()):,} of {n:,} customers ({acted.mean():.0%}) today, "
                 f"most often with {action_text(a).lower()} by {CHANNEL_LABEL[c]}")
    else:
        title = "The policy would contact nobody today"
    return _chart(fig, title, "Recommended action and channel per customer; one message per customer at most.")


def _value_chart(scores: pd.DataFrame, acted: pd.Series, ev_total: float) -> str:
    sub = scores[acted]
    ev = sub.groupby(sub["action"].astype(str))["expected_value"].agg(["sum", "size"]).sort_values("sum")
    fig = _figure(5.2, 0.3 * max(len(ev), 3) + 1.2)
    ax = fig.add_subplot()
    bars = ax.barh([action_text(a) for a in ev.index], ev["sum"], color=GOOD)
    lo, hi = min(ev["sum"].min(), 0) if len(ev) else 0, max(ev["sum"].max(), 1) if len(ev) else 1
    ax.set_xlim(lo * 1.1, hi * 1.3)
    _barh_labels(ax, bars, [f"{v:,.0f}  ({int(k):,} msgs, {v / max(k, 1):.2f} each)" for v, k in
                            zip(ev["sum"], ev["size"])])
    ax.set_xlabel("expected value (currency units)")
    ax.xaxis.set_major_formatter(_thousands())
    ax.axvline(0, color=MUTED, lw=0.8)
    if len(ev):
        top = ev["sum"].idxmax()
        share = ev["sum"].max() / ev_total if ev_total else float("nan")
        title = f"{action_text(top)} brings {share:.0%} of the expected value of today's contacts"
    else:
        title = "No expected value: no contact recommended"
    return _chart(fig, title, "Expected value = chance of success x value x lift - cost of the message, from the "
                              "model scores and the action catalogue; 'no action' is worth 0.")


def _pressure(ctx: _Context, scores: pd.DataFrame, acted: pd.Series) -> str:
    s = ctx.settings
    caps = s.contact_policy.caps
    cols = [f"sent_30d_{c}" for c in CHANNELS] + ["sent_30d_total"]
    pr = ctx.latest("customer_pressure", cols)
    prof = ctx.latest("customer_profile", [f"consent_{c}" for c in CHANNELS] + [f"reachable_{c}" for c in CHANNELS])
    rows = []
    for c in CHANNELS:
        cap = caps.per_channel.get(c)
        ok = ((prof[f"consent_{c}"] == 1) & (prof[f"reachable_{c}"] == 1)).reindex(pr.index).fillna(False).to_numpy()
        x = pr.loc[ok, f"sent_30d_{c}"].fillna(0).to_numpy()
        if cap is None or not ok.any():
            continue
        rows.append((CHANNEL_LABEL[c], x.mean(), np.quantile(x, 0.95), cap.max * 30 / cap.days,
                     f"{cap.max} per {cap.days} days"))
    x = pr["sent_30d_total"].fillna(0).to_numpy()
    if not x.any():
        return _note("No message was sent in the 30 days before the snapshot, so no channel is near its cap.")
    rows.append(("All channels", x.mean(), np.quantile(x, 0.95) if len(x) else 0,
                 caps.overall.max * 30 / caps.overall.days, f"{caps.overall.max} per {caps.overall.days} days"))
    df = pd.DataFrame(rows, columns=["channel", "mean", "p95", "cap30", "cap"])
    fig = _figure(8.0, 0.5 * len(df) + 1.3)
    ax = fig.add_subplot()
    y = np.arange(len(df))[::-1]
    ax.barh(y + 0.18, df["mean"], height=0.34, color=MODEL, label="average customer, last 30 days")
    ax.barh(y - 0.18, df["p95"], height=0.34, color="#93c5fd", label="busiest 5% of customers, last 30 days")
    ax.scatter(df["cap30"], y, marker="|", s=500, color=BAD, linewidths=2.5, zorder=5,
               label="cap, scaled to 30 days")
    for yi, (_, r) in zip(y, df.iterrows()):
        ax.text(max(r["cap30"], r["p95"]) + 0.25, yi, f"cap {r['cap']}", va="center", fontsize=8.5, color=BAD)
    ax.set_yticks(y, df["channel"])
    ax.set_xlim(0, max(df["cap30"].max(), df["p95"].max()) * 1.35 + 1)
    ax.set_xlabel("messages per customer in 30 days (customers reachable on the channel)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8.5)
    over = df[(df["p95"] > df["cap30"] + 1e-9) & (df["channel"] != "All channels")]["channel"].tolist()
    if over:
        title = (f"The calendar campaigns of the last 30 days sent the busiest customers more {', '.join(over)} "
                 f"messages than the caps allow; the policy never exceeds them")
    else:
        title = "Contact pressure of the last 30 days stays within the caps"
    today = scores.loc[acted, "channel"].astype(str).value_counts()
    capped = scores["reasons"].astype(str).str.contains("cap_reached").sum()
    note = (f"Messages received per customer over the 30 days before the snapshot, against the caps of the contact "
            f"policy (a 7-day cap counts about 4.3 times per 30 days). Today the policy adds at most one message per "
            f"customer ({', '.join(f'{CHANNEL_LABEL.get(k, k)} {v:,}' for k, v in today.items()) or 'none'}); "
            f"{capped:,} customers are held back on some channel by a cap.")
    return _grid(_chart(fig, title, note, wide=True))


_POLICY_TEXT = {
    "oracle_argmax": "Best possible (true scores, best action)",
    "oracle": "Same rules with true scores",
    "nextbest": "This policy (nextbest)",
    "calendar": "Calendar campaigns",
    "random": "Random eligible message",
    "no_action": "No action",
}


def _evaluation_block(ctx: _Context) -> str:
    """`nextbest evaluate`'s results for this data, when it has written them."""
    s = ctx.settings
    try:
        data_end = ctx.snapshot_times()[-1]
    except Exception:
        data_end = None
    docs = s.root / "docs" / "evaluation.json"
    for path in (s.data_dir / "evaluation" / "latest.json", docs):
        if not path.exists():
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        end = data.get("data_end")
        if path == docs and data_end is not None and end and pd.Timestamp(end) != data_end:
            continue  # the project's published evaluation describes other data
        policies = data.get("policies")
        if isinstance(policies, dict) and "nextbest" in policies and "calendar" in policies:
            return _evaluation_chart(ctx, data, policies, path)
        return _evaluation_table(data, path)
    return _p("The comparison with the calendar-driven campaigns (and with random targeting and the best possible "
              "decisions) comes from <code>nextbest evaluate</code>, which has not written its results for this "
              "data yet; run it, then <code>nextbest report</code> again, to see it here.")


def _evaluation_chart(ctx: _Context, data: dict, policies: dict, path: Path) -> str:
    names = [k for k in _POLICY_TEXT if k in policies] + [k for k in policies if k not in _POLICY_TEXT]
    vals = np.array([float(policies[k].get("value") or 0.0) for k in names])
    colors = {"nextbest": MODEL, "calendar": PREVIOUS, "oracle": ORACLE, "oracle_argmax": ORACLE}
    fig = _figure(8.6, 0.42 * len(names) + 1.0)
    ax = fig.add_subplot()
    y = np.arange(len(names))[::-1]
    bars = ax.barh(y, vals, color=[colors.get(k, BASE) for k in names], height=0.62)
    ax.set_yticks(y, [_POLICY_TEXT.get(k, str(policies[k].get("label", k))) for k in names])
    lo, hi = min(vals.min(), 0.0), max(vals.max(), 1.0)
    ax.set_xlim(lo * 1.1, hi * 1.42)
    texts = []
    for k in names:
        pol = policies[k]
        sends = pol.get("sends")
        per = pol.get("value_per_send")
        texts.append(f"{float(pol.get('value') or 0):,.0f}" + (f"  ({int(sends):,} messages" if sends else "")
                     + (f", {per:.2f} each)" if sends and per is not None else (")" if sends else "")))
    _barh_labels(ax, bars, texts)
    ax.axvline(0, color=MUTED, lw=0.8)
    ax.set_xlabel("true expected value of today's decisions (currency units)")
    ax.xaxis.set_major_formatter(_thousands())
    nb, cal = policies["nextbest"], policies["calendar"]
    v_nb, v_cal = float(nb.get("value") or 0), float(cal.get("value") or 0)
    share = nb.get("share_of_oracle")
    if v_cal > 0:
        title = f"This policy is worth {v_nb / v_cal:.1f}x the calendar campaigns ({v_nb:,.0f} vs {v_cal:,.0f})"
    else:
        title = f"This policy is worth {v_nb:,.0f} against {v_cal:,.0f} for the calendar campaigns"
    if share is not None:
        title += f" and {share:.0%} of the best possible"
    ctx.facts.update({"eval_value_nextbest": v_nb, "eval_value_calendar": v_cal})
    as_of = data.get("as_of")
    n = data.get("customers")
    note = ("Measured by <code>nextbest evaluate</code> with the simulator's hidden truth: the true expected value of "
            "one decision per customer" + (f" for the same {int(n):,} customers" if n else "")
            + (f" as of {_e(_date(as_of))}" if as_of else "") + ", every strategy under the same contact rules. "
            f"The calendar campaigns send each stage's usual action at 10:00 whatever it is worth; no action is "
            f"worth 0. Source: {_e(path)}.")
    return _grid(_chart(fig, title, note, wide=True))


def _evaluation_table(data, path: Path) -> str:
    """Render the evaluation results, whatever their exact layout: numbers per strategy, one row each."""
    rows: dict[str, dict] = {}

    def walk(node, prefix: str, depth: int) -> None:
        if isinstance(node, dict):
            nums = {k: v for k, v in node.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if nums and prefix:
                rows[prefix] = nums
            if depth < 3:
                for k, v in node.items():
                    if isinstance(v, (dict, list)):
                        walk(v, f"{prefix} / {k}" if prefix else str(k), depth + 1)
        elif isinstance(node, list) and depth < 3:
            for i, item in enumerate(node[:30]):
                name = item.get("policy") or item.get("name") or item.get("strategy") if isinstance(item, dict) \
                    else None
                walk(item, f"{prefix} / {name or i}" if prefix else str(name or i), depth + 1)

    walk(data, "", 0)
    if isinstance(data, dict):
        top = {k: v for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if top:
            rows = {"summary": top, **rows}
    if not rows:
        return _p(f"Evaluation results found in {_e(path)} but in an unknown layout.")
    df = pd.DataFrame.from_dict(rows, orient="index").iloc[:20, :8]
    df.index.name = "evaluation"
    df = df.apply(lambda col: col.map(lambda v: "-" if pd.isna(v) else (f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}")))
    return _p("Value of the policy against the calendar-driven campaigns and other strategies, from "
              "<code>nextbest evaluate</code>:") + _table(df, cls="compact") + _note(f"Source: {_e(path)}.")


# =============================================================================
# 5. control group and uplift
# =============================================================================


def _diff_ci(k1, n1, k0, n0) -> tuple[float, float, float, float, float]:
    """(rate treated, rate control, difference, low, high) with a 95% normal-approximation interval."""
    p1 = k1 / n1 if n1 else float("nan")
    p0 = k0 / n0 if n0 else float("nan")
    d = p1 - p0
    se = np.sqrt(p1 * (1 - p1) / max(n1, 1) + p0 * (1 - p0) / max(n0, 1))
    return p1, p0, d, d - 1.96 * se, d + 1.96 * se


def _codes_in(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each value in `index` (-1 when absent), fast for categoricals."""
    cat = values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype(str).astype("category")
    where = index.get_indexer(cat.cat.categories.astype(str))
    codes = cat.cat.codes.to_numpy()
    return np.where(codes >= 0, where[np.maximum(codes, 0)], -1).astype(np.int64)


def _section_uplift(ctx: _Context, sec: _Section) -> None:
    sec.lead = ("Uplift is measured, not guessed: a random share of every target gets nothing, and the difference "
                "in purchases between the customers who got the message and this control group is what the "
                "messages caused.")
    sec.add(_glossary_inline(("Control group", "Uplift", "95% confidence interval")))
    sec.add("<h3>Legacy campaigns</h3>")
    sec.add(_legacy_uplift(ctx))
    sec.add("<h3>Decisions of the service</h3>")
    sec.add(_service_uplift(ctx))


def _legacy_uplift(ctx: _Context) -> str:
    s = ctx.settings
    path = s.world_dir / "targets.parquet"
    if not path.exists():
        return _missing("No legacy campaign targets with a control group in this data (the simulator writes "
                        "<code>world/targets.parquet</code>; an imported log has none), so no historical uplift can "
                        "be measured. The service's own control group (below) measures it going forward.")
    tg = pd.read_parquet(path, columns=["customer_id", "channel", "action_id", "planned_at", "control"])
    ev = ctx.events()
    pur = ev[ev["event_type"] == "purchase"]
    end = ev["event_timestamp"].max()
    window = pd.Timedelta(days=UPLIFT_DAYS)
    tg = tg[tg["planned_at"] + window <= end]
    if tg.empty or not tg["control"].any():
        return _missing("The legacy campaign targets hold no control group with a complete follow-up window.")
    ids = pd.Index(ctx.customers()["customer_id"])
    pc = _codes_in(pur["customer_id"], ids)
    pur = pur[pc >= 0]
    pc = pc[pc >= 0]
    psec = pur["event_timestamp"].to_numpy(dtype="datetime64[s]").astype(np.int64)
    key = (pc << 34) | psec
    order = np.argsort(key)
    key = key[order]
    cum = np.concatenate([[0.0], np.cumsum(pur["amount"].fillna(0).to_numpy(float)[order])])
    tc = _codes_in(tg["customer_id"], ids)
    tsec = tg["planned_at"].to_numpy(dtype="datetime64[s]").astype(np.int64)
    lo = np.searchsorted(key, (tc << 34) | tsec, side="right")
    hi = np.searchsorted(key, (tc << 34) | (tsec + UPLIFT_DAYS * 86400), side="right")
    tg = tg.assign(bought=((hi > lo) & (tc >= 0)).astype(float), revenue=np.where(tc >= 0, cum[hi] - cum[lo], 0.0))
    tg["action_id"] = tg["action_id"].astype(str).astype("category") if not isinstance(
        tg["action_id"].dtype, pd.CategoricalDtype) else tg["action_id"]
    tg["channel"] = tg["channel"].astype(str).astype("category") if not isinstance(
        tg["channel"].dtype, pd.CategoricalDtype) else tg["channel"]
    acts, chans = tg["action_id"].cat.categories.astype(str), tg["channel"].cat.categories.astype(str)
    unit = np.array([[s.actions[a].cost.get(c, 0.0) if a in s.actions else 0.0 for c in chans] for a in acts]
                    + [[0.0] * len(chans)]).reshape(len(acts) + 1, max(len(chans), 1))
    cost = unit[tg["action_id"].cat.codes.to_numpy(), np.maximum(tg["channel"].cat.codes.to_numpy(), 0)]
    tg["cost"] = np.where(tg["control"], 0.0, cost)

    def summarise(df: pd.DataFrame) -> dict:
        t, c = df[~df["control"]], df[df["control"]]
        p1, p0, d, lo_, hi_ = _diff_ci(t["bought"].sum(), len(t), c["bought"].sum(), len(c))
        rev_d = t["revenue"].mean() - c["revenue"].mean() if len(c) and len(t) else float("nan")
        return {"treated": len(t), "control": len(c), "p1": p1, "p0": p0, "d": d, "lo": lo_, "hi": hi_,
                "extra_buyers": d * len(t), "extra_revenue": rev_d * len(t), "cost": t["cost"].sum()}

    overall = summarise(tg)
    ctx.facts.update({"legacy_uplift_points": 100 * overall["d"], "legacy_extra_revenue": overall["extra_revenue"]})
    sig = overall["lo"] > 0 or overall["hi"] < 0
    ctx.summary.append((f"{100 * overall['d']:+.2f}", "extra buyers per 100 messages (vs control)",
                        "good" if overall["lo"] > 0 else ""))
    by_channel = {c: summarise(g) for c, g in tg.groupby(tg["channel"].astype(str), observed=True)}
    by_action = {a: summarise(g) for a, g in tg.groupby(tg["action_id"].astype(str), observed=True)}

    # chart 1: treated vs control per channel
    names = ["All", *[CHANNEL_LABEL.get(c, c) for c in by_channel]]
    stats = [overall, *by_channel.values()]
    fig = _figure(5.2, 3.3)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for off, key_, col, lab in ((-0.2, "p1", MODEL, "got the message"),
                                (0.2, "p0", BASE, "control group (nothing sent)")):
        vals = np.array([st[key_] for st in stats])
        ns = np.array([st["treated" if key_ == "p1" else "control"] for st in stats])
        err = 1.96 * np.sqrt(vals * (1 - vals) / np.maximum(ns, 1))
        ax.bar(x + off, vals, width=0.38, color=col, label=lab, yerr=err, capsize=3,
               error_kw={"elinewidth": 1, "ecolor": INK})
    ax.set_xticks(x, names)
    ax.yaxis.set_major_formatter(_percent())
    ax.set_ylabel(f"targets who bought within {UPLIFT_DAYS} days")
    ax.legend(loc="upper right")
    ax.grid(True, axis="y")
    ax.set_ylim(0, max(st["p1"] for st in stats) * 1.3)
    verdict = "raised" if overall["lo"] > 0 else ("lowered" if overall["hi"] < 0 else "did not measurably change")
    title = (f"Legacy campaigns {verdict} the {UPLIFT_DAYS}-day purchase rate: {overall['p1']:.1%} with the "
             f"message vs {overall['p0']:.1%} without ({100 * overall['d']:+.2f} points, 95% CI "
             f"{100 * overall['lo']:+.2f} to {100 * overall['hi']:+.2f})")
    c1 = _chart(fig, title, f"Share of targets who bought within {UPLIFT_DAYS} days of the planned send; black "
                            f"bars are 95% confidence intervals. {overall['treated']:,} messages, "
                            f"{overall['control']:,} control targets.")

    # chart 2: uplift per action with CI
    acts = sorted(by_action, key=lambda a: by_action[a]["d"])
    fig = _figure(5.2, 0.32 * len(acts) + 1.2)
    ax = fig.add_subplot()
    y = np.arange(len(acts))
    d = np.array([by_action[a]["d"] for a in acts])
    lo_ = np.array([by_action[a]["lo"] for a in acts])
    hi_ = np.array([by_action[a]["hi"] for a in acts])
    colors = [GOOD if l > 0 else (BAD if h < 0 else BASE) for l, h in zip(lo_, hi_)]
    ax.hlines(y, lo_, hi_, color=colors, lw=2)
    ax.scatter(d, y, color=colors, zorder=5, s=28)
    ax.axvline(0, color=MUTED, lw=1)
    ax.set_yticks(y, [action_text(a) for a in acts])
    ax.xaxis.set_major_formatter(_points())
    ax.set_xlabel(f"uplift in {UPLIFT_DAYS}-day purchase rate (percentage points)")
    proven = [action_text(a) for a, l in zip(acts, lo_) if l > 0]
    title = (f"{len(proven)} of {len(acts)} actions show a proven uplift"
             + (f", led by {proven[-1].lower()}" if proven else ""))
    c2 = _chart(fig, title, "Dot: uplift (message minus control); line: 95% confidence interval. Green = proven "
                            "positive, grey = not distinguishable from zero with this sample.")

    rows = []
    for name, st in [("All campaigns", overall), *[(CHANNEL_LABEL.get(c, c), v) for c, v in by_channel.items()],
                     *[(action_text(a), by_action[a]) for a in reversed(acts)]]:
        rows.append({"": name, "messages": f"{st['treated']:,}", "control": f"{st['control']:,}",
                     "bought (message)": f"{st['p1']:.2%}", "bought (control)": f"{st['p0']:.2%}",
                     "uplift (points)": f"{100 * st['d']:+.2f} [{100 * st['lo']:+.2f}, {100 * st['hi']:+.2f}]",
                     "extra buyers": f"{st['extra_buyers']:,.0f}", "extra revenue": f"{st['extra_revenue']:,.0f}",
                     "message cost": f"{st['cost']:,.0f}"})
    table = pd.DataFrame(rows).set_index("")
    roi = overall["extra_revenue"] - overall["cost"]
    text = _p(
        f"Over {tg['planned_at'].dt.normalize().nunique():,} campaign days, the messages brought an estimated "
        f"<strong>{overall['extra_buyers']:,.0f} extra buyers</strong> and <strong>{overall['extra_revenue']:,.0f} "
        f"of extra revenue</strong> against {overall['cost']:,.0f} of message costs (net {roi:+,.0f}). "
        + ("The difference is statistically clear." if sig else "The difference is within the noise: more data or "
                                                                  "larger campaigns are needed to prove it."))
    return (text + _grid(c1, c2) + _details("Uplift by channel and action (95% confidence intervals in brackets)",
                                            _table(table, cls="compact"))
            + _note(f"Each target of a calendar campaign counts once; a target converts when the customer buys "
                    f"within {UPLIFT_DAYS} days of the planned send. Extra revenue = (revenue per messaged target - "
                    f"revenue per control target) x messages."))


def _service_uplift(ctx: _Context) -> str:
    from serving.history import ContactHistory

    path = ctx.settings.data_dir / "serving" / "history.db"
    scores = ctx._cache.get("scores", (None,))[0]  # read (or produced) by the policy section
    batch = ""
    if scores is not None and len(scores):
        held = int(scores["control_group"].sum())
        batch = _p(f"In today's batch, {held:,} customers ({held / len(scores):.0%}) are in the control group of "
                   f"experiment <code>{_e(ctx.settings.serving.experiment)}</code>: they get nothing, and their "
                   f"purchases will be compared with those of the contacted customers.")
    if not path.exists():
        return batch + _missing("The service has not logged any decision yet (no contact history at "
                                f"<code>{_e(path)}</code>).")
    hist = ContactHistory(path)
    try:
        dec = hist.decisions_frame()
        fb = hist.feedback_frame()
    finally:
        hist.close()
    if dec.empty:
        return batch + _missing("The service has not logged any decision yet.")
    treated = (dec["control_group"] == 0) & (dec["action"] != "no_action")
    control = (dec["control_group"] == 1) & dec["holdout_action"].notna() & (dec["holdout_action"] != "no_action")
    head = _p(f"The service logged <strong>{len(dec):,} decisions</strong>: {int(treated.sum()):,} with a message, "
              f"{int(control.sum()):,} held out in the control group, the rest with no action.")
    conv = fb[fb["event"] == "converted"] if not fb.empty else fb
    if conv.empty:
        counts = fb["event"].value_counts().to_dict() if not fb.empty else {}
        got = ", ".join(f"{v:,} {k}" for k, v in counts.items()) if counts else "no feedback at all"
        return batch + head + _missing(
            f"No conversion has been reported yet ({got}). Uplift appears here once journey engines post "
            f"<code>converted</code> events to <code>/feedback</code> (for contacted and control customers alike).")
    dec = dec.assign(t=pd.to_datetime(dec["decided_at"], utc=True, format="ISO8601"))
    conv = conv.assign(t_conv=pd.to_datetime(conv["event_timestamp"], utc=True, format="ISO8601"),
                       amount=pd.to_numeric(conv["amount"], errors="coerce").fillna(0.0))
    m = dec[["decision_id", "customer_id", "t"]].merge(conv[["customer_id", "t_conv", "amount"]], on="customer_id")
    m = m[(m["t_conv"] >= m["t"]) & (m["t_conv"] <= m["t"] + pd.Timedelta(days=UPLIFT_DAYS))]
    won = m.groupby("decision_id").agg(amount=("amount", "sum"))
    dec = dec.join(won, on="decision_id")
    dec["bought"] = dec["amount"].notna().astype(float)
    dec["amount"] = dec["amount"].fillna(0.0)
    t, c = dec[treated], dec[control]
    p1, p0, d, lo, hi = _diff_ci(t["bought"].sum(), len(t), c["bought"].sum(), len(c))
    extra = (t["amount"].mean() - c["amount"].mean()) * len(t) if len(t) and len(c) else float("nan")
    ctx.facts["service_uplift_points"] = 100 * d if np.isfinite(d) else float("nan")
    table = pd.DataFrame([
        {"group": "got the message", "decisions": f"{len(t):,}", "converted": f"{int(t['bought'].sum()):,}",
         "rate": _pct(p1, 2)},
        {"group": "control group", "decisions": f"{len(c):,}", "converted": f"{int(c['bought'].sum()):,}",
         "rate": _pct(p0, 2)},
    ]).set_index("group")
    return batch + head + _table(table, cls="compact") + _p(
        f"Uplift: <strong>{100 * d:+.2f} points</strong> (95% CI {100 * lo:+.2f} to {100 * hi:+.2f}); "
        f"incremental value about {extra:,.0f}, from conversions reported within {UPLIFT_DAYS} days of the decision.")


# =============================================================================
# the page
# =============================================================================

_CSS = """
:root{--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f8fafc;--accent:#2563eb;--good:#059669;--bad:#dc2626}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue","DejaVu Sans",Arial,sans-serif}
header{background:#0f172a;color:#f8fafc;padding:28px 0 22px}
header h1{margin:0 0 4px;font-size:26px;font-weight:650;letter-spacing:-.01em}
header p{margin:0;color:#cbd5e1;font-size:14px}
.wrap{max-width:1180px;margin:0 auto;padding:0 28px}
nav{background:#fff;border-bottom:1px solid var(--line);position:sticky;top:0;z-index:2}
nav .wrap{display:flex;gap:22px;flex-wrap:wrap;padding-top:10px;padding-bottom:10px;font-size:14px}
nav a{color:var(--ink);text-decoration:none;font-weight:550}
nav a:hover{color:var(--accent)}
section{background:#fff;border:1px solid var(--line);border-radius:10px;margin:22px 0;padding:22px 26px}
h2{margin:0 0 6px;font-size:22px;letter-spacing:-.01em}
h3{margin:26px 0 8px;font-size:18px;border-top:1px solid var(--line);padding-top:18px}
h4{margin:18px 0 8px;font-size:15px}
.lead{color:var(--muted);margin:0 0 14px;max-width:900px}
.muted{color:var(--muted)}
.note{color:var(--muted);font-size:13px;margin:6px 0 12px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:12px;margin:12px 0 16px}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 14px;background:#fff}
.card .figure{font-size:22px;font-weight:700;line-height:1.2}
.card .label{color:var(--muted);font-size:13px}
.card.good .figure{color:var(--good)} .card.bad .figure{color:var(--bad)}
.summary .card{border-left:4px solid var(--accent)}
.summary .card.good{border-left-color:var(--good)} .summary .card.bad{border-left-color:var(--bad)}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:18px;align-items:start;margin:10px 0}
figure.chart{margin:0;padding:12px 14px;border:1px solid var(--line);border-radius:8px;background:#fff}
figure.chart.wide{grid-column:1/-1}
.panel{padding:12px 14px;border:1px solid var(--line);border-radius:8px;background:#fff}
h2.glance{font-size:15px;color:var(--muted);font-weight:600;margin:18px 0 0;text-transform:uppercase;
 letter-spacing:.04em}
.card .figure{white-space:nowrap}
.chart-title{font-weight:650;font-size:15px;margin:0 0 8px;line-height:1.35}
figure.chart svg{display:block;margin:0 auto}
figcaption{color:var(--muted);font-size:13px;margin-top:6px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13.5px}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{border-bottom:2px solid #cbd5e1;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.num,table.compact td{white-space:nowrap}
.panel table.compact td{white-space:normal}
.panel{overflow-x:auto}
tbody th{font-weight:550}
.two{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:24px}
.missing{background:#fffbeb;border:1px solid #fcd34d;border-radius:8px;padding:12px 14px;margin:10px 0}
.error{background:#fef2f2;border:1px solid #fca5a5;border-radius:8px;padding:12px 14px;margin:10px 0;color:#991b1b}
.tag{font-size:12px;font-weight:600;background:#eef2ff;color:#3730a3;border-radius:999px;padding:2px 9px;
 vertical-align:middle;margin-left:6px}
ul.gloss{margin:6px 0 14px;padding-left:18px;color:var(--muted);font-size:13px}
details{margin:8px 0 12px} summary{cursor:pointer;color:var(--accent);font-size:14px}
code{background:#f1f5f9;border-radius:4px;padding:1px 5px;font-size:13px}
footer{color:var(--muted);font-size:13px;padding:10px 0 40px}
@media print{nav{display:none} section{break-inside:avoid-page}}
"""


def _page(ctx: _Context, sections: list[_Section], seconds: float) -> str:
    s = ctx.settings
    try:
        end = _date(ctx.snapshot_times()[-1])
    except Exception:
        end = "-"
    source = "a simulated world (hidden truth known)" if ctx.simulated else "imported customer data"
    nav = "".join(f'<a href="#{sec.anchor}">{_e(sec.short or sec.title)}</a>' for sec in sections)
    body = []
    for sec in sections:
        lead = f'<p class="lead">{_e(sec.lead)}</p>' if sec.lead else ""
        body.append(f'<section id="{sec.anchor}"><h2>{_e(sec.title)}</h2>{lead}{"".join(sec.parts)}</section>')
    summary = (f'<div class="summary"><h2 class="glance">At a glance</h2>{_cards(ctx.summary)}</div>'
               if ctx.summary else "")
    gloss = "".join(f"<li><strong>{_e(t)}</strong>: {_e(d)}</li>" for t, d in GLOSSARY)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nextbest report - {_e(end)}</title>
<style>{_CSS}</style>
</head>
<body>
<header><div class="wrap">
<h1>Customer base, models and next-best-action policy</h1>
<p>Data up to {_e(end)} &middot; {_e(source)} &middot; generated {_e(generated)} in {seconds:.0f} s</p>
</div></header>
<nav aria-label="sections"><div class="wrap">{nav}<a href="#glossary">Glossary</a></div></nav>
<main class="wrap">
{summary}
{''.join(body)}
<section id="glossary"><h2>Glossary</h2><ul class="gloss">{gloss}</ul></section>
</main>
<footer><div class="wrap">Report of project configuration {_e(s.features.feature_service)} / experiment
{_e(s.serving.experiment)}. Figures are computed from the feature snapshots, the model registry, the batch scores
and the contact history listed in each section.</div></footer>
</body>
</html>
"""
