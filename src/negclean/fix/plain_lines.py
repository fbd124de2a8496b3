"""Fixing Tevatron JSON Lines a line at a time without building records (the JSON Lines sibling of
``arrow_batches``).

``run_fix`` reads instances and fixes each with ``fix_row``, which costs records for every passage, a dict per
verdict and a re-encoding of each changed line. For Tevatron JSON Lines written back as Tevatron JSON Lines,
``instances`` below takes the lines the reader proves plain (``InstanceReader.plain()``: only Tevatron fields,
strict JSON, no warning), decodes each one's verdicts row into typed structs that hold only what a fix reads,
checks it the way ``fix_row`` does, and then:

- writes the line's own bytes when the operation leaves it as it is (as ``like=reader`` does for an unchanged
  instance);
- otherwise writes the row with the kept passages' bytes as read: the positives, then each relabeled negative
  with its provenance member (``"negclean": {...}``, as ``fix_row`` builds it) added at its end, then the kept
  negatives, around ids, query and subset encoded as negclean writes them. On lines as negclean and
  ``json.dumps`` write them (``", "``/``": "``, passage fields in the order docid, title, text, score, rank)
  these are the bytes ``fix_row`` and the writer give; on other lines the passages keep the user's spacing,
  field order and escapes, as unchanged lines do, and read back as the same passages.

Anything it cannot prove it fixes as ``fix_row`` would (a verdicts row that msgspec cannot decode into those
structs, or that does not plainly match its instance, a label or grade that is not one of negclean's) goes to
``run_fix``'s loop as the instance with its verdicts row as a dict, so messages, errors and counts are those of
the per-row code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from operator import attrgetter

import msgspec
from msgspec import UNSET, UnsetType

from negclean.cascade.outcome import decode_verdict_line
from negclean.data.formats._fastjson import encode, plain_number
from negclean.data.formats._tevatron_fast import PlainLine
from negclean.data.io import InstanceReader, InstanceWriter
from negclean.data.records import Instance
from negclean.fix.operations import (
    GRADE_VALUES,
    LABEL_VALUES,
    FixCounts,
    Operation,
    decide_drops,
    provenance_from_row,
    trail_text,
)
from negclean.fix.verdict_rows import VerdictRows


class _Step(msgspec.Struct, kw_only=True, gc=False):
    """A trail entry of a verdicts row, the fields the provenance needs."""

    stage: str
    label: str
    judge: str
    grade: str | None = None


class _Candidate(msgspec.Struct, kw_only=True, gc=False):
    """A candidate of a verdicts row (``outcome_row``), the fields a fix reads; others are skipped."""

    docid: str
    stage: str
    label: str
    judge: str
    grade: str | None = None
    confidence: float | int | None = None
    trail: list[_Step] = []


class _Verdicts(msgspec.Struct, kw_only=True, gc=False):
    query_id: str
    false_negative_index: list[int]
    ambiguous: bool
    candidates: list[_Candidate]


class _Spans(msgspec.Struct, kw_only=True, gc=False):
    """A plain Tevatron row with each passage as its bytes as read."""

    query_id: str
    query: str
    positive_passages: list[msgspec.Raw]
    negative_passages: list[msgspec.Raw]
    subset: str | UnsetType = UNSET


_decode_verdicts = msgspec.json.Decoder(_Verdicts).decode
_decode_spans = msgspec.json.Decoder(_Spans).decode
_DOCID = attrgetter("docid")
_LABEL = attrgetter("label")
_encode = msgspec.json.Encoder().encode


def instances(
    reader: InstanceReader,
    rows: VerdictRows,
    writer: InstanceWriter,
    operation: Operation,
    *,
    counts: FixCounts,
    drop_undecided: bool = False,
    max_false_negatives: int | None = None,
) -> Iterator[Instance]:
    """The instances of ``reader`` that ``run_fix`` must fix one by one (each with the next row of ``rows``);
    plain lines are fixed, counted and written here. Only for Tevatron JSON Lines going to a writer that
    ``takes_plain_lines``: otherwise the reader itself."""
    if reader.format != "tevatron" or not writer.takes_plain_lines:
        yield from reader
        return
    fix_line = _line_fixer(writer, operation, counts, drop_undecided, max_false_negatives)
    next_line = rows.next_line
    decode = _decode_verdicts
    for item in reader.plain():
        if type(item) is not PlainLine:
            yield item  # type: ignore[misc]  # an Instance (PlainBatch only comes from Parquet)
            continue
        got = next_line()
        if got is None:  # the file has ended (or rows were pushed back): the per-row loop says what is wrong
            yield item.instance()
            continue
        try:
            if fix_line(item, decode(got[1])):
                continue
        except msgspec.DecodeError:
            pass
        rows.push_back([decode_verdict_line(got[1], path=rows.path, line=got[0])])
        yield item.instance()


def _line_fixer(
    writer: InstanceWriter,
    operation: Operation,
    counts: FixCounts,
    drop_undecided: bool,
    max_false_negatives: int | None,
) -> Callable[[PlainLine, _Verdicts], bool]:
    """``fix_line(line, verdicts)``: fix, count and write one plain line as ``fix_row`` would; False (nothing
    counted or written) when the verdicts do not plainly match it. A closure: this runs once per line."""
    write = writer.write_encoded
    relabel = operation is Operation.RELABEL
    labels_ok = LABEL_VALUES.issuperset

    def fix_line(line: PlainLine, verdicts: _Verdicts) -> bool:
        row = line.row
        negatives = row.negative_passages
        candidates = verdicts.candidates
        k = len(negatives)
        if verdicts.query_id != row.query_id or len(candidates) != k:
            return False
        if list(map(_DOCID, candidates)) != list(map(_DOCID, negatives)):
            return False
        labels = list(map(_LABEL, candidates))
        if not labels_ok(labels):
            return False
        fns = verdicts.false_negative_index
        if not fns and not drop_undecided:  # what decide_drops counts for a row that flags nothing
            counts.instances_in += 1
            counts.written += 1
            if "undecided" in labels:
                counts.undecided_kept += labels.count("undecided")
            write(line.raw)  # written as read
            return True
        if fns and (min(fns) < 0 or max(fns) >= k):
            return False
        moved = sorted(set(fns)) if relabel else []
        extras = []
        for i in moved:
            extra = _provenance(candidates[i])
            if extra is None:
                return False
            extras.append(extra)
        undecided = [i for i, label in enumerate(labels) if label == "undecided"] if "undecided" in labels else []
        ambiguous = verdicts.ambiguous if max_false_negatives is None else len(fns) > max_false_negatives
        drop = decide_drops(
            fns, undecided, ambiguous=ambiguous, operation=operation, drop_undecided=drop_undecided, counts=counts
        )
        if drop is None:
            return True
        if not drop:
            write(line.raw)
            return True
        write(_edited(line.raw, drop, moved, extras))
        counts.relabeled += len(moved)
        return True

    return fix_line


def _edited(raw: bytes, drop: set[int], moved: list[int], extras: list[bytes]) -> bytes:
    """The line with the negatives at ``drop`` left out and those at ``moved`` appended to the positives, each
    with its ``extras`` member; every passage as its bytes were read, the rest as negclean writes it."""
    spans = _decode_spans(raw)
    negatives = spans.negative_passages
    positives: list[bytes | msgspec.Raw] = list(spans.positive_passages)
    for i, extra in zip(moved, extras):
        positives.append(bytes(negatives[i])[:-1] + b', "negclean": ' + extra + b"}")
    kept = [p for i, p in enumerate(negatives) if i not in drop]
    subset = "" if isinstance(spans.subset, UnsetType) else spans.subset
    return b"".join(
        [
            b'{"query_id": ',
            _encode(spans.query_id),
            b', "query": ',
            _encode(spans.query),
            b', "positive_passages": [',
            b", ".join(positives),
            b'], "negative_passages": [',
            b", ".join(kept),
            b'], "subset": ',
            _encode(subset),
            b"}",
        ]
    )


def _provenance(c: _Candidate) -> bytes | None:
    """The JSON of the ``negclean`` member that ``fix_row`` gives a relabeled negative (``{"relabeled_from":
    "negative", **provenance_from_row(c)}`` as the writer encodes it), or None for a label or grade that is not
    one of negclean's. Written piece by piece (bytes formatting): ~3x faster than encoding a dict."""
    label, grade = c.label, c.grade
    if label not in LABEL_VALUES or (grade and grade not in GRADE_VALUES):
        return None
    trail = []
    for t in c.trail:
        if t.label not in LABEL_VALUES or (t.grade and t.grade not in GRADE_VALUES):
            return None
        trail.append(_encode(trail_text(t.stage, t.label, t.grade)))
    out = _HEAD % (_encode(c.stage), _encode(c.judge), label.encode(), b", ".join(trail))
    if grade:
        out += b', "grade": "%b"' % grade.encode()
    if c.confidence is not None:
        confidence = round(c.confidence, 4)
        if type(confidence) is float and not plain_number(confidence):  # msgspec and json write it differently
            return encode({"relabeled_from": "negative", **provenance_from_row(msgspec.to_builtins(c))})
        out += b', "confidence": %b' % _encode(confidence)
    return out + b"}"


# label and grade values are plain ASCII words (LABEL_VALUES, GRADE_VALUES): written between quotes as they are
_HEAD = b'{"relabeled_from": "negative", "stage": %b, "judge": %b, "label": "%b", "trail": [%b]'
