"""Effectiveness measures through ir-measures, per query and averaged, and the TREC run files they read.

A run is ``{query_id: {doc_id: score}}`` and qrels ``{query_id: {doc_id: grade}}``, the dict forms
ir-measures takes. The evaluated queries are all queries of the qrels, as ir-measures counts them: a
query the run does not answer scores 0 on every measure, so the means agree with
``ir_measures.calc_aggregate`` on the same qrels and run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from negclean.data.atomic import atomic_open
from negclean.errors import ConfigError, InputError, require

Run = dict[str, dict[str, float]]
Qrels = Mapping[str, Mapping[str, int]]
PerQuery = dict[str, dict[str, float]]  # measure name -> query id -> value

DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "R@100")


def _ir_measures():
    return require("ir_measures", extra="eval", purpose="Evaluation")


def parse_measures(names: Iterable[str]) -> list:
    """ir-measures Measure objects for names such as ``nDCG@10``, ``R@100``, ``RR@10``, ``AP``."""
    irm = _ir_measures()
    out = []
    for name in names:
        try:
            out.append(irm.parse_measure(name))
        except (ValueError, NameError, SyntaxError, TypeError) as exc:
            raise ConfigError(f"unknown measure {name!r} ({exc}); examples: nDCG@10, R@100, RR@10, AP, P@5") from None
    if not out:
        raise ConfigError("no measures given; e.g. nDCG@10 R@100")
    return out


def evaluated_queries(qrels: Qrels) -> list[str]:
    """The queries of the qrels, in qrels order."""
    return list(qrels)


def per_query(run: Mapping[str, Mapping[str, float]], qrels: Qrels, measures: Sequence[str]) -> PerQuery:
    """Every measure for every evaluated query (0.0 where the run has nothing for it)."""
    irm = _ir_measures()
    parsed = parse_measures(measures)
    queries = evaluated_queries(qrels)
    if not any(g >= 1 for docs in qrels.values() for g in docs.values()):
        raise InputError("the qrels have no relevant document (grade >= 1): nothing to evaluate")
    wanted = set(queries)
    sub_qrels = {q: dict(qrels[q]) for q in queries}
    sub_run = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if q in wanted and docs}
    out: PerQuery = {str(m): {q: 0.0 for q in queries} for m in parsed}
    if sub_run:
        for metric in irm.iter_calc(parsed, sub_qrels, sub_run):
            out[str(metric.measure)][metric.query_id] = float(metric.value)
    return out


def mean_scores(scores: PerQuery) -> dict[str, float]:
    return {m: (math.fsum(v.values()) / len(v) if v else 0.0) for m, v in scores.items()}


def sorted_docs(docs: Mapping[str, float]) -> list[tuple[str, float]]:
    """Best first; ties broken as trec_eval does (doc id, descending), so the ranks written match how
    trec_eval-based measures (nDCG, P, AP, R) read the run."""
    return sorted(docs.items(), key=lambda kv: (-kv[1], _neg_key(kv[0])))


def _neg_key(docid: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in docid)


def write_trec_run(run: Mapping[str, Mapping[str, float]], path: str | Path, *, tag: str = "negclean") -> Path:
    """``qid Q0 docid rank score tag`` lines, queries in the run's order, documents best first."""
    path = Path(path)
    tag = "".join(c if not c.isspace() else "_" for c in tag) or "negclean"
    with atomic_open(path) as fh:
        for qid, docs in run.items():
            for rank, (docid, score) in enumerate(sorted_docs(docs), start=1):
                fh.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")
    return path


def read_trec_run(path: str | Path) -> Run:
    """Read a TREC run file (6 white-space separated fields per line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("run file not found (expected TREC lines: qid Q0 docid rank score tag)", path=str(path))
    run: Run = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6:
                raise InputError(
                    f"expected 6 fields (qid Q0 docid rank score tag), found {len(fields)}", path=str(path), line=lineno
                )
            try:
                score = float(fields[4])
            except ValueError:
                raise InputError(f"score {fields[4]!r} is not a number", path=str(path), line=lineno) from None
            run.setdefault(fields[0], {})[fields[2]] = score
    if not run:
        raise InputError("run file is empty", path=str(path))
    return run


def write_per_query(scores: PerQuery, path: str | Path) -> Path:
    """A TSV with a header: ``query_id`` then one column per measure."""
    path = Path(path)
    measures = list(scores)
    queries = list(next(iter(scores.values()))) if scores else []
    with path.open("w", encoding="utf-8") as fh:
        fh.write("\t".join(["query_id", *measures]) + "\n")
        for q in queries:
            fh.write("\t".join([q, *(f"{scores[m][q]:.6f}" for m in measures)]) + "\n")
    return path


def read_per_query(path: str | Path) -> PerQuery:
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].startswith("query_id\t"):
        raise InputError("not a per-query file (header 'query_id<TAB>measure...')", path=str(path))
    measures = lines[0].split("\t")[1:]
    out: PerQuery = {m: {} for m in measures}
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(measures) + 1:
            raise InputError(f"expected {len(measures) + 1} fields", path=str(path), line=lineno)
        for m, v in zip(measures, fields[1:]):
            out[m][fields[0]] = float(v)
    return out


__all__ = [
    "DEFAULT_MEASURES",
    "PerQuery",
    "Qrels",
    "Run",
    "evaluated_queries",
    "mean_scores",
    "parse_measures",
    "per_query",
    "read_per_query",
    "read_trec_run",
    "sorted_docs",
    "write_per_query",
    "write_trec_run",
]
