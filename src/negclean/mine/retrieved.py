"""What every retriever of the mining stage shares: the ``Retrieved`` chunk of results, the ``Retriever``
protocol and ``pad_topk``. The backends (dense, bm25, hybrid) import these; ``negclean.mine.retrievers``
builds a backend from a MineConfig and re-exports them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

__all__ = ["Retrieved", "Retriever", "pad_topk"]

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

    def retrieve(self, queries: Sequence[str], *, depth: int, docs: Sequence[np.ndarray]) -> Retrieved: ...

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
