"""Charts as inline SVG, drawn by matplotlib without pyplot (no global backend state): the colours, the style,
the figure-to-HTML helpers and the axis tickers the sections share."""

from __future__ import annotations

import io
import re

from analysis.report.markup import _e

CHANNEL_COLOR = {"email": "#2563eb", "sms": "#059669", "push": "#d97706", "in_app": "#7c3aed", "print": "#6b7280"}
STAGE_COLOR = {"registered": "#93c5fd", "activating": "#60a5fa", "active": "#059669", "at_risk": "#f59e0b",
               "lapsed": "#dc2626"}
INK, MUTED, MODEL, BASE, ORACLE, PREVIOUS, GOOD, BAD = (
    "#1f2937", "#6b7280", "#2563eb", "#9ca3af", "#059669", "#f59e0b", "#059669", "#dc2626")


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
