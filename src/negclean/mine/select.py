"""Choosing negatives among one query's retrieved candidates: rank window, exclusions, positive-aware
score filters, sampling. Pure numpy, a chunk of queries at a time (``select_chunk``; ``select`` for one).

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from negclean.data.scores import ratio_threshold

#: reasons a candidate is dropped, in the order they are attributed
EXCLUSIONS = ("positive", "judged_relevant")
FILTERS = ("ratio", "margin", "max_score", "min_score")
REASONS = EXCLUSIONS + FILTERS + ("duplicate",)


def window_columns(depth: int, start: int, end: int) -> slice:
    """Columns (0-based) of ranks START+1..END in retrieval results ``depth`` columns wide (ranks are
    1-based); a column whose index is -1 (the corpus ran out) holds no candidate."""
    return slice(start, max(start, min(end, depth)))


def score_filter_masks(
    scores: np.ndarray,
    s_pos: np.ndarray | float | None,
    *,
    ratio: float | None,
    margin: float | None,
    max_score: float | None,
    min_score: float | None,
) -> dict[str, np.ndarray]:
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


def sample_positions(
    scores: np.ndarray,
    k: int,
    *,
    how: str,
    rng: np.random.Generator | None,
    s_pos: float | None = None,
    a: float = 1.0,
    b: float = 0.0,
) -> np.ndarray:
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


#: per-candidate outcome codes of a ChunkSelection: OUTSIDE (no candidate: the corpus ran out), SURVIVOR
#: (passed every filter, not sampled), 1 + i for ``REASONS[i]``, KEPT
OUTSIDE, SURVIVOR = -1, 0
CODE = {reason: i + 1 for i, reason in enumerate(REASONS)}
KEPT = len(REASONS) + 1


@dataclass(frozen=True, slots=True)
class ChunkSelection:
    """The outcome for a chunk of queries' windows, one row per query (columns: window positions).

    ``codes`` (n, W) says what happened to each candidate (``OUTSIDE``, ``SURVIVOR``, ``CODE[reason]``,
    ``KEPT``); ``survivors`` counts per row the candidates that passed every filter and duplicate check
    (kept ones included); ``examined`` how many were checked for duplicates; ``shortfall`` how many
    negatives are missing from the number asked for; ``applied`` the reasons that were in force.
    """

    codes: np.ndarray
    survivors: np.ndarray
    shortfall: np.ndarray
    examined: np.ndarray
    applied: tuple[str, ...]

    def kept(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, columns) of the kept candidates, row by row and in rank order within a row."""
        rows, cols = np.nonzero(self.codes == KEPT)
        return rows, cols


def select_chunk(
    filter_scores: np.ndarray,
    *,
    valid: np.ndarray,
    exclusions: Mapping[str, np.ndarray],
    s_pos: np.ndarray,
    num_negatives: int,
    sampling: str,
    rngs: Sequence[np.random.Generator | None] | None = None,
    ratio: float | None = None,
    margin: float | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    simans_a: float = 1.0,
    simans_b: float = 0.0,
    is_duplicate: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> ChunkSelection:
    """Exclusions, score filters, duplicate checks and sampling for a chunk of windows at once.

    ``filter_scores`` and ``valid`` are (n, W): each row one query's candidates in rank order (``valid``
    False where the corpus ran out); ``exclusions`` boolean (n, W) masks named in ``REASONS``; ``s_pos``
    (n,) each query's lowest positive score, NaN where unknown (positive-aware filters then keep all);
    ``rngs`` one generator per row for random and SimANS sampling; ``is_duplicate(rows, cols)`` returns a
    mask over the given candidates. Per row the outcome is exactly that of checking the row alone.
    """
    n = filter_scores.shape[0]
    codes = np.where(valid, SURVIVOR, OUTSIDE).astype(np.int8)
    masks = dict(exclusions)
    known = None if np.isnan(s_pos).all() else s_pos[:, None]  # NaN compares False: unknown rows keep all
    masks.update(
        score_filter_masks(filter_scores, known, ratio=ratio, margin=margin, max_score=max_score, min_score=min_score)
    )
    applied = tuple(r for r in REASONS if r in masks or (r == "duplicate" and is_duplicate is not None))
    for reason in REASONS:
        mask = masks.get(reason)
        if mask is not None:
            codes[(codes == SURVIVOR) & mask] = CODE[reason]
    examined = np.zeros(n, dtype=np.int64)
    if is_duplicate is not None:
        if sampling == "top":
            # in rank order, check only as many as are still missing, until enough are found or none is left
            found = np.zeros(n, dtype=np.int64)
            unchecked = codes == SURVIVOR
            active = np.arange(n)  # rows that may still need checks
            while active.size:
                sub = unchecked[active]
                need = num_negatives - found[active]
                r, cols = np.nonzero(sub & (np.cumsum(sub, axis=1, dtype=np.int32) <= need[:, None]))
                if r.size == 0:
                    break
                rows = active[r]
                dup = np.asarray(is_duplicate(rows, cols), dtype=bool)
                codes[rows[dup], cols[dup]] = CODE["duplicate"]
                unchecked[rows, cols] = False
                examined += np.bincount(rows, minlength=n)
                found += np.bincount(rows[~dup], minlength=n)
                # a row without a duplicate in its batch has all it needs, or nothing left to check
                active = np.unique(rows[dup])
                active = active[unchecked[active].any(axis=1)]
        else:  # random and SimANS sample from duplicate-free candidates: check them all
            rows, cols = np.nonzero(codes == SURVIVOR)
            if rows.size:
                dup = np.asarray(is_duplicate(rows, cols), dtype=bool)
                codes[rows[dup], cols[dup]] = CODE["duplicate"]
                examined += np.bincount(rows, minlength=n)
    alive = codes == SURVIVOR
    survivors = alive.sum(axis=1)
    if sampling == "top":
        codes[alive & (np.cumsum(alive, axis=1, dtype=np.int32) <= num_negatives)] = KEPT
    else:
        for row in np.flatnonzero(survivors > num_negatives).tolist():
            cols = np.flatnonzero(alive[row])
            chosen = sample_positions(
                filter_scores[row, cols],
                num_negatives,
                how=sampling,
                rng=None if rngs is None else rngs[row],
                s_pos=None if np.isnan(s_pos[row]) else float(s_pos[row]),
                a=simans_a,
                b=simans_b,
            )
            codes[row, cols[chosen]] = KEPT
        few = survivors <= num_negatives
        codes[alive & few[:, None]] = KEPT
    shortfall = np.maximum(0, num_negatives - survivors)
    return ChunkSelection(codes, survivors, shortfall, examined, applied)


@dataclass(frozen=True, slots=True)
class Selection:
    """The outcome for one query's window of candidates (positions into the window arrays).

    ``dropped`` maps each reason in force to the positions it removed; ``not_sampled`` are candidates
    that passed the filters (duplicate checks: where made) but were not chosen; ``survivors`` counts
    those plus the kept; ``examined`` is how many candidates were checked for duplicates; ``shortfall``
    is how many negatives are missing from the number asked for.
    """

    kept: np.ndarray
    dropped: Mapping[str, np.ndarray]
    not_sampled: np.ndarray
    survivors: int
    shortfall: int
    examined: int = 0


def select(
    filter_scores: np.ndarray,
    *,
    exclusions: Mapping[str, np.ndarray],
    s_pos: float | None,
    num_negatives: int,
    sampling: str,
    rng: np.random.Generator | None,
    ratio: float | None = None,
    margin: float | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    simans_a: float = 1.0,
    simans_b: float = 0.0,
    is_duplicate: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Selection:
    """``select_chunk`` for one window: ``filter_scores`` are its candidates in rank order;
    ``is_duplicate(positions)`` returns a mask over the given window positions."""
    check = None if is_duplicate is None else (lambda rows, cols: is_duplicate(cols))
    sel = select_chunk(
        filter_scores[None, :],
        valid=np.ones((1, filter_scores.shape[0]), dtype=bool),
        exclusions={k: np.asarray(v, dtype=bool)[None, :] for k, v in exclusions.items()},
        s_pos=np.array([np.nan if s_pos is None else s_pos]),
        num_negatives=num_negatives,
        sampling=sampling,
        rngs=[rng],
        ratio=ratio,
        margin=margin,
        max_score=max_score,
        min_score=min_score,
        simans_a=simans_a,
        simans_b=simans_b,
        is_duplicate=check,
    )
    row = sel.codes[0]
    dropped = {reason: np.flatnonzero(row == CODE[reason]) for reason in sel.applied}
    return Selection(
        np.flatnonzero(row == KEPT),
        MappingProxyType(dropped),
        np.flatnonzero(row == SURVIVOR),
        int(sel.survivors[0]),
        int(sel.shortfall[0]),
        int(sel.examined[0]),
    )
