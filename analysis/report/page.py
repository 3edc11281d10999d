"""The page: its style sheet and template, :func:`write_report` (build every section, write the HTML) and the
MLflow run that keeps a copy.

The page loads no script, style sheet, font or image from anywhere: charts are inline SVG and the CSS is inline.
"""

from __future__ import annotations

import logging
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from analysis.report.charts import _RC
from analysis.report.data import _Context
from analysis.report.markup import _Section, _cards, _e, _error_box
from analysis.report.sections.base import _section_base
from analysis.report.sections.channels import _section_channels
from analysis.report.sections.models import _section_models
from analysis.report.sections.policy import _section_policy
from analysis.report.sections.uplift import _section_uplift
from analysis.report.text import GLOSSARY, _date
from nextbest.settings import Settings

log = logging.getLogger("analysis.report")


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


def _log_to_mlflow(settings: Settings, path: Path, ctx: _Context, sections: list, seconds: float) -> str:
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
