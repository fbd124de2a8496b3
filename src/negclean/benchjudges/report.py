"""Tables (Markdown, terminal) and the cost-quality frontier plot of a judge benchmark."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from negclean.benchjudges.run import SystemResult


def _f(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown_table(results: Sequence[SystemResult]) -> str:
    """One row per system: quality, confusion matrix, routing, tokens, cost, time."""
    head = (
        "| system | P | R | F1 | kappa | AUC | TP/FP/FN/TN | undec | to last stage | R vs strong | "
        "tokens/cand | $ per 1k cand | s per cand (est) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        s = r.scores
        spc = None if r.est_seconds is None else r.est_seconds / max(1, r.candidates)
        lines.append(
            f"| {r.name} | {_f(s.precision)} | {_f(s.recall)} | {_f(s.f1)} | {_f(s.kappa)} | {_f(s.auc)} | "
            f"{s.tp}/{s.fp}/{s.fn}/{s.tn} | {s.undecided} | "
            f"{'-' if len(r.stages) < 2 else f'{r.share_to_last:.1%}'} | {_f(r.relative_recall)} | "
            f"{r.tokens_per_candidate:.0f} | {r.cost_per_1k:.4f} | {_f(spc, 2)} |"
        )
    return "\n".join(lines)


def audit_lines(results: Sequence[SystemResult]) -> list[str]:
    return [f"{r.name}: {st.miss_estimate['text']}" for r in results for st in r.stages if st.miss_estimate]


def pareto(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (cost lower or equal and quality higher or equal, one strictly)."""
    keep = []
    for i, (c, q) in enumerate(points):
        dominated = any((c2 <= c and q2 >= q) and (c2 < c or q2 > q) for j, (c2, q2) in enumerate(points) if j != i)
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: points[i][0])


def frontier_plot(results: Sequence[SystemResult], path: str | Path, *, title: str = "", quality: str = "f1") -> Path:
    """Scatter of cost per 1k candidates (x; estimated seconds when every system is free) against ``quality``,
    with the Pareto frontier drawn; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paid = any(r.cost > 0 for r in results)
    xs = [r.cost_per_1k if paid else ((r.est_seconds or 0.0) / max(1, r.candidates)) for r in results]
    ys = [getattr(r.scores, quality) or 0.0 for r in results]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    ax.scatter(xs, ys, color="tab:blue", zorder=3)
    front = pareto(list(zip(xs, ys)))
    # the frontier as a staircase with its points ringed (visible even when one system dominates)
    ax.step(
        [xs[i] for i in front],
        [ys[i] for i in front],
        where="post",
        color="tab:orange",
        lw=1.2,
        zorder=2,
        marker="o",
        markersize=11,
        markerfacecolor="none",
        label="Pareto frontier",
    )
    ax.set_xlabel(
        f"USD per 1,000 candidates at {results[0].price_model} prices"
        if paid
        else "seconds per candidate (measured here)"
    )
    if paid and min(xs) >= 0:
        ax.set_xscale("symlog", linthresh=1e-3)
    _label_points(ax, xs, ys, [r.name for r in results])
    ax.set_ylabel(quality.upper() if quality != "kappa" else "Cohen's kappa")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _label_points(ax, xs: Sequence[float], ys: Sequence[float], names: Sequence[str]) -> None:
    """Name every point; labels that would land on one another (systems with near-equal cost and quality)
    are stacked one line apart instead."""
    ax.figure.canvas.draw()  # fixes the scales, so data -> pixel positions are final
    placed: list[tuple[float, float]] = []
    for i in sorted(range(len(xs)), key=lambda k: (xs[k], -ys[k])):
        px, py = ax.transData.transform((xs[i], ys[i]))
        lift = 0
        while any(abs(px - qx) < 90 and abs(py + lift - qy) < 10 for qx, qy in placed):
            lift += 10
        placed.append((px, py + lift))
        ax.annotate(
            names[i],
            (xs[i], ys[i]),
            textcoords="offset pixels",
            xytext=(6, 4 + lift),
            fontsize=7,
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.6"} if lift else None,
        )
