"""Measures for incomplete judgments: condensed lists (Sakai), and rank correlation of system orderings."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from negclean.evaluate.measures import Qrels, Run, sorted_docs


def condensed_run(run: Mapping[str, Mapping[str, float]], qrels: Qrels) -> Run:
    """The run with every document the qrels do not judge removed (Sakai's condensed list).

    A query the qrels do not hold keeps nothing (it is not evaluated). Scores are kept, so the remaining
    documents keep their order and move up into the places of the removed ones.
    """
    out: Run = {}
    for qid, docs in run.items():
        judged = qrels.get(qid)
        if judged:
            out[qid] = {d: float(s) for d, s in docs.items() if d in judged}
    return out


def judged_at(run: Mapping[str, Mapping[str, float]], qrels: Qrels, *, k: int = 10) -> dict[str, float]:
    """Judged@k per query of the qrels: the share of the run's top k that the qrels judge (any grade).

    As ir-measures' ``Judged@k`` (divided by k, or by the run's length when shorter; 0 for a query the run
    lacks), but ties are broken as trec_eval breaks them (``sorted_docs``), so the top k is the one nDCG@k and
    the pool read: ir-measures breaks ties by ascending doc id and can count another document at rank k.
    """
    out: dict[str, float] = {}
    for qid, judged in qrels.items():
        top = sorted_docs(run.get(qid) or {})[:k]
        out[qid] = sum(d in judged for d, _s in top) / len(top) if top else 0.0
    return out


def system_ranking(scores: Mapping[str, float]) -> tuple[str, ...]:
    """System names best first (ties: by name, so the order is stable)."""
    return tuple(sorted(scores, key=lambda s: (-scores[s], s)))


def kendall_tau(a: Mapping[str, float] | Sequence[float], b: Mapping[str, float] | Sequence[float]) -> float:
    """Kendall's tau-b between two scorings of the same systems (``scipy.stats.kendalltau``).

    Mappings are matched by system name (systems in both); sequences by position. NaN when fewer than two
    systems are shared or one scoring gives every system the same value (no order to compare).
    """
    from scipy.stats import kendalltau

    if isinstance(a, Mapping) and isinstance(b, Mapping):
        names = [s for s in a if s in b]
        xs = [float(a[s]) for s in names]
        ys = [float(b[s]) for s in names]
    elif isinstance(a, Mapping) or isinstance(b, Mapping):
        raise TypeError("kendall_tau takes two mappings (system -> score) or two sequences, not one of each")
    else:
        if len(a) != len(b):
            raise ValueError(f"kendall_tau: the scorings have {len(a)} and {len(b)} systems")
        xs, ys = [float(x) for x in a], [float(y) for y in b]
    if len(xs) < 2 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan
    return float(kendalltau(xs, ys).statistic)
