"""One shard of a judge run, start to finish: read it, run the cascade, write its outputs, report its counts.

This is the unit of work a Ray worker runs (``negclean.scale.ray_judge``); it needs no Ray. A shard writes,
under ``RUN_DIR/shards/``::

    NNNNN.verdicts.parquet  line, row: the verdicts.jsonl rows of its instances, in input order
    NNNNN.fixed.<ext>       its fixed instances, in the output's format (JSON Lines parts uncompressed)
    NNNNN.rejects.jsonl     its unreadable lines
    NNNNN.store.sqlite      the verdicts it paid for (merged into the main store by the driver)
    NNNNN.done.json         its counts, written last: a shard with this file (and the run's plan key) is done
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from negclean.cascade.outcome import outcome_row
from negclean.cascade.runner import Cascade
from negclean.cascade.stages import CascadeConfig
from negclean.data.atomic import atomic_path, atomic_write
from negclean.data.io import open_writer
from negclean.errors import BudgetExceeded, NegcleanError, require
from negclean.fix.operations import FixCounts, Operation, fix_instance
from negclean.judge.config import build_judge
from negclean.pipeline import FixConfig
from negclean.scale.counts import sub_counts
from negclean.scale.shards import Shard, ShardReader
from negclean.scale.stores import ShardStore


@dataclass(frozen=True)
class JudgeJob:
    """Everything a worker needs to judge any shard of a run (JSON, so it travels to any machine)."""

    input_path: str
    fmt: str
    detected_at: int | None
    on_error: str
    cascade: dict
    run_dir: str
    store_path: str
    fix: dict | None
    fixed_suffix: str
    dry_run: bool
    shard_budget: float | None
    plan_key: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> JudgeJob:
        return cls(**json.loads(text))


def shard_path(run_dir: str | Path, index: int, kind: str) -> Path:
    return Path(run_dir) / "shards" / f"{index:05d}.{kind}"


def load_done(run_dir: str | Path, index: int, key: str) -> dict | None:
    """The counts of a finished shard of this plan, or None."""
    path = shard_path(run_dir, index, "done.json")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("plan_key") == key else None


def reused(counts: dict) -> dict:
    """A finished shard's counts as this run sees them: its verdicts come from the store, nothing is paid."""
    cascade = dict(counts["cascade"])
    stages = []
    for st in cascade["stages"]:
        st = dict(st)
        st["from_store"] += st["judged"]
        st.update(judged=0, tasks_sent=0, tokens_in=0, tokens_out=0, cost=0.0, seconds=0.0, backend=None)
        stages.append(st)
    cascade["stages"] = stages
    return {**counts, "cascade": cascade, "seconds": 0.0}


def build_judges(job: JudgeJob) -> dict[str, Any]:
    """Every stage's judge, built once per worker (models load here, not per shard)."""
    return {s.name: build_judge(s.judge) for s in CascadeConfig.model_validate(job.cascade).stages}


def judge_shard(job: JudgeJob, shard: Shard, judges: dict[str, Any]) -> dict[str, Any]:
    """Judge one shard (or return its recorded counts when it is already done).

    Returns a JSON-ready dict: ``index``, ``status`` (``done``, ``skipped``, ``budget``, ``error``), ``instances``
    and ``counts`` (read, cascade and fix counts, unrounded); for errors ``error`` = {type, message, exit_code}.
    Negclean errors are returned, not raised, so that the other shards finish and the driver decides.
    """
    done = load_done(job.run_dir, shard.index, job.plan_key)
    if done is not None:
        return {
            "index": shard.index,
            "status": "skipped",
            "instances": done["counts"]["read"]["read"],
            "counts": reused(done["counts"]),
        }
    t0 = time.perf_counter()
    cascade = CascadeConfig.model_validate({**job.cascade, "max_cost": job.shard_budget})
    path = lambda kind: shard_path(job.run_dir, shard.index, kind)  # noqa: E731
    path("store.sqlite").parent.mkdir(parents=True, exist_ok=True)
    reader = ShardReader(
        job.input_path,
        shard=shard,
        fmt=job.fmt,
        on_error=job.on_error,
        reject_path=path("rejects.jsonl"),
        detected_at=job.detected_at,
    )
    status, error = "done", None
    fix_counts = None
    before = _judge_counters(judges)
    with ShardStore(path("store.sqlite"), base=job.store_path) as store:
        runner = Cascade(cascade, store=store, judges=judges, dry_run=job.dry_run)
        try:
            if job.dry_run:
                for _ in runner.run(reader):
                    pass
            else:
                fix_counts = _write_outputs(job, runner, reader, path)
        except BudgetExceeded as exc:
            status, error = "budget", _error(exc)
        except NegcleanError as exc:
            status, error = "error", _error(exc)
    _backend_deltas(runner.stats, judges, before)
    counts: dict[str, Any] = {
        "read": _read_counts(reader),
        "cascade": _raw_stats(runner.stats),
        "fix": fix_counts.as_dict() if fix_counts is not None else None,
        "seconds": time.perf_counter() - t0,
    }
    if status == "done" and not job.dry_run:
        _write_json(
            path("done.json"), {"plan_key": job.plan_key, "shard": json.loads(shard.to_json()), "counts": counts}
        )
    out: dict[str, Any] = {
        "index": shard.index,
        "status": status,
        "instances": counts["read"]["read"],
        "counts": counts,
    }
    if error is not None:
        out["error"] = error
    return out


def _write_outputs(job: JudgeJob, runner: Any, reader: ShardReader, path: Any) -> Any:
    """Verdict rows (Parquet) and fixed instances of the shard, each written whole or not at all."""
    fix = FixConfig.model_validate(job.fix) if job.fix is not None else None
    counts = FixCounts()
    lines: list[int] = []
    rows: list[str] = []
    writer = None
    if fix is not None:
        writer = open_writer(path(f"fixed{job.fixed_suffix}"), fmt=fix.format, like=job.fmt)
    try:
        for outcome in runner.run(reader):
            lines.append(outcome.instance.line)
            rows.append(json.dumps(outcome_row(outcome), ensure_ascii=False))
            if writer is not None:
                assert fix is not None  # a writer is opened only when the job fixes
                fixed = fix_instance(
                    outcome,
                    Operation(fix.operation),
                    counts=counts,
                    drop_undecided=fix.drop_undecided,
                )
                if fixed is not None:
                    writer.write(fixed)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    _write_verdicts(path("verdicts.parquet"), lines, rows)
    return counts


def _write_verdicts(path: Path, lines: list[int], rows: list[str]) -> None:
    pa = require("pyarrow", extra="parquet", purpose="The Ray engine's verdict shards")
    pq = require("pyarrow.parquet", extra="parquet", purpose="The Ray engine's verdict shards")
    table = pa.table({"line": pa.array(lines, pa.int64()), "row": pa.array(rows, pa.string())})
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def read_verdict_shard(path: Path) -> list[str]:
    """The verdicts.jsonl rows of one shard, in order."""
    pq = require("pyarrow.parquet", extra="parquet", purpose="The Ray engine's verdict shards")
    return pq.read_table(path, columns=["row"]).column("row").to_pylist()


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data))


def _error(exc: NegcleanError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc), "exit_code": exc.exit_code}


def _read_counts(reader: ShardReader) -> dict[str, Any]:
    s = reader.stats
    return {"format": s.format, "read": s.read, "ok": s.ok, "rejected": s.rejected, "warnings": dict(s.warnings)}


def _judge_counters(judges: dict[str, Any]) -> dict[str, Any]:
    """Snapshot of each judge's own counters (a judge lives across the shards of a worker)."""
    out = {}
    for name, judge in judges.items():
        out[name] = None if judge.stats is None else dict(judge.stats.as_dict())
    return out


def _backend_deltas(stats: Any, judges: dict[str, Any], before: dict[str, Any]) -> None:
    """Stage ``backend`` counters of this shard only: what each judge's counters gained during it."""
    after = _judge_counters(judges)
    for stage in stats.stages:
        if getattr(stage, "backend", None) is not None and after.get(stage.name) is not None:
            stage.backend = sub_counts(after[stage.name], before.get(stage.name))


def _raw_stats(stats: Any) -> dict[str, Any]:
    """A CascadeStats as plain data, unrounded (``merge_stats`` adds shards up exactly)."""
    out = {k: v for k, v in stats.__dict__.items() if k != "stages"}
    out["stages"] = [dict(s.__dict__) for s in stats.stages]
    return out
