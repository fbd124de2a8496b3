"""Sparse-label benchmarks: one labeled positive per query, candidates mined over the full corpus.

Real training data rarely labels every relevant passage: a query has one positive, and the hard negatives
mined for it contain the other relevant passages (false negatives). A densely judged BEIR folder (TREC DL
2019, CISI, Cranfield, ...) simulates that and still knows the truth:

- a query is usable when at least one corpus document has a grade >= ``relevant_grade``;
- ONE of those is kept as the labeled positive (``keep``): ``best`` = highest grade, ties by the smallest
  docid; ``random`` = uniform, seeded by (seed, query id); ``weakest`` = lowest relevant grade, ties seeded
  the same way;
- the retriever (``minilm``: dense search with the mining code, corpus embeddings cached on disk;
  ``bm25``: bm25s over the corpus) ranks the FULL corpus, and the top ``depth`` documents other than the
  kept positive are the candidates, each with its retriever score and its rank in that list (the kept
  positive counted, as `negclean mine` counts ranks);
- truth of a candidate: its grade in the full qrels >= ``relevant_grade``; an unjudged document counts as
  not relevant (so the benchmark's precision is a lower bound where judgments are incomplete);
- ``positive_ranks[query_id]``: the kept positive's rank among all corpus documents under the same
  retriever (1 + the number of documents scoring strictly above it). A weak positive (a large rank) is
  what breaks positive-aware screens such as s(q,c)/s(q,p).

Queries are subsampled as in ``dataset.subsample_ids`` (hash of (seed, query id)).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import numpy as np

from negclean.benchjudges.dataset import Benchmark, subsample_ids
from negclean.data.records import Instance, Passage
from negclean.errors import ConfigError, InputError
from negclean.mine.beir import BeirFolder, read_corpus, read_queries
from negclean.mine.config import MineConfig
from negclean.mine.retrievers import build_retriever

KeepRule = Literal["best", "random", "weakest"]
SparseRetriever = Literal["minilm", "bm25"]
KEEP_RULES: tuple[KeepRule, ...] = ("best", "random", "weakest")
RETRIEVERS: tuple[SparseRetriever, ...] = ("minilm", "bm25")
_BLOCK = 65536  # corpus rows scored at once when counting documents above a positive


def _query_rng(seed: int, query_id: str) -> np.random.Generator:
    digest = hashlib.blake2b(f"{seed}|{query_id}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def choose_positive(relevant: dict[str, int], *, keep: str, seed: int, query_id: str) -> str:
    """The docid kept as the labeled positive among ``relevant`` ({docid: grade}, all relevant)."""
    if not relevant:
        raise ValueError(f"query {query_id}: no relevant document to keep")
    ids = sorted(relevant)
    if keep == "best":
        top = max(relevant.values())
        return min(d for d in ids if relevant[d] == top)
    if keep == "random":
        return ids[int(_query_rng(seed, query_id).integers(len(ids)))]
    if keep == "weakest":
        low = min(relevant.values())
        tied = [d for d in ids if relevant[d] == low]
        return tied[int(_query_rng(seed, query_id).integers(len(tied)))]
    raise ConfigError(f"keep={keep!r}: choose one of {', '.join(KEEP_RULES)}")


def from_beir_sparse(
    root: str | Path,
    *,
    split: str = "test",
    relevant_grade: int = 1,
    keep: Literal["best", "random", "weakest"] = "random",
    retriever: Literal["minilm", "bm25"] = "minilm",
    depth: int = 30,
    queries: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    embedder=None,
) -> Benchmark:
    """Build a sparse-label benchmark from a densely judged BEIR folder (see the module docstring).

    ``embedder``: a loaded embedder to use instead of the packaged MiniLM (tests); ``cache_dir``: the
    embedding / BM25 index cache (default ``~/.cache/negclean/embeddings``, as `negclean mine`).
    """
    if keep not in KEEP_RULES:
        raise ConfigError(f"keep={keep!r}: choose one of {', '.join(KEEP_RULES)}")
    if retriever not in RETRIEVERS:
        raise ConfigError(f"retriever={retriever!r}: choose one of {', '.join(RETRIEVERS)}")
    if depth < 1:
        raise ConfigError(f"depth={depth}: need at least 1 candidate per query")
    folder = BeirFolder.locate(root, split=split)
    qrels = folder.read_qrels()
    texts = read_queries(folder.queries)
    corpus = read_corpus(folder.corpus)
    relevant = {
        q: {d: g for d, g in judged.items() if g >= relevant_grade and corpus.position(d) is not None}
        for q, judged in qrels.items()
        if q in texts
    }
    usable = sorted(q for q, rel in relevant.items() if rel)
    if not usable:
        raise InputError(
            f"no query has a corpus document of grade >= {relevant_grade} in qrels/{split}: lower "
            "--relevant-grade or check the folder",
            path=str(folder.qrels),
        )
    chosen = sorted(subsample_ids(usable, n=queries, seed=seed))
    pos_ids = {q: choose_positive(relevant[q], keep=keep, seed=seed, query_id=q) for q in chosen}

    cfg = MineConfig(
        beir=str(folder.root),
        split=split,
        retriever="dense" if retriever == "minilm" else "bm25",
        cache_dir=None if cache_dir is None else str(cache_dir),
        rank_range=(0, depth + 1),
    )
    ret = build_retriever(corpus, cfg, embedder=embedder)
    q_texts = [texts[q] for q in chosen]
    pos_at = [np.asarray([corpus.position(pos_ids[q])], dtype=np.int64) for q in chosen]
    found = ret.retrieve(q_texts, depth=depth + 1, docs=pos_at)
    pos_scores = np.asarray([float(s[0]) for s in found.doc_scores], dtype=np.float64)
    ranks = _positive_ranks(ret, q_texts, pos_scores, np.concatenate(pos_at))

    instances, truth, grades, positive_ranks = [], {}, {}, {}
    short = 0
    for i, qid in enumerate(chosen):
        judged = qrels[qid]
        negatives: list[Passage] = []
        for r, (pos, score) in enumerate(zip(found.indices[i], found.scores[i]), start=1):
            if pos < 0 or pos == pos_at[i][0]:
                continue
            if len(negatives) == depth:
                break
            negatives.append(corpus.passage(int(pos), score=float(score), rank=r))
        short += len(negatives) < depth
        positive = corpus.passage(int(pos_at[i][0]), score=float(pos_scores[i]), rank=int(ranks[i]))
        instances.append(Instance(qid, texts[qid], (positive,), tuple(negatives), subset=folder.root.name))
        positive_ranks[qid] = int(ranks[i])
        for p in negatives:
            g = judged.get(p.docid)
            if g is not None:
                grades[(qid, p.docid)] = g
            truth[(qid, p.docid)] = g is not None and g >= relevant_grade
    notes = [
        f"source {folder.root} split {split}; sparse labels: one positive per query kept by rule '{keep}' "
        f"(seed {seed}) among documents of grade >= {relevant_grade}; candidates: top {depth} of the full "
        f"corpus ({len(corpus)} docs) by {retriever}, the kept positive excluded; queries {len(chosen)} of "
        f"{len(usable)} usable",
        f"truth: full-qrels grade >= {relevant_grade}; unjudged candidates count as NOT relevant",
    ]
    skipped = len(qrels) - len(usable)
    if skipped:
        notes.append(f"{skipped} queries in qrels without a relevant corpus document (or without query text) left out")
    if short:
        notes.append(f"{short} queries got fewer than {depth} candidates (the retriever found fewer documents)")
    return Benchmark(folder.root.name, tuple(instances), truth, grades, tuple(notes), positive_ranks)


def _positive_ranks(ret, queries: list[str], pos_scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """1 + the number of OTHER corpus documents scoring strictly above each query's positive (its own row is
    left out: a matrix product may round its score a hair above the one it is compared with)."""
    above = np.zeros(len(queries), dtype=np.int64)
    if hasattr(ret, "full_scores"):  # BM25: exact scores of every document, one query at a time
        for i, tokens in enumerate(ret.tokenize(queries)):
            full = ret.full_scores(tokens)
            full[positions[i]] = -np.inf
            above[i] = int((full > pos_scores[i]).sum())
        return above + 1
    qv = np.asarray(ret.encode_queries(queries), dtype=np.float32)
    vectors = ret.vectors
    thresholds = pos_scores.astype(np.float32)
    cols = np.arange(len(queries))
    for start in range(0, len(vectors), _BLOCK):
        block = np.asarray(vectors[start : start + _BLOCK], dtype=np.float32) @ qv.T  # (block, queries)
        mine = (positions >= start) & (positions < start + len(block))
        block[positions[mine] - start, cols[mine]] = -np.inf
        above += (block > thresholds[None, :]).sum(axis=0)
    return above + 1


def rank_summary(ranks) -> dict:
    """Median, quartiles and share in the top 10 / top ``depth`` of the kept positives' ranks."""
    r = np.asarray(list(ranks), dtype=np.float64)
    if not r.size:
        return {"n": 0}
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return {
        "n": int(r.size),
        "median": float(med),
        "q1": float(q1),
        "q3": float(q3),
        "top1": float((r <= 1).mean()),
        "top10": float((r <= 10).mean()),
        "top30": float((r <= 30).mean()),
        "max": int(r.max()),
    }
