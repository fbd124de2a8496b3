"""Hybrid retrieval: dense and BM25 lists fused by reciprocal rank (RRF, Cormack et al. 2009).

A document's fused score is the sum over lists of 1 / (k + rank), counting only lists it appears in
(each list ``depth_each`` deep). Positive-aware filters and SimANS compare the exact dense cosine of
every candidate and positive, because RRF values are not comparable across queries. Each negative
records its component ranks and scores (``dense_rank``, ``bm25_rank``: None outside that list).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from negclean.mine.bm25 import BM25Retriever, top_k
from negclean.mine.dense import DenseRetriever
from negclean.mine.retrieved import Retrieved


def rrf_fuse(lists: Sequence[np.ndarray], *, k: int, depth: int) -> tuple[np.ndarray, np.ndarray, list[dict[int, int]]]:
    """Fuse ranked lists of corpus positions (-1 = empty slot).

    Returns (fused scores, fused positions) of length ``depth`` (padded with NaN / -1) and, per list,
    ``{position: 1-based rank}``. Ties are broken by the best single rank, then by position.
    """
    ranks = [{int(d): r for r, d in enumerate(lst, start=1) if d >= 0} for lst in lists]
    fused: dict[int, float] = {}
    best: dict[int, int] = {}
    for rank_of in ranks:
        for doc, r in rank_of.items():
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + r)
            best[doc] = min(best.get(doc, r), r)
    order = sorted(fused, key=lambda d: (-fused[d], best[d], d))[:depth]
    scores = np.full(depth, np.nan, dtype=np.float32)
    idx = np.full(depth, -1, dtype=np.int64)
    scores[: len(order)] = [fused[d] for d in order]
    idx[: len(order)] = order
    return scores, idx, ranks


class HybridRetriever:
    name = "hybrid"
    score_name = "rrf"
    filter_score_name = "cosine"

    def __init__(self, dense: DenseRetriever, bm25: BM25Retriever, *, rrf_k: int = 60, depth_each: int = 200):
        self.dense = dense
        self.bm25 = bm25
        self.rrf_k = rrf_k
        self.depth_each = depth_each

    def retrieve(self, queries: Sequence[str], *, depth: int, docs: Sequence[np.ndarray]) -> Retrieved:
        n = len(queries)
        each = max(self.depth_each, depth)
        qv = self.dense.encode_queries(queries)
        _, dense_idx = self.dense.index.search(qv, each)
        tokens = self.bm25.tokenize(queries)
        indices = np.full((n, depth), -1, dtype=np.int64)
        scores = np.full((n, depth), np.nan, dtype=np.float32)
        cosine = np.full((n, depth), np.nan, dtype=np.float32)
        extras = {
            name: np.full((n, depth), np.nan, dtype=np.float32)
            for name in ("dense_rank", "bm25_rank", "dense_score", "bm25_score")
        }
        doc_scores, doc_cosine = [], []
        for i in range(n):
            full = self.bm25.full_scores(tokens[i])
            _, bm25_idx = top_k(full, each)
            s, idx, (dense_rank, bm25_rank) = rrf_fuse([dense_idx[i], bm25_idx], k=self.rrf_k, depth=depth)
            scores[i], indices[i] = s, idx
            valid = idx >= 0
            got = idx[valid]
            [cos] = self.dense.index.score(qv[i : i + 1], [got])
            cosine[i, valid] = cos
            extras["dense_score"][i, valid] = cos
            extras["bm25_score"][i, valid] = full[got]
            extras["dense_rank"][i, valid] = [dense_rank.get(int(d), np.nan) for d in got]
            extras["bm25_rank"][i, valid] = [bm25_rank.get(int(d), np.nan) for d in got]
            want = np.asarray(docs[i], dtype=np.int64)
            doc_scores.append(
                np.array(
                    [sum(1.0 / (self.rrf_k + r[int(d)]) for r in (dense_rank, bm25_rank) if int(d) in r) for d in want],
                    dtype=np.float32,
                )
            )
            [pc] = self.dense.index.score(qv[i : i + 1], [want])
            doc_cosine.append(pc)
        return Retrieved(indices, scores, cosine, doc_scores, doc_cosine, extras)

    def describe(self) -> dict[str, Any]:
        return {
            "retriever": "hybrid",
            "fusion": "rrf",
            "rrf_k": self.rrf_k,
            "depth_each": self.depth_each,
            "filter_score": "dense cosine",
            "dense": self.dense.describe(),
            "bm25": self.bm25.describe(),
        }
