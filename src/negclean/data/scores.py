"""Score arithmetic shared by mining and judging: how close a candidate's score is to a positive's.

The similarity judge flags with it, hard-negative mining drops candidates with it (a positive-aware
threshold), and the learned judge's ``ratio`` feature is ``relative_score``. Pure numpy.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-6


def ratio_threshold(pos_score: np.ndarray | float, ratio: float) -> np.ndarray | float:
    """Score a candidate must exceed to count as "close to or above" a positive scoring ``pos_score``.

    ``ratio * s`` for a positive score and ``s - (1 - ratio) * |s|`` in general; the two agree for
    s >= 0, and the general form keeps the threshold below the positive (for ratio < 1) when s < 0,
    where ``ratio * s`` would put it above.
    """
    return pos_score - (1.0 - ratio) * np.abs(pos_score)


def relative_score(cand_score: np.ndarray | float, pos_score: np.ndarray | float) -> np.ndarray | float:
    """``s(q,c) / s(q,p)`` made sign-safe: ``1 + (s_c - s_p) / |s_p|``.

    Equal to the plain ratio when s_p > 0, increasing in s_c for any s_p, and ``> ratio`` exactly when
    ``s_c > ratio_threshold(s_p, ratio)``.
    """
    return 1.0 + (cand_score - pos_score) / np.maximum(np.abs(pos_score), _EPS)


def band_confidence(rel: np.ndarray | float, band: tuple[float, float]) -> np.ndarray | float:
    """Map a relative score linearly from ``band`` = (low, high) onto [0, 1], clipped."""
    low, high = band
    return np.clip((np.asarray(rel, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


__all__ = ["band_confidence", "ratio_threshold", "relative_score"]
