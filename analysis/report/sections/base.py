"""1. The base: customers by lifecycle stage and segment at the latest feature snapshot, and the movement over
about a month (stage transitions against the snapshot closest to :data:`MOVEMENT_DAYS` days earlier; customers who
dropped an RFM segment at the last monthly recompute)."""

from __future__ import annotations

import pandas as pd

from analysis.report.charts import BAD, GOOD, STAGE_COLOR, _barh_labels, _chart, _figure, _grid, _thousands, _ticks
from analysis.report.data import _Context, _previous_snapshot
from analysis.report.markup import _Section, _details, _e, _note, _p, _table
from analysis.report.text import _date, _rfm_label, _short_stage, _signed, _stage_labels
from nextbest.vocabulary import RFM_SEGMENTS, STAGES

MOVEMENT_DAYS = 30  # "movement" compares the latest snapshot with the one closest to a month earlier


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
