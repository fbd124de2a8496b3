"""Putting a sharded run back together: the run folder's files, in input order, and the summed counts.

The final files are those of the local engine, byte for byte: ``verdicts.jsonl`` (the shards' rows in
shard order), ``rejects.jsonl`` and the fixed file (JSON Lines parts joined, gzip-compressed as the local
writer does when the name ends in ``.gz``; Parquet parts rewritten through the writer, so that row groups
and schema are decided as for one file). Every file appears under its name only when complete.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from negclean.cascade.runner import CascadeStats, StageStats
from negclean.fix.operations import FixCounts
from negclean.scale.judge_shard import read_verdict_shard, shard_path



def _gzip_level() -> int:
    """The local writer's default gzip level, so that joined ``.gz`` outputs compress as it does."""
    import inspect

    from negclean.data.io import open_writer

    return int(inspect.signature(open_writer).parameters["compresslevel"].default)


def add_counts(a: Any, b: Any) -> Any:
    """a + b for counts: numbers add, mappings add key by key (recursively), None is nothing."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: add_counts(a.get(k), b.get(k)) for k in {**a, **b}}
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a + b
    return b


def sub_counts(a: Any, b: Any) -> Any:
    """a - b for counts (what a counter gained between two snapshots)."""
    if b is None:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: sub_counts(a.get(k), b.get(k)) for k in a}
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a - b
    return a


def merge_stats(parts: Sequence[dict[str, Any]]) -> CascadeStats:
    """Add up the cascade counts of shards (``judge_shard`` counts, unrounded)."""
    merged = CascadeStats()
    if not parts:
        return merged
    merged.dry_run = bool(parts[0].get("dry_run"))
    merged.stages = [StageStats(s["name"], s["judge_id"]) for s in parts[0]["stages"]]
    for part in parts:
        for name in ("instances", "candidates", "false_negatives", "instances_with_fn", "ambiguous",
                     "undecided_final"):
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


class _Atomic:
    """A binary file written under a temporary name and renamed into place on success."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        self.fh = os.fdopen(fd, "wb", buffering=1 << 20)

    def __enter__(self):
        return self.fh

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.fh.close()
            Path(self.tmp).unlink(missing_ok=True)
            return
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)
        os.replace(self.tmp, self.path)


def write_verdicts(run_dir: Path, indices: Sequence[int]) -> None:
    with _Atomic(run_dir / "verdicts.jsonl") as out:
        for i in indices:
            for row in read_verdict_shard(shard_path(run_dir, i, "verdicts.parquet")):
                out.write(row.encode("utf-8") + b"\n")


def write_rejects(run_dir: Path, indices: Sequence[int]) -> None:
    with _Atomic(run_dir / "rejects.jsonl") as out:
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
        from negclean.data.io import open_writer, read_instances

        with open_writer(final, fmt=fmt, like=like) as writer:
            for part in parts:
                for inst in read_instances(part, fmt=writer.format):
                    writer.write(inst)
        return
    with _Atomic(final) as raw:
        out = raw
        if final.name.lower().endswith(".gz"):
            out = gzip.GzipFile(filename=final.name[:-3], mode="wb", fileobj=raw,
                                compresslevel=_gzip_level(), mtime=0)
        try:
            for part in parts:
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 20)
        finally:
            if out is not raw:
                out.close()
