"""Markdown for a sparse-label benchmark run: one table per data set, one pooled, the kept positives' ranks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from negclean.benchjudges.dataset import Benchmark
from negclean.benchjudges.sparse import rank_summary
from negclean.benchjudges.sparse_run import SparseRow


def _f(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def rows_table(rows: Sequence[SparseRow], *, candidates: int) -> str:
    head = (
        "| system | fitted | P | R | F1 | kappa | AUC | R@1x | R@2x | flags/true | to last stage | "
        "tokens/cand | $ per 1k cand | s per cand (est) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        s = r.scores
        lines.append(
            f"| {r.system} | {r.fitted_on} | {_f(s.precision)} | {_f(s.recall)} | {_f(s.f1)} | {_f(s.kappa)} | "
            f"{_f(s.auc)} | {_f(r.recall_at_budget.get('1x'))} | {_f(r.recall_at_budget.get('2x'))} | "
            f"{_f(r.flags_per_true, 2)} | {'-' if r.share_to_last is None else f'{r.share_to_last:.1%}'} | "
            f"{r.tokens / max(1, candidates):.0f} | {1000 * r.cost / max(1, candidates):.4f} | "
            f"{_f(r.sec_per_candidate, 4)} |"
        )
    return "\n".join(lines)


def rank_table(benches: Mapping[str, Benchmark]) -> str:
    lines = [
        "| data set | queries | candidates | truly relevant | positive rank: median | q1 | q3 | "
        "in top 10 | in top 30 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, b in benches.items():
        r = rank_summary(b.positive_ranks.values())
        lines.append(
            f"| {name} | {len(b.instances)} | {b.n_candidates} | {b.n_relevant} "
            f"({b.n_relevant / max(1, len(b.truth)):.1%}) | {_f(r.get('median'), 1)} | {_f(r.get('q1'), 1)} | "
            f"{_f(r.get('q3'), 1)} | {_f(r.get('top10'))} | {_f(r.get('top30'))} |"
        )
    return "\n".join(lines)


def sparse_markdown(benches: Mapping[str, Benchmark], result: dict) -> str:
    """The whole run as Markdown (``result`` from ``sparse_run.run_sparse``)."""
    parts = ["## Kept positives and candidates", "", rank_table(benches), ""]
    for name, rows in result["per_set"].items():
        parts += [
            f"## {name}",
            "",
            *(f"- {n}" for n in benches[name].notes),
            "",
            rows_table(rows, candidates=benches[name].n_candidates),
            "",
        ]
    total = sum(b.n_candidates for b in benches.values())
    parts += ["## pooled (" + " + ".join(benches) + ")", "", rows_table(result["pooled"], candidates=total), ""]
    if result.get("fits"):
        parts += ["## Learned judges fitted per held-out set", ""]
        for held, fit in result["fits"].items():
            parts.append(
                f"- without {held}: fitted on {' + '.join(fit['fitted_on'])} ({fit['rows']} rows, "
                f"{fit['positives']} relevant; CV AUC there {_f(fit['cv_auc'])}) -> {fit['path']}"
            )
        parts.append("")
    return "\n".join(parts)
