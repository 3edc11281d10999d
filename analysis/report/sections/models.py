"""2. The models: for each head, the ``@champion`` version - what it predicts (the contract's label definition),
its quality beside the simple baseline and the oracle, a gains chart and a calibration chart from the held-out
predictions (hour accuracy for the send-time head), its top drivers and how it compares with the previous version.
A head without a model says why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.report.charts import (BASE, MODEL, MUTED, ORACLE, PREVIOUS, _barh_labels, _chart, _figure, _grid,
                                    _percent)
from analysis.report.data import _Context, _Version, _artifact, _json_artifact, _versions
from analysis.report.markup import _Section, _cards, _e, _glossary_inline, _missing, _note, _p, _table
from analysis.report.text import HEAD_TEXT, _cap, _date, _n, feature_text
from nextbest.vocabulary import HEADS
from nextbest.vocabulary import HEAD_METRIC as PRIMARY


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


def _model_block(ctx: _Context, head: str, v: _Version, is_champion: bool, previous: _Version | None,
                 versions: list[_Version], tmp: Path) -> list[str]:
    label, what, positives = HEAD_TEXT[head]
    key = PRIMARY[head]
    out = [f'<h3 id="model-{head}">{_e(label)} model <span class="tag">v{_e(v.version)}'
           f'{" @champion" if is_champion else " (no @champion yet)"}</span></h3>']
    contract = _json_artifact(ctx.settings, v.run_id, "contract.json", tmp) or {}
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

    preds_path = _artifact(ctx.settings, v.run_id, "evaluation/test_predictions.parquet", tmp)
    charts = []
    if preds_path is None:
        out.append(_missing("The held-out predictions of this version were not logged (it was trained before runs "
                            "logged them), so its gains and calibration charts cannot be drawn; they appear for every "
                            "version trained from now on."))
    else:
        preds = pd.read_parquet(preds_path)
        prev_preds = None
        if previous is not None:
            pp = _artifact(ctx.settings, previous.run_id, "evaluation/test_predictions.parquet", tmp)
            prev_preds = pd.read_parquet(pp) if pp is not None else None
        if head == "send_time":
            charts.append(_hour_accuracy_chart(preds, v, label))
        else:
            charts.append(_gains_chart(preds, prev_preds, previous, label, positives))
            charts.append(_calibration_chart(preds, label))
    importance = _json_artifact(ctx.settings, v.run_id, "feature_importance.json", tmp)
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
