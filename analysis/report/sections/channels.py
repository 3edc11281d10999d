"""3. Channels and send times: click rate per channel and segment, reachable share per channel, and engagement
by local hour and weekday."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.report.charts import CHANNEL_COLOR, INK, MUTED, _barh_labels, _chart, _figure, _grid, _percent
from analysis.report.data import _Context
from analysis.report.markup import _Section, _missing
from analysis.report.text import CHANNEL_LABEL, WEEKDAY_NAMES, WEEKDAYS
from nextbest.vocabulary import CHANNELS, RFM_SEGMENTS


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
        common = max(dict.fromkeys(best), key=best.count)  # ties: the first in segment order
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
