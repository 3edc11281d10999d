"""HTML building blocks of the page: the section being built, escaping, paragraphs, notes, boxes, key-figure
cards, tables, folded details and glossary lists."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.report.text import GLOSSARY, _n


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


def _glossary_inline(terms: tuple[str, ...]) -> str:
    g = dict(GLOSSARY)
    items = "".join(f"<li><strong>{_e(t)}</strong>: {_e(g[t])}</li>" for t in terms)
    return f'<ul class="gloss">{items}</ul>'
