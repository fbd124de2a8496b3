"""Writing: the atomic instance writer and the choice of output format (see ``negclean.data.io``)."""

from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path
from typing import IO, Any

from negclean.data.atomic import fsync_path
from negclean.data.formats import _fastjson, _jsonl, _parquet, _tevatron_fast, st, tevatron
from negclean.data.formats._registry import CODECS, FORMATS
from negclean.data.formats._tevatron_fast import PlainLine
from negclean.data.records import Instance
from negclean.errors import ConfigError


def _umask() -> int:
    """The process umask, read without os.umask(), which would have to change it (racing other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class InstanceWriter:
    """Writes instances to a temporary file next to ``path`` and moves it into place on ``close()``.

    Use it as a context manager: on an exception the temporary file is removed and nothing appears under
    ``path`` (an earlier file of that name is left as it was). ``count`` is the number of instances written,
    ``rows`` the number of rows (more than ``count`` only for ``st`` with several positives per instance).

    Opened with ``like=reader`` on Tevatron JSON Lines written as Tevatron JSON Lines, an instance that the
    reader yielded last and nobody changed is written as the line it was read from (``InstanceReader.passthrough``):
    a line of plain Tevatron fields in strict JSON keeps its own bytes, only its line ending becomes "\\n". On a
    line as negclean or ``json.dumps`` writes it that is what re-encoding gives; on any other line (compact or
    extra whitespace, another field order, ``\\u`` escapes) the output keeps the user's bytes where re-encoding
    would normalise them (as earlier versions did), and reads back as the same instance. Changed instances,
    and lines the strict parser did not take, are encoded as ``json.dumps`` would.
    """

    def __init__(
        self,
        path: Path,
        *,
        fmt: str,
        multi_positive: str,
        row_group_size: int,
        negatives: int | None,
        compresslevel: int,
        source: Any = None,
    ):
        self.path = path
        self.format = fmt
        self.count = 0
        self.rows = 0
        self._codec = CODECS[fmt]
        self._multi_positive = multi_positive
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as exc:
            raise ConfigError(f"cannot create the output {path} ({exc.strerror}); choose a writable location") from None
        self._tmp = tmp
        self._cleanup = weakref.finalize(self, _remove, tmp)  # a writer dropped without close() leaves nothing
        self._raw: IO[bytes] | None = None
        self._jsonl = not is_parquet_name(path)
        # the reader this writer copies (like=reader): an instance it yielded last, unchanged, is written from its
        # parsed row (InstanceReader.passthrough) instead of being rebuilt
        self._source = source if self._jsonl and hasattr(source, "passthrough") else None
        # Tevatron JSON Lines: instances encoded from structs (_tevatron_fast.encode_instance), same bytes
        self._fast_tevatron = self._jsonl and self._codec is tevatron and _fastjson.ENABLED
        try:
            if is_parquet_name(path):
                os.close(fd)
                layout = "st" if fmt == "st" else "tevatron"
                self._sink: Any = _parquet.ParquetSink(
                    Path(tmp), layout=layout, row_group_size=row_group_size, negatives=negatives
                )
            else:
                self._raw = os.fdopen(fd, "wb", buffering=1 << 20)
                gz = path.name.lower().endswith(".gz")
                self._sink = _jsonl.JsonlSink(
                    self._raw, compresslevel=compresslevel if gz else None, name=path.name[:-3] if gz else path.name
                )
        except BaseException:
            self._cleanup()
            raise

    def write(self, inst: Instance) -> None:
        """Write one instance (one row; for ``st``, one row per positive unless multi_positive="first")."""
        if self._closed:
            raise ValueError(f"the writer of {self.path} is closed")
        if not inst.positives:
            raise ValueError(
                f"instance {inst.query_id!r} (input line {inst.line}) has no positives; a reader "
                "would reject it, so it is not written. Drop such instances before writing"
            )
        if self._source is not None:
            line = self._source.passthrough(inst, self.format)
            if line is not None:
                self._sink.write_line(line)
                self.count += 1
                self.rows += 1
                return
        if self._fast_tevatron:
            line = _tevatron_fast.encode_instance(inst)
            if line is not None:
                self._sink.write_line(line)
                self.count += 1
                self.rows += 1
                return
        if self._codec is st:
            rows = st.to_rows(inst, multi_positive=self._multi_positive)
        else:
            rows = self._codec.to_rows(inst)
        try:
            if self._jsonl:
                checked = self._codec is tevatron and _plain_numbers(inst)
                for row in rows:
                    self._sink.write_line(_fastjson.encode(row, checked=checked))
            else:
                for row in rows:
                    self._sink.write(row)
        except (TypeError, ValueError) as exc:
            raise type(exc)(
                f"cannot write instance {inst.query_id!r} (input line {inst.line}) to {self.path}: {exc}"
            ) from exc
        except ConfigError as exc:
            raise ConfigError(
                f"cannot write instance {inst.query_id!r} (input line {inst.line}) to {self.path}: {exc}"
            ) from exc
        self.count += 1
        self.rows += len(rows)

    @property
    def takes_plain_lines(self) -> bool:
        """Whether ``write_plain`` copies a PlainLine's bytes and ``write_encoded`` may be used: Tevatron JSON
        Lines (plain or gzip) with the fast JSON path on."""
        return self._fast_tevatron

    def write_plain(self, line: PlainLine) -> None:
        """Write a line that ``InstanceReader.plain()`` gave and nobody changed: its own bytes when this writes
        Tevatron JSON Lines (see the class docstring: what ``like=reader`` does for unchanged instances),
        otherwise its instance as ``write`` would."""
        if not self._fast_tevatron:
            self.write(line.instance())
            return
        self.write_encoded(line.raw)

    def write_encoded(self, line: bytes) -> None:
        """Write one Tevatron JSON line that the caller encoded (no line ending; only where ``takes_plain_lines``),
        e.g. a PlainLine edited by ``negclean.fix.plain_lines``. Nothing is checked."""
        if self._closed:
            raise ValueError(f"the writer of {self.path} is closed")
        if not self._fast_tevatron:
            raise ValueError(f"write_encoded writes Tevatron JSON Lines only; {self.path} is written as {self.format}")
        self._sink.write_line(line)
        self.count += 1
        self.rows += 1

    @property
    def takes_tables(self) -> bool:
        """Whether ``write_table`` can be used: Tevatron rows in a Parquet file."""
        return self.format == "parquet" and isinstance(self._sink, _parquet.ParquetSink)

    def write_table(self, table: Any) -> None:
        """Write a pyarrow Table or RecordBatch of rows in negclean's Tevatron Parquet columns (as read from such a
        file, or as ``negclean.fix.arrow_batches`` builds them), after what was written so far. Every row must
        have a positive; nothing else is checked."""
        if self._closed:
            raise ValueError(f"the writer of {self.path} is closed")
        if not self.takes_tables:
            raise ValueError(f"write_table writes Tevatron Parquet only; {self.path} is written as {self.format}")
        self._sink.write_table(table)
        self.count += table.num_rows
        self.rows += table.num_rows

    def close(self) -> None:
        """Finish the file and move it into place (atomic rename); on failure nothing is left behind."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sink.close()
            if self._raw is not None:
                self._raw.close()
            fsync_path(self._tmp)
            os.chmod(self._tmp, 0o666 & ~_umask())
            os.replace(self._tmp, self.path)
        except BaseException:
            self._cleanup()
            raise
        self._cleanup.detach()
        fsync_path(self.path.parent)

    def abort(self) -> None:
        """Drop everything written so far; nothing appears under ``path``."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._raw is not None:
                self._raw.close()
        except OSError:
            pass
        finally:
            self._cleanup()

    def __enter__(self) -> InstanceWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"InstanceWriter({str(self.path)!r}, fmt={self.format!r}, count={self.count}, {state})"


def _plain_numbers(inst: Instance) -> bool:
    """Whether every float of the instance's Tevatron row (scores, extra fields) is a ``_fastjson.plain_number``,
    so that the fast encoder need not look through the row."""
    if inst.meta and not _fastjson.plain_numbers(inst.meta):
        return False
    for passages in (inst.positives, inst.negatives):
        for p in passages:
            if p.score is not None and not _fastjson.plain_number(p.score):
                return False
            if p.meta and not _fastjson.plain_numbers(p.meta):
                return False
    return True


def is_parquet_name(path: Path) -> bool:
    return path.name.lower().endswith(".parquet")


def write_format(path: Path, fmt: str | None, like: Any) -> str:
    parquet = is_parquet_name(path)
    if fmt is None and like is not None:
        like_fmt = like if isinstance(like, str) else getattr(like, "format", None)
        if like_fmt not in FORMATS:
            raise ConfigError(f"like= must be a format name, a reader or its stats, not {like!r}")
        fmt = ("parquet" if parquet else "tevatron") if like_fmt in ("tevatron", "parquet") else like_fmt
    if fmt is None:
        if parquet:
            return "parquet"
        raise ConfigError(
            f"say which format to write {path} in: --to FORMAT (fmt= or like= in Python), one of {', '.join(FORMATS)}"
        )
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt == "parquet" and not parquet:
        raise ConfigError(
            f"the format 'parquet' writes a Parquet file; name it *.parquet (not {path.name}), "
            "or use --to tevatron (fmt='tevatron' in Python) for JSON Lines"
        )
    if parquet and fmt in ("tevatron", "flagembedding"):
        hint = (
            "use --to parquet (fmt='parquet' in Python) for Tevatron columns in Parquet"
            if fmt == "tevatron"
            else "name it *.jsonl[.gz]"
        )
        raise ConfigError(f"the format {fmt!r} writes JSON Lines, but {path.name} ends in .parquet; {hint}")
    return fmt
