"""The pool of holes: documents that some run ranks in its top k and the qrels do not judge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from negclean.errors import ConfigError
from negclean.evaluate.measures import Qrels, sorted_docs

Runs = Mapping[str, Mapping[str, Mapping[str, float]]]


@dataclass(frozen=True, slots=True)
class PooledDoc:
    """An unjudged document of one query, with the systems that put it in their top k.

    Args:
        query_id, doc_id: the pair to judge.
        rank: the best (smallest, 1-based) rank any system gave it.
        systems: the systems whose top k holds it, in the order the runs were given.
    """

    query_id: str
    doc_id: str
    rank: int
    systems: tuple[str, ...]


def pool_unjudged(runs: Runs, qrels: Qrels, *, depth: int = 10) -> dict[str, tuple[PooledDoc, ...]]:
    """Per query of ``qrels``: the documents of each run's top ``depth`` that the qrels do not judge.

    Queries the qrels do not hold are not pooled (they are not evaluated). Documents are listed by best rank,
    then doc id; a query with no hole is left out. Ranks follow ``sorted_docs`` (ties as trec_eval breaks them),
    so the pool is what the measures at cutoff ``depth`` read.
    """
    if depth < 1:
        raise ConfigError(f"pool depth must be >= 1, not {depth}")
    if not runs:
        raise ConfigError("no runs to pool: give at least one system's run")
    found: dict[str, dict[str, tuple[int, list[str]]]] = {}
    for system, run in runs.items():
        for qid, docs in run.items():
            judged = qrels.get(qid)
            if judged is None:
                continue
            slot = found.setdefault(qid, {})
            for rank, (docid, _score) in enumerate(sorted_docs(docs)[:depth], start=1):
                if docid in judged:
                    continue
                best, systems = slot.get(docid, (rank, []))
                if system not in systems:
                    systems.append(system)
                slot[docid] = (min(best, rank), systems)
    out: dict[str, tuple[PooledDoc, ...]] = {}
    for qid in qrels:
        holes = found.get(qid)
        if holes:
            ranked = sorted(holes.items(), key=lambda kv: (kv[1][0], kv[0]))
            out[qid] = tuple(PooledDoc(qid, d, r, tuple(s)) for d, (r, s) in ranked)
    return out
