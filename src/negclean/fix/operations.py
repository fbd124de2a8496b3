"""The four fix operations of RLHN, applied to one judged instance at a time."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from negclean.cascade.outcome import CandidateVerdict, InstanceOutcome
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

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def reconciles(self) -> bool:
        return self.instances_in == self.written + self.dropped_removed + self.dropped_ambiguous


def provenance(cv: CandidateVerdict) -> dict:
    """What a relabeled passage carries: the deciding stage, judge and verdict, and the stage trail."""
    v = cv.verdict
    out = {"stage": cv.stage, "judge": v.judge_id, "label": v.label.value,
           "trail": [f"{s}:{t.label.value}" + (f"/{t.grade.value}" if t.grade else "") for s, t in cv.trail]}
    if v.grade is not None:
        out["grade"] = v.grade.value
    if v.confidence is not None:
        out["confidence"] = round(v.confidence, 4)
    return out


def _with_provenance(p: Passage, cv: CandidateVerdict, role: str) -> Passage:
    from dataclasses import replace

    meta = dict(p.meta)
    meta["negclean"] = {"relabeled_from": role, **provenance(cv)}
    return replace(p, meta=meta)


def fix_instance(outcome: InstanceOutcome, operation: Operation, *, counts: FixCounts,
                 drop_undecided: bool = False) -> Instance | None:
    """Apply ``operation`` to one judged instance; returns the instance to write, or None if dropped.

    Args:
        outcome: the instance with its final verdicts.
        operation: none / remove / hn_remove / relabel.
        counts: updated in place.
        drop_undecided: also drop negatives whose final verdict is undecided (default: keep them as
            negatives, as the source had them, and count them).
    """
    counts.instances_in += 1
    inst = outcome.instance
    undecided = [i for i, c in enumerate(outcome.candidates) if c.verdict.label is Label.UNDECIDED]
    if operation is Operation.NONE:
        counts.written += 1
        counts.undecided_kept += len(undecided)
        return inst
    fns = set(outcome.false_negatives)
    if fns and outcome.ambiguous:
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
        moved = tuple(_with_provenance(inst.negatives[i], outcome.candidates[i], "negative") for i in sorted(fns))
        positives = positives + moved
        counts.relabeled += len(moved)
    return inst.replace(positives=positives, negatives=negatives,
                        meta=_sync_id_lists(inst.meta, positives=positives, negatives=negatives))


# id lists some sources keep beside the passages (the RLHN release: positive_passage_ids, negative_passage_ids)
_ID_LISTS = (("positive_passage_ids", "positives"), ("negative_passage_ids", "negatives"))


def _sync_id_lists(meta, **passages) -> dict:
    """The instance's metadata with its passage-id lists rewritten to match the fixed passages (left as they are
    when absent or not lists), so that a relabeled document is not still listed as a negative."""
    if not any(isinstance(meta.get(key), list) for key, _ in _ID_LISTS):
        return meta
    out = dict(meta)
    for key, role in _ID_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [p.docid for p in passages[role]]
    return out
