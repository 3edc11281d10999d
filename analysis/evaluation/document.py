"""The evaluation's outputs: docs/evaluation.{json,md,png} (and evaluation-losses.png), an MLflow run and a printed
table."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from analysis.evaluation.single import DIAGNOSTICS, LABELS, POLICIES
from nextbest.settings import Settings

TARGETS = {"share_of_oracle": 0.90, "share_of_oracle_wrong_lifts": 0.85}


def _fmt(x, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return f"{x:.0%}" if pct else f"{x:,.1f}"


def _interval(c: dict, pct: bool = False) -> str:
    if c.get("low") is None:
        return _fmt(c.get("mean"), pct)
    return f"{_fmt(c['mean'], pct)} [{_fmt(c['low'], pct)}, {_fmt(c['high'], pct)}]"


def rows(doc: dict) -> list[list[str]]:
    """One table row per policy: label, value per 1,000 customers, share of the oracle, messages per customer."""
    out = []
    if "summary" in doc:
        for p in (*POLICIES, *DIAGNOSTICS):
            r = doc["summary"][p]
            out.append([r["label"], _interval(r["per_1000"]), _interval(r["share_of_oracle"], True),
                        _fmt(r["send_rate"]["mean"])])
    else:
        for p in (*POLICIES, *DIAGNOSTICS):
            r = doc["policies"][p]
            out.append([r["label"], _fmt(r["per_1000"]), _fmt(r["share_of_oracle"], True), _fmt(r["send_rate"])])
    return out


HEADER = ["policy", "true incremental value per 1,000 customers", "share of the oracle", "messages per customer"]


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in body])


def targets(doc: dict) -> dict:
    """The targets of the evaluation and whether they are met (on the mean over worlds)."""
    get = (lambda p: doc["summary"][p]["share_of_oracle"]["mean"]) if "summary" in doc else \
        (lambda p: doc["policies"][p]["share_of_oracle"])
    share, wrong = get("nextbest"), get("nextbest_wrong_lifts")
    return {"share_of_oracle": share, "share_of_oracle_met": share is not None and share >= TARGETS["share_of_oracle"],
            "share_of_oracle_wrong_lifts": wrong,
            "share_of_oracle_wrong_lifts_met": wrong is not None and wrong >= TARGETS["share_of_oracle_wrong_lifts"]}


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*POLICIES, *DIAGNOSTICS]
    if "summary" in doc:
        mean = np.array([doc["summary"][p]["per_1000"]["mean"] or 0.0 for p in names])
        lo = np.array([doc["summary"][p]["per_1000"]["low"] if doc["summary"][p]["per_1000"]["low"] is not None
                       else doc["summary"][p]["per_1000"]["mean"] or 0.0 for p in names])
        err = np.vstack([mean - lo, lo * 0 + (mean - lo)])
    else:
        mean = np.array([doc["policies"][p]["per_1000"] for p in names])
        err = None
    colors = {"oracle": "#c53030", "nextbest": "#2b6cb0", "response_ranked": "#805ad5", "calendar": "#a0aec0"}
    fig, ax = plt.subplots(figsize=(10, 5.6))
    y = np.arange(len(names))[::-1]
    ax.barh(y, mean, xerr=err, color=[colors.get(p, "#cbd5e0") for p in names], edgecolor="#4a5568",
            capsize=3 if err is not None else 0)
    ends = mean + (err[1] if err is not None else 0) * np.sign(mean + (mean == 0))
    ax.set_xlim(right=max(float(ends.max()), 1.0) * 1.1)
    ax.set_yticks(y, [LABELS[p] for p in names], fontsize=8)
    ax.axvline(0, color="black", lw=0.6)
    for yi, v, end in zip(y, mean, ends):  # the figure past the end of the interval, where it is readable
        ax.annotate(f"{v:,.0f}", (end, yi), xytext=(4 if v >= 0 else -4, 0), textcoords="offset points",
                    va="center", ha="left" if v >= 0 else "right", fontsize=8)
    ax.set_xlabel("true incremental value per 1,000 customers (currency, net of costs and incentives)")
    worlds = f"{doc['worlds']} worlds, 95% intervals" if "summary" in doc else "one world"
    ax.set_title(f"What one decision per customer adds against doing nothing ({worlds})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_losses(doc: dict, path: Path) -> bool:
    """From the oracle policy's value to nextbest's, one step per kind of difference (``losses.where_lost``);
    False (nothing written) when the evaluation has no losses."""
    from analysis.evaluation.losses import KINDS, waterfall

    loss = doc.get("losses")
    if not loss:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    over = "summary" in doc
    oracle = doc["summary"]["oracle"]["per_1000"]["mean"] if over else doc["policies"]["oracle"]["per_1000"]
    steps = [(label, loss["kinds"][k]["per_1000"]["mean"] if over else loss["kinds"][k]["per_1000"])
             for k, label in KINDS.items()]
    levels = waterfall(oracle, [lost for _, lost in steps])
    labels = [LABELS["oracle"], *(f"- {label}" for label, _ in steps), LABELS["nextbest"]]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    y = np.arange(len(labels))[::-1]
    ax.barh(y[0], oracle, color="#c53030", edgecolor="#4a5568")
    ax.annotate(f"{oracle:,.0f}", (oracle, y[0]), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    for yi, level, (_, lost) in zip(y[1:-1], levels, steps):
        ax.barh(yi, -lost, left=level, color="#ed8936" if lost > 0 else "#48bb78", edgecolor="#4a5568")
        ax.annotate(f"-{lost:,.0f}" if lost > 0 else f"+{-lost:,.0f}", (max(level, level - lost), yi), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.barh(y[-1], levels[-1], color="#2b6cb0", edgecolor="#4a5568")
    ax.annotate(f"{levels[-1]:,.0f}", (levels[-1], y[-1]), xytext=(4, 0), textcoords="offset points", va="center",
                fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(min(0.0, float(levels.min()) * 1.12), max(float(levels.max()), 1.0) * 1.12)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("true incremental value per 1,000 customers (currency)")
    worlds = f"means over {doc['worlds']} worlds" if over else "one world"
    ax.set_title(f"Where nextbest loses value against the oracle policy ({worlds})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def accuracy_section(doc: dict) -> str:
    """"How well the effects are learned": the effect model's increments beside the true ones, per action."""
    from analysis.evaluation.accuracy import by_action

    acc = doc.get("effect_accuracy")
    if not acc:
        return ""
    if "summary" in doc:
        body = [[a, _interval(e["model"]), _interval(e["true"])] for a, e in acc["actions"].items()]
        same, kept = _interval(acc["same_best_option"], True), _interval(acc["best_option_value_kept"], True)
    else:
        if not acc.get("customers"):
            return ""
        body = [[a, _fmt(e["model"]), _fmt(e["true"])] for a, e in by_action(acc["options"]).items()]
        same, kept = _fmt(acc["same_best_option"], True), _fmt(acc.get("best_option_value_kept"), True)
    table = _table(["action", "learned increment (mean)", "true increment (mean)"], body)
    return f"""
## How well the effects are learned

For every customer and every option the rules leave open at the decision time (eligible action, open
channel, at nextbest's send hour), the effect model's increment beside the true one, in currency before
the send's cost, averaged per action{" (means over the worlds, 95% intervals)" if "summary" in doc else ""}.
The model's best option is the truly best one for {same} of the customers with an option, and keeps
{kept} of the best option's true increment.

{table}
"""


def losses_section(doc: dict, image: str | None = None) -> str:
    """"Where nextbest loses value against the oracle": the gap split by kind of difference, and the pairs of
    actions that lose most."""
    from analysis.evaluation.losses import KINDS, NOTHING, TOP_PAIRS

    loss = doc.get("losses")
    if not loss:
        return ""
    over = "summary" in doc
    body = []
    for k, label in KINDS.items():
        e = loss["kinds"][k]
        if over:
            body.append([label, f"{e['customers']:,.0f}", _interval(e["per_1000"]),
                         _interval(e["share_of_oracle"], True)])
        else:
            body.append([label, f"{e['customers']:,}", _fmt(e["per_1000"]), _fmt(e["share_of_oracle"], True)])
    over_worlds = ", means over the worlds with 95% intervals"
    picture = f"\n![From the oracle's value to nextbest's]({image})\n" if image else ""
    name = lambda a: "nothing" if a == NOTHING else f"`{a}`"  # noqa: E731
    pairs = "\n".join(f"- the oracle sends {name(p['oracle'])}, nextbest {name(p['nextbest'])}: "
                      f"{_fmt(p['per_1000'])} per 1,000 customers" for p in loss["pairs"][:TOP_PAIRS])
    return f"""
## Where nextbest loses value against the oracle

Customer by customer, the oracle policy's value minus nextbest's, by how their decisions differ
(`analysis/evaluation/losses.py`; the kinds add up to the whole gap{over_worlds if over else ""}).
Another send hour is the send-time head's part; the other kinds are the effect model's and the channel
head's. A figure below zero means nextbest's choices of that kind were truly worth more than the oracle's
for those customers.

{_table(["where the decisions differ", "customers" + (" (mean per world)" if over else ""),
         "value lost per 1,000 customers", "share of the oracle's value"], body)}
{picture}
The pairs of actions (oracle, nextbest) that lose most{" (per 1,000 customers, mean over the worlds)" if over else ""}:

{pairs}
"""


def markdown(doc: dict, image: str, losses_image: str | None = None) -> str:
    t = doc["targets"]
    where = (f"{doc['worlds']} simulated worlds (seeds {', '.join(map(str, doc['seeds']))}) of "
             f"{doc['customers']:,} customers over {doc['days']} days from {doc['start']} (`--start "
             f"{doc['start']}`), each simulated, built and learned from scratch; figures are means with 95% "
             "t-intervals over the worlds"
             if "summary" in doc else
             f"the simulated world of the data folder, {doc['customers']:,} customers decided as of {doc['as_of']}")
    return f"""# Policy evaluation on the causal world

What one decision per customer is worth **against doing nothing**, measured with the simulated world's
causal truth: the oracle knows every customer's true response to every action, channel and send hour
(`simulator/oracle.py`, `Oracle.incremental_value`). Generated by `nextbest evaluate`
({doc['generated_at']}) on {where}. Machine-readable figures: `evaluation.json`.

{_table(HEADER, rows(doc))}

![True incremental value per 1,000 customers]({image})

## Targets

| target | measured | status |
|---|---|---|
| nextbest >= {TARGETS['share_of_oracle']:.0%} of the oracle policy's value | {_fmt(t['share_of_oracle'], True)} | {"met" if t['share_of_oracle_met'] else "**not met**"} |
| with wrong hand-set lifts, nextbest >= {TARGETS['share_of_oracle_wrong_lifts']:.0%} of the oracle | {_fmt(t['share_of_oracle_wrong_lifts'], True)} | {"met" if t['share_of_oracle_wrong_lifts_met'] else "**not met**"} |

## How it is measured

- **Value**: for each customer the true incremental value of the decision at its send hour: the action's
  objective in currency (value per unit of the objective, minus the incentive per redemption) if sent,
  minus the same without any message, minus the send's cost; nothing is worth 0. Every policy decides for
  the same customers at the newest feature snapshot, with the control group off.
- **oracle**: the same rules reading the same inputs (stages, conditions with the champions' outcome
  scores), choosing by the true increment of every option at the customer's true best hour.
- **nextbest**: the serving path: the champion heads and the effect model learned from the world's
  randomised history (legacy campaigns with a random control group and a random choice of action).
- **response-ranked**: the same rules and heads, options ranked by the catalogue's prior (P(click) x
  driver score x prior per click): how nextbest decided before it learned effects.
- **calendar**: each stage's usual action at 10:00 on the first open channel, whatever it is worth.
- **random**: a random eligible option at a random allowed hour.
- **nextbest with the true effects**: nextbest's heads and send hour, the true increments: what the effect
  model's error costs, the rest being the send hour.
- **oracle, conditions read with the true outcome scores**: what knowing the hidden churn state adds.
- **wrong lifts**: the catalogue's hand-set lifts rotated between actions; learned actions do not read them.
{accuracy_section(doc)}{losses_section(doc, losses_image)}"""


def log_mlflow(settings: Settings, doc: dict, paths: dict) -> str:
    import mlflow

    from nextbest.model_contract import connect

    connect(settings)
    with mlflow.start_run(run_name=f"evaluate-{time.strftime('%Y%m%d-%H%M%S')}") as run:
        mlflow.set_tags({"kind": "evaluation"})
        metrics = {}
        if "summary" in doc:
            for p, r in doc["summary"].items():
                for k in ("per_1000", "share_of_oracle"):
                    if r[k]["mean"] is not None:
                        metrics[f"{p}_{k}"] = r[k]["mean"]
        else:
            for p, r in doc["policies"].items():
                metrics[f"{p}_per_1000"] = r["per_1000"]
                if r["share_of_oracle"] is not None:
                    metrics[f"{p}_share_of_oracle"] = r["share_of_oracle"]
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
        for p in paths.values():
            mlflow.log_artifact(str(p), "evaluation")
        return run.info.run_id


def write(settings: Settings, doc: dict, out_dir: Path) -> dict:
    """docs/evaluation.{json,md,png} and, with losses, evaluation-losses.png; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "evaluation.json", "png": out_dir / "evaluation.png", "md": out_dir / "evaluation.md"}
    plot(doc, paths["png"])
    losses = out_dir / "evaluation-losses.png"
    if plot_losses(doc, losses):
        paths["losses_png"] = losses
    paths["md"].write_text(markdown(doc, paths["png"].name, losses.name if "losses_png" in paths else None))
    paths["json"].write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return paths
