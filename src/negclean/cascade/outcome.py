"""Per-instance results of a cascade run, and the verdicts file that carries them to `fix`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from negclean.data.records import Instance
from negclean.errors import InputError
from negclean.judge.base import Grade, Label, Verdict


@dataclass(frozen=True, slots=True)
class CandidateVerdict:
    """The final verdict on one negative, with the stage that gave it and every stage's verdict."""

    stage: str
    verdict: Verdict
    trail: tuple[tuple[str, Verdict], ...]
    audited: bool = False


@dataclass(frozen=True, slots=True)
class InstanceOutcome:
    """A judged instance: one CandidateVerdict per negative (same order), and the false negatives."""

    instance: Instance
    candidates: tuple[CandidateVerdict, ...]
    false_negatives: tuple[int, ...]
    ambiguous: bool


def _verdict_json(v: Verdict) -> dict[str, Any]:
    d: dict[str, Any] = {"label": v.label.value, "judge": v.judge_id}
    if v.grade is not None:
        d["grade"] = v.grade.value
    if v.confidence is not None:
        d["confidence"] = round(v.confidence, 6)
    if v.reason:
        d["reason"] = v.reason
    if v.call_id:
        d["call_id"] = v.call_id
    return d


# value -> member by dict: calling the enum costs ~1 us, twice per candidate of every instance a fix reads
_LABEL_OF = {m.value: m for m in Label}
_GRADE_OF = {m.value: m for m in Grade}


def _verdict_from(d: dict[str, Any]) -> Verdict:
    label, grade = d["label"], d.get("grade")
    return Verdict(
        _LABEL_OF.get(label) or Label(label) if type(label) is str else Label(label),
        d.get("confidence"),
        d["judge"],
        (_GRADE_OF.get(grade) or Grade(grade) if type(grade) is str else Grade(grade)) if grade else None,
        d.get("reason", ""),
        d.get("call_id"),
    )


def outcome_row(outcome: InstanceOutcome) -> dict[str, Any]:
    inst = outcome.instance
    return {
        "line": inst.line,
        "query_id": inst.query_id,
        "false_negatives": [inst.negatives[i].docid for i in outcome.false_negatives],
        "false_negative_index": list(outcome.false_negatives),
        "ambiguous": outcome.ambiguous,
        "candidates": [
            {
                "docid": inst.negatives[i].docid,
                "stage": c.stage,
                **_verdict_json(c.verdict),
                "audited": c.audited,
                "trail": [{"stage": s, **_verdict_json(v)} for s, v in c.trail],
            }
            for i, c in enumerate(outcome.candidates)
        ],
    }


_decode = msgspec.json.Decoder().decode


def read_verdict_rows(path: str) -> Iterator[dict[str, Any]]:
    """Rows of a verdicts.jsonl file, in input order."""
    for n, raw in iter_verdict_lines(path):
        yield decode_verdict_line(raw, path=path, line=n)


def iter_verdict_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line) for every non-blank line of a verdicts file, undecoded."""
    # 1 MB reads: with the default buffer (4-8 KB) the read() calls alone cost ~5 µs of system time per
    # instance on a VM (strace: 100,000 calls for 200,000 verdict rows; benchmarks/RESULTS-io.md)
    with open(path, "rb", buffering=1 << 20) as fh:
        for n, line in enumerate(fh, 1):
            if not line.isspace():
                yield n, line


def decode_verdict_line(raw: bytes, *, path: str, line: int) -> dict[str, Any]:
    """One line of a verdicts file as a dict; InputError naming the line when it is not JSON."""
    try:
        row: dict[str, Any] = _decode(raw)
        return row
    except msgspec.DecodeError:
        pass  # what msgspec refuses (e.g. a NaN confidence) json reads, or explains
    try:
        row = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        raise InputError(
            f"verdicts file is corrupt ({reason}); rerun `negclean judge` (stored verdicts make it free)",
            path=path,
            line=line,
        ) from None
    return row


def candidate_from_row(c: dict[str, Any]) -> CandidateVerdict:
    """One candidate of a verdicts row (``outcome_row``'s ``candidates``) as a CandidateVerdict, unchecked."""
    trail = tuple((t["stage"], _verdict_from(t)) for t in c.get("trail", []))
    return CandidateVerdict(c["stage"], _verdict_from(c), trail, c.get("audited", False))


def outcome_from_row(instance: Instance, row: dict[str, Any], *, path: str = "verdicts") -> InstanceOutcome:
    """Rebuild an outcome from a verdicts row, checking that it belongs to this instance."""
    if row.get("query_id") != instance.query_id or len(row["candidates"]) != len(instance.negatives):
        raise InputError(
            f"verdicts row for query {row.get('query_id')!r} does not match input line {instance.line} "
            f"(query {instance.query_id!r}, {len(instance.negatives)} negatives): was the verdicts file made "
            "from this input file?",
            path=path,  # no line: the verdicts file's own line is not known here, and the input's is in the text
        )
    cands = []
    for i, c in enumerate(row["candidates"]):
        if c["docid"] != instance.negatives[i].docid:
            raise InputError(
                f"verdict {i} of the row for query {instance.query_id!r} names docid {c['docid']!r}, input line "
                f"{instance.line} has {instance.negatives[i].docid!r} there: was the verdicts file made from this "
                "input file?",
                path=path,
            )
        cands.append(candidate_from_row(c))
    fns = tuple(int(i) for i in row["false_negative_index"])
    return InstanceOutcome(instance, tuple(cands), fns, bool(row["ambiguous"]))
