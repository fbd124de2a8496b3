"""The records the Python API returns: ``JudgeResult`` (verdicts, funnel, cost), ``FixReport`` and ``Fixed``,
``MineResult``, ``RunSummary`` (a file run). Frozen; ``to_pandas()`` where a table helps."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from negclean.cascade.funnel import StageFunnel
from negclean.cascade.outcome import InstanceOutcome
from negclean.data.records import Instance, Rejected
from negclean.data.tables import TableLayout
from negclean.judge.base import Label

if TYPE_CHECKING:
    import pandas

    from negclean.mine.summary import MineSummary

SourceKind = Literal["path", "instances", "dataset", "dataframe", "rows"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JudgeResult:
    """Every verdict of one ``negclean.judge`` call, the funnel and what it cost.

    Args:
        verdicts: one outcome per instance, input order: each negative's final verdict, the stage trail and the
            indexes of the false negatives (``ambiguous``: more than the cascade's ``max_false_negatives``).
        funnel: per stage, what reached it and what it decided.
        summary: the cascade's full counts (as ``summary.json``'s ``cascade`` section of ``negclean judge``).
        cost: USD spent in this call (verdicts served from the store cost nothing).
        records: records read (lines, rows; for the triplet layout several rows make one instance).
        rejected: records that could not be read (``on_error="skip"``); ``rejects`` holds them for in-memory
            data (a file's rejected lines are counted only).
        source: the kind of data judged; ``layout`` its table layout (None for files and Instance lists).
        seconds: wall time.
    """

    verdicts: tuple[InstanceOutcome, ...]
    funnel: tuple[StageFunnel, ...]
    summary: Mapping[str, Any]
    cost: float
    records: int
    rejected: int
    rejects: tuple[Rejected, ...]
    source: SourceKind
    layout: TableLayout | None
    seconds: float

    @property
    def instances(self) -> int:
        return len(self.verdicts)

    @property
    def candidates(self) -> int:
        return sum(len(o.candidates) for o in self.verdicts)

    @property
    def false_negatives(self) -> int:
        return sum(len(o.false_negatives) for o in self.verdicts)

    @property
    def ambiguous(self) -> int:
        return sum(o.ambiguous for o in self.verdicts)

    def flagged(self) -> list[Instance]:
        """The instances with at least one false negative."""
        return [o.instance for o in self.verdicts if o.false_negatives]

    def to_pandas(self) -> pandas.DataFrame:
        """One row per candidate: instance index, query, docid, text, final label, grade, confidence, stage,
        whether it counts as a false negative, and whether its instance is ambiguous."""
        import pandas as pd

        rows = []
        for n, o in enumerate(self.verdicts):
            inst = o.instance
            fns = set(o.false_negatives)
            for i, (p, c) in enumerate(zip(inst.negatives, o.candidates)):
                v = c.verdict
                rows.append(
                    {
                        "instance": n,
                        "query_id": inst.query_id,
                        "query": inst.query,
                        "candidate": i,
                        "docid": p.docid,
                        "text": p.text,
                        "label": v.label.value,
                        "grade": v.grade.value if v.grade is not None else None,
                        "confidence": v.confidence,
                        "stage": c.stage,
                        "judge": v.judge_id,
                        "false_negative": i in fns,
                        "ambiguous": o.ambiguous,
                        "undecided": v.label is Label.UNDECIDED,
                        "reason": v.reason,
                    }
                )
        columns = [
            "instance",
            "query_id",
            "query",
            "candidate",
            "docid",
            "text",
            "label",
            "grade",
            "confidence",
            "stage",
            "judge",
            "false_negative",
            "ambiguous",
            "undecided",
            "reason",
        ]
        return pd.DataFrame(rows, columns=columns)

    def __repr__(self) -> str:
        return (
            f"JudgeResult({self.instances} instances, {self.candidates} candidates, {self.false_negatives} "
            f"false negatives, {self.ambiguous} ambiguous, {self.rejected} rejected, cost ${self.cost:.4f})"
        )


@dataclass(frozen=True, slots=True)
class FixReport:
    """What ``negclean.fix`` did. Reconciles: ``records_in == records_used + rejected`` and
    ``instances_in == instances_out + dropped_removed + dropped_ambiguous + dropped_no_negatives + dropped_short``.

    Args:
        records_in: records (rows, lines) in the data; ``rejected`` of them could not be read.
        instances_in: instances judged and fixed; ``instances_out`` of them are in the output as ``records_out``
            records (an ``st`` row per positive, so relabeling adds rows).
        dropped_removed / dropped_ambiguous: by ``op="remove"`` / for more false negatives than the cap.
        dropped_no_negatives: an ``st`` table row needs a negative; instances left with none are dropped.
        dropped_short: ``ragged="drop"``: n-tuple rows with fewer negatives than the input's width.
        relabeled / negatives_removed: false negatives moved to the positives / taken out of the negatives.
        negatives_repeated / negatives_cut: n-tuple cells filled by repeating a row's own negatives / cut off.
        undecided_kept / undecided_dropped: negatives whose final verdict is undecided.
    """

    records_in: int
    rejected: int
    records_used: int
    instances_in: int
    instances_out: int
    records_out: int
    dropped_removed: int
    dropped_ambiguous: int
    dropped_no_negatives: int
    dropped_short: int
    changed: int
    relabeled: int
    negatives_removed: int
    negatives_repeated: int
    negatives_cut: int
    undecided_kept: int
    undecided_dropped: int

    @property
    def reconciled(self) -> bool:
        return (
            self.records_in == self.records_used + self.rejected
            and self.instances_in
            == self.instances_out
            + self.dropped_removed
            + self.dropped_ambiguous
            + self.dropped_no_negatives
            + self.dropped_short
        )


@dataclass(frozen=True, slots=True)
class Fixed(Generic[T]):
    """``negclean.fix(..., report=True)``: the fixed data (same kind as the input) and what the fix did."""

    data: T
    report: FixReport


@dataclass(frozen=True, slots=True)
class MineResult:
    """``negclean.mine``: the mined instances (input order) and the run's summary (scores, filters,
    shortfall; ``summary.lines()`` reads as ``negclean mine`` prints it)."""

    instances: tuple[Instance, ...]
    summary: MineSummary


@dataclass(frozen=True, slots=True)
class ConvertReport:
    """``negclean.convert_file`` (the command ``negclean convert``): what was read, written and set aside.
    Reconciles: ``records_read == written + rejected``.

    Args:
        input, output: the files; ``format`` / ``to``: the format read and the format written.
        records_read: records (lines, rows) read; ``written`` of them were written, ``rejected`` could not be read
            (``on_error="skip"``; in ``rejects``).
        warnings: instances written with a warning, by kind (``negclean.data.io.WARNING_KINDS``).
        rejects: the reject file (None with ``on_error="fail"``).
    """

    input: str
    output: str
    format: str
    to: str
    records_read: int
    written: int
    rejected: int
    warnings: Mapping[str, int]
    rejects: str | None

    @property
    def reconciled(self) -> bool:
        return self.records_read == self.written + self.rejected

    def as_dict(self) -> dict[str, Any]:
        """The report as ``negclean convert --json`` prints it."""
        return {
            "input": self.input,
            "output": self.output,
            "format": self.format,
            "to": self.to,
            "read": self.records_read,
            "written": self.written,
            "rejected": self.rejected,
            "rejects": self.rejects,
            "warnings": dict(self.warnings),
            "reconciled": self.reconciled,
        }


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a file run (``negclean.judge_file``, ``fix_file``, ``run``; the commands ``judge``, ``fix``, ``run``)
    read, decided, wrote and spent. Reconciles (when a fix ran): ``records_read == written + dropped + rejected``.

    Args:
        command: ``judge`` (judge_file), ``fix`` (fix_file) or ``run`` (a pipeline: judge and fix in one pass).
        input: the file read; ``format``: its format as detected or given.
        records_read: records (lines, rows) read; ``records_ok`` of them became instances, ``rejected`` could not
            be read (``on_error="skip"``; written to the rejects file).
        instances: instances judged (judge, run) or fixed (fix).
        false_negatives: negatives the cascade judged relevant (None for ``fix_file``, which judges nothing).
        written / dropped: instances the fix wrote / dropped (removed, or more false negatives than the cap);
            None when no fix ran (``judge_file``, a dry run).
        cost: USD spent by this run (verdicts served from the store cost nothing).
        funnel: per stage, what reached it and what it decided (empty for ``fix_file``).
        output_dir, verdicts, fixed, store: the paths written or used (None where the run has none).
        reconciled: the counts above reconcile (None when no fix ran).
        dry_run: no model was called; tokens and cost are estimates.
        seconds: wall time of the judge run (None for ``fix_file``).
    """

    command: Literal["judge", "fix", "run"]
    input: str
    format: str | None
    records_read: int
    records_ok: int
    rejected: int
    instances: int
    false_negatives: int | None
    written: int | None
    dropped: int | None
    cost: float
    funnel: tuple[StageFunnel, ...]
    output_dir: str | None
    verdicts: str | None
    fixed: str | None
    store: str | None
    reconciled: bool | None
    dry_run: bool
    seconds: float | None
    summary: Mapping[str, Any] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """A fresh copy of the summary as ``summary.json`` holds it (and ``--json`` prints it)."""
        return copy.deepcopy(dict(self.summary))
