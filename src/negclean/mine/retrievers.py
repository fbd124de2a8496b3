"""The retriever protocol of the mining stage and the factory that builds one from a MineConfig.

A retriever answers one chunk of queries at a time: the top ``depth`` documents of each (positions in
the corpus, -1 where the corpus runs out) with their scores, and the scores of given documents (the
query's positives) wherever they rank. Memory is the index plus one chunk of results: no retriever
ever holds a query x corpus score matrix.
"""

from __future__ import annotations

from collections.abc import Callable

from negclean.mine.beir import Corpus
from negclean.mine.bm25 import BM25Retriever
from negclean.mine.config import MineConfig
from negclean.mine.dense import DenseRetriever
from negclean.mine.hybrid import HybridRetriever
from negclean.mine.retrieved import Retrieved, Retriever, pad_topk

# Retrieved, Retriever and pad_topk live in negclean.mine.retrieved (the backends import them from there)
__all__ = ["Retrieved", "Retriever", "build_retriever", "pad_topk"]


def build_retriever(
    corpus: Corpus, cfg: MineConfig, *, embedder=None, on_progress: Callable[[str, int, int], None] | None = None
) -> Retriever:
    """Build the retriever ``cfg.retriever`` over ``corpus`` (embedding, indexing or loading caches)."""
    if cfg.retriever == "bm25":
        return BM25Retriever(corpus, cfg)
    dense = DenseRetriever(corpus, cfg, embedder=embedder, on_progress=on_progress)
    if cfg.retriever == "dense":
        return dense
    depth_each = cfg.hybrid_depth or 2 * cfg.rank_range[1]
    return HybridRetriever(dense, BM25Retriever(corpus, cfg), rrf_k=cfg.rrf_k, depth_each=depth_each)
