"""Duplicate exclusion for mining: candidates whose normalised text repeats a positive (exactly, or
nearly by word-3-gram Jaccard) or the query itself.

The same documents come back for many queries, so each document is normalised and shingled once, on
first sight: its text hash, shingle count and shingle-set hash go into flat arrays (20 bytes per
passage) and its shingles, as a sorted array of 64-bit hashes, into a size-bounded LRU cache. A Jaccard
value is computed only where the two sizes make the threshold reachable (J(A, B) <= min(|A|, |B|) /
max(|A|, |B|)); and with fewer than t / (1 - t) shingles on the smaller side (9 at t = 0.9) a Jaccard of t
or more needs equal sets, which the set hashes decide: short passages never take the slow path.
"""

from __future__ import annotations

import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from negclean.data.records import Passage
from negclean.mine.beir import Corpus

_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)


def fast_normalize(text: str) -> str:
    """``negclean.data.hashing.normalize_text``, computed faster: ``str.split()`` splits on exactly the
    characters the regex ``\\s`` matches (both use Python's Unicode white-space test; a test checks every
    code point), and the normalisation runs once per passage per run, so its speed matters here."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def shingle_hashes(normalized: str) -> np.ndarray:
    """Sorted unique int64 hashes of the word 3-gram shingles of a normalised text (one shingle of all
    words when it has fewer than 3): the duplicate judge's shingle sets, each shingle hashed to 64 bits."""
    words = normalized.split()
    if len(words) < 3:
        return np.array([hash(tuple(words))], dtype=np.int64) if words else np.zeros(0, dtype=np.int64)
    w = np.fromiter((hash(x) for x in words), dtype=np.int64, count=len(words)).view(np.uint64)
    return np.unique((w[:-2] * _P1 + w[1:-1] * _P2 + w[2:]).view(np.int64))


def hashed_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0 or b.size == 0:
        return 0.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


class DuplicateFinder:
    """Finds, among corpus documents, copies of a query's positives or of the query."""

    def __init__(self, corpus: Corpus, *, near_threshold: float | None, cache_elements: int = 8_000_000):
        self.corpus = corpus
        self.near_threshold = near_threshold
        self.hashes = np.zeros(len(corpus), dtype=np.int64)
        self.sizes = np.full(len(corpus), -1, dtype=np.int32)  # -1: not seen yet
        self.set_hashes = np.zeros(len(corpus), dtype=np.int64)
        self._lru: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached = 0
        self._limit = cache_elements  # 8M hashes = 64 MB

    def _normalized(self, i: int) -> str:
        return fast_normalize(self.corpus.text(i))

    def _remember(self, i: int, arr: np.ndarray) -> None:
        self._lru[i] = arr
        self._cached += arr.size
        while self._cached > self._limit and self._lru:
            _, old = self._lru.popitem(last=False)
            self._cached -= old.size

    def _shingles_of(self, i: int) -> np.ndarray:
        arr = self._lru.get(i)
        if arr is not None:
            self._lru.move_to_end(i)
            return arr
        arr = shingle_hashes(self._normalized(i))
        self._remember(i, arr)
        return arr

    def _ensure(self, docs: np.ndarray) -> None:
        for i in np.unique(docs[self.sizes[docs] < 0]):
            i = int(i)
            norm = self._normalized(i)
            self.hashes[i] = hash(norm)
            arr = shingle_hashes(norm)
            self.sizes[i] = arr.size
            self.set_hashes[i] = hash(arr.tobytes())
            self._remember(i, arr)

    def _print_of(self, passage: Passage, position: int | None) -> tuple[str, np.ndarray]:
        """(normalised text, shingle hashes) of a positive; from the corpus caches when it is a corpus passage
        (``_ensure``-d before)."""
        if position is not None and self.corpus.text(position) == passage.text:
            return self._normalized(position), self._shingles_of(position)
        norm = fast_normalize(passage.text)
        return norm, shingle_hashes(norm)

    def for_chunk(
        self, queries: Sequence[tuple[Sequence[Passage], str, Sequence[int | None] | None]]
    ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """A check for a chunk of queries, each given as (positives, query text, the positives' corpus
        positions or None): ``check(rows, docs)`` -> boolean mask, True where corpus document ``docs[k]``
        duplicates a positive of query ``rows[k]`` or that query. Compares document text only (titles
        differ between copies of the same passage)."""
        exact: dict[tuple[int, int], str] = {}
        near_rows: list[int] = []
        near: list[np.ndarray] = []
        known = [p for _, _, positions in queries if positions is not None for p in positions if p is not None]
        self._ensure(np.asarray(known, dtype=np.int64))
        for row, (positives, query, positions) in enumerate(queries):
            prints = [self._print_of(p, None if positions is None else positions[j]) for j, p in enumerate(positives)]
            for norm, _ in prints:
                if norm:
                    exact[(row, hash(norm))] = norm
            query_norm = fast_normalize(query)
            if query_norm:
                exact[(row, hash(query_norm))] = query_norm
            if self.near_threshold is not None:
                for _, pos in prints:
                    if pos.size:
                        near_rows.append(row)
                        near.append(pos)
        keys = _row_key(
            np.fromiter((r for r, _ in exact), dtype=np.int64, count=len(exact)),
            np.fromiter((h for _, h in exact), dtype=np.int64, count=len(exact)),
        )
        by_row = np.zeros(len(queries) + 1, dtype=np.int64)  # near positives of row r: near[by_row[r]:by_row[r+1]]
        np.add.at(by_row, np.asarray(near_rows, dtype=np.int64) + 1, 1)
        by_row = np.cumsum(by_row)
        sizes = np.array([pos.size for pos in near], dtype=np.float64)
        set_hashes = np.array([hash(pos.tobytes()) for pos in near], dtype=np.int64)
        return lambda rows, docs: self._check(
            np.asarray(rows, dtype=np.int64),
            np.asarray(docs, dtype=np.int64),
            exact,
            keys,
            near,
            by_row,
            sizes,
            set_hashes,
        )

    def for_query(
        self, positives: Sequence[Passage], query: str, positions: Sequence[int | None] | None = None
    ) -> Callable[[np.ndarray], np.ndarray]:
        """``for_chunk`` for one query: ``check(docs)`` -> boolean mask over ``docs``."""
        check = self.for_chunk([(positives, query, positions)])
        return lambda docs: check(np.zeros(len(docs), dtype=np.int64), docs)

    def find(
        self, docs: np.ndarray, positives: Sequence[Passage], query: str, positions: Sequence[int | None] | None = None
    ) -> np.ndarray:
        """``for_query(positives, query, positions)(docs)``."""
        return self.for_query(positives, query, positions)(docs)

    def _check(
        self,
        rows: np.ndarray,
        docs: np.ndarray,
        exact: dict[tuple[int, int], str],
        keys: np.ndarray,
        near: list[np.ndarray],
        by_row: np.ndarray,
        near_sizes: np.ndarray,
        near_set_hashes: np.ndarray,
    ) -> np.ndarray:
        out = np.zeros(docs.shape[0], dtype=bool)
        if docs.size == 0:
            return out
        self._ensure(docs)
        hashes = self.hashes[docs]
        for k in np.flatnonzero(np.isin(_row_key(rows, hashes), keys)):
            target = exact.get((int(rows[k]), int(hashes[k])))
            out[k] = target is not None and self._normalized(int(docs[k])) == target  # rule out collisions
        if not near:
            return out
        # every (candidate, near positive of its query) pair
        first, count = by_row[rows], by_row[rows + 1] - by_row[rows]
        cand = np.repeat(np.arange(docs.size), count)
        pos = np.repeat(first - np.cumsum(count) + count, count) + np.arange(cand.size)
        t = self.near_threshold
        assert t is not None  # for_chunk fills `near` only when near_threshold is set
        sizes = self.sizes[docs].astype(np.float64)[cand]
        n = near_sizes[pos]
        # J(A, B) <= min(|A|, |B|) / max(|A|, |B|): only pairs whose sizes make t reachable are compared
        reachable = ~out[cand] & (sizes > 0) & (np.minimum(sizes, n) >= t * np.maximum(sizes, n))
        # fewer shingles than t/(1-t): only equal sets reach t (the margin keeps m = 9 at t = 0.9 on the slow path)
        small = t / (1.0 - t) - 1e-9 if t < 1.0 else np.inf
        same_set = reachable & (np.minimum(sizes, n) < small)
        equal = same_set & (sizes == n) & (self.set_hashes[docs][cand] == near_set_hashes[pos])
        for p in np.flatnonzero(equal):
            k = cand[p]
            if not out[k]:
                out[k] = np.array_equal(self._shingles_of(int(docs[k])), near[pos[p]])  # rule out collisions
        for p in np.flatnonzero(reachable & ~same_set):
            k = cand[p]
            if not out[k] and hashed_jaccard(self._shingles_of(int(docs[k])), near[pos[p]]) >= t:
                out[k] = True
        return out


def _row_key(rows, hashes):
    """One 64-bit key per (query row, text hash) pair (exact matches are confirmed on the text)."""
    with np.errstate(over="ignore"):
        return np.asarray(hashes, dtype=np.int64).view(np.uint64) ^ (np.asarray(rows, dtype=np.uint64) * _P1)
