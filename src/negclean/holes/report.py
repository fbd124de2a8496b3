"""How systems score and rank under the original and the filled qrels (and condensed lists)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from negclean.errors import ConfigError
from negclean.evaluate.measures import Qrels, mean_scores, per_query
from negclean.holes.measures import condensed_run, judged_at, kendall_tau, system_ranking
from negclean.holes.pool import Runs

NDCG, RECALL, JUDGED = "nDCG@10", "R@100", "Judged@10"
#: the scorings a report ranks systems by (``reference`` only when reference qrels are given)
SCORINGS = ("original", "filled", "condensed", "reference")


@dataclass(frozen=True, slots=True)
class SystemHoles:
    """One system's scores (means over the qrels' queries).

    Args:
        ndcg_original, ndcg_filled: nDCG@10 under the original and the filled qrels.
        ndcg_condensed: nDCG@10 under the original qrels, unjudged documents removed from the ranking first.
        recall_original, recall_filled: R@100 under each qrels.
        judged_original, judged_filled: Judged@10 (share of the top 10 that the qrels judge) under each.
        ndcg_reference: nDCG@10 under reference qrels (e.g. the full judgments in a simulation), where given.
    """

    name: str
    ndcg_original: float
    ndcg_filled: float
    ndcg_condensed: float
    recall_original: float
    recall_filled: float
    judged_original: float
    judged_filled: float
    ndcg_reference: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (None if getattr(self, k) is None else getattr(self, k) if k == "name" else round(getattr(self, k), 6))
            for k in self.__slots__
        }


@dataclass(frozen=True, slots=True)
class HolesReport:
    """Per system: scores under each qrels; across systems: the ranking under each and Kendall's tau.

    ``rankings[name]`` orders systems best first by the nDCG@10 of that scoring (``original``, ``filled``,
    ``condensed``, and ``reference`` where given); ``taus["original vs filled"]`` etc. compare them pairwise.
    """

    systems: tuple[SystemHoles, ...]
    queries: int
    rankings: Mapping[str, tuple[str, ...]]
    taus: Mapping[str, float]

    def ndcg(self, scoring: str) -> dict[str, float]:
        """System -> nDCG@10 under one scoring (``original``, ``filled``, ``condensed``, ``reference``)."""
        if scoring not in self.rankings:
            raise ConfigError(f"no scoring {scoring!r} in this report; it has {', '.join(self.rankings)}")
        return {s.name: getattr(s, f"ndcg_{scoring}") for s in self.systems}

    def as_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "systems": [s.as_dict() for s in self.systems],
            "rankings": {k: list(v) for k, v in self.rankings.items()},
            "taus": {k: (None if math.isnan(v) else round(v, 6)) for k, v in self.taus.items()},
        }

    def to_markdown(self) -> str:
        ref = "reference" in self.rankings
        head = [
            "system",
            "nDCG@10 orig",
            "nDCG@10 filled",
            "Δ",
            "nDCG@10 condensed",
            "R@100 orig",
            "R@100 filled",
            "Judged@10 orig",
            "Judged@10 filled",
        ] + (["nDCG@10 reference"] if ref else [])
        lines = [
            f"**Holes** ({self.queries} queries)",
            "",
            "| " + " | ".join(head) + " |",
            "|---|" + "---:|" * (len(head) - 1),
        ]
        for s in self.systems:
            cells = [
                s.name,
                f"{s.ndcg_original:.4f}",
                f"{s.ndcg_filled:.4f}",
                f"{s.ndcg_filled - s.ndcg_original:+.4f}",
                f"{s.ndcg_condensed:.4f}",
                f"{s.recall_original:.4f}",
                f"{s.recall_filled:.4f}",
                f"{s.judged_original:.3f}",
                f"{s.judged_filled:.3f}",
            ]
            if ref:
                cells.append(f"{s.ndcg_reference:.4f}" if s.ndcg_reference is not None else "—")
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "| qrels | ranking by nDCG@10 (best first) |", "|---|---|"]
        lines += [f"| {k} | {' > '.join(v)} |" for k, v in self.rankings.items()]
        lines += ["", "| Kendall's tau | value |", "|---|---:|"]
        lines += [f"| {k} | {'n/a' if math.isnan(v) else f'{v:+.3f}'} |" for k, v in self.taus.items()]
        lines += [
            "",
            "Condensed: unjudged documents removed from each ranking before scoring with the original "
            "qrels (Sakai). Judged@10: share of the top 10 the qrels judge. tau n/a: fewer than two systems "
            "or all scored alike.",
        ]
        return "\n".join(lines) + "\n"


def _means(run: Mapping[str, Mapping[str, float]], qrels: Qrels, measures: tuple[str, ...]) -> dict[str, float]:
    out = mean_scores(per_query(run, qrels, [m for m in measures if m != JUDGED]))
    if JUDGED in measures:
        judged = judged_at(run, qrels, k=10)
        out[JUDGED] = sum(judged.values()) / len(judged) if judged else 0.0
    return out


def holes_report(runs: Runs, *, original: Qrels, filled: Qrels, reference: Qrels | None = None) -> HolesReport:
    """Score every run under the original qrels, the filled qrels and as condensed lists; rank and correlate.

    Args:
        runs: system name -> run; every system is scored on the queries of ``original``.
        original: the qrels as given; ``filled``: the same with holes filled (``fill_holes(...).qrels``).
        reference: optional qrels taken as truth (a simulation's full judgments): adds its nDCG@10, ranking and
            each scoring's tau against it.
    """
    if not runs:
        raise ConfigError("holes_report needs at least one run")
    missing = [q for q in original if q not in filled]
    if missing:
        raise ConfigError(
            f"the filled qrels lack {len(missing)} queries of the original (e.g. {missing[0]!r}): "
            "pass the qrels that fill_holes returned for these original qrels"
        )
    filled_eval = {q: filled[q] for q in original}  # the same queries, so the means are comparable
    rows = []
    for name, run in runs.items():
        orig = _means(run, original, (NDCG, RECALL, JUDGED))
        fill = _means(run, filled_eval, (NDCG, RECALL, JUDGED))
        cond = _means(condensed_run(run, original), original, (NDCG,))
        ref = (
            _means(run, {q: reference[q] for q in original if q in reference}, (NDCG,))[NDCG]
            if reference is not None
            else None
        )
        rows.append(
            SystemHoles(
                name, orig[NDCG], fill[NDCG], cond[NDCG], orig[RECALL], fill[RECALL], orig[JUDGED], fill[JUDGED], ref
            )
        )
    scorings = [s for s in SCORINGS if s != "reference" or reference is not None]
    by = {s: {r.name: float(getattr(r, f"ndcg_{s}")) for r in rows} for s in scorings}
    rankings = {s: system_ranking(by[s]) for s in scorings}
    taus: dict[str, float] = {}
    for i, a in enumerate(scorings):
        for b in scorings[i + 1 :]:
            taus[f"{a} vs {b}"] = kendall_tau(by[a], by[b])
    return HolesReport(tuple(rows), len(original), rankings, taus)
