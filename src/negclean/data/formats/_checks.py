"""Checks that let a record through but are worth a warning (counted by kind in ``ReadStats.warnings``).

None of them changes the record: a negative that repeats a positive is a free false negative that the
duplicate judge handles later, so it must reach it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from operator import attrgetter, itemgetter
from typing import Any

from negclean.data.hashing import normalize_text
from negclean.data.records import Instance, Passage

EMPTY_NEGATIVES = "empty_negatives"
DUPLICATE_DOCID = "duplicate_docid"
NEGATIVE_EQUALS_POSITIVE = "negative_equals_positive"
EMPTY_TEXT = "empty_text"
EMPTY_QUERY = "empty_query"
WARNING_KINDS = (EMPTY_NEGATIVES, DUPLICATE_DOCID, NEGATIVE_EQUALS_POSITIVE, EMPTY_TEXT, EMPTY_QUERY)


def _first_word(text: str) -> str:
    """Lower-cased first word, cut at 16 characters (enough to tell texts apart, and cheap)."""
    parts = text.lstrip()[:16].split(None, 1)
    return parts[0].lower() if parts else ""


def _norm(text: str) -> str:
    """``normalize_text``, ~10x faster on ASCII text: there NFKC changes nothing, casefold is lower() and the
    regex's \\s is what str.split() splits on."""
    return " ".join(text.lower().split()) if text.isascii() else normalize_text(text)


def _duplicates(passages: Sequence[Passage], side: str) -> Iterator[tuple[str, str]]:
    seen: dict[str, int] = {}
    for i, p in enumerate(passages, start=1):
        first = seen.setdefault(p.docid, i)
        if first != i:
            yield DUPLICATE_DOCID, f"docid {p.docid!r} appears twice among the {side} ({first} and {i})"


def _same_as_positive(inst: Instance) -> Iterator[tuple[str, str]]:
    pos_ids = {p.docid: i for i, p in enumerate(inst.positives, start=1)}
    # normalize_text costs ~9 us per passage. For ASCII texts (where NFKC and casefold change nothing) equal
    # normalised texts must start with the same lower-cased word, a check that costs a fraction of that.
    ascii_pos = all(p.text.isascii() for p in inst.positives)
    first_words = {_first_word(p.text) for p in inst.positives} if ascii_pos else set()
    pos_norm: dict[str, int] | None = None
    for i, n in enumerate(inst.negatives, start=1):
        j = pos_ids.get(n.docid)
        if j is not None:
            yield (
                NEGATIVE_EQUALS_POSITIVE,
                f"negative {i} has the docid of positive {j} ({n.docid!r}): a false negative, kept",
            )
            continue
        if ascii_pos and n.text.isascii() and _first_word(n.text) not in first_words:
            continue
        if pos_norm is None:
            pos_norm = {}
            for k, p in enumerate(inst.positives, start=1):
                pos_norm.setdefault(_norm(p.text), k)
        norm = _norm(n.text)
        j = pos_norm.get(norm) if norm else None
        if j is not None:
            yield (
                NEGATIVE_EQUALS_POSITIVE,
                (f"negative {i} ({n.docid!r}) has the same normalised text as positive {j}: a false negative, kept"),
            )


_TEXT = attrgetter("text")
_DOCID = attrgetter("docid")
_FIRST = itemgetter(slice(0, 1))
# What str.split() (so ``_norm``) treats as whitespace in ASCII text, and "" for an empty text.
_BLANK_START = frozenset(["", " ", "\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x1f"])


def _quiet(inst: Instance) -> bool:
    """True when ``inst`` certainly draws no warning, proven cheaply; False when it may (then ``all_checks``
    decides). Measured while streaming 9-passage instances: ~5 µs against ~7 µs for ``all_checks``
    (RESULTS-io.md)."""
    return quiet(inst.query, inst.positives, inst.negatives)


def quiet(query: str, positives: Sequence[Any], negatives: Sequence[Any]) -> bool:
    """``_quiet`` on the parts of an instance: passages are anything with ``docid`` and ``text`` (Passage
    records, or the decoded rows of the fast Tevatron reader, which needs no records to prove a line quiet).

    For ASCII texts that start with a non-blank character, equal normalised texts start with the same
    lower-cased first word, so only a negative whose first characters spell a positive's first word (up to
    16 characters, either case) needs its normalised text compared; every other case goes to ``all_checks``."""
    if not query or query.isspace() or not negatives:
        return False
    pos_texts = list(map(_TEXT, positives))
    neg_texts = list(map(_TEXT, negatives))
    blank = _BLANK_START
    if not (
        blank.isdisjoint(map(_FIRST, pos_texts))
        and blank.isdisjoint(map(_FIRST, neg_texts))
        and all(map(str.isascii, pos_texts))
        and all(map(str.isascii, neg_texts))
    ):
        return False
    pos_ids = set(map(_DOCID, positives))
    neg_ids = set(map(_DOCID, negatives))
    if len(pos_ids) != len(positives) or len(neg_ids) != len(negatives) or not pos_ids.isdisjoint(neg_ids):
        return False
    for text in pos_texts:
        word = text[:16].split(None, 1)[0].lower()
        cut = itemgetter(slice(0, len(word)))
        if word in map(str.lower, map(cut, neg_texts)):
            pos_norms = set(map(_norm, pos_texts))
            same_start = (t for t in neg_texts if cut(t).lower() == word)
            if not pos_norms.isdisjoint(map(_norm, same_start)):
                return False
    return True


def check_instance(inst: Instance) -> list[tuple[str, str]]:
    """(kind, message) for each warning about an instance that is otherwise valid."""
    if _quiet(inst):
        return []
    return all_checks(inst)


def all_checks(inst: Instance) -> list[tuple[str, str]]:
    """``check_instance`` without the shortcut for instances that draw no warning (what it falls back to)."""
    found: list[tuple[str, str]] = []
    query = inst.query
    if not query or query.isspace():
        found.append((EMPTY_QUERY, "query text is empty"))
    if not inst.negatives:
        found.append((EMPTY_NEGATIVES, "no negatives"))
    for side, passages in (("positives", inst.positives), ("negatives", inst.negatives)):
        for i, p in enumerate(passages, start=1):
            text = p.text
            if not text or text.isspace():
                found.append((EMPTY_TEXT, f"{side[:-1]} {i} ({p.docid!r}) has empty text"))
        if len({p.docid for p in passages}) != len(passages):
            found.extend(_duplicates(passages, side))
    found.extend(_same_as_positive(inst))
    return found
