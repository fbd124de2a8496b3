"""Small inline-SVG charts for the HTML report: no plotting dependency, crisp at any zoom, text selectable.

Each function returns an ``<svg>`` string sized by ``viewBox`` so that it scales to its container.
"""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

import numpy as np

PALETTE = {"positive": "#2a9d8f", "kept": "#8d99ae", "flagged": "#e76f51", "bar": "#457b9d", "final": "#e76f51"}
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'


def nice_ticks(lo: float, hi: float, *, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 times a power of ten apart)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def fmt_num(v: float) -> str:
    """A short label for a tick or a bar value."""
    if v == 0:
        return "0"
    if abs(v) >= 10000:
        return f"{v:,.0f}"
    if float(v).is_integer():
        return str(int(v))
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def hbars(rows: Sequence[tuple[str, float, str]], *, title: str = "", width: int = 640,
          colors: Sequence[str] | None = None, max_value: float | None = None) -> str:
    """Horizontal bars, one per (label, value, annotation) row; the annotation is printed after the bar."""
    bar_h, gap, left, right, top = 22, 8, 170, 150, 28 if title else 8
    height = top + len(rows) * (bar_h + gap) + 4
    vmax = max_value if max_value is not None else max([r[1] for r in rows] + [0])
    span = width - left - right
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg" {_FONT} font-size="12">']
    if title:
        parts.append(f'<text x="0" y="16" font-size="13" font-weight="600">{escape(title)}</text>')
    for i, (label, value, note) in enumerate(rows):
        y = top + i * (bar_h + gap)
        w = 0 if vmax <= 0 else max(1.0, span * value / vmax) if value > 0 else 0
        color = (colors[i] if colors else PALETTE["bar"])
        parts.append(f'<text x="{left - 8}" y="{y + bar_h / 2 + 4}" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="3" fill="{color}"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + bar_h / 2 + 4}" fill="#333">{escape(note)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(series: dict[str, np.ndarray], *, title: str = "", xlabel: str = "", bins: int = 30,
              width: int = 720, height: int = 290, colors: dict[str, str] | None = None) -> str:
    """Overlaid histograms of several groups, each normalised to its own size (share of the group).

    Groups of very different sizes (a few positives, thousands of kept negatives) stay comparable; the
    legend gives each group's size. Empty groups are listed in the legend with n=0 and not drawn.
    """
    colors = colors or {}
    values = [np.asarray(v, dtype=np.float64) for v in series.values()]
    values = [v[np.isfinite(v)] for v in values]
    allv = np.concatenate([v for v in values if v.size] or [np.zeros(0)])
    legend_y = 26 if title else 4
    left, right, top, bottom = 52, 16, legend_y + 24, 44
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg" {_FONT} font-size="12">']
    if title:
        parts.append(f'<text x="0" y="16" font-size="14" font-weight="600">{escape(title)}</text>')
    if allv.size == 0:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#666">no data</text></svg>')
        return "".join(parts)
    lo, hi = float(allv.min()), float(allv.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    shares = [np.histogram(v, bins=edges)[0] / v.size if v.size else np.zeros(bins) for v in values]
    ymax = max(float(s.max()) for s in shares) or 1.0
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - lo) / (hi - lo) * pw

    def sy(y: float) -> float:
        return top + ph - y / ymax * ph

    for t in nice_ticks(0, ymax, count=4):
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" fill="#555">{t:.0%}</text>')
    for t in nice_ticks(lo, hi, count=6):
        parts.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#555"/>')
        parts.append(f'<text x="{sx(t):.1f}" y="{top + ph + 16}" text-anchor="middle" fill="#555">'
                     f'{fmt_num(t)}</text>')
    parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#555"/>')
    for (name, v), share in zip(series.items(), shares):
        if not np.asarray(v).size:
            continue
        color = colors.get(name, PALETTE.get(name, PALETTE["bar"]))
        pts = [f"{sx(edges[0]):.1f},{sy(0):.1f}"]
        for i, s in enumerate(share):
            pts.append(f"{sx(edges[i]):.1f},{sy(s):.1f}")
            pts.append(f"{sx(edges[i + 1]):.1f},{sy(s):.1f}")
        pts.append(f"{sx(edges[-1]):.1f},{sy(0):.1f}")
        parts.append(f'<polygon points="{" ".join(pts)}" fill="{color}" fill-opacity="0.28" stroke="{color}" '
                     f'stroke-width="1.6" stroke-linejoin="round"/>')
    if xlabel:
        parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle" fill="#333">'
                     f'{escape(xlabel)}</text>')
    x = left
    for name, v in series.items():  # legend in a row above the plot, never over the bars
        color = colors.get(name, PALETTE.get(name, PALETTE["bar"]))
        label = f"{name} (n={np.asarray(v).size:,})"
        parts.append(f'<rect x="{x}" y="{legend_y}" width="10" height="10" fill="{color}" fill-opacity="0.6" '
                     f'stroke="{color}"/>')
        parts.append(f'<text x="{x + 14}" y="{legend_y + 9}" fill="#333">{escape(label)}</text>')
        x += 30 + 6.2 * len(label)
    parts.append("</svg>")
    return "".join(parts)


def grouped_bars(categories: Sequence[str], series: dict[str, Sequence[float]], *, title: str = "",
                 width: int = 640, height: int = 240) -> str:
    """Vertical bars: one group per category, one bar per series (experiment and benchmark metrics)."""
    names = list(series)
    vals = np.array([[float(x) if x is not None else np.nan for x in series[n]] for n in names], dtype=np.float64)
    finite = vals[np.isfinite(vals)]
    left, right, top, bottom = 52, 12, 30 if title else 12, 56
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg" {_FONT} font-size="11">']
    if title:
        parts.append(f'<text x="0" y="16" font-size="13" font-weight="600">{escape(title)}</text>')
    if finite.size == 0 or not categories:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#666">no data</text></svg>')
        return "".join(parts)
    lo, hi = min(0.0, float(finite.min())), max(0.0, float(finite.max()))
    hi = hi if hi > lo else lo + 1
    pw, ph = width - left - right, height - top - bottom
    group_w = pw / len(categories)
    bar_w = group_w * 0.8 / max(len(names), 1)
    cycle = ["#457b9d", "#e76f51", "#2a9d8f", "#e9c46a", "#8d99ae", "#6d597a"]

    def sy(y: float) -> float:
        return top + ph - (y - lo) / (hi - lo) * ph

    for t in nice_ticks(lo, hi, count=4):
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" fill="#555">{fmt_num(t)}</text>')
    for ci, cat in enumerate(categories):
        gx = left + ci * group_w + group_w * 0.1
        for si in range(len(names)):
            v = vals[si, ci]
            if not np.isfinite(v):
                continue
            y0, y1 = sorted((sy(0), sy(v)))
            parts.append(f'<rect x="{gx + si * bar_w:.1f}" y="{y0:.1f}" width="{bar_w * 0.92:.1f}" '
                         f'height="{max(y1 - y0, 0.5):.1f}" fill="{cycle[si % len(cycle)]}">'
                         f'<title>{escape(names[si])} / {escape(cat)}: {fmt_num(v)}</title></rect>')
        short = cat if len(cat) <= 18 else cat[:17] + "…"
        parts.append(f'<text x="{left + (ci + 0.5) * group_w:.1f}" y="{top + ph + 16}" text-anchor="middle" '
                     f'fill="#333">{escape(short)}</text>')
    x = left
    for si, name in enumerate(names):
        parts.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{cycle[si % len(cycle)]}"/>')
        parts.append(f'<text x="{x + 14}" y="{height - 5}" fill="#333">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)
