"""BM25 retrieval with bm25s (sparse index, numpy backend, saved without pickle).

Scores are computed one query at a time over the whole corpus (one float per passage, then freed), which
gives exact scores for any document, positives included. Documents sharing no term with the query (score
0) are not retrieved.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from negclean.errors import require
from negclean.mine.beir import Corpus
from negclean.mine.cache import default_cache_dir
from negclean.mine.config import MineConfig
from negclean.mine.retrieved import Retrieved

STOPWORDS = "en"
_EMPTY_QUERY = ["\x00"]  # a token no corpus contains: bm25s needs at least one


def top_k(full: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices) of the k best entries of ``full``, best first, ties by position; -1/NaN pad zeros."""
    k = min(k, full.shape[0])
    part = np.argpartition(-full, k - 1)[:k] if k < full.shape[0] else np.arange(full.shape[0])
    order = np.lexsort((part, -full[part]))
    idx = part[order].astype(np.int64)
    scores = full[idx].astype(np.float32)
    idx[scores <= 0] = -1
    scores[scores <= 0] = np.nan
    return scores, idx


class BM25Retriever:
    """bm25s over the corpus' indexed texts (title + text by default), English stop words, no stemming."""

    name = "bm25"
    score_name = "bm25"
    filter_score_name = "bm25"

    def __init__(self, corpus: Corpus, cfg: MineConfig):
        self.bm25s = require("bm25s", extra="mine", purpose="BM25 mining")
        self.corpus = corpus
        self.cfg = cfg
        self.cached = False
        self.cache_dir: Path | None = None
        start = time.perf_counter()
        if cfg.use_cache:
            root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
            key = hashlib.sha256(
                json.dumps(
                    {"corpus": corpus.content_hash, "title": cfg.include_title, "stop": STOPWORDS, "v": 1}
                ).encode()
            ).hexdigest()[:24]
            self.cache_dir = root / f"bm25-{key}"
            self.model = self._load(self.cache_dir)
        else:
            self.model = None
        if self.model is None:
            self.model = self._build()
            if self.cache_dir is not None:
                self._save(self.cache_dir)
        else:
            self.cached = True
        self.seconds = time.perf_counter() - start

    def _build(self):
        texts = self.corpus.indexed_texts(0, len(self.corpus), include_title=self.cfg.include_title)
        tokens = self.bm25s.tokenize(texts, stopwords=STOPWORDS, show_progress=False)
        del texts
        model = self.bm25s.BM25()
        model.index(tokens, show_progress=False)
        return model

    def _load(self, path: Path):
        if not (path / "params.index.json").is_file():
            return None
        try:
            model = self.bm25s.BM25.load(str(path), mmap=True, show_progress=False)
        except Exception:  # noqa: BLE001 - a stale or foreign cache is rebuilt, never fatal
            return None
        if model.scores.get("num_docs") != len(self.corpus):
            return None
        return model

    def _save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            self.model.save(str(tmp), allow_pickle=False, show_progress=False)
            shutil.rmtree(path, ignore_errors=True)
            tmp.rename(path)
        except OSError:  # a read-only cache folder only costs the rebuild next time
            shutil.rmtree(tmp, ignore_errors=True)

    def tokenize(self, queries: Sequence[str]) -> list[list[str]]:
        tokens = self.bm25s.tokenize(list(queries), stopwords=STOPWORDS, return_ids=False, show_progress=False)
        return [t if t else _EMPTY_QUERY for t in tokens]

    def full_scores(self, tokens: list[str]) -> np.ndarray:
        """BM25 score of every passage for one tokenised query (float32, corpus length)."""
        return np.asarray(self.model.get_scores(tokens), dtype=np.float32)

    def retrieve(self, queries: Sequence[str], *, depth: int, docs: Sequence[np.ndarray]) -> Retrieved:
        n = len(queries)
        indices = np.full((n, depth), -1, dtype=np.int64)
        scores = np.full((n, depth), np.nan, dtype=np.float32)
        doc_scores = []
        for i, (tokens, d) in enumerate(zip(self.tokenize(queries), docs)):
            full = self.full_scores(tokens)
            s, idx = top_k(full, depth)
            scores[i, : len(s)] = s
            indices[i, : len(idx)] = idx
            doc_scores.append(full[np.asarray(d, dtype=np.int64)])
        return Retrieved(indices, scores, scores, doc_scores, doc_scores)

    def describe(self) -> dict[str, Any]:
        return {
            "retriever": "bm25",
            "corpus_size": len(self.corpus),
            "stopwords": STOPWORDS,
            "index_cache": str(self.cache_dir) if self.cache_dir else None,
            "index_cached": self.cached,
            "index_seconds": round(self.seconds, 3),
        }
