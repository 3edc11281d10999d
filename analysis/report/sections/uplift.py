"""5. Control group and uplift: what each action changes against doing nothing, as the effect model learned it
from the randomised sends (its increment per message with a 95% confidence interval on the held-out window, and
how well the model ranks who it works for), then treated vs control purchase rate with a 95% confidence interval
and the incremental value, for the legacy campaigns of a simulated world (``world/targets.parquet``; a target converts when
the customer buys within :data:`UPLIFT_DAYS` days of the planned send) and for the service's logged decisions with
``converted`` feedback (``<data_dir>/serving/history.db``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.report.charts import BAD, BASE, GOOD, INK, MODEL, MUTED, _chart, _figure, _grid, _percent, _points
from analysis.report.data import _Context
from analysis.report.markup import _Section, _details, _e, _glossary_inline, _missing, _note, _p, _table
from analysis.report.text import CHANNEL_LABEL, _pct, action_text

UPLIFT_DAYS = 7  # a target converts when the customer buys within this many days of the planned send


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
    sec.add("<h3>What each action changes</h3>")
    sec.add(_learned_uplift(ctx))
    sec.add("<h3>Legacy campaigns</h3>")
    sec.add(_legacy_uplift(ctx))
    sec.add("<h3>Decisions of the service</h3>")
    sec.add(_service_uplift(ctx))


def _learned_uplift(ctx: _Context) -> str:
    """The effect champion's per-action increments (test window, treated vs eligible controls) with intervals."""
    import tempfile
    from pathlib import Path

    from analysis.report.data import _json_artifact, _versions
    from nextbest.model_contract import connect, model_name
    from nextbest.vocabulary import CHAMPION, EFFECT_MODEL

    client = connect(ctx.settings)
    versions = [v for v in _versions(client, model_name(ctx.settings, EFFECT_MODEL)) if CHAMPION in v.aliases]
    if not versions:
        return _missing("No effect model yet: the data has no randomised assignments (controls held out, options "
                        "drawn at random), so what each action changes cannot be learned; decisions use the "
                        "catalogue's priors.")
    v = versions[-1]
    with tempfile.TemporaryDirectory() as tmp:
        report = _json_artifact(ctx.settings, v.run_id, "evaluation/uplift.json", Path(tmp))
        contract = _json_artifact(ctx.settings, v.run_id, "contract.json", Path(tmp)) or {}
    rows = [(a, e) for a, e in (report or {}).get("actions", {}).items() if "increment" in e]
    if not rows:
        return _missing("The effect model's held-out window has too few randomised sends per action to show.")
    learned = set(contract.get("learned", {}))
    rows.sort(key=lambda r: r[1]["increment"])
    fig = _figure(8.6, 0.42 * len(rows) + 1.2)
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    inc = np.array([e["increment"] for _, e in rows])
    lo = inc - np.array([e["ci_low"] for _, e in rows])
    hi = np.array([e["ci_high"] for _, e in rows]) - inc
    colors = [GOOD if e["ci_low"] > 0 else (BAD if e["ci_high"] < 0 else BASE) for _, e in rows]
    ax.barh(y, inc, xerr=np.vstack([lo, hi]), color=colors, height=0.6, capsize=3, ecolor=INK)
    ax.set_yticks(y, [action_text(a) + ("" if a in learned else " (prior)") for a, _ in rows])
    ax.axvline(0, color=MUTED, lw=0.8)
    ax.set_xlabel("increment per message against the control group (currency, objective value net of incentives)")
    proven = [action_text(a) for a, e in rows if e["ci_low"] > 0]
    title = (f"{', '.join(proven[:3])} proven to add value against doing nothing" if proven
             else "No action is yet proven to add value on the held-out weeks")
    table = pd.DataFrame([{
        "action": action_text(a), "messages": f"{e['treated']:,}", "controls": f"{e['controls']:,}",
        "increment": f"{e['increment']:+,.2f} [{e['ci_low']:+,.2f}, {e['ci_high']:+,.2f}]",
        "ranking (Qini): model": f"{e.get('qini', float('nan')):+,.2f}",
        "prior": f"{e.get('prior_qini', float('nan')):+,.2f}",
        "learned": "yes" if a in learned else "no: prior",
    } for a, e in reversed(rows)]).set_index("action")
    note = (f"Effect model v{v.version}, held-out weeks from {_e(str(contract.get('time_range', {}).get('test_from', ''))[:10])}: "
            "each message's outcome (the action's objective in currency, minus the incentive it paid) against the "
            "randomised controls held out from it (where the log does not say, those of its campaigns and stages), "
            "95% intervals. "
            "The Qini coefficient says how much better than random the model ranks who each action works for "
            "(the prior: ranking by response and driver score).")
    return _grid(_chart(fig, title, note, wide=True)) + _details("The increments and rankings, action by action",
                                                               _table(table, cls="compact"))


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
