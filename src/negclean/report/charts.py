"""The report's charts, drawn with matplotlib and embedded in the HTML as inline SVG.

One plotting stack for the whole project (``evaluate/plot.py`` and the benchmarks use matplotlib too).
matplotlib is imported only inside the drawing functions, so importing the report (and ``negclean --help``)
stays light. Figures are built with ``matplotlib.figure.Figure`` and saved through the SVG canvas: pyplot is
never imported, so no GUI backend is chosen and no global figure state is kept.

Charts are reproducible: the same data gives the same bytes (``svg.hashsalt`` fixed, no date in the
metadata, the metadata block removed), text stays text (``svg.fonttype: none``: selectable, searchable, read
by the browser tests), and every ``id`` in a chart is prefixed with a hash of the chart, so several charts
inline in one page never share an id.

Without matplotlib (the ``report`` extra) every drawing function raises ``MissingDependency``;
``available()`` lets the report render its tables without charts instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from negclean.errors import require

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PALETTE = {
    "positive": "#2a9d8f",
    "kept": "#8d99ae",
    "flagged": "#e76f51",
    "bar": "#457b9d",
    "final": "#e76f51",
    "stage_flagged": "#f4a261",
}
CYCLE = ("#457b9d", "#e76f51", "#2a9d8f", "#e9c46a", "#8d99ae", "#6d597a")
MISSING_NOTE = "Charts need matplotlib, which is not installed: pip install 'negclean[report]'. Tables only."
_RC: dict[Any, Any] = {
    "svg.hashsalt": "negclean-report",
    "svg.fonttype": "none",
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.edgecolor": "#555555",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "text.usetex": False,
}
_WIDTH_IN = 7.2  # about the 760 px the page gives a chart; the SVG scales to its box (viewBox)


def available() -> bool:
    """Whether matplotlib can be imported (the ``report`` extra); the report draws charts only then."""
    return importlib.util.find_spec("matplotlib") is not None


def _new_figure(height_in: float) -> tuple[Figure, Axes]:
    require("matplotlib", extra="report", purpose="Drawing the report's charts")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_WIDTH_IN, height_in))
    return fig, fig.add_subplot()


def to_inline_svg(fig: Figure, *, title: str) -> str:
    """The figure as an ``<svg class="chart" role="img">`` element ready to paste into HTML.

    Drops the XML prolog, DOCTYPE and metadata, and the fixed width/height (the viewBox stays, so CSS sizes
    it); gives it an aria-label and a ``<title>``; prefixes its ids so that charts on one page never clash.
    """
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    prefix = "c" + hashlib.sha1(text.encode()).hexdigest()[:8] + "-"
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r'(xlink:href|href)="#([^"]+)"', lambda m: f'{m.group(1)}="#{prefix}{m.group(2)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    label = escape(title, quote=True)
    text = re.sub(
        r'<svg ([^>]*?)width="[^"]*" height="[^"]*" ',
        lambda m: f'<svg class="chart" role="img" aria-label="{label}" {m.group(1)}',
        text,
        count=1,
    )
    head_end = text.index(">") + 1
    return text[:head_end] + f"<title>{escape(title)}</title>" + text[head_end:].rstrip() + "\n"


def hbars(
    rows: Sequence[tuple[str, float, str]],
    *,
    title: str = "",
    colors: Sequence[str] | None = None,
    max_value: float | None = None,
) -> str:
    """Horizontal bars, one per (label, value, annotation) row, top to bottom; the annotation follows the bar."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig, ax = _new_figure(0.55 + 0.3 * max(len(rows), 1))
        values = [float(r[1]) for r in rows]
        vmax = max_value if max_value is not None else max(values + [0.0])
        ax.barh(range(len(rows)), values, height=0.72, color=list(colors) if colors else PALETTE["bar"])
        ax.set_yticks(range(len(rows)), [r[0] for r in rows], parse_math=False)
        ax.invert_yaxis()
        for i, (_, value, note) in enumerate(rows):
            ax.annotate(
                note,
                (value, i),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                ha="left",
                color="#333333",
                parse_math=False,
            )
        # room on the right for the longest annotation, in data units
        ax.set_xlim(0, (vmax if vmax > 0 else 1.0) * 1.55)
        ax.xaxis.set_visible(False)
        ax.spines["bottom"].set_visible(False)
        ax.tick_params(axis="y", length=0)
        if title:
            ax.set_title(title)
        fig.tight_layout(pad=0.4)
        return to_inline_svg(fig, title=title or "bar chart")


def histogram_shares(values: Sequence[np.ndarray], *, bins: int = 30) -> tuple[np.ndarray, list[np.ndarray]]:
    """Common bin edges over all groups and each group's histogram as shares of its own size.

    Non-finite values are left out; an empty group gets zeros; all-equal values get a unit-wide range.
    """
    finite = [np.asarray(v, dtype=np.float64) for v in values]
    finite = [v[np.isfinite(v)] for v in finite]
    allv = np.concatenate([v for v in finite if v.size] or [np.zeros(0)])
    if allv.size == 0:
        return np.zeros(0), [np.zeros(0) for _ in finite]
    lo, hi = float(allv.min()), float(allv.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    return edges, [np.histogram(v, bins=edges)[0] / v.size if v.size else np.zeros(bins) for v in finite]


def histogram(
    series: Mapping[str, np.ndarray],
    *,
    title: str = "",
    xlabel: str = "",
    bins: int = 30,
    colors: Mapping[str, str] | None = None,
) -> str:
    """Overlaid step histograms of several groups, each normalised to its own size (share of the group).

    Groups of very different sizes (a few positives, thousands of kept negatives) stay comparable; the
    legend gives each group's size. Empty groups are listed in the legend with n=0 and not drawn.
    """
    import matplotlib
    from matplotlib.patches import Patch
    from matplotlib.ticker import PercentFormatter

    colors = colors or {}
    edges, shares = histogram_shares(list(series.values()), bins=bins)
    with matplotlib.rc_context(_RC):
        fig, ax = _new_figure(2.9)
        handles = []
        for (name, v), share in zip(series.items(), shares, strict=True):
            color = colors.get(name, PALETTE.get(name, PALETTE["bar"]))
            n = int(np.isfinite(np.asarray(v, dtype=np.float64)).sum())
            handles.append(Patch(facecolor=color, edgecolor=color, alpha=0.6, label=f"{name} (n={n:,})"))
            if n and edges.size:
                ax.stairs(share, edges, fill=True, color=color, alpha=0.28)
                ax.stairs(share, edges, color=color, linewidth=1.4)
        if not edges.size:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#666666")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
            ax.set_axisbelow(True)
            ax.set_ylim(bottom=0)
        ax.legend(
            handles=handles,
            loc="lower left",
            bbox_to_anchor=(0, 1.0),
            ncol=len(handles),
            frameon=False,
            borderaxespad=0.2,
            handlelength=1.0,
            columnspacing=1.4,
        )
        if xlabel:
            ax.set_xlabel(xlabel, parse_math=False)
        if title:
            fig.suptitle(title, x=0.01, ha="left", fontsize=10, fontweight="bold")
        fig.tight_layout(pad=0.4)
        return to_inline_svg(fig, title=title or "histogram")


def grouped_bars(categories: Sequence[str], series: Mapping[str, Sequence[float | None]], *, title: str = "") -> str:
    """Vertical bars: one group per category, one bar per series (experiment, benchmark and qrels metrics)."""
    import matplotlib

    names = list(series)
    vals = np.array([[np.nan if x is None else float(x) for x in series[n]] for n in names], dtype=np.float64)
    with matplotlib.rc_context(_RC):
        fig, ax = _new_figure(2.6)
        if not categories or not np.isfinite(vals).any():
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#666666")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            width = 0.8 / max(len(names), 1)
            x = np.arange(len(categories))
            for si, name in enumerate(names):
                ax.bar(
                    x + (si - (len(names) - 1) / 2) * width,
                    np.nan_to_num(vals[si]),
                    width * 0.92,
                    color=CYCLE[si % len(CYCLE)],
                    label=name,
                )
            short = [c if len(c) <= 18 else c[:17] + "…" for c in categories]
            ax.set_xticks(
                x, short, rotation=20 if len(categories) > 5 else 0, ha="right" if len(categories) > 5 else "center"
            )
            ax.axhline(0, color="#555555", linewidth=0.8)
            ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
            ax.set_axisbelow(True)
            ax.legend(
                loc="lower left",
                bbox_to_anchor=(0, 1.0),
                ncol=min(len(names), 6),
                frameon=False,
                borderaxespad=0.2,
                handlelength=1.0,
            )
        if title:
            fig.suptitle(title, x=0.01, ha="left", fontsize=10, fontweight="bold")
        fig.tight_layout(pad=0.4)
        return to_inline_svg(fig, title=title or "bar chart")


__all__ = [
    "CYCLE",
    "MISSING_NOTE",
    "PALETTE",
    "available",
    "grouped_bars",
    "histogram",
    "histogram_shares",
    "hbars",
    "to_inline_svg",
]
