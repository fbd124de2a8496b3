"""A PNG of a comparison: per measure, each system's mean with its bootstrap confidence interval."""

from __future__ import annotations

from pathlib import Path

from negclean.errors import require
from negclean.evaluate.compare import Comparison


def plot_comparison(comparison: Comparison, path: str | Path, *, title: str = "", alpha: float = 0.05) -> Path:
    """Write one panel per measure: bars = means, whiskers = CI, dashed line = baseline, * = Holm p < alpha."""
    matplotlib = require("matplotlib", extra="report", purpose="Plotting a comparison")
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(comparison.tables)
    fig, axes = plt.subplots(1, n, figsize=(max(4.0, 1.1 * len(comparison.systems) + 1.5) * n, 4.0), squeeze=False)
    for ax, table in zip(axes[0], comparison.tables):
        names = [r.name for r in table.rows]
        means = [r.mean for r in table.rows]
        low = [r.mean - r.mean_ci[0] for r in table.rows]
        high = [r.mean_ci[1] - r.mean for r in table.rows]
        colors = ["#888888"] + ["#2b6cb0" if (r.delta or 0) >= 0 else "#c05621" for r in table.rows[1:]]
        ax.bar(range(len(names)), means, yerr=[low, high], color=colors, capsize=4)
        ax.axhline(table.rows[0].mean, color="#444444", linestyle="--", linewidth=1)
        top = max(m + h for m, h in zip(means, high))
        for i, r in enumerate(table.rows[1:], start=1):
            if r.p_holm is not None and r.p_holm < alpha:
                ax.text(i, means[i] + high[i] + 0.01 * top, "*", ha="center", va="bottom", fontsize=14)
        lower = min(m - lo for m, lo in zip(means, low))
        ax.set_ylim(max(0.0, lower - 0.1 * (top - lower + 1e-9)), top + 0.08 * (top - lower + 1e-9))
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_title(f"{table.measure} ({table.queries} queries)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["plot_comparison"]
