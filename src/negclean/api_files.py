"""The Python API for files too big for memory: ``negclean.judge_file``, ``fix_file``, ``run`` and ``convert_file``.

    summary = negclean.judge_file("train.jsonl.gz", "screen", output_dir="runs/screen")
    negclean.fix_file("train.jsonl.gz", summary.verdicts, output="train.fixed.jsonl.gz")

They stream: one instance at a time from the file through the cascade (and the fix) into the output files, at
flat memory, as the commands ``negclean judge``, ``fix`` and ``run`` do (those commands call these functions).
Each returns a ``RunSummary``; ``.as_dict()`` is what ``summary.json`` holds. The in-memory ``negclean.judge`` and
``negclean.fix`` take lists, Datasets and DataFrames instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from negclean.api_records import ConvertReport, RunSummary
from negclean.cascade.funnel import StageFunnel
from negclean.cascade.stages import CascadeConfig
from negclean.errors import ConfigError
from negclean.fix.operations import Operation as Op
from negclean.pipeline import (
    PipelineConfig,
    load_cascade,
    load_pipeline,
    run_fix,
    run_judge,
    run_pipeline,
    standard_json,
    validate_pipeline,
)
from negclean.progress import ProgressFactory, count_lines, no_progress

if TYPE_CHECKING:
    from negclean.judge.base import Judge

__all__ = [
    "CascadeConfig",
    "ConvertReport",
    "Operation",
    "RunSummary",
    "convert_file",
    "fix_file",
    "judge_file",
    "load_cascade",
    "run",
    "standard_json",
]

PathLike = Union[str, "os.PathLike[str]"]
Operation = Literal["none", "remove", "hn_remove", "relabel"]
OnError = Literal["fail", "skip"]


def judge_file(
    input: PathLike,
    cascade: str | PathLike | CascadeConfig | Mapping[str, Any] = "offline",
    *,
    output_dir: PathLike,
    store: PathLike | None = None,
    fmt: str | None = None,
    on_error: OnError = "fail",
    max_cost: float | None = None,
    dry_run: bool = False,
    progress: ProgressFactory | None = None,
    judges: Mapping[str, Judge] | None = None,
) -> RunSummary:
    """Judge every hard negative of a file through a cascade, streaming, into a run folder.

    Writes ``verdicts.jsonl`` (one row per instance, input order; ``negclean.fix_file`` reads it), ``rejects.jsonl``
    (unreadable records) and ``summary.json`` into ``output_dir``; each file appears only when complete.

    Args:
        input: a training file (JSONL, JSONL.gz or Parquet; ``fmt`` names its format, default detected).
        cascade: a preset name (``offline``, ``screen``, ``rlhn``, ``rlhn-screened``), a cascade YAML file, a
            ``CascadeConfig`` or its mapping.
        output_dir: the run folder. ``store``: the judgment store (default ``output_dir/judgments.sqlite``);
            verdicts already there are reused, never paid again, so a rerun resumes.
        on_error: ``fail`` raises ``InputError`` at the first unreadable record; ``skip`` writes it to the rejects
            file and goes on.
        max_cost: USD cap for this run folder; ``BudgetExceeded`` stops it cleanly (summary written, verdicts kept
            in the store).
        dry_run: call no model; estimate tokens and cost.
        progress: opens a progress display for the judging (``negclean.progress.progress_bar``); None: none.
        judges: prebuilt judges by stage name, used instead of building them from the cascade.
    """
    config = load_cascade(cascade, max_cost=max_cost)
    path = os.fspath(input)
    with (progress or no_progress)(count_lines(path), "judging") as advance:
        summary = run_judge(
            input_path=path,
            cascade=config,
            output_dir=Path(output_dir),
            store_path=os.fspath(store) if store else None,
            fmt=fmt,
            on_error=on_error,
            dry_run=dry_run,
            judges=dict(judges) if judges else None,
            on_progress=advance,
        )
    return _run_summary("judge", summary)


def fix_file(
    input: PathLike,
    verdicts: PathLike,
    *,
    output: PathLike,
    op: Operation = "relabel",
    fmt: str | None = None,
    out_fmt: str | None = None,
    on_error: OnError = "fail",
    drop_undecided: bool = False,
    max_false_negatives: int | None = None,
) -> RunSummary:
    """Apply a fix to a judged file, streaming: ``verdicts`` is the ``verdicts.jsonl`` that ``judge_file`` (or
    ``negclean judge``) made from the same ``input`` with the same ``on_error``.

    Args:
        output: the fixed file (``out_fmt``: its format, default the input's). Unreadable input records go to
            ``<output>.rejects.jsonl`` (``on_error="skip"``).
        op: ``relabel`` moves false negatives to the positives, ``hn_remove`` drops them from the negatives,
            ``remove`` drops their instance, ``none`` keeps everything (verdicts recorded as provenance).
        drop_undecided: also drop negatives whose final verdict is undecided.
        max_false_negatives: a different per-instance cap than the judge run's (more: the instance is dropped).
    """
    try:
        operation = Op(op)
    except ValueError:
        raise ConfigError(f"op must be one of {', '.join(o.value for o in Op)}, not {op!r}") from None
    out = os.fspath(output)
    summary = run_fix(
        input_path=os.fspath(input),
        verdicts_path=os.fspath(verdicts),
        output_path=out,
        operation=operation,
        fmt=fmt,
        out_fmt=out_fmt,
        on_error=on_error,
        drop_undecided=drop_undecided,
        max_false_negatives=max_false_negatives,
        reject_path=out + ".rejects.jsonl",
    )
    return _run_summary("fix", summary)


def convert_file(
    input: PathLike,
    output: PathLike,
    *,
    fmt: str | None = None,
    to: str | None = None,
    on_error: OnError = "fail",
    rejects: PathLike | None = None,
) -> ConvertReport:
    """Copy the instances of ``input`` to ``output`` in another format (``to``; default the input's), streaming,
    with the reader's checks: every record is written or rejected, warnings are counted. Tevatron JSON Lines to
    Tevatron JSON Lines copies each line that needs no change as its own bytes.

    Args:
        fmt: the input's format (detected from its content when None).
        on_error: ``"fail"`` stops at the first unreadable record (InputError naming file and line); ``"skip"``
            writes it to ``rejects`` (default ``<output>.rejects.jsonl``) and goes on.
    """
    from negclean.data.io import convert, write_format

    out = os.fspath(output)
    reject_path = None if on_error == "fail" else os.fspath(rejects) if rejects is not None else out + ".rejects.jsonl"
    stats, written = convert(input, out, fmt=fmt, to=to, on_error=on_error, reject_path=reject_path)
    return ConvertReport(
        input=os.fspath(input),
        output=out,
        format=stats.format,
        to=write_format(Path(out), to, stats),
        records_read=stats.read,
        written=written,
        rejected=stats.rejected,
        warnings=dict(stats.warnings),
        rejects=reject_path,
    )


def run(
    pipeline: PathLike | PipelineConfig | Mapping[str, Any],
    *,
    input: PathLike | None = None,
    output_dir: PathLike | None = None,
    max_cost: float | None = None,
    dry_run: bool = False,
    progress: ProgressFactory | None = None,
    judges: Mapping[str, Judge] | None = None,
) -> RunSummary:
    """Run a whole pipeline (``negclean run``): read -> (mine) -> judge cascade -> fix -> write, streaming.

    Args:
        pipeline: a pipeline YAML file (relative paths in it are relative to its folder), a ``PipelineConfig``
            or its mapping.
        input, output_dir: replace the pipeline's; ``max_cost``: replaces its cascade's cap (USD).
        dry_run: call no model, write no fixed file; estimate tokens and cost.
        progress: opens a progress display for the judging; None: none.
        judges: prebuilt judges by stage name, used instead of building them from the cascade.
    """
    overrides: dict[str, str] = {}
    if input is not None:
        overrides["input"] = os.fspath(input)
    if output_dir is not None:
        overrides["output_dir"] = os.fspath(output_dir)
    if isinstance(pipeline, PipelineConfig):
        cfg = pipeline.model_copy(update=overrides)
    elif isinstance(pipeline, Mapping):
        cfg = validate_pipeline({**pipeline, **overrides}, source="pipeline")
    else:
        cfg = load_pipeline(os.fspath(pipeline), overrides=overrides)
    if max_cost is not None:
        cfg = cfg.model_copy(update={"cascade": cfg.cascade.model_copy(update={"max_cost": max_cost})})
    summary = run_pipeline(cfg, dry_run=dry_run, progress=progress, judges=dict(judges) if judges else None)
    return _run_summary("run", summary)


def _run_summary(command: Literal["judge", "fix", "run"], summary: dict[str, Any]) -> RunSummary:
    """The typed record of a summary dict of ``run_judge``, ``run_fix`` or ``run_pipeline``."""
    read: Mapping[str, Any] = summary["read"]
    cascade: Mapping[str, Any] | None = summary.get("cascade")
    fix: Mapping[str, Any] | None = summary.get("fix")
    out_dir: str | None = summary.get("output_dir")
    verdicts = None
    if command != "fix" and not summary.get("dry_run"):
        verdicts = str(Path(str(out_dir)) / "verdicts.jsonl")
    fixed = summary.get("output") if command == "fix" else (fix or {}).get("output")
    return RunSummary(
        command=command,
        input=str(summary["input"]),
        format=read.get("format"),
        records_read=int(read["read"]),
        records_ok=int(read["ok"]),
        rejected=int(read["rejected"]),
        instances=int(cascade["instances"]) if cascade else int((fix or {}).get("instances_in", read["ok"])),
        false_negatives=None if cascade is None else int(cascade["false_negatives"]),
        written=None if fix is None else int(fix["written"]),
        dropped=None if fix is None else int(fix["dropped_removed"]) + int(fix["dropped_ambiguous"]),
        cost=0.0 if cascade is None else float(cascade["cost"]),
        funnel=() if cascade is None else tuple(StageFunnel.from_summary(s) for s in cascade["stages"]),
        output_dir=out_dir,
        verdicts=verdicts,
        fixed=None if fixed is None else str(fixed),
        store=summary.get("store"),
        reconciled=summary.get("reconciled"),
        dry_run=bool(summary.get("dry_run", False)),
        seconds=summary.get("seconds"),
        summary=summary,
    )
