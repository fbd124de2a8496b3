"""Choosing negatives among one query's retrieved candidates: rank window, exclusions, positive-aware
score filters, sampling. Pure numpy, one query at a time.

Filters compare against the query's lowest-scoring positive ``s_p`` (with several positives the
hardest one, so that no candidate close to any positive survives):

- ratio:     drop s_c > s_p - (1 - ratio) * |s_p|   (= ratio * s_p when s_p >= 0; sign-safe below 0)
- margin:    drop s_c > s_p - margin
- max_score: drop s_c > max_score;  min_score: drop s_c < min_score

Each dropped candidate is counted once, under the first reason in ``REASONS`` that applies. Duplicate
checks come last because they cost the most: with ``top`` sampling the remaining candidates are examined
in rank order only until enough negatives are kept (random and SimANS sampling examine all of them, so
that they sample from duplicate-free candidates).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from negclean.judge.similarity import ratio_threshold

#: reasons a candidate is dropped, in the order they are attributed
EXCLUSIONS = ("positive", "judged_relevant")
FILTERS = ("ratio", "margin", "max_score", "min_score")
REASONS = EXCLUSIONS + FILTERS + ("duplicate",)


def window_positions(indices: np.ndarray, start: int, end: int) -> np.ndarray:
    """Positions (0-based) of retrieved documents with rank in START+1..END; ranks are 1-based."""
    pos = np.arange(start, min(end, indices.shape[0]))
    return pos[indices[pos] >= 0]


def score_filter_masks(scores: np.ndarray, s_pos: float | None, *, ratio: float | None, margin: float | None,
                       max_score: float | None, min_score: float | None) -> dict[str, np.ndarray]:
    """Boolean "drop" masks of the score filters (positive-aware ones only when ``s_pos`` is known)."""
    masks: dict[str, np.ndarray] = {}
    if s_pos is not None and ratio is not None:
        masks["ratio"] = scores > ratio_threshold(s_pos, ratio)
    if s_pos is not None and margin is not None:
        masks["margin"] = scores > s_pos - margin
    if max_score is not None:
        masks["max_score"] = scores > max_score
    if min_score is not None:
        masks["min_score"] = scores < min_score
    return masks


def query_rng(seed: int, query_id: str) -> np.random.Generator:
    """A generator per query, so that sampling does not depend on chunking or query order."""
    digest = int.from_bytes(hashlib.sha256(query_id.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([seed, digest])


def simans_logits(scores: np.ndarray, s_pos: float, *, a: float, b: float) -> np.ndarray:
    """log p (unnormalised) of SimANS: p ~ exp(-a * (s_neg - s_pos - b)^2)."""
    return -a * np.square(np.asarray(scores, dtype=np.float64) - s_pos - b)


def simans_probabilities(scores: np.ndarray, s_pos: float, *, a: float, b: float) -> np.ndarray:
    """The SimANS distribution over candidates (sums to 1)."""
    logits = simans_logits(scores, s_pos, a=a, b=b)
    w = np.exp(logits - logits.max())
    return w / w.sum()


def sample_positions(scores: np.ndarray, k: int, *, how: str, rng: np.random.Generator | None,
                     s_pos: float | None = None, a: float = 1.0, b: float = 0.0) -> np.ndarray:
    """Indices (into ``scores``, which is in rank order) of at most k chosen candidates, in rank order.

    ``top``: the first k; ``random``: uniform without replacement; ``simans``: without replacement with
    probability proportional to the SimANS weight (successive sampling, via Gumbel-top-k: the first
    pick follows the SimANS distribution exactly, each next one the same distribution over the rest).
    """
    n = scores.shape[0]
    if n <= k:
        return np.arange(n)
    if how == "top":
        return np.arange(k)
    if rng is None:
        raise ValueError(f"{how} sampling needs a random generator")
    if how == "random":
        return np.sort(rng.choice(n, size=k, replace=False))
    if how == "simans":
        if s_pos is None:
            raise ValueError("SimANS sampling needs the positive's score")
        keys = simans_logits(scores, s_pos, a=a, b=b) + rng.gumbel(size=n)
        return np.sort(np.argpartition(-keys, k - 1)[:k])
    raise ValueError(f"unknown sampling {how!r}: top, random or simans")


@dataclass(frozen=True, slots=True)
class Selection:
    """The outcome for one query's window of candidates (positions into the window arrays).

    ``dropped`` maps each reason to the positions it removed; ``not_sampled`` are candidates that passed
    the filters (duplicate checks: where made) but were not chosen; ``survivors`` counts those plus the
    kept; ``examined`` is how many candidates were checked for duplicates; ``shortfall`` is how many
    negatives are missing from the number asked for.
    """

    kept: np.ndarray
    dropped: Mapping[str, np.ndarray]
    not_sampled: np.ndarray
    survivors: int
    shortfall: int
    examined: int = 0


def select(filter_scores: np.ndarray, *, exclusions: Mapping[str, np.ndarray], s_pos: float | None,
           num_negatives: int, sampling: str, rng: np.random.Generator | None, ratio: float | None = None,
           margin: float | None = None, max_score: float | None = None, min_score: float | None = None,
           simans_a: float = 1.0, simans_b: float = 0.0,
           is_duplicate: Callable[[np.ndarray], np.ndarray] | None = None) -> Selection:
    """Apply exclusions (boolean masks named in ``EXCLUSIONS``), score filters, duplicate checks and
    sampling to a window.

    ``filter_scores`` are the window's candidates in rank order; ``is_duplicate(positions)`` returns a
    mask over the given window positions.
    """
    n = filter_scores.shape[0]
    alive = np.ones(n, dtype=bool)
    dropped: dict[str, np.ndarray] = {}
    masks = dict(exclusions)
    masks.update(score_filter_masks(filter_scores, s_pos, ratio=ratio, margin=margin,
                                    max_score=max_score, min_score=min_score))
    for reason in REASONS:
        mask = masks.get(reason)
        if mask is None:
            continue
        hit = alive & mask
        dropped[reason] = np.flatnonzero(hit)
        alive &= ~hit
    survivors = np.flatnonzero(alive)
    examined = 0
    if is_duplicate is not None:
        if sampling == "top":
            dups, start, found = [], 0, 0
            while found < num_negatives and start < survivors.size:
                batch = survivors[start:start + num_negatives - found]
                mask = is_duplicate(batch)
                dups.append(batch[mask])
                found += int(batch.size - mask.sum())
                start += batch.size
            examined = start
            dup = np.concatenate(dups) if dups else survivors[:0]
        else:
            mask = is_duplicate(survivors) if survivors.size else np.zeros(0, dtype=bool)
            examined = int(survivors.size)
            dup = survivors[mask]
        dropped["duplicate"] = dup
        if dup.size:
            alive[dup] = False
            survivors = np.flatnonzero(alive)
    chosen = sample_positions(filter_scores[survivors], num_negatives, how=sampling, rng=rng, s_pos=s_pos,
                              a=simans_a, b=simans_b)
    kept = survivors[chosen]
    alive[kept] = False
    not_sampled = np.flatnonzero(alive)
    return Selection(kept, MappingProxyType(dropped), not_sampled, int(survivors.size),
                     max(0, num_negatives - int(kept.size)), examined)
