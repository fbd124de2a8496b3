"""The four fix operations of RLHN, applied to one judged instance at a time."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from negclean.cascade.outcome import CandidateVerdict, InstanceOutcome, candidate_from_row, outcome_from_row
from negclean.data.records import Instance, Passage
from negclean.judge.base import Label


class Operation(str, enum.Enum):
    """What to do with an instance that has false negatives.

    none: keep everything (verdicts still recorded as provenance); remove: drop the instance;
    hn_remove: drop the false negatives from its negatives; relabel: move them to the positives (RLHN).
    """

    NONE = "none"
    REMOVE = "remove"
    HN_REMOVE = "hn_remove"
    RELABEL = "relabel"


@dataclass
class FixCounts:
    """Reconciles: instances_in = written + dropped_removed + dropped_ambiguous (+ rejected at read)."""

    instances_in: int = 0
    written: int = 0
    dropped_removed: int = 0
    dropped_ambiguous: int = 0
    changed: int = 0
    relabeled: int = 0
    negatives_removed: int = 0
    undecided_kept: int = 0
    undecided_dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def reconciles(self) -> bool:
        return self.instances_in == self.written + self.dropped_removed + self.dropped_ambiguous


def provenance(cv: CandidateVerdict) -> dict[str, Any]:
    """What a relabeled passage carries: the deciding stage, judge and verdict, and the stage trail."""
    v = cv.verdict
    out: dict[str, Any] = {
        "stage": cv.stage,
        "judge": v.judge_id,
        "label": v.label.value,
        "trail": [f"{s}:{t.label.value}" + (f"/{t.grade.value}" if t.grade else "") for s, t in cv.trail],
    }
    if v.grade is not None:
        out["grade"] = v.grade.value
    if v.confidence is not None:
        out["confidence"] = round(v.confidence, 4)
    return out


def _with_provenance(p: Passage, cv: CandidateVerdict, role: str) -> Passage:
    meta = dict(p.meta)
    meta["negclean"] = {"relabeled_from": role, **provenance(cv)}
    return Passage(p.docid, p.text, p.title, p.score, p.rank, meta)  # dataclasses.replace, 4x faster


def fix_instance(
    outcome: InstanceOutcome, operation: Operation, *, counts: FixCounts, drop_undecided: bool = False
) -> Instance | None:
    """Apply ``operation`` to one judged instance; returns the instance to write, or None if dropped.

    Args:
        outcome: the instance with its final verdicts.
        operation: none / remove / hn_remove / relabel.
        counts: updated in place.
        drop_undecided: also drop negatives whose final verdict is undecided (default: keep them as
            negatives, as the source had them, and count them).
    """
    undecided = [i for i, c in enumerate(outcome.candidates) if c.verdict.label is Label.UNDECIDED]
    candidates = outcome.candidates
    return _apply(
        outcome.instance,
        outcome.false_negatives,
        outcome.ambiguous,
        undecided,
        candidates.__getitem__,
        operation,
        counts=counts,
        drop_undecided=drop_undecided,
    )


def _apply(
    inst: Instance,
    false_negatives: Sequence[int],
    ambiguous: bool,
    undecided: list[int],
    verdict_of: Callable[[int], CandidateVerdict],
    operation: Operation,
    *,
    counts: FixCounts,
    drop_undecided: bool,
) -> Instance | None:
    """``fix_instance`` on the parts of an outcome; ``verdict_of(i)`` is asked only for false negatives."""
    counts.instances_in += 1
    if operation is Operation.NONE:
        counts.written += 1
        counts.undecided_kept += len(undecided)
        return inst
    fns = set(false_negatives)
    if fns and ambiguous:
        counts.dropped_ambiguous += 1
        return None
    if fns and operation is Operation.REMOVE:
        counts.dropped_removed += 1
        return None
    drop = set(fns)
    if drop_undecided:
        drop |= set(undecided)
        counts.undecided_dropped += len(undecided)
    else:
        counts.undecided_kept += len(undecided)
    counts.written += 1
    if not drop:
        return inst
    counts.changed += 1
    counts.negatives_removed += len(drop)
    negatives = tuple(p for i, p in enumerate(inst.negatives) if i not in drop)
    positives = inst.positives
    if operation is Operation.RELABEL:
        moved = tuple(_with_provenance(inst.negatives[i], verdict_of(i), "negative") for i in sorted(fns))
        positives = positives + moved
        counts.relabeled += len(moved)
    return inst.replace(
        positives=positives,
        negatives=negatives,
        meta=_sync_id_lists(inst.meta, positives=positives, negatives=negatives),
    )


_LABELS = frozenset(label.value for label in Label)


def kept_unflagged(inst: Instance, row: dict[str, Any], *, counts: FixCounts, drop_undecided: bool = False) -> bool:
    """Count an instance whose verdicts row flags no false negative, as ``fix_instance`` would, and return True:
    every operation writes it unchanged. Returns False (nothing counted) when the row needs the full path:
    it flags a negative, ``drop_undecided`` is set, or it does not plainly match the instance (then
    ``outcome_from_row`` says what is wrong). Saves building a verdict object per candidate for the many
    instances a fix leaves alone."""
    if drop_undecided or row.get("false_negative_index") != [] or row.get("query_id") != inst.query_id:
        return False
    candidates = row.get("candidates")
    negatives = inst.negatives
    if type(candidates) is not list or len(candidates) != len(negatives):
        return False
    undecided = 0
    for c, p in zip(candidates, negatives):
        if type(c) is not dict or c.get("docid") != p.docid or c.get("label") not in _LABELS:
            return False
        if c["label"] == "undecided":
            undecided += 1
    counts.instances_in += 1
    counts.written += 1
    counts.undecided_kept += undecided
    return True


def fix_row(
    inst: Instance,
    row: dict[str, Any],
    operation: Operation,
    *,
    counts: FixCounts,
    drop_undecided: bool = False,
    max_false_negatives: int | None = None,
    path: str = "verdicts",
) -> Instance | None:
    """``fix_instance(outcome_from_row(inst, row, path=path), ...)``, building verdict objects only for the
    false negatives (the rest of a fix needs only the labels). ``max_false_negatives``: more false negatives
    than this make the instance ambiguous (instead of the row's ``ambiguous``).

    Any row that does not plainly match the instance takes the full path, so its errors are
    ``outcome_from_row``'s."""
    if kept_unflagged(inst, row, counts=counts, drop_undecided=drop_undecided):
        return inst
    candidates = row.get("candidates")
    negatives = inst.negatives
    fns = row.get("false_negative_index")
    plain = (
        row.get("query_id") == inst.query_id
        and type(candidates) is list
        and len(candidates) == len(negatives)
        and type(fns) is list
        and all(type(i) is int and 0 <= i < len(negatives) for i in fns)
        and type(row.get("ambiguous")) is bool
    )
    undecided: list[int] = []
    if plain and candidates is not None:
        for i, (c, p) in enumerate(zip(candidates, negatives)):
            if type(c) is not dict or c.get("docid") != p.docid or c.get("label") not in _LABELS:
                plain = False
                break
            if c["label"] == "undecided":
                undecided.append(i)
    if not plain or candidates is None or fns is None:
        outcome = outcome_from_row(inst, row, path=path)
        if max_false_negatives is not None:
            outcome = InstanceOutcome(
                outcome.instance,
                outcome.candidates,
                outcome.false_negatives,
                len(outcome.false_negatives) > max_false_negatives,
            )
        return fix_instance(outcome, operation, counts=counts, drop_undecided=drop_undecided)
    ambiguous = row["ambiguous"] if max_false_negatives is None else len(fns) > max_false_negatives
    return _apply(
        inst,
        fns,
        ambiguous,
        undecided,
        lambda i: candidate_from_row(candidates[i]),
        operation,
        counts=counts,
        drop_undecided=drop_undecided,
    )


# id lists some sources keep beside the passages (the RLHN release: positive_passage_ids, negative_passage_ids)
_ID_LISTS = (("positive_passage_ids", "positives"), ("negative_passage_ids", "negatives"))


def _sync_id_lists(meta: Mapping[str, Any], **passages: tuple[Passage, ...]) -> Mapping[str, Any]:
    """The instance's metadata with its passage-id lists rewritten to match the fixed passages (left as they are
    when absent or not lists), so that a relabeled document is not still listed as a negative."""
    if not any(isinstance(meta.get(key), list) for key, _ in _ID_LISTS):
        return meta
    out = dict(meta)
    for key, role in _ID_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [p.docid for p in passages[role]]
    return out
