"""Shards of an input file: contiguous line (or Parquet row) ranges that workers read on their own.

A shard is addressed by what the file itself says, so any worker can read it without the driver handing it
data: plain JSON Lines by byte range (a worker seeks straight to it), gzip JSON Lines by line range (a worker
decompresses up to it: keep big inputs plain or Parquet), Parquet by row groups. Line numbers are those of
the whole file, so verdicts, rejects and messages are exactly what the local engine writes.

``ShardReader`` is the data layer's ``InstanceReader`` limited to one shard: the same parsing, checks, reject
file and counts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from negclean.data import gz
from negclean.data.formats import _jsonl, _parquet
from negclean.data.formats._base import RowError
from negclean.data.formats._reader import InstanceReader
from negclean.errors import ConfigError, InputError


@dataclass(frozen=True, slots=True)
class Shard:
    """Lines ``first_line..last_line`` (1-based, inclusive) of the input.

    ``byte_start``/``byte_end`` locate them in a plain JSON Lines file; ``row_groups`` ([start, stop)) in a
    Parquet file; gzip files have neither and are read up to the range.
    """

    index: int
    first_line: int
    last_line: int
    byte_start: int | None = None
    byte_end: int | None = None
    row_groups: tuple[int, int] | None = None

    @property
    def lines(self) -> int:
        return self.last_line - self.first_line + 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Shard:
        data = json.loads(text)
        if data.get("row_groups") is not None:
            data["row_groups"] = tuple(data["row_groups"])
        return cls(**data)


def file_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What identifies an input's content cheaply: resolved path, size and modification time."""
    p = Path(path)
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def plan_shards(path: str | os.PathLike[str], *, shard_size: int) -> list[Shard]:
    """Cut a file into shards of ``shard_size`` non-blank lines (Parquet: whole row groups of at least that
    many rows). Blank lines are not counted, so that shard boundaries fall where a reader counts instances."""
    if shard_size < 1:
        raise ConfigError(f"shard_size must be at least 1, not {shard_size}")
    p = Path(path)
    head = _jsonl.sniff(p)
    if head == _jsonl.PARQUET_MAGIC:
        return _plan_parquet(p, shard_size)
    return _plan_lines(p, shard_size, plain=not head.startswith(_jsonl.GZIP_MAGIC))


def _plan_lines(path: Path, size: int, *, plain: bool) -> list[Shard]:
    shards: list[Shard] = []
    start_line, start_byte, offset, line, counted = 1, 0, 0, 0, 0
    for line, raw in _numbered_raw_lines(path):
        offset += len(raw)
        if _nonblank(raw):
            counted += 1
        if counted == size:
            shards.append(
                Shard(len(shards), start_line, line, start_byte if plain else None, offset if plain else None)
            )
            start_line, start_byte, counted = line + 1, offset, 0
    if line >= start_line:
        shards.append(Shard(len(shards), start_line, line, start_byte if plain else None, offset if plain else None))
    return shards


def _nonblank(raw: bytes) -> bool:
    """Whether a physical line holds a record for the reader (``_jsonl.iter_lines`` skips the others)."""
    line = raw.rstrip(b"\r\n")
    if line.startswith(_jsonl.BOM):
        line = line[3:]
    return bool(line) and not line.isspace()


def _plan_parquet(path: Path, size: int) -> list[Shard]:
    meta = _parquet.open_file(path).metadata
    shards: list[Shard] = []
    first, group_start, rows = 1, 0, 0
    for g in range(meta.num_row_groups):
        rows += meta.row_group(g).num_rows
        if rows >= size or g == meta.num_row_groups - 1:
            if rows:
                shards.append(Shard(len(shards), first, first + rows - 1, row_groups=(group_start, g + 1)))
            first, group_start, rows = first + rows, g + 1, 0
    return shards


def _numbered_raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Every physical line of a (possibly gzip) file with its 1-based number, undecoded."""
    with _jsonl._open(path) as fh:
        yield from enumerate(fh, start=1)


def plan_key(*parts: Any) -> str:
    """Hash of everything that decides a shard's output (shards written under another key are stale)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class ShardReader(InstanceReader):
    """The instances of one shard, read exactly as ``read_instances`` reads the whole file.

    Args:
        detected_at: the line the whole file's format was detected from (``InstanceReader`` names it in the
            reason of a row of another format), so that rejects match the local engine's word for word.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        shard: Shard,
        fmt: str,
        on_error: str = "fail",
        reject_path: str | os.PathLike[str] | None = None,
        detected_at: int | None = None,
    ):
        super().__init__(path, fmt=fmt, on_error=on_error, reject_path=reject_path)  # type: ignore[arg-type]
        self.shard = shard
        self._detected_at = detected_at

    def _rows(self) -> Iterator[tuple[int, Any, dict[str, Any] | RowError]]:
        if self._parquet:
            yield from self._parquet_rows()
            return
        for lineno, raw in self._lines():
            try:
                yield lineno, raw, _jsonl.decode(raw)
            except RowError as err:
                yield lineno, raw, err

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        """Non-blank lines of the shard without line ending or BOM, as ``_jsonl.iter_lines`` gives them."""
        s = self.shard
        try:
            if s.byte_start is not None and s.byte_end is not None:
                source = self._byte_range(s.byte_start, s.byte_end, s.first_line)
            else:
                source = ((n, raw) for n, raw in _numbered_raw_lines(self.path) if n >= s.first_line)
            for lineno, line in source:
                if lineno > s.last_line:
                    break
                if lineno == 1 and line.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise _jsonl._utf16_error(self.path)
                line = line.rstrip(b"\r\n")
                if line.startswith(_jsonl.BOM):
                    line = line[3:]
                if line and not line.isspace():
                    yield lineno, line
        except gz.ERRORS as exc:
            raise InputError(
                f"the file is corrupt or truncated in lines {s.first_line}-{s.last_line} ({exc}); "
                "re-create or re-download it",
                path=str(self.path),
            ) from None

    def _byte_range(self, start: int, end: int, first_line: int) -> Iterator[tuple[int, bytes]]:
        with open(self.path, "rb", buffering=1 << 20) as fh:
            fh.seek(start)
            pos, lineno = start, first_line - 1
            while pos < end:
                raw = fh.readline()
                if not raw:
                    break
                pos += len(raw)
                lineno += 1
                yield lineno, raw

    def _parquet_rows(self) -> Iterator[tuple[int, Any, dict[str, Any] | RowError]]:
        pa = _parquet._pa()
        pf = _parquet.open_file(self.path)
        ours = _parquet.MARKER in (pf.schema_arrow.metadata or {})
        start, stop = self.shard.row_groups or (0, pf.metadata.num_row_groups)
        rowno = self.shard.first_line - 1
        try:
            for batch in pf.iter_batches(batch_size=1024, row_groups=list(range(start, stop)), use_threads=False):
                for row in batch.to_pylist():
                    rowno += 1
                    raw = dict(row)
                    if ours:
                        try:
                            row = _parquet._unpack(row)
                        except RowError as err:
                            row = err
                    yield rowno, raw, row
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise InputError(
                f"cannot read the rows after row {rowno} ({exc}); the file may be truncated or damaged",
                path=str(self.path),
            ) from None


def detect(path: str | os.PathLike[str], fmt: str | None) -> tuple[str, int | None]:
    """The format a whole-file reader would use, and the line it was detected from (None when given)."""
    reader = InstanceReader(path, fmt=fmt)
    return reader.format, reader._detected_at
