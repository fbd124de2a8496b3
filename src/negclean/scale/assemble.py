"""Putting a sharded run back together: the run folder's files, in input order, and the summed counts.

The final files are those of the local engine, byte for byte: ``verdicts.jsonl`` (the shards' rows in
shard order), ``rejects.jsonl`` and the fixed file (JSON Lines parts joined, gzip-compressed as the local
writer does when the name ends in ``.gz``; Parquet parts rewritten through the writer, so that row groups
and schema are decided as for one file). Every file appears under its name only when complete.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from negclean.cascade.runner import CascadeStats, StageStats
from negclean.data.atomic import atomic_open
from negclean.data.formats._jsonl import JsonlSink
from negclean.data.io import open_writer, read_instances
from negclean.fix.operations import FixCounts
from negclean.scale.counts import add_counts
from negclean.scale.judge_shard import read_verdict_shard, shard_path


def _gzip_level() -> int:
    """The local writer's default gzip level, so that joined ``.gz`` outputs compress as it does."""
    import inspect

    return int(inspect.signature(open_writer).parameters["compresslevel"].default)


def merge_stats(parts: Sequence[dict[str, Any]]) -> CascadeStats:
    """Add up the cascade counts of shards (``judge_shard`` counts, unrounded)."""
    merged = CascadeStats()
    if not parts:
        return merged
    merged.dry_run = bool(parts[0].get("dry_run"))
    merged.stages = [StageStats(s["name"], s["judge_id"]) for s in parts[0]["stages"]]
    for part in parts:
        for name in ("instances", "candidates", "false_negatives", "instances_with_fn", "ambiguous", "undecided_final"):
            setattr(merged, name, getattr(merged, name) + part[name])
        merged.stopped_by_budget = merged.stopped_by_budget or bool(part["stopped_by_budget"])
        for stage, data in zip(merged.stages, part["stages"]):
            for name, value in data.items():
                if name not in ("name", "judge_id"):
                    setattr(stage, name, add_counts(getattr(stage, name), value))
    return merged


def merge_read(parts: Iterable[dict[str, Any]], fmt: str) -> dict[str, Any]:
    warnings: Counter[str] = Counter()
    read = ok = rejected = 0
    for part in parts:
        read, ok, rejected = read + part["read"], ok + part["ok"], rejected + part["rejected"]
        warnings.update(part["warnings"])
    return {"format": fmt, "read": read, "ok": ok, "rejected": rejected, "warnings": dict(warnings)}


def merge_fix(parts: Iterable[dict[str, Any] | None]) -> FixCounts:
    total = FixCounts()
    for part in parts:
        for name, value in (part or {}).items():
            setattr(total, name, getattr(total, name) + value)
    return total


def write_verdicts(run_dir: Path, indices: Sequence[int]) -> None:
    with atomic_open(run_dir / "verdicts.jsonl", "wb", buffering=1 << 20) as out:
        for i in indices:
            for row in read_verdict_shard(shard_path(run_dir, i, "verdicts.parquet")):
                out.write(row.encode("utf-8") + b"\n")


def write_rejects(run_dir: Path, indices: Sequence[int]) -> None:
    with atomic_open(run_dir / "rejects.jsonl", "wb", buffering=1 << 20) as out:
        for i in indices:
            part = shard_path(run_dir, i, "rejects.jsonl")
            if part.is_file():
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 20)


def fixed_suffix(final: Path) -> str:
    """Suffix of a shard's fixed part for a final output path."""
    return ".parquet" if final.name.lower().endswith(".parquet") else ".jsonl"


def write_fixed(run_dir: Path, indices: Sequence[int], final: Path, *, fmt: str | None, like: str) -> None:
    """Join the shards' fixed parts into ``final``."""
    join_parts([shard_path(run_dir, i, f"fixed{fixed_suffix(final)}") for i in indices], final, fmt=fmt, like=like)


def join_parts(parts: Sequence[Path], final: Path, *, fmt: str | None, like: Any) -> None:
    """Join instance files written by the same writer settings into ``final`` (see the module docstring)."""
    if fixed_suffix(final) == ".parquet":
        with open_writer(final, fmt=fmt, like=like) as writer:
            for part in parts:
                for inst in read_instances(part, fmt=writer.format):
                    writer.write(inst)
        return
    with atomic_open(final, "wb", buffering=1 << 20) as raw:
        if not final.name.lower().endswith(".gz"):
            for part in parts:
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, raw, 1 << 20)
            return
        # Through the local writer's sink, line by line: ISA-L's gzip bytes depend on how the stream is cut into
        # writes, and the sink cuts it where the local writer does, so the file is the same to the byte.
        sink = JsonlSink(raw, compresslevel=_gzip_level(), name=final.name[:-3])
        try:
            for part in parts:
                with open(part, "rb", buffering=1 << 20) as fh:
                    for line in fh:
                        sink.write_line(line[:-1] if line.endswith(b"\n") else line)
        finally:
            sink.close()
