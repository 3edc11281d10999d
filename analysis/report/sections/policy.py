"""4. The policy's what-if on the current base (``data/scores/latest.parquet``, written by ``nextbest score``;
produced here when missing): action x channel mix, contact pressure against the caps, why customers get nothing,
expected value against no action, and against the calendar campaigns from ``nextbest evaluate``'s results
(``<data_dir>/evaluation/latest.json``, else ``docs/evaluation.json`` when it describes the same data end)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.report.charts import (BAD, BASE, CHANNEL_COLOR, GOOD, MODEL, MUTED, ORACLE, PREVIOUS, _barh_labels,
                                    _chart, _figure, _grid, _thousands)
from analysis.report.data import _Context
from analysis.report.markup import _Section, _cards, _e, _missing, _note, _p, _table
from analysis.report.text import CHANNEL_LABEL, _ACTION_TEXT, _cap, _date, action_text
from nextbest.vocabulary import CHANNELS


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
    "oracle": "Best possible (same rules, true effects)",
    "nextbest": "This policy (nextbest, learned effects)",
    "response_ranked": "Ranked by response (catalogue priors)",
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
    names = [k for k in _POLICY_TEXT if k in policies]
    vals = np.array([float(policies[k].get("value") or 0.0) for k in names])
    colors = {"nextbest": MODEL, "calendar": PREVIOUS, "oracle": ORACLE}
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
    ax.set_xlabel("true value today's decisions add against doing nothing (currency units)")
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
    note = ("Measured by <code>nextbest evaluate</code> with the simulator's causal truth: what one decision per "
            "customer truly adds against sending nothing, net of costs and incentives," + (f" for the same {int(n):,} customers" if n else "")
            + (f" as of {_e(_date(as_of))}" if as_of else "") + ", every strategy under the same contact rules. "
            f"The calendar campaigns send each stage's usual action at 10:00 whatever it is worth; no action is "
            f"worth 0. Source: {_e(path)}.")
    return _grid(_chart(fig, title, note, wide=True), _losses_chart(data))


_LOSS_TEXT = {  # the kinds of analysis.evaluation.losses, in a marketer's words
    "send_hour": "the right message, sent at another hour",
    "channel": "the right message, on another channel",
    "action": "another message than the best",
    "extra_send": "a message where sending nothing was best",
    "held_back": "nothing where a message was best",
}


def _losses_chart(data: dict) -> str:
    """From the best possible decisions' value to this policy's, one step per way its decisions differ (the
    evaluation's ``losses``); "" when the evaluation has none."""
    loss, policies = data.get("losses"), data.get("policies") or {}
    if not isinstance(loss, dict) or "oracle" not in policies or not isinstance(loss.get("kinds"), dict):
        return ""
    from analysis.evaluation.losses import waterfall

    best = float(policies["oracle"].get("value") or 0.0)
    steps = [(text, float(loss["kinds"].get(k, {}).get("lost") or 0.0)) for k, text in _LOSS_TEXT.items()]
    levels = waterfall(best, [lost for _, lost in steps])
    level = float(levels[-1])
    labels = ["Best possible", *(f"minus {text}" for text, _ in steps), "This policy"]
    fig = _figure(8.6, 0.42 * len(labels) + 1.0)
    ax = fig.add_subplot()
    y = np.arange(len(labels))[::-1]
    lefts = [0.0, *np.minimum(levels[:-1], levels[1:]), 0.0]
    widths = [best, *(abs(lost) for _, lost in steps), level]
    colors = [ORACLE, *(BAD if lost > 0 else GOOD for _, lost in steps), MODEL]
    ax.barh(y, widths, left=lefts, color=colors, height=0.62)
    ax.set_yticks(y, labels)
    ax.set_xlim(min(0.0, float(levels.min())) * 1.1, max(float(levels.max()), 1.0) * 1.25)
    xmax = ax.get_xlim()[1]
    texts = [f"{best:,.0f}", *(f"-{lost:,.0f}" if lost >= 0 else f"+{-lost:,.0f}" for _, lost in steps),
             f"{level:,.0f}"]
    for yi, left, width, text in zip(y, lefts, widths, texts):
        ax.text(left + width + xmax * 0.01, yi, text, va="center", ha="left", fontsize=9)
    ax.axvline(0, color=MUTED, lw=0.8)
    ax.set_xlabel("true value against doing nothing (currency units)")
    ax.xaxis.set_major_formatter(_thousands())
    worst = max(steps, key=lambda st: st[1])
    title = (f"Most of the gap to the best possible is {worst[0]} ({worst[1]:,.0f} of {best - level:,.0f})"
             if best - level > 0 and worst[1] > 0 else "This policy's decisions are worth as much as the best possible")
    note = ("Customer by customer, the best possible decisions' true value minus this policy's, by how the two "
            "differ (the steps add up to the gap). Another hour is the send-time model's part; the rest is the "
            "effect and channel models'.")
    return _chart(fig, title, note, wide=True)


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
