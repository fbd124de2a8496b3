"""The stratified, reproducible sample of judged candidates that annotators label.

A candidate's stratum is the last stage that judged it and what that stage said: ``screen: flagged``,
``screen: cleared``, ``llm: undecided``... Each stratum contributes up to ``per_stratum`` candidates,
chosen by a hash of (seed, pair): the same run and seed give the same sample in any order of reading,
and one pass over the run suffices whatever its size. Items are shown in a hash order too, so that
strata are interleaved and the annotator cannot tell what the judges said.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from negclean.cascade.outcome import InstanceOutcome
from negclean.metrics.agreement import JudgedPair, Key

_WORD = {"relevant": "flagged", "not_relevant": "cleared", "undecided": "undecided"}


@dataclass(frozen=True)
class Item:
    """One candidate to label, as the annotator sees it (no verdicts)."""

    id: str
    key: Key
    query_id: str
    query: str
    positives: tuple[tuple[str, str], ...]  # (title, text)
    docid: str
    title: str
    text: str

    def public(self) -> dict:
        return {
            "id": self.id,
            "query": self.query,
            "positives": [{"title": t, "text": x} for t, x in self.positives],
            "title": self.title,
            "text": self.text,
        }


@dataclass(frozen=True)
class AnnotationSet:
    """The sample to label plus what the run decided on every pair that matters for agreement.

    Args:
        items: the sample, in presentation order.
        strata: population of every stratum in the run (candidates, before sampling), by name.
        sampled: items drawn from each stratum.
        pairs: run decisions for sampled pairs and for pairs that already had human labels.
        stages: stage names in cascade order.
    """

    items: tuple[Item, ...]
    strata: dict[str, int]
    sampled: dict[str, int]
    pairs: dict[Key, JudgedPair]
    stages: tuple[str, ...]
    _by_id: dict[str, Item] = field(init=False, repr=False, compare=False)  # set in __post_init__

    def item(self, item_id: str) -> Item | None:
        return self._by_id.get(item_id)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {it.id: it for it in self.items})


def _draw(seed: int, purpose: str, key: Key) -> int:
    digest = hashlib.blake2b(f"{seed}|{purpose}|{'|'.join(key)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def item_id(key: Key) -> str:
    """A short stable id for a pair (used in URLs and the page; never reveals a verdict)."""
    return hashlib.blake2b("|".join(key).encode(), digest_size=6).hexdigest()


def stratum_of(trail: Iterable[tuple[str, str]]) -> str | None:
    """``"<last stage>: flagged|cleared|undecided"`` from a candidate's (stage, label) trail."""
    trail = list(trail)
    if not trail:
        return None
    stage, label = trail[-1]
    return f"{stage}: {_WORD.get(label, label)}"


def build_sample(
    outcomes: Iterable[InstanceOutcome],
    *,
    stages: Iterable[str],
    per_stratum: int = 25,
    seed: int = 0,
    labeled: Iterable[Key] = (),
) -> AnnotationSet:
    """One pass over a run's outcomes: draw the sample and index the decisions agreement needs.

    Args:
        outcomes: the run's judged instances (``RunFolder.outcomes()``).
        stages: stage names in cascade order.
        per_stratum: items drawn from each stratum at most.
        seed: changes which items are drawn, reproducibly.
        labeled: store keys that already carry human labels (their decisions are indexed too).
    """
    if per_stratum < 1:
        raise ValueError("per_stratum must be at least 1")
    want = set(labeled)
    heaps: dict[str, list[tuple[int, Key]]] = {}
    kept: dict[Key, tuple[Item, str]] = {}
    pairs: dict[Key, JudgedPair] = {}
    population: dict[str, int] = {}
    for outcome in outcomes:
        inst = outcome.instance
        fns = set(outcome.false_negatives)
        qk, pk = inst.query_key, inst.positives_key
        for i, (passage, cand) in enumerate(zip(inst.negatives, outcome.candidates)):
            key = (qk, pk, passage.key)
            trail = [(s, v.label.value) for s, v in cand.trail]
            stratum = stratum_of(trail)
            if stratum is None:
                continue
            if key in pairs:  # the same pair again (duplicate rows): one item, every occurrence for qrels
                old = pairs[key]
                if (inst.query_id, passage.docid) not in old.occurrences:
                    pairs[key] = JudgedPair(
                        key, old.occurrences + ((inst.query_id, passage.docid),), old.stages, old.cascade
                    )
                continue
            population[stratum] = population.get(stratum, 0) + 1
            final_undecided = cand.verdict.label.value == "undecided"
            pair = JudgedPair(
                key, ((inst.query_id, passage.docid),), dict(trail), None if final_undecided else i in fns
            )
            # bottom-k by hash: keep the per_stratum smallest draws (heap of negated draws)
            rank = _draw(seed, "sample", key)
            heap = heaps.setdefault(stratum, [])
            take = len(heap) < per_stratum or -heap[0][0] > rank
            if take or key in want:
                pairs[key] = pair
            if not take:
                continue
            item = Item(
                item_id(key),
                key,
                inst.query_id,
                inst.query,
                tuple((p.title, p.text) for p in inst.positives),
                passage.docid,
                passage.title,
                passage.text,
            )
            kept[key] = (item, stratum)
            if len(heap) < per_stratum:
                heapq.heappush(heap, (-rank, key))
            else:
                _, evicted = heapq.heapreplace(heap, (-rank, key))
                kept.pop(evicted, None)
                if evicted not in want:
                    pairs.pop(evicted, None)
    items = sorted((it for it, _ in kept.values()), key=lambda it: _draw(seed, "order", it.key))
    sampled: dict[str, int] = {}
    for _, stratum in kept.values():
        sampled[stratum] = sampled.get(stratum, 0) + 1
    order = list(stages)

    def stratum_sort(name: str) -> tuple[int, str]:
        stage = name.split(": ")[0]
        return (order.index(stage) if stage in order else len(order), name)

    return AnnotationSet(
        tuple(items),
        {k: population[k] for k in sorted(population, key=stratum_sort)},
        {k: sampled.get(k, 0) for k in sorted(population, key=stratum_sort)},
        pairs,
        tuple(order),
    )
