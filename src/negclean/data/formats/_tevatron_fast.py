"""The fast path for the common Tevatron line: typed decoding (msgspec) straight into an ``Instance``.

Covers rows with exactly the Tevatron fields (``query_id``, ``query``, ``positive_passages``,
``negative_passages``, optional ``subset``) and passages with exactly ``docid``, ``title``, ``text`` and optional
``score`` and ``rank``, all of the types ``tevatron.parse`` keeps as they are. Any other line (extra fields,
integer ids, null titles, a repeated key, an empty id, anything the tolerant parser would reject) gets None
here and goes the general way, so what a file yields and every message stay those of ``tevatron.parse``.

Decoding into structs and filling the frozen records through their slots costs ~9 µs for a line of 9 passages
against ~45 µs for JSON objects and ``tevatron.parse`` (benchmarks/RESULTS-io.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from negclean.data.formats import tevatron
from negclean.data.formats._base import EMPTY
from negclean.data.formats._fastjson import count_quotes, expand, plain_number, plain_numbers
from negclean.data.records import Instance, Passage


class TevatronPassage(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    """A passage with no extra fields (field order: as ``tevatron.passage_row`` writes them)."""

    docid: str
    title: str
    text: str
    score: float | UnsetType = UNSET
    rank: int | UnsetType = UNSET


class TevatronRow(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    """A row with no extra fields (field order: as ``tevatron.to_rows`` writes them)."""

    query_id: str
    query: str
    positive_passages: list[TevatronPassage]
    negative_passages: list[TevatronPassage]
    subset: str | UnsetType = UNSET


_decode = msgspec.json.Decoder(TevatronRow).decode

# Records are filled through their slot descriptors: a frozen dataclass's __init__ sets each field with
# object.__setattr__, which costs as much as the decoding. Only while the fields are the ones known here.
_PASSAGE_FIELDS = ("docid", "text", "title", "score", "rank", "meta")
ENABLED = tuple(f.name for f in dataclasses.fields(Passage)) == _PASSAGE_FIELDS
_new = object.__new__
_DOCID = attrgetter("docid")


def _setter(name: str) -> Callable[[Passage, object], None]:
    """The slot descriptor's setter of a Passage field (bypasses the frozen dataclass's __setattr__)."""
    setter: Callable[[Passage, object], None] = vars(Passage)[name].__set__
    return setter


_set_docid, _set_text, _set_title = _setter("docid"), _setter("text"), _setter("title")
_set_score, _set_rank, _set_meta = _setter("score"), _setter("rank"), _setter("meta")


def _passages(items: list[TevatronPassage]) -> tuple[Passage, ...]:
    """The records of passages that ``decode_plain`` accepted."""
    out = []
    for item in items:
        p = _new(Passage)
        _set_docid(p, item.docid)
        _set_text(p, item.text)
        _set_title(p, item.title)
        score = item.score
        rank = item.rank
        _set_score(p, None if score is UNSET else score)
        _set_rank(p, None if rank is UNSET else rank)
        _set_meta(p, EMPTY)
        out.append(p)
    return tuple(out)


def decode_plain(raw: bytes) -> TevatronRow | None:
    """The decoded row of a plain Tevatron line (``to_instance`` makes its Instance), or None when the line needs
    the general way."""
    try:
        row = _decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    pos, neg = row.positive_passages, row.negative_passages
    if not row.query_id or not pos or not all(map(_DOCID, pos)) or not all(map(_DOCID, neg)):
        return None
    # A repeated key leaves a string behind that no field holds: the tolerant parser rejects such a line. Each
    # passage holds 6 strings (3 keys, 3 values) and one more key for a score and for a rank. Every string the
    # row holds is in the line, so the line has at least 2 * strings delimiters (unescaped "), and its count of
    # " (delimiters + escaped quotes) is at least that: when the plain count is exactly that, there is no
    # other string, and count_quotes (which tells escaped quotes apart, ~25% dearer) is not needed.
    strings = 6 + 6 * (len(pos) + len(neg)) + (0 if row.subset is UNSET else 2)
    extra = raw.count(b'"') - 2 * strings
    if extra:
        keys = 2 * sum([(p.score is not UNSET) + (p.rank is not UNSET) for p in pos + neg])
        if extra != keys and count_quotes(raw) - 2 * strings != keys:
            return None
    return row


def to_instance(row: TevatronRow, *, line: int) -> Instance:
    """The Instance of a row that ``decode_plain`` accepted (what ``tevatron.parse`` gives for its line)."""
    subset = "" if isinstance(row.subset, UnsetType) else row.subset
    return Instance(
        row.query_id, row.query, _passages(row.positive_passages), _passages(row.negative_passages), subset, EMPTY, line
    )


class PlainLine:
    """A plain Tevatron JSON line that nothing has changed, read without building its records
    (``InstanceReader.plain()``): ``raw`` is the line as read (no line ending), ``row`` its decoded fields,
    ``line`` its 1-based line number. ``instance()`` builds (once) the Instance the reader would have given."""

    __slots__ = ("raw", "row", "line", "_instance")

    def __init__(self, raw: bytes, row: TevatronRow, line: int):
        self.raw = raw
        self.row = row
        self.line = line
        self._instance: Instance | None = None

    def instance(self) -> Instance:
        if self._instance is None:
            self._instance = to_instance(self.row, line=self.line)
        return self._instance


class _OutRow(msgspec.Struct):
    """A row to encode: the fields of ``tevatron.to_rows`` in its order; passages as TevatronPassage structs,
    or as ``tevatron.passage_row`` dicts where they have extra fields."""

    query_id: str
    query: str
    positive_passages: list[Any]
    negative_passages: list[Any]
    subset: str


_encode = msgspec.json.Encoder().encode


def _out_passages(passages: tuple[Passage, ...]) -> list[Any] | None:
    out: list[Any] = []
    for p in passages:
        docid, title, text, score, rank = p.docid, p.title, p.text, p.score, p.rank
        if type(docid) is not str or type(title) is not str or type(text) is not str:
            return None
        if score is not None and (type(score) is not float or not plain_number(score)):
            return None
        if rank is not None and type(rank) is not int:
            return None
        if p.meta:
            if not plain_numbers(p.meta):
                return None
            out.append(tevatron.passage_row(p))
        else:
            score_or_unset = UNSET if score is None else score
            rank_or_unset = UNSET if rank is None else rank
            out.append(TevatronPassage(docid=docid, title=title, text=text, score=score_or_unset, rank=rank_or_unset))
    return out


def encode_instance(inst: Instance) -> bytes | None:
    """``json.dumps(tevatron.to_rows(inst)[0], ensure_ascii=False)`` as UTF-8, encoded from structs (about half
    the CPU of rows of dicts: what a fix spends on each instance it changes); None for an instance that this
    does not cover (extra row fields, a score msgspec writes otherwise, a field of an unexpected type, a lone
    surrogate), which the writer then encodes the general way."""
    if inst.meta or type(inst.query_id) is not str or type(inst.query) is not str or type(inst.subset) is not str:
        return None
    pos = _out_passages(inst.positives)
    neg = _out_passages(inst.negatives)
    if pos is None or neg is None:
        return None
    try:
        return expand(_encode(_OutRow(inst.query_id, inst.query, pos, neg, inst.subset)))
    except (TypeError, ValueError):
        return None
