"""The loop's page: one chart per measure over the simulated days, and the table of totals (docs/loop.*)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np

from analysis.evaluation.document import _fmt, _interval, _table
from analysis.loop.arms import ARMS

COLORS = {"learning": "#2b6cb0", "frozen": "#90cdf4", "oracle": "#c53030", "calendar": "#718096",
          "no_action": "#cbd5e0"}
TARGET_SHARE = 0.90  # of the oracle's daily value at the end of the loop


def _rolling(x: np.ndarray, k: int = 7) -> np.ndarray:
    """Mean over the last `k` days (fewer at the start)."""
    c = np.cumsum(np.insert(np.asarray(x, float), 0, 0.0))
    n = np.arange(1, len(x) + 1)
    lo = np.maximum(n - k, 0)
    return (c[n] - c[lo]) / (n - lo)


def plot(doc: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    day = np.arange(1, doc["days"] + 1)
    never = max(doc["never_bought_at_day0"], 1)
    customers = max(doc["registered_at_end"], 1)
    panels = [
        ("true incremental value per day (7-day mean)", lambda a: _rolling(a["value"])),
        ("messages per customer (cumulative)", lambda a: np.cumsum(a["messages"]) / customers),
        ("unsubscriptions (cumulative)", lambda a: np.cumsum(a["unsubscribes"])),
        ("day-0 never-buyers activated (cumulative share)", lambda a: np.cumsum(a["activations"]) / never),
        ("lapses (cumulative)", lambda a: np.cumsum(a["lapses"])),
    ]
    fig = Figure(figsize=(11, 12))
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (title, series) in zip(axes, panels):
        for arm in ARMS:
            a = doc["arms"][arm]
            ax.plot(day, series(a), color=COLORS[arm], lw=2.2 if arm == "learning" else 1.4, label=a["label"])
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
    for r in doc["retrains"]:
        k = doc["dates"].index(r["day"]) + 0.5 if r["day"] in doc["dates"] else None
        if k is not None:
            axes[0].axvline(k, color=COLORS["learning"], lw=0.8, ls="-" if r["promoted"] else ":", alpha=0.7)
    axes[0].axhline(0, color="black", lw=0.6)
    settled = np.concatenate([_rolling(doc["arms"][a]["value"])[6:] for a in ARMS])  # past the first week's spikes
    if settled.size:
        axes[0].set_ylim(min(0.0, float(settled.min()) * 1.15), max(float(settled.max()) * 1.15, 1.0))
    axes[0].legend(fontsize=8, ncol=3, loc="upper left")
    axes[-1].set_xlabel("day of the loop (vertical lines: effect-model retrains; solid = promoted)")
    fig.suptitle(f"The learning loop over {doc['days']} simulated days ({doc['customers']:,} customers, "
                 f"seed {doc['seed']})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def rows(doc: dict) -> list[list[str]]:
    s = doc["summary"]
    out = []
    for arm in ARMS:
        r = s[arm]
        real = _interval({"mean": r["realised"], "low": r["realised_low"], "high": r["realised_high"]})
        out.append([r["label"], _fmt(r["value"]), _fmt(r["value_per_day_end"]),
                    _fmt(r["share_of_oracle_end"], True), real, f"{r['messages_per_customer_30d']:.2f}",
                    str(r["unsubscribes"]), str(r["activations"]), str(r["lapses"])])
    return out


HEADER = ["policy", "true incremental value, whole loop", "per day, last {k} days", "share of the oracle's, "
          "last {k} days", "realised incremental value (95% noise interval)", "messages per customer per 30 days", "unsubscriptions", "day-0 never-buyers activated",
          "lapses"]


def header(doc: dict) -> list[str]:
    k = doc["summary"]["window_days"]
    return [h.format(k=k) for h in HEADER]


def realised_text(doc: dict) -> str:
    """What the realised column means, and how the learning policy stands against the calendar on it."""
    s, noise = doc["summary"], doc["noise"]
    learn, cal = s["learning"], s["calendar"]
    if learn["realised_low"] > cal["realised_high"]:
        verdict = "above the calendar's, the two intervals apart"
    elif learn["realised"] > cal["realised"]:
        verdict = "above the calendar's, inside the noise"
    else:
        verdict = "not above the calendar's"
    return f"""**Realised** is what each arm's world produced against the no-action world's, after {doc['tail_days']} more
days in which nobody sent anything while the objectives' horizons ran out: purchases and the actions' own
conversions valued as the catalogue values them, minus the incentives paid and the sends' cost
(`analysis/loop/realised.py`). It counts what the per-message value cannot: the lapses and unsubscriptions a
message causes past its horizon, the customers it brings back, the conversions a message loses to another one
already pending. The worlds' chance events part after day 0, so the difference also holds noise:
{noise['draws']} no-action worlds reseeded at day 0 put one world's spread at {_fmt(noise['sd'])}, and the
interval is +-{_fmt(noise['half_width'])}. The learning policy's realised value ({_fmt(learn['realised'])}) is
{verdict} ({_fmt(cal['realised'])}), with {learn['messages_per_customer_30d']:.2f} messages per customer per
30 days against the calendar's {cal['messages_per_customer_30d']:.2f}."""


def markdown(doc: dict, image: str) -> str:
    s = doc["summary"]
    share = s["learning"]["share_of_oracle_end"]
    met = share is not None and share >= TARGET_SHARE
    promoted = sum(r["promoted"] for r in doc["retrains"])
    retrains = _table(["day", "effect model", "gate"], [
        [r["day"], f"version {r['version']}" if r["version"] else r["status"],
         ("promoted" if r["promoted"] else "kept the champion") + (f": {r['message']}" if r["message"] else "")]
        for r in doc["retrains"]]) if doc["retrains"] else "No retrain happened (the loop is shorter than a week)."
    first_day = (date.fromisoformat(str(doc["day0"])[:10]) - timedelta(days=int(doc["legacy_days"]))).isoformat()
    return f"""# The learning loop, simulated

Generated by `nextbest simulate-loop --days {doc['days']} --customers {doc['customers']} --start {first_day}` (seed {doc['seed']},
{doc['seconds'] / 60:.0f} minutes). A world of {doc['customers']:,} customers lived {doc['legacy_days']} days
under the legacy calendar (randomised, with controls); the day-0 models were trained on it. From day 0
({doc['day0']}) the world was forked five ways, each living its own {doc['days']} days: every day the journey
engine asked about the customers with a visit, abandoned cart, purchase, registration or click the day
before and everyone on their weekly review day; each policy decided, the world sent and responded, and the
next morning's features saw what happened. The decision policy's hand-set lifts are rotated between actions,
so what nextbest gets right it learned. The learning arm retrained the effect model every
{doc['retrain_every']} days on its own logs (its decisions as assignments with their propensities, control
group and exploration included), held it @challenger and let the policy gate judge it on the logged
decisions (its doubly robust value against the champion's, weighted by the logged propensities): {promoted} of
{len(doc['retrains'])} retrains promoted.

Value is the world's true incremental value of each message at its send time against sending nothing, net of
cost and incentive (`Oracle.incremental_value`), summed per day. The oracle policy decides with the same rules
and the same control group as nextbest, knowing every true increment; nextbest also explores
(`serving.exploration_share`).

{_table(header(doc), rows(doc))}

{realised_text(doc)}

**Target: the learning policy at 90% or more of the oracle's daily value at the end of the loop -
{"met" if met else "not met"}** ({_fmt(share, True)} over the last {s['window_days']} days).
Consent violations (messages on a channel the customer had closed): {", ".join(f"{a} {s[a]['consent_violations']}" for a in ARMS)}.

![the loop over time]({image})

## Retrains

{retrains}
"""
