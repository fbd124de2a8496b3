"""The four fix operations of RLHN, applied to one judged instance at a time."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import repeat
from operator import attrgetter
from typing import Any

from negclean.cascade.outcome import CandidateVerdict, InstanceOutcome, outcome_from_row
from negclean.data.records import Instance, Passage
from negclean.judge.base import Grade, Label


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
        "trail": [trail_text(s, t.label.value, t.grade.value if t.grade else None) for s, t in cv.trail],
    }
    if v.grade is not None:
        out["grade"] = v.grade.value
    if v.confidence is not None:
        out["confidence"] = round(v.confidence, 4)
    return out


#: the label and grade values a verdicts row may hold (``Label``, ``Grade``)
LABEL_VALUES = frozenset(label.value for label in Label)
GRADE_VALUES = frozenset(grade.value for grade in Grade)


def trail_text(stage: str, label: str, grade: str | None) -> str:
    """One entry of a relabeled passage's provenance trail: ``stage:label`` or ``stage:label/grade``."""
    return f"{stage}:{label}/{grade}" if grade else f"{stage}:{label}"


def _label_value(value: Any) -> str:
    """``Label(value).value`` (and its ValueError), without the enum call for a label as written."""
    if type(value) is str and value in LABEL_VALUES:
        return value
    return Label(value).value


def _grade_value(value: Any) -> str | None:
    """The grade a verdicts row gives (``Grade(value).value``), None where it gives none."""
    if not value:
        return None
    if type(value) is str and value in GRADE_VALUES:
        return value
    return Grade(value).value


def provenance_from_row(c: Mapping[str, Any]) -> dict[str, Any]:
    """``provenance(candidate_from_row(c))`` for a candidate of a verdicts row, without building its verdict
    objects: the same dict, and the same errors for a label, grade or required field that is wrong or missing."""
    trail = []
    for t in c.get("trail", []):
        stage, label, grade = t["stage"], _label_value(t["label"]), _grade_value(t.get("grade"))
        t["judge"]  # required by candidate_from_row: a trail entry without it fails there and here alike
        trail.append(trail_text(stage, label, grade))
    stage, label, grade = c["stage"], _label_value(c["label"]), _grade_value(c.get("grade"))
    confidence = c.get("confidence")
    out: dict[str, Any] = {"stage": stage, "judge": c["judge"], "label": label, "trail": trail}
    if grade is not None:
        out["grade"] = grade
    if confidence is not None:
        out["confidence"] = round(confidence, 4)
    return out


def _with_provenance(p: Passage, prov: dict[str, Any], role: str) -> Passage:
    meta = dict(p.meta)
    meta["negclean"] = {"relabeled_from": role, **prov}
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
        lambda i: provenance(candidates[i]),
        operation,
        counts=counts,
        drop_undecided=drop_undecided,
    )


def decide_drops(
    false_negatives: Sequence[int],
    undecided: Sequence[int],
    *,
    ambiguous: bool,
    operation: Operation,
    drop_undecided: bool,
    counts: FixCounts,
) -> set[int] | None:
    """What ``operation`` does to one instance: None when the instance is dropped, else the positions of the
    negatives that leave the list (relabel moves the flagged ones among them to the positives); counted in
    ``counts``. Shared by the per-instance fix and the Arrow batch fix (``fix.arrow_batches``)."""
    counts.instances_in += 1
    if operation is Operation.NONE:
        counts.written += 1
        counts.undecided_kept += len(undecided)
        return set()
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
    if drop:
        counts.changed += 1
        counts.negatives_removed += len(drop)
    return drop


def _apply(
    inst: Instance,
    false_negatives: Sequence[int],
    ambiguous: bool,
    undecided: list[int],
    provenance_of: Callable[[int], dict[str, Any]],
    operation: Operation,
    *,
    counts: FixCounts,
    drop_undecided: bool,
) -> Instance | None:
    """``fix_instance`` on the parts of an outcome; ``provenance_of(i)`` (what ``provenance`` gives for
    candidate i) is asked only for false negatives."""
    drop = decide_drops(
        false_negatives,
        undecided,
        ambiguous=ambiguous,
        operation=operation,
        drop_undecided=drop_undecided,
        counts=counts,
    )
    if drop is None:
        return None
    if not drop:
        return inst
    negatives = tuple([p for i, p in enumerate(inst.negatives) if i not in drop])
    positives = inst.positives
    if operation is Operation.RELABEL:
        moved = tuple(
            [_with_provenance(inst.negatives[i], provenance_of(i), "negative") for i in sorted(set(false_negatives))]
        )
        positives = positives + moved
        counts.relabeled += len(moved)
    meta = _sync_id_lists(inst.meta, positives=positives, negatives=negatives)
    if _INSTANCE_FIELDS:  # the record built directly: dataclasses.replace costs ~4 µs of the ~15 of a relabel
        return Instance(inst.query_id, inst.query, positives, negatives, inst.subset, meta, inst.line)
    return inst.replace(positives=positives, negatives=negatives, meta=meta)


_INSTANCE_FIELDS = tuple(f.name for f in fields(Instance)) == (
    "query_id",
    "query",
    "positives",
    "negatives",
    "subset",
    "meta",
    "line",
)


def kept_unflagged(inst: Instance, row: dict[str, Any], *, counts: FixCounts, drop_undecided: bool = False) -> bool:
    """Count an instance whose verdicts row flags no false negative, as ``fix_instance`` would, and return True:
    every operation writes it unchanged. Returns False (nothing counted) when the row needs the full path:
    it flags a negative, ``drop_undecided`` is set, or it does not plainly match the instance (then
    ``outcome_from_row`` says what is wrong). Saves building a verdict object per candidate for the many
    instances a fix leaves alone."""
    if drop_undecided or row.get("false_negative_index") != []:
        return False
    labels = _plain_labels(inst, row)
    if labels is None:
        return False
    counts.instances_in += 1
    counts.written += 1
    counts.undecided_kept += labels.count("undecided")
    return True


_DOCID = attrgetter("docid")
_DICT_ONLY = frozenset([dict])


def _plain_labels(inst: Instance, row: dict[str, Any]) -> list[Any] | None:
    """The labels of a verdicts row's candidates when the row plainly matches the instance (same query id, one
    candidate object per negative with its docid, every label a ``Label`` value); None otherwise. By whole lists
    (map over the candidates), ~3x faster than a loop over them."""
    candidates = row.get("candidates")
    negatives = inst.negatives
    if row.get("query_id") != inst.query_id or type(candidates) is not list or len(candidates) != len(negatives):
        return None
    if not _DICT_ONLY.issuperset(map(type, candidates)):
        return None
    if list(map(dict.get, candidates, repeat("docid"))) != list(map(_DOCID, negatives)):
        return None
    labels = list(map(dict.get, candidates, repeat("label")))
    return labels if LABEL_VALUES.issuperset(labels) else None


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
    labels = _plain_labels(inst, row)
    candidates = row.get("candidates")
    fns = row.get("false_negative_index")
    if labels is not None and fns == [] and not drop_undecided:  # what kept_unflagged counts: written as it is
        counts.instances_in += 1
        counts.written += 1
        counts.undecided_kept += labels.count("undecided")
        return inst
    negatives = inst.negatives
    plain = (
        labels is not None
        and type(fns) is list
        and all(type(i) is int and 0 <= i < len(negatives) for i in fns)
        and type(row.get("ambiguous")) is bool
    )
    undecided: list[int] = []
    if plain and labels is not None and "undecided" in labels:
        undecided = [i for i, label in enumerate(labels) if label == "undecided"]
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
        lambda i: provenance_from_row(candidates[i]),
        operation,
        counts=counts,
        drop_undecided=drop_undecided,
    )


# id lists some sources keep beside the passages (the RLHN release: positive_passage_ids, negative_passage_ids)
_ID_LISTS = (("positive_passage_ids", "positives"), ("negative_passage_ids", "negatives"))


def _sync_id_lists(meta: Mapping[str, Any], **passages: tuple[Passage, ...]) -> Mapping[str, Any]:
    """The instance's metadata with its passage-id lists rewritten to match the fixed passages (left as they are
    when absent or not lists), so that a relabeled document is not still listed as a negative."""
    if not meta or not any(isinstance(meta.get(key), list) for key, _ in _ID_LISTS):
        return meta
    out = dict(meta)
    for key, role in _ID_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [p.docid for p in passages[role]]
    return out
