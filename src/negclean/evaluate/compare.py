"""Several systems on the same queries: a table per measure with paired significance tests.

For each measure and each system against the baseline, over the queries every system was evaluated on:
the mean, the mean difference with a bootstrap confidence interval, the paired t-test p-value, the
paired randomisation (sign-flip permutation) test p-value, and that p-value Holm-adjusted over the
systems compared with the baseline. Tests come from scipy.stats (``ttest_rel``, ``permutation_test``,
``bootstrap``), two-sided.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from negclean.errors import ConfigError, InputError, require
from negclean.evaluate.measures import PerQuery


@dataclass(frozen=True, slots=True)
class SystemRow:
    """One system on one measure. Difference fields are None for the baseline itself."""

    name: str
    mean: float
    mean_ci: tuple[float, float]
    delta: float | None = None
    delta_ci: tuple[float, float] | None = None
    p_ttest: float | None = None
    p_randomisation: float | None = None
    p_holm: float | None = None
    wins: int | None = None
    losses: int | None = None
    ties: int | None = None


@dataclass(frozen=True, slots=True)
class MeasureTable:
    measure: str
    baseline: str
    queries: int
    rows: tuple[SystemRow, ...]


@dataclass(frozen=True, slots=True)
class Comparison:
    """All tables; ``dropped`` counts queries a system lacked (left out of every test)."""

    baseline: str
    systems: tuple[str, ...]
    tables: tuple[MeasureTable, ...]
    queries: int
    dropped: Mapping[str, int]
    resamples: int
    confidence: float
    seed: int

    def table(self, measure: str) -> MeasureTable:
        for t in self.tables:
            if t.measure == measure:
                return t
        raise KeyError(measure)

    def as_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "systems": list(self.systems),
            "queries": self.queries,
            "dropped": dict(self.dropped),
            "resamples": self.resamples,
            "confidence": self.confidence,
            "seed": self.seed,
            "tables": [
                {
                    "measure": t.measure,
                    "baseline": t.baseline,
                    "queries": t.queries,
                    "rows": [_row_dict(r) for r in t.rows],
                }
                for t in self.tables
            ],
        }

    def markdown(self, *, alpha: float = 0.05) -> str:
        """One Markdown table per measure; a dagger marks Holm-adjusted randomisation p < alpha."""
        level = round(self.confidence * 100)
        parts = []
        for t in self.tables:
            parts.append(f"**{t.measure}** ({t.queries} queries; baseline: {t.baseline})\n")
            parts.append(
                f"| system | {t.measure} | {level}% CI | Δ vs {t.baseline} | Δ {level}% CI | "
                "p (t-test) | p (randomisation) | p (Holm) | wins/losses/ties |"
            )
            parts.append("|---|---:|---|---:|---|---:|---:|---:|---|")
            for r in t.rows:
                ci = f"[{r.mean_ci[0]:.4f}, {r.mean_ci[1]:.4f}]"
                if r.delta is None:
                    parts.append(f"| {r.name} | {r.mean:.4f} | {ci} | — | — | — | — | — | — |")
                    continue
                mark = " †" if r.p_holm is not None and r.p_holm < alpha else ""
                dci = f"[{r.delta_ci[0]:+.4f}, {r.delta_ci[1]:+.4f}]" if r.delta_ci else ""
                parts.append(
                    f"| {r.name} | {r.mean:.4f} | {ci} | {r.delta:+.4f}{mark} | {dci} | {_p(r.p_ttest)} | "
                    f"{_p(r.p_randomisation)} | {_p(r.p_holm)} | {r.wins}/{r.losses}/{r.ties} |"
                )
            parts.append("")
        parts.append(
            f"† Holm-adjusted paired randomisation test p < {alpha}. Tests are two-sided and paired by "
            f"query; {self.resamples} resamples (seed {self.seed})."
        )
        return "\n".join(parts)


def _p(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _row_dict(r: SystemRow) -> dict:
    out = {}
    for name in r.__slots__:
        value = getattr(r, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def paired_tests(
    a: np.ndarray, b: np.ndarray, *, resamples: int, confidence: float, seed: int
) -> tuple[float, tuple[float, float], float, float]:
    """(mean difference a-b, bootstrap CI of it, t-test p, randomisation p) for paired per-query scores."""
    stats = require("scipy.stats", extra="eval", purpose="Significance tests")
    d = a - b
    delta = float(d.mean())
    if np.allclose(d, d[0]):  # no variation: every test is degenerate; the difference is exact
        return delta, (delta, delta), (1.0 if delta == 0 else 0.0), (1.0 if delta == 0 else 0.0)
    p_t = float(stats.ttest_rel(a, b).pvalue)
    perm = stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        vectorized=True,
        permutation_type="samples",
        n_resamples=resamples,
        alternative="two-sided",
        random_state=np.random.default_rng(seed),
    )
    ci = _bootstrap_ci(d, resamples=resamples, confidence=confidence, seed=seed)
    return delta, ci, p_t, float(perm.pvalue)


def _bootstrap_ci(x: np.ndarray, *, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    stats = require("scipy.stats", extra="eval", purpose="Bootstrap confidence intervals")
    if np.allclose(x, x[0]):
        return float(x[0]), float(x[0])
    res = stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def compare(
    scores: Mapping[str, PerQuery],
    *,
    baseline: str | None = None,
    measures: Sequence[str] | None = None,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Compare systems given their per-query scores (system -> measure -> query id -> value).

    The baseline is the first system unless named. Only queries every system has are tested; how many each
    system lacked is in ``dropped``.
    """
    if len(scores) < 1:
        raise ConfigError("nothing to compare: give at least one system")
    names = list(scores)
    base = baseline if baseline is not None else names[0]
    if base not in scores:
        raise ConfigError(f"baseline {base!r} is not among the systems: {', '.join(names)}")
    names = [base] + [n for n in names if n != base]
    wanted = list(measures) if measures else list(scores[base])
    for n in names:
        missing = [m for m in wanted if m not in scores[n]]
        if missing:
            raise InputError(f"system {n!r} has no scores for {', '.join(missing)}")
    common = set.intersection(*(set(scores[n][m]) for n in names for m in wanted))
    queries = [q for q in scores[base][wanted[0]] if q in common]
    if not queries:
        raise InputError("the systems share no evaluated query: were they evaluated on the same split?")
    dropped = {n: len(set(scores[n][wanted[0]]) - common) for n in names}
    tables = []
    for m in wanted:
        vals = {n: np.array([scores[n][m][q] for q in queries], dtype=np.float64) for n in names}
        rows = [
            SystemRow(
                base,
                float(vals[base].mean()),
                _bootstrap_ci(vals[base], resamples=resamples, confidence=confidence, seed=seed),
            )
        ]
        tested: list[SystemRow] = []
        p_randomisation: list[float] = []
        for n in names[1:]:
            delta, dci, p_t, p_r = paired_tests(
                vals[n], vals[base], resamples=resamples, confidence=confidence, seed=seed
            )
            diff = vals[n] - vals[base]
            tested.append(
                SystemRow(
                    name=n,
                    mean=float(vals[n].mean()),
                    mean_ci=_bootstrap_ci(vals[n], resamples=resamples, confidence=confidence, seed=seed),
                    delta=delta,
                    delta_ci=dci,
                    p_ttest=p_t,
                    p_randomisation=p_r,
                    wins=int((diff > 1e-12).sum()),
                    losses=int((diff < -1e-12).sum()),
                    ties=int((np.abs(diff) <= 1e-12).sum()),
                )
            )
            p_randomisation.append(p_r)
        for row, p_h in zip(tested, holm(p_randomisation)):
            rows.append(replace(row, p_holm=p_h))
        tables.append(MeasureTable(m, base, len(queries), tuple(rows)))
    return Comparison(base, tuple(names), tuple(tables), len(queries), dropped, resamples, confidence, seed)


__all__ = ["Comparison", "MeasureTable", "SystemRow", "compare", "holm", "paired_tests"]
