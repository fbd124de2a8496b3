"""The retriever protocol of the mining stage and the factory that builds one from a MineConfig.

A retriever answers one chunk of queries at a time: the top ``depth`` documents of each (positions in
the corpus, -1 where the corpus runs out) with their scores, and the scores of given documents (the
query's positives) wherever they rank. Memory is the index plus one chunk of results: no retriever
ever holds a query x corpus score matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from negclean.mine.beir import Corpus
from negclean.mine.config import MineConfig

_NO_EXTRAS: Mapping[str, np.ndarray] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Retrieved:
    """One chunk's results.

    Args:
        indices: (n, depth) corpus positions by rank; -1 where nothing was retrieved.
        scores: (n, depth) the retriever's ranking score (written to the output).
        filter_scores: (n, depth) the score positive-aware filters and SimANS compare (the same as
            ``scores`` except for hybrid retrieval, where it is the dense cosine).
        doc_scores: per query, ranking scores of the requested documents (its positives).
        doc_filter_scores: per query, filter scores of the requested documents.
        extras: optional (n, depth) columns stored with each negative (hybrid: component ranks/scores).
    """

    indices: np.ndarray
    scores: np.ndarray
    filter_scores: np.ndarray
    doc_scores: list[np.ndarray]
    doc_filter_scores: list[np.ndarray]
    extras: Mapping[str, np.ndarray] = field(default_factory=lambda: _NO_EXTRAS)


class Retriever(Protocol):
    name: str
    score_name: str
    filter_score_name: str

    def retrieve(self, queries: Sequence[str], *, depth: int, docs: Sequence[np.ndarray]) -> Retrieved:
        ...

    def describe(self) -> dict[str, Any]:
        """What was built and how (index kind, cache hit, seconds), for the summary."""
        ...


def pad_topk(scores: np.ndarray, indices: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad (n, k<depth) results to depth columns with -1 / NaN (a corpus smaller than the depth)."""
    n, k = indices.shape
    if k >= depth:
        return scores[:, :depth], indices[:, :depth]
    s = np.full((n, depth), np.nan, dtype=np.float32)
    i = np.full((n, depth), -1, dtype=np.int64)
    s[:, :k] = scores
    i[:, :k] = indices
    return s, i


def build_retriever(corpus: Corpus, cfg: MineConfig, *, embedder=None,
                    on_progress: Callable[[str, int, int], None] | None = None) -> Retriever:
    """Build the retriever ``cfg.retriever`` over ``corpus`` (embedding, indexing or loading caches)."""
    if cfg.retriever == "bm25":
        from negclean.mine.bm25 import BM25Retriever

        return BM25Retriever(corpus, cfg)
    from negclean.mine.dense import DenseRetriever

    dense = DenseRetriever(corpus, cfg, embedder=embedder, on_progress=on_progress)
    if cfg.retriever == "dense":
        return dense
    from negclean.mine.bm25 import BM25Retriever
    from negclean.mine.hybrid import HybridRetriever

    depth_each = cfg.hybrid_depth or 2 * cfg.rank_range[1]
    return HybridRetriever(dense, BM25Retriever(corpus, cfg), rrf_k=cfg.rrf_k, depth_each=depth_each)
