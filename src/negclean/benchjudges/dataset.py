"""False-negative benchmarks: instances whose candidates carry a known truth (relevant or not).

Three sources:
- a BEIR folder with dense graded judgments (TREC DL 2019): per query one grade-``positive_grade``
  passage is the labeled positive (the smallest docid among them: deterministic), the other judged
  passages are the candidates, ordered as a retriever ranks them (BM25 over the judged pool, or
  MiniLM), capped at the top ``max_candidates``; a candidate is truly relevant when its grade is at
  least ``relevant_grade``;
- an instances file plus a qrels file (truth from the qrels; unjudged candidates left out);
- the RLHN reference outputs: truth is GPT-4o's stage-2 verdict (instances stage 1 did not flag
  count as all not relevant, as in RLHN's final labels).

Queries are subsampled deterministically: sorted by a hash of (seed, query id), the first N kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from negclean.data.io import read_instances
from negclean.data.qrels import read_qrels
from negclean.data.records import Instance
from negclean.errors import InputError
from negclean.judge.learned_features import bm25_scores  # re-exported: it was defined here
from negclean.judge.parse import ParseFailure, parse_rlhn
from negclean.mine.beir import BeirFolder, read_corpus, read_queries

TruthKey = tuple[str, str]  # (query_id, docid)


@dataclass(frozen=True)
class Benchmark:
    """Instances plus the truth of each candidate (``truth[(query_id, docid)]``: truly a false negative).

    Candidates without a truth entry are judged but left out of every metric. ``positive_ranks``: per query,
    the rank of its labeled positive among all corpus documents under the retriever that mined the candidates
    (sparse benchmarks, ``benchjudges.sparse``; empty where unknown).
    """

    name: str
    instances: tuple[Instance, ...]
    truth: Mapping[TruthKey, bool]
    grades: Mapping[TruthKey, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    positive_ranks: Mapping[str, int] = field(default_factory=dict)

    @property
    def n_candidates(self) -> int:
        return sum(len(i.negatives) for i in self.instances)

    @property
    def n_relevant(self) -> int:
        return sum(1 for v in self.truth.values() if v)

    def describe(self) -> str:
        return (
            f"{self.name}: {len(self.instances)} queries, {self.n_candidates} candidates, "
            f"{self.n_relevant} truly relevant ({self.n_relevant / max(1, len(self.truth)):.1%} of labeled)"
        )


def subsample_ids(ids: Sequence[str], *, n: int | None, seed: int) -> list[str]:
    """The first ``n`` ids by a hash of (seed, id): the same ids for the same seed on any machine."""
    ranked = sorted(ids, key=lambda q: hashlib.blake2b(f"{seed}|{q}".encode(), digest_size=8).digest())
    return ranked if n is None else ranked[:n]


def from_beir(
    root: str | Path,
    *,
    split: str = "test",
    positive_grade: int = 3,
    relevant_grade: int = 2,
    order: Literal["bm25", "minilm"] = "bm25",
    queries: int | None = None,
    seed: int = 0,
    max_candidates: int | None = 25,
) -> Benchmark:
    """Build a benchmark from a BEIR folder with graded judgments (see the module docstring)."""

    folder = BeirFolder.locate(root, split=split)
    qrels = folder.read_qrels()
    texts = read_queries(folder.queries)
    usable = sorted(
        q
        for q, judged in qrels.items()
        if q in texts and any(g >= positive_grade for g in judged.values()) and len(judged) > 1
    )
    skipped = sorted(set(qrels) - set(usable))
    chosen = sorted(subsample_ids(usable, n=queries, seed=seed))
    corpus = read_corpus(folder.corpus)
    notes = [
        f"source {folder.root} split {split}; positive: smallest docid with grade >= {positive_grade}; "
        f"relevant: grade >= {relevant_grade}; order: {order}; queries {len(chosen)} of {len(usable)} usable "
        f"(seed {seed}); cap {max_candidates} candidates per query"
    ]
    if skipped:
        notes.append(
            f"{len(skipped)} queries without a grade-{positive_grade} passage or other judged passages left out"
        )
    instances, truth, grades = [], {}, {}
    missing = 0
    for qid in chosen:
        judged = qrels[qid]
        pos_id = min(d for d, g in judged.items() if g >= positive_grade)
        cand_ids, cand_at = [], []
        for d in sorted(judged):
            if d != pos_id:
                at = corpus.position(d)
                if at is None:
                    missing += 1
                else:
                    cand_ids.append(d)
                    cand_at.append(at)
        pos_at = corpus.position(pos_id)
        if pos_at is None:
            raise InputError(f"positive {pos_id} of query {qid} is not in the corpus", path=str(folder.corpus))
        scores = _order_scores(order, texts[qid], [corpus.text(at) for at in cand_at])
        ranked = sorted(range(len(cand_ids)), key=lambda i: (-scores[i], cand_ids[i]))
        if max_candidates is not None:
            ranked = ranked[:max_candidates]
        negatives = tuple(corpus.passage(cand_at[i], score=float(scores[i]), rank=r + 1) for r, i in enumerate(ranked))
        instances.append(Instance(qid, texts[qid], (corpus.passage(pos_at),), negatives, subset=folder.root.name))
        for p in negatives:
            grades[(qid, p.docid)] = judged[p.docid]
            truth[(qid, p.docid)] = judged[p.docid] >= relevant_grade
    if missing:
        notes.append(f"{missing} judged docids absent from the corpus were left out")
    return Benchmark(folder.root.name, tuple(instances), truth, grades, tuple(notes))


def _order_scores(order: str, query: str, passages: list[str]) -> np.ndarray:
    """Retriever scores of ``passages`` for ``query`` (higher ranks first)."""
    if not passages:
        return np.zeros(0)
    if order == "minilm":
        from negclean.embed import load_embedder

        emb = load_embedder()
        return (emb.encode(passages) @ emb.encode([query])[0]).astype(np.float64)
    if order == "bm25":
        return bm25_scores(query, passages)
    raise InputError(f"unknown candidate order {order!r}: choose bm25 or minilm")


def from_instances(
    path: str | Path,
    qrels_path: str | Path | None,
    *,
    relevant_grade: int = 1,
    queries: int | None = None,
    seed: int = 0,
    max_candidates: int | None = None,
    fmt: str | None = None,
) -> Benchmark:
    """Instances from a training file; truth from qrels (grade >= ``relevant_grade``); unjudged pairs unlabeled."""
    qrels = read_qrels(qrels_path) if qrels_path is not None else {}
    rows = list(read_instances(path, fmt=fmt, on_error="skip"))
    keep = set(subsample_ids([r.query_id for r in rows], n=queries, seed=seed))
    instances, truth, grades = [], {}, {}
    for inst in rows:
        if inst.query_id not in keep:
            continue
        negs = inst.negatives[:max_candidates] if max_candidates else inst.negatives
        inst = inst.replace(negatives=negs)
        instances.append(inst)
        judged = qrels.get(inst.query_id, {})
        for p in negs:
            if p.docid in judged:
                grades[(inst.query_id, p.docid)] = judged[p.docid]
                truth[(inst.query_id, p.docid)] = judged[p.docid] >= relevant_grade
    return Benchmark(
        Path(path).name,
        tuple(instances),
        truth,
        grades,
        (f"truth from {qrels_path} (grade >= {relevant_grade}); unjudged candidates unlabeled",),
    )


def from_rlhn_reference(folder: str | Path, *, count: Literal["better", "relevant"] = "better") -> Benchmark:
    """The RLHN reference instances; truth = GPT-4o stage-2 verdict (``better``, or better + worse)."""
    folder = Path(folder)
    stage1, stage2 = folder / "stage_1.gpt-4o-mini.jsonl", folder / "stage_2.gpt-4o.jsonl"
    for required in (stage1, stage2):
        if not required.is_file():
            raise InputError(
                "RLHN reference file missing (expected stage_1.gpt-4o-mini.jsonl and stage_2.gpt-4o.jsonl)",
                path=str(required),
            )
    verdicts: dict[str, set[int]] = {}
    with stage2.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            row = json.loads(line)
            try:
                v = parse_rlhn(row["response"], len(row["negative_passages"]), finish_reason=row.get("finish_reason"))
            except ParseFailure as exc:
                raise InputError(f"stage-2 response does not parse: {exc}", path=str(stage2), line=n) from None
            verdicts[row["query_id"]] = set(v.better) | (set(v.worse) if count == "relevant" else set())
    instances = tuple(read_instances(stage1, fmt="tevatron"))
    truth = {}
    for inst in instances:
        found = verdicts.get(inst.query_id, set())
        for i, p in enumerate(inst.negatives, start=1):
            truth[(inst.query_id, p.docid)] = i in found
    return Benchmark(
        "rlhn-reference-msmarco",
        instances,
        truth,
        {},
        (
            f"truth: GPT-4o stage-2 '{count}' lists; {len(verdicts)} of {len(instances)} instances "
            "reached stage 2, the rest count as no false negatives",
        ),
    )
