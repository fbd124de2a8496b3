"""Counts of how the texts given to an embedder were served (embedded by the model, or read from the embedding
cache), per model: what ``summary.json`` reports as ``cascade.embeddings``.

Apart from ``negclean.embed_cache`` (which re-exports these) so that code that only adds counts up, such as the
cascade runner that ``negclean fix`` imports, does not load numpy: importing numpy starts OpenBLAS threads that
spin for ~60 ms of CPU.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class EmbedCounts:
    """How the texts one model was asked to embed were served (``embedded`` texts went through the model)."""

    model: str
    backend: str
    requested: int = 0  #: texts in all encode calls, repeats included
    embedded: int = 0  #: distinct texts (per call) computed by the model
    from_memory: int = 0  #: distinct texts (per call) this run had already embedded or read
    from_disk: int = 0  #: distinct texts (per call) read from the cache file
    corrupt: int = 0  #: rows of the file found corrupt (and embedded again: they are part of ``embedded``)

    def plus(self, other: EmbedCounts) -> EmbedCounts:
        nums = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name not in ("model", "backend")
        }
        return EmbedCounts(self.model, self.backend, **nums)

    def as_dict(self) -> dict[str, str | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def merge_counts(counts: Iterable[EmbedCounts]) -> tuple[EmbedCounts, ...]:
    """Counts added up per (model, backend), in order of first appearance."""
    out: dict[tuple[str, str], EmbedCounts] = {}
    for c in counts:
        key = (c.model, c.backend)
        out[key] = out[key].plus(c) if key in out else c
    return tuple(out.values())


class EmbedTally:
    """Running ``EmbedCounts`` per (model, backend), added to by the ``CachedEmbedder``s that share it.

    A judge that embeds keeps one as its ``stats`` (the Judge protocol's counters): the cascade shows
    ``as_dict()`` per stage and adds the tallies of all stages up into ``cascade.embeddings``."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], EmbedCounts] = {}
        self._lock = threading.Lock()

    def add(self, counts: EmbedCounts) -> None:
        key = (counts.model, counts.backend)
        with self._lock:
            old = self._counts.get(key)
            self._counts[key] = counts if old is None else old.plus(counts)

    def counts(self) -> tuple[EmbedCounts, ...]:
        with self._lock:
            return tuple(self._counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"embeddings": [c.as_dict() for c in self.counts()]}
