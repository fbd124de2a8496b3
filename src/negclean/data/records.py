"""The one record type for a training instance, shared by every stage of the data flow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from negclean.data.hashing import passage_key, text_hash

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Passage:
    """A passage as it appears in an instance: positive or (hard) negative.

    Args:
        docid: id within the collection; content-hash ids (``h...``) for text-only formats.
        text: passage body.
        title: optional title (RLHN did not send titles to the judge; judges decide).
        score: retriever or teacher score, when the source has one.
        rank: retriever rank (1-based, before any filtering), when known.
        meta: free extra fields, written back where the format allows (e.g. provenance).
    """

    docid: str
    text: str
    title: str = ""
    score: float | None = None
    rank: int | None = None
    meta: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False)

    @property
    def key(self) -> str:
        """Content key used by the judgment store."""
        return passage_key(self.text, self.title)


@dataclass(frozen=True, slots=True)
class Instance:
    """A query with labeled positives and mined negatives.

    Args:
        query_id: id of the query (content hash for formats without one).
        query: query text.
        positives: labeled relevant passages (at least one).
        negatives: hard negatives, in the order given by the source (usually retriever rank).
        subset: source dataset within a collection (e.g. ``msmarco_passage``), or "".
        meta: free extra fields of the source row, kept for the writer (e.g. FlagEmbedding ``prompt``).
        line: 1-based line (or row) number in the input file, for messages.
    """

    query_id: str
    query: str
    positives: tuple[Passage, ...]
    negatives: tuple[Passage, ...]
    subset: str = ""
    meta: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False)
    line: int = 0

    @property
    def query_key(self) -> str:
        return text_hash(self.query)

    @property
    def positives_key(self) -> str:
        """One key for the set of positives a judge was shown (order-insensitive)."""
        return text_hash("\x1e".join(sorted(p.key for p in self.positives)))

    def replace(self, **changes: Any) -> Instance:
        from dataclasses import replace

        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A source line that could not be turned into an Instance."""

    path: str
    line: int
    reason: str
    raw: str

    def message(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"
