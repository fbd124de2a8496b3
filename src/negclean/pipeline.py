"""The whole job in one call: read -> (mine) -> judge cascade -> fix -> write, with a reconciled summary.

Used by `negclean judge`, `negclean fix` and `negclean run PIPELINE.yaml`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from negclean.cascade.outcome import outcome_row
from negclean.cascade.runner import Cascade
from negclean.cascade.stages import CascadeConfig
from negclean.cascade.store import JudgmentStore
from negclean.configfile import invalid_config, read_yaml, resolve_path
from negclean.data.atomic import atomic_open
from negclean.data.io import open_writer, read_instances, require_instances
from negclean.data.paths import refuse_overwrite
from negclean.data.records import Instance
from negclean.errors import BudgetExceeded, ConfigError, InputError
from negclean.fix import arrow_batches, plain_lines
from negclean.fix.operations import FixCounts, Operation, fix_instance, fix_row
from negclean.fix.verdict_rows import VerdictRows
from negclean.presets import load_cascade_dict
from negclean.progress import ProgressFactory, count_lines, no_progress


class FixConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    operation: Operation = Operation.RELABEL
    output: str | None = Field(None, description="output file; default <output_dir>/fixed.<input suffix>")
    format: str | None = Field(None, description="output format; default the input's")
    drop_undecided: bool = False


class PipelineConfig(BaseModel):
    """A `negclean run` file. Relative paths are relative to the YAML file's folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str | None = None
    format: str | None = None
    on_error: Literal["fail", "skip"] = "skip"
    output_dir: str = "runs/latest"
    store: str | None = Field(None, description="judgment store; default <output_dir>/judgments.sqlite")
    mine: dict[str, Any] | None = Field(None, description="optional first step: options of `negclean mine`")
    cascade: CascadeConfig
    fix: FixConfig | None = FixConfig()


def load_pipeline(path: str | Path, *, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML; errors name the file and the offending field."""
    path = Path(path)
    data = read_yaml(path, missing="no such pipeline file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with at least 'input' and 'cascade'")
    base = path.resolve().parent
    for key in ("input", "output_dir", "store"):
        if isinstance(data.get(key), str):
            data[key] = resolve_path(base, data[key])
    if isinstance(data.get("fix"), dict) and isinstance(data["fix"].get("output"), str):
        data["fix"]["output"] = resolve_path(base, data["fix"]["output"])
    if isinstance(data.get("mine"), dict):
        for key in ("beir", "input", "cache_dir"):
            if isinstance(data["mine"].get(key), str):
                data["mine"][key] = resolve_path(base, data["mine"][key])
    if isinstance(data.get("cascade"), str):  # a preset name or a cascade YAML path
        ref = data["cascade"]
        data["cascade"] = load_cascade_dict(resolve_path(base, ref) if ref.endswith((".yaml", ".yml")) else ref)
    data.update(overrides or {})
    return validate_pipeline(data, source=str(path))


def validate_pipeline(data: dict, *, source: str = "config") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise invalid_config(exc, f"{source}: invalid configuration:") from None


def load_cascade(
    cascade: str | os.PathLike[str] | CascadeConfig | Mapping[str, Any], *, max_cost: float | None = None
) -> CascadeConfig:
    """The validated cascade: a preset name, a cascade YAML file, a ``CascadeConfig`` or its mapping, with
    ``max_cost`` (USD) in place of the cascade's own cap when given. Errors name the preset or file."""
    if isinstance(cascade, CascadeConfig):
        if max_cost is None:
            return cascade
        if max_cost < 0:
            raise ConfigError(f"max_cost must be >= 0 (USD), not {max_cost}")
        return cascade.model_copy(update={"max_cost": float(max_cost)})
    if isinstance(cascade, Mapping):
        data, source = dict(cascade), "cascade"
    else:
        source = os.fspath(cascade)
        data = load_cascade_dict(source)
    if max_cost is not None:
        data = {**data, "max_cost": max_cost}
    return validate_pipeline({"cascade": data}, source=source).cascade


def atomic_text(path: Path) -> AbstractContextManager[IO[str]]:
    """Write a text file under a temporary name; rename into place only if the block succeeds.

    Kept for callers of the old name: the one implementation is ``negclean.data.atomic.atomic_open``."""
    return atomic_open(path, "w")


def default_fixed_path(input_path: str, output_dir: Path) -> Path:
    name = Path(input_path).name
    return output_dir / f"fixed.{name}"


def run_judge(
    *,
    input_path: str,
    cascade: CascadeConfig,
    output_dir: str | Path,
    store_path: str | None = None,
    fmt: str | None = None,
    on_error: Literal["fail", "skip"] = "skip",
    dry_run: bool = False,
    fix: FixConfig | None = None,
    judges: dict | None = None,
    on_progress: Callable[[int], None] | None = None,
    config_echo: dict | None = None,
) -> dict:
    """Judge every instance of a file through the cascade, optionally fix, and write the run folder.

    Writes ``verdicts.jsonl`` (one row per instance, input order), ``rejects.jsonl`` (unreadable lines),
    the fixed data when ``fix`` is given, and ``summary.json``. Every file appears only when complete.
    Returns the summary. Raises BudgetExceeded (summary written, outputs not) when --max-cost stops it.
    """

    out_dir = Path(output_dir)
    store_file = store_path or str(out_dir / "judgments.sqlite")
    reject_path = out_dir / "rejects.jsonl"
    refuse_overwrite(
        input_path,
        {
            "the verdicts file": out_dir / "verdicts.jsonl",
            "the summary file": out_dir / "summary.json",
            "the reject file": reject_path,
            "the store (--store)": store_file,
            "the fixed output (fix.output)": None
            if fix is None or dry_run
            else (Path(fix.output) if fix.output else default_fixed_path(input_path, out_dir)),
        },
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    summary: dict[str, Any] = {
        "input": input_path,
        "output_dir": str(out_dir),
        "store": store_file,
        "dry_run": dry_run,
        "config": config_echo or {"cascade": cascade.model_dump(mode="json")},
    }
    fix_counts = FixCounts()
    fixed_path = None
    with JudgmentStore(store_file) as store, ExitStack() as stack:
        reader = read_instances(input_path, fmt=fmt, on_error=on_error, reject_path=str(reject_path))
        # --max-cost counts per run: the output folder keys its spend in the store (a resume continues it)
        runner = stack.enter_context(
            Cascade(
                cascade,
                store=store,
                judges=judges,
                dry_run=dry_run,
                on_progress=on_progress,
                budget_scope=f"run:{out_dir.resolve()}",
            )
        )
        try:
            if dry_run:
                for _ in runner.run(reader):
                    pass
            else:
                vfile = stack.enter_context(atomic_text(out_dir / "verdicts.jsonl"))
                writer = None
                if fix is not None:
                    fixed_path = Path(fix.output) if fix.output else default_fixed_path(input_path, out_dir)
                    writer = stack.enter_context(open_writer(str(fixed_path), fmt=fix.format, like=reader))
                for outcome in runner.run(reader):
                    vfile.write(json.dumps(outcome_row(outcome), ensure_ascii=False) + "\n")
                    if writer is not None and fix is not None:  # a writer is opened only for a fix
                        fixed = fix_instance(
                            outcome, fix.operation, counts=fix_counts, drop_undecided=fix.drop_undecided
                        )
                        if fixed is not None:
                            writer.write(fixed)
            require_instances(reader.stats, reject_path=reject_path)  # before any output is renamed into place
        except BudgetExceeded as exc:
            summary.update(_summary_parts(reader, runner, None, None, t0))
            summary["stopped"] = str(exc)
            _write_summary(out_dir, summary)
            raise
        summary.update(
            _summary_parts(
                reader,
                runner,
                fix_counts if fix else None,
                {"operation": fix.operation.value, "output": str(fixed_path)} if fix else None,
                t0,
            )
        )
    _write_summary(out_dir, summary)
    return summary


def _summary_parts(reader, runner: Cascade, fix_counts: FixCounts | None, fix_info: dict | None, t0: float) -> dict:
    stats = reader.stats
    read = {
        "format": stats.format,
        "read": stats.read,
        "ok": stats.ok,
        "rejected": stats.rejected,
        "warnings": dict(stats.warnings),
    }
    out: dict[str, Any] = {"read": read, "cascade": runner.stats.as_dict(), "seconds": round(time.time() - t0, 3)}
    if fix_counts is not None:
        out["fix"] = {**(fix_info or {}), **fix_counts.as_dict()}
        out["reconciled"] = (
            stats.read
            == fix_counts.written + fix_counts.dropped_removed + fix_counts.dropped_ambiguous + stats.rejected
        )
    return out


def standard_json(value: Any) -> Any:
    """``value`` with every non-finite number (a cap of ``inf``) as null: standard JSON, readable by any parser."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: standard_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [standard_json(v) for v in value]
    return value


def _write_summary(out_dir: Path, summary: dict) -> None:
    with atomic_text(out_dir / "summary.json") as fh:
        json.dump(standard_json(summary), fh, indent=2, ensure_ascii=False, allow_nan=False)


def run_fix(
    *,
    input_path: str,
    verdicts_path: str,
    output_path: str,
    operation: Operation,
    fmt: str | None = None,
    out_fmt: str | None = None,
    on_error: Literal["fail", "skip"] = "skip",
    drop_undecided: bool = False,
    max_false_negatives: int | None = None,
    reject_path: str | None = None,
    log_limit: int = 20,
) -> dict:
    """Apply a fix operation from a verdicts file (made by `negclean judge` from the same input).
    ``log_limit=0``: log no reader warnings (for callers that read the same input before and logged them); the
    warning checks are then skipped, as nothing would show their result (the summary carries no warnings)."""

    refuse_overwrite(input_path, {"--output": output_path, "the reject file": reject_path})
    refuse_overwrite(verdicts_path, {"--output": output_path, "the reject file": reject_path})
    counts = FixCounts()
    reader = read_instances(
        input_path, fmt=fmt, on_error=on_error, reject_path=reject_path, log_limit=log_limit, check=log_limit > 0
    )
    rows = VerdictRows(verdicts_path)
    with open_writer(output_path, fmt=out_fmt, like=reader) as writer:
        # Parquet -> Parquet: plain record batches are fixed and written whole (fix/arrow_batches.py); Tevatron
        # JSON Lines -> Tevatron JSON Lines: plain lines, without records (fix/plain_lines.py); the rest here
        batched = plain_lines.instances if reader.format == "tevatron" else arrow_batches.instances
        for inst in batched(
            reader,
            rows,
            writer,
            operation,
            counts=counts,
            drop_undecided=drop_undecided,
            max_false_negatives=max_false_negatives,
        ):
            row = next(rows, None)
            if row is None:
                raise InputError(
                    f"verdicts file ends before input line {inst.line}: was the judge run complete?", path=verdicts_path
                )
            try:
                fixed = fix_row(
                    inst,
                    row,
                    operation,
                    counts=counts,
                    drop_undecided=drop_undecided,
                    max_false_negatives=max_false_negatives,
                    path=verdicts_path,
                )
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                raise _malformed_row(exc, inst, verdicts_path) from None
            if fixed is not None:
                writer.write(fixed)
        require_instances(reader.stats, reject_path=reject_path)
        if next(rows, None) is not None:
            raise InputError(
                "verdicts file has more rows than the input has readable instances: "
                "was it made from this input with the same --on-error?",
                path=verdicts_path,
            )
    stats = reader.stats
    return {
        "input": input_path,
        "verdicts": verdicts_path,
        "output": output_path,
        "operation": operation.value,
        "read": {"format": stats.format, "read": stats.read, "ok": stats.ok, "rejected": stats.rejected},
        "fix": counts.as_dict(),
        "reconciled": stats.read == counts.written + counts.dropped_removed + counts.dropped_ambiguous + stats.rejected,
    }


def _malformed_row(exc: Exception, inst: Instance, path: str) -> InputError:
    """The error for a verdicts row that names this instance but cannot be read as verdicts (a missing field,
    a label or grade negclean does not know, a value of the wrong type)."""
    what = f"it has no field {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc)
    return InputError(
        f"the verdicts row for input line {inst.line} (query {inst.query_id!r}) is malformed: {what}. Was it "
        "edited, or written by another version? Rerun `negclean judge` on this input (stored verdicts make it free)",
        path=path,
    )


def run_pipeline(
    cfg: PipelineConfig, *, dry_run: bool = False, progress: ProgressFactory | None = None, judges: dict | None = None
) -> dict:
    """`negclean run`: optional mine step, then judge + fix into ``cfg.output_dir``.

    ``progress``: opens the judging progress display (the command line passes a rich bar); None shows nothing."""
    out_dir = Path(cfg.output_dir)
    input_path = cfg.input
    mine_summary = None
    if cfg.mine is not None:
        mined = out_dir / "mined.jsonl"
        # lazy: mining pulls numpy, whose OpenBLAS threads spin ~60 ms of CPU once loaded; judge and fix need none
        from negclean.mine.mine import mine_from_options

        mine_summary = mine_from_options(dict(cfg.mine), output=str(mined))
        input_path = str(mined)
    if not input_path:
        raise ConfigError("pipeline has no 'input' (and no 'mine' step to make one)")
    with (progress or no_progress)(count_lines(input_path), "judging") as advance:
        summary = run_judge(
            input_path=input_path,
            cascade=cfg.cascade,
            output_dir=out_dir,
            store_path=cfg.store,
            fmt=cfg.format,
            on_error=cfg.on_error,
            dry_run=dry_run,
            fix=None if dry_run else cfg.fix,
            judges=judges,
            on_progress=advance,
            config_echo=cfg.model_dump(mode="json"),
        )
    if mine_summary is not None:
        summary["mine"] = mine_summary
        _write_summary(out_dir, summary)
    return summary
