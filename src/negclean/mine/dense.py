"""Dense retrieval: a sentence-transformers model, cached corpus embeddings, FAISS search.

``flat`` is exact inner-product search straight over the (memory-mapped) embedding matrix, query chunk
by query chunk; ``hnsw`` and ``ivf`` build an approximate FAISS index (cached next to the embeddings).
Vectors are L2-normalised, so scores are cosine similarities.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from negclean.data.atomic import atomic_path
from negclean.embed_cache import cached, counts_of
from negclean.errors import require
from negclean.mine.beir import Corpus
from negclean.mine.cache import EmbeddingCache, embedding_key
from negclean.mine.config import MineConfig
from negclean.mine.retrieved import Retrieved, pad_topk

_ADD_CHUNK = 65536


def _faiss():
    return require("faiss", extra="mine", purpose="Dense mining")


class DenseIndex:
    """Inner-product top-k over a float32 matrix (exact, HNSW or IVF)."""

    def __init__(
        self,
        vectors: np.ndarray,
        *,
        kind: str = "flat",
        hnsw_m: int = 32,
        ef_search: int = 128,
        ivf_nlist: int | None = None,
        nprobe: int = 16,
        seed: int = 0,
        index_path: Path | None = None,
    ):
        self.vectors = vectors
        self.kind = kind
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.index = None
        self.index_cached = False
        self.build_seconds = 0.0
        if kind == "flat":
            return
        faiss = _faiss()
        start = time.perf_counter()
        if index_path is not None and index_path.is_file():
            self.index = faiss.read_index(str(index_path))
            self.index_cached = self.index.ntotal == len(vectors)
        if not self.index_cached:
            self.index = self._build(faiss, kind, hnsw_m, ivf_nlist, seed)
            if index_path is not None:
                with atomic_path(index_path) as tmp:
                    faiss.write_index(self.index, str(tmp))
        self.build_seconds = time.perf_counter() - start

    def _build(self, faiss, kind: str, hnsw_m: int, ivf_nlist: int | None, seed: int):
        n, dim = self.vectors.shape
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = max(40, 2 * hnsw_m)
        elif kind == "ivf":
            nlist = ivf_nlist or max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            sample = min(n, max(64 * nlist, 39 * nlist))
            rows = np.sort(rng.choice(n, size=sample, replace=False))
            index.train(np.ascontiguousarray(self.vectors[rows]))
        else:
            raise ValueError(f"unknown index kind {kind!r}: flat, hnsw or ivf")
        for start in range(0, n, _ADD_CHUNK):
            index.add(np.ascontiguousarray(self.vectors[start : start + _ADD_CHUNK]))
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, indices), each (n, k); -1 / NaN beyond the corpus size."""
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        kk = min(k, len(self.vectors))
        if self.index is None:
            scores, indices = faiss.knn(queries, self.vectors, kk, metric=faiss.METRIC_INNER_PRODUCT)
        else:
            if self.kind == "hnsw":
                self.index.hnsw.efSearch = max(self.ef_search, kk)
            else:
                self.index.nprobe = self.nprobe
            scores, indices = self.index.search(queries, kk)
        indices = indices.astype(np.int64, copy=False)
        scores = scores.astype(np.float32, copy=False)
        scores[indices < 0] = np.nan
        return pad_topk(scores, indices, k)

    def score(self, queries: np.ndarray, docs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Exact inner products of each query with its own list of documents."""
        out = []
        for q, d in zip(queries, docs):
            d = np.asarray(d, dtype=np.int64)
            if d.size == 0:
                out.append(np.zeros(0, dtype=np.float32))
                continue
            order = np.argsort(d)  # sorted row access is kinder to a memory map
            rows = np.asarray(self.vectors[d[order]], dtype=np.float32)
            vals = np.empty(d.size, dtype=np.float32)
            vals[order] = rows @ q
            out.append(vals)
        return out


class DenseRetriever:
    """A sentence-transformers model over a corpus, with cached embeddings."""

    name = "dense"
    score_name = "cosine"
    filter_score_name = "cosine"

    def __init__(
        self,
        corpus: Corpus,
        cfg: MineConfig,
        *,
        embedder=None,
        vectors: np.ndarray | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
    ):
        self.corpus = corpus
        self.cfg = cfg
        if embedder is None:
            from negclean.embed import load_embedder

            embedder = load_embedder(cfg.model, device=cfg.device)
        if cfg.use_cache:  # every text through the shared embedding cache (no memory layer: each is asked for once)
            embedder = cached(embedder, cache=cfg.cache_dir, memory_bytes=0)
        self.embedder = embedder
        # the model part of cache keys (for a model folder a digest of its files' content: computed once)
        self.model_identity = getattr(embedder, "identity", None) or cfg.model
        self.cache_path: Path | None = None
        self.cache_hit = False
        start = time.perf_counter()
        if vectors is None:
            vectors = self._corpus_vectors(on_progress)
        self.embed_seconds = time.perf_counter() - start
        self.vectors = vectors
        index_path = None
        if cfg.index != "flat" and self.cache_path is not None:
            suffix = f"hnsw{cfg.hnsw_m}" if cfg.index == "hnsw" else f"ivf{cfg.ivf_nlist or 'auto'}-s{cfg.seed}"
            index_path = self.cache_path.with_name(f"{self.cache_path.stem}.{suffix}.faiss")
        self.index = DenseIndex(
            vectors,
            kind=cfg.index,
            hnsw_m=cfg.hnsw_m,
            ef_search=cfg.ef_search,
            ivf_nlist=cfg.ivf_nlist,
            nprobe=cfg.nprobe,
            seed=cfg.seed,
            index_path=index_path,
        )

    def _encode_passages(self, start: int, stop: int) -> np.ndarray:
        texts = self.corpus.indexed_texts(start, stop, include_title=self.cfg.include_title)
        return self.embedder.encode(texts, prefix=self.cfg.passage_prefix, batch_size=self.cfg.batch_size)

    def _corpus_vectors(self, on_progress) -> np.ndarray:
        n = len(self.corpus)
        done = [0]

        def report(rows: int) -> None:
            done[0] += rows
            if on_progress:
                on_progress("embedding corpus", done[0], n)

        if not self.cfg.use_cache:
            out: np.ndarray | None = None
            for start in range(0, n, 4096):
                vecs = self._encode_passages(start, start + 4096)
                if out is None:
                    out = np.empty((n, vecs.shape[1]), dtype=np.float32)
                out[start : start + vecs.shape[0]] = vecs
                report(vecs.shape[0])
            assert out is not None
            return out
        cache = EmbeddingCache(self.cfg.cache_dir)
        identity = self.model_identity
        key = embedding_key(
            model_identity=identity,
            corpus_hash=self.corpus.content_hash,
            prefix=self.cfg.passage_prefix,
            include_title=self.cfg.include_title,
        )
        self.cache_path = cache.path(key)
        vectors, self.cache_hit = cache.build(
            key,
            rows=n,
            encode=self._encode_passages,
            on_rows=report,
            describe={
                "model": identity,
                "corpus": self.corpus.source,
                "corpus_hash": self.corpus.content_hash,
                "prefix": self.cfg.passage_prefix,
                "include_title": self.cfg.include_title,
            },
        )
        return vectors

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """One chunk's query vectors; with the cache on, each query is read from the shared embedding cache
        (``negclean.embed_cache``) when embedded before, so that re-mining the same queries with other windows,
        filters, sampling or chunks embeds nothing again."""
        return self.embedder.encode(list(queries), prefix=self.cfg.query_prefix, batch_size=self.cfg.batch_size)

    def retrieve(self, queries: Sequence[str], *, depth: int, docs: Sequence[np.ndarray]) -> Retrieved:
        qv = self.encode_queries(queries)
        scores, indices = self.index.search(qv, depth)
        doc_scores = self.index.score(qv, docs)
        return Retrieved(indices, scores, scores, doc_scores, doc_scores)

    def describe(self) -> dict[str, Any]:
        return {
            "retriever": "dense",
            "model": self.cfg.model,
            "index": self.cfg.index,
            "corpus_size": len(self.corpus),
            "dim": int(self.vectors.shape[1]),
            "embeddings_cache": str(self.cache_path) if self.cache_path else None,
            "embeddings_cached": self.cache_hit,
            "embed_seconds": round(self.embed_seconds, 3),
            "index_cached": self.index.index_cached,
            "index_seconds": round(self.index.build_seconds, 3),
            "embeddings": [c.as_dict() for c in counts_of(self.embedder)],
        }
