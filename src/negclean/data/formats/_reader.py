"""Reading: format detection, the streaming reader, its counts and the reject file (see ``negclean.data.io``)."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from negclean.data.formats import _fastjson, _jsonl, _parquet, _tevatron_fast, tevatron
from negclean.data.formats._base import RowError
from negclean.data.formats._checks import check_instance, quiet
from negclean.data.formats._parquet_batch import PlainBatch, plain_batch
from negclean.data.formats._registry import CODECS, EXPECTED, FORMATS, match_format, show_keys
from negclean.data.formats._tevatron_fast import PlainLine
from negclean.data.records import Instance, Rejected
from negclean.errors import ConfigError, InputError

log = logging.getLogger("negclean.data.io")
_DETECT_LINES = 1000
_ON_ERROR = ("fail", "skip")


def existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError("no such file; check the path", path=str(p))
    if not p.is_file():
        raise InputError("not a file (a directory?); give the path of a data file", path=str(p))
    return p


def is_parquet(path: Path) -> bool:
    try:
        head = _jsonl.sniff(path)
    except OSError as exc:
        raise InputError(f"cannot open the file ({exc.strerror})", path=str(path)) from None
    if head == _jsonl.PARQUET_MAGIC:
        return True
    if path.name.lower().endswith(".parquet"):
        raise InputError(
            "the name ends in .parquet but the file does not start with Parquet's magic bytes; "
            "it is empty, damaged, or another format under the wrong name",
            path=str(path),
        )
    return False


def detect_jsonl(path: Path) -> tuple[str, int]:
    first: tuple[int, Any] | None = None
    first_error: tuple[int, str] | None = None
    for n, (lineno, raw) in enumerate(_jsonl.iter_lines(path)):
        if n == 0 and raw.lstrip().startswith(b"["):
            raise InputError(
                "the file is a JSON array, not JSON Lines (one object per line); "
                "convert it, e.g. jq -c '.[]' in.json > out.jsonl",
                path=str(path),
            )
        if n >= _DETECT_LINES:
            break
        try:
            row = _jsonl.decode(raw)
        except RowError as err:
            first_error = first_error or (lineno, err.reason)
            continue
        fmt = match_format(row.keys())
        if fmt is not None:
            return fmt, lineno
        first = first or (lineno, row.keys())
    if first is not None:
        raise InputError(
            f"cannot tell the format from the first record (line {first[0]}, keys: {show_keys(first[1])}); "
            f"expected {EXPECTED}. Rename the fields, or name the format with --format (fmt= in Python)",
            path=str(path),
        )
    if first_error is not None:
        raise InputError(
            f"cannot tell the format: no line could be read as a JSON object (line {first_error[0]}: "
            f"{first_error[1]}); is this a JSON Lines file?",
            path=str(path),
        )
    raise InputError(
        "the file has no records, so its format cannot be detected; name it with --format (fmt= in Python) to read it",
        path=str(path),
    )


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of a file, from its content: Parquet columns, or the keys of its first JSON record.

    Raises:
        InputError: the file is missing, empty, or its records match no format (the message lists the keys).
    """
    p = existing(path)
    if not is_parquet(p):
        return detect_jsonl(p)[0]
    names = _parquet.column_names(p)
    fmt = match_format(names)
    if fmt == "tevatron":
        return "parquet"
    if fmt == "st":
        return "st"
    if fmt == "flagembedding":
        raise InputError(
            "Parquet with FlagEmbedding columns (pos, neg) is not supported; write it as JSON Lines", path=str(p)
        )
    raise InputError(
        f"cannot tell the format from the Parquet columns ({show_keys(names)}); expected {EXPECTED}", path=str(p)
    )


@dataclass(frozen=True)
class ReadStats:
    """Counts of one pass over an input. Always ``read == ok + rejected``.

    Args:
        path: the input file.
        format: the format it was read as (a key of ``FORMATS``).
        read: non-blank lines (or Parquet rows) seen.
        ok: instances produced.
        rejected: lines that could not be read (in the reject file when there is one).
        warnings: instances let through with a warning, by kind (``WARNING_KINDS``); an instance can count
            under several kinds, or several times under one.
    """

    path: str
    format: str
    read: int = 0
    ok: int = 0
    rejected: int = 0
    warnings: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        warned = ", ".join(f"{k} {v}" for k, v in sorted(self.warnings.items())) or "none"
        return (
            f"{self.path} ({self.format}): {self.read} read, {self.ok} ok, {self.rejected} rejected; warnings: {warned}"
        )


class _RejectFile:
    """Rejected lines as JSON Lines {path, line, reason, raw}; written as they come, so that a failed run still
    shows what it set aside."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(path, "wb")
        self._sink = _jsonl.JsonlSink(self._raw, compresslevel=6 if path.name.endswith(".gz") else None, name="")

    def write(self, rejected: Rejected) -> None:
        self._sink.write({"path": rejected.path, "line": rejected.line, "reason": rejected.reason, "raw": rejected.raw})

    def close(self) -> None:
        try:
            self._sink.close()
        finally:
            self._raw.close()


class InstanceReader:
    """An iterable of the instances of one file (see ``read_instances``); ``stats`` counts the current pass."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fmt: str | None = None,
        on_error: Literal["fail", "skip"] = "fail",
        reject_path: str | os.PathLike[str] | None = None,
        log_limit: int = 20,
        check: bool = True,
    ):
        if on_error not in _ON_ERROR:
            raise ConfigError(f"--on-error (on_error in Python) must be 'fail' or 'skip', not {on_error!r}")
        self.path = existing(path)
        self._parquet = is_parquet(self.path)
        self._detected_at: int | None = None
        if fmt is None:
            if self._parquet:
                fmt = detect_format(self.path)
            else:
                fmt, self._detected_at = detect_jsonl(self.path)
        fmt = self._check_fmt(fmt)
        self.format: str = fmt
        self._codec = CODECS[fmt]
        self._family = "tevatron" if fmt == "parquet" else fmt
        self._on_error = on_error
        self._reject_path = Path(reject_path) if reject_path is not None else None
        if self._reject_path is not None and self._reject_path.resolve() == self.path.resolve():
            raise ConfigError(f"the reject file must not be the input itself ({self.path})")
        self._log_limit = log_limit
        self._check = check
        self._reset()

    def _check_fmt(self, fmt: str) -> str:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
        if self._parquet:
            if fmt == "tevatron":
                return "parquet"
            if fmt == "flagembedding":
                raise InputError(
                    "this is a Parquet file; flagembedding is read from JSON Lines only. "
                    "Use --format parquet (Tevatron columns) or --format st (fmt= in Python)",
                    path=str(self.path),
                )
        elif fmt == "parquet":
            raise InputError(
                "the format 'parquet' was given but this is not a Parquet file; for Tevatron JSON Lines use "
                "--format tevatron (fmt='tevatron' in Python)",
                path=str(self.path),
            )
        return fmt

    def _reset(self) -> None:
        self._read = self._ok = self._rejected = 0
        self._warnings: Counter[str] = Counter()
        self._logged = self._unlogged = 0
        self._batches = False  # PlainBatch items (batches())
        self._plain_lines = False  # PlainLine items (plain())
        # what the writer needs to copy the last instance read (see passthrough): its row, and how it was read
        self._compact: bytes | None = None
        self._last: tuple[Instance, bytes | None, Any] | None = None

    @property
    def stats(self) -> ReadStats:
        """A snapshot of the counts so far (the whole file once iteration has ended)."""
        return ReadStats(str(self.path), self.format, self._read, self._ok, self._rejected, Counter(self._warnings))

    def __iter__(self) -> Iterator[Instance]:
        return self._iterate()  # type: ignore[return-value]  # PlainBatch only with batches=True

    def batches(self) -> Iterator[Instance | PlainBatch]:
        """Iterate like the reader, except that a record batch of negclean's own Tevatron Parquet that
        ``plain_batch`` proves reads and writes back unchanged comes whole, as a PlainBatch (counted as read and
        ok). Only without the warning checks (``check=False``): with them, every row comes as an Instance."""
        return self._iterate(batches=True)  # type: ignore[return-value]  # PlainLine only with plain=True

    def plain(self) -> Iterator[Instance | PlainBatch | PlainLine]:
        """Iterate like ``batches()``, except that a Tevatron JSON line that the strict parser reads (only
        Tevatron fields, strict JSON) and that draws no warning comes as a ``PlainLine``: its bytes and decoded
        fields, no records built (counted as read and ok; ``PlainLine.instance()`` gives the Instance). For
        code that copies or edits such lines as they are (``InstanceWriter.write_plain``, ``negclean fix``;
        benchmarks/RESULTS-io.md, fourth pass)."""
        return self._iterate(batches=True, plain=True)

    def _rows(self) -> Iterator[tuple[int, Any, dict[str, Any] | RowError | Instance | PlainBatch | PlainLine]]:
        """(line, raw, row): the row is an Instance already when the fast Tevatron path could read it, and a
        PlainBatch for a whole batch (``batches()``)."""
        if self._parquet:
            whole = plain_batch if self._batches and not self._check and self.format == "parquet" else None
            yield from _parquet.iter_rows(self.path, whole=whole)
            return
        fast = self.format == "tevatron" and _fastjson.ENABLED and _tevatron_fast.ENABLED
        decode_plain, to_instance = _tevatron_fast.decode_plain, _tevatron_fast.to_instance
        plain = self._plain_lines  # plain(): a line the checks need not see stays a PlainLine
        check = self._check
        for lineno, raw in _jsonl.iter_lines(self.path):
            if fast:
                got = decode_plain(raw)
                if got is not None:
                    if plain and (not check or quiet(got.query, got.positive_passages, got.negative_passages)):
                        yield lineno, raw, PlainLine(raw, got, lineno)
                        continue
                    inst = to_instance(got, line=lineno)
                    self._last = (inst, None, raw)
                    yield lineno, raw, inst
                    continue
            yield lineno, raw, self._general(raw)

    def _general(self, raw: bytes) -> dict[str, Any] | RowError:
        """A line read the general way (msgspec, the tolerant parser for what it refuses); keeps its compact form
        for ``passthrough``."""
        try:
            row, self._compact = _fastjson.decode_compact(raw)
        except RowError as err:
            self._compact = None
            return err
        return row

    def _iterate(self, batches: bool = False, plain: bool = False) -> Iterator[Instance | PlainBatch | PlainLine]:
        self._reset()
        self._batches = batches  # read by _rows (which subclasses override)
        self._plain_lines = plain
        rejects = _RejectFile(self._reject_path) if self._reject_path is not None else None
        check = self._check
        try:
            for lineno, raw, row in self._rows():
                self._read += 1
                try:
                    if type(row) is Instance:
                        inst = row
                    elif type(row) is PlainLine:
                        self._ok += 1
                        yield row
                        continue
                    elif isinstance(row, RowError):
                        raise row
                    elif type(row) is PlainBatch:
                        self._read += row.rows - 1
                        self._ok += row.rows
                        yield row
                        continue
                    else:
                        inst = self._codec.parse(row, line=lineno)
                except RowError as err:
                    self._reject(lineno, raw, self._reason(err, row), rejects)
                    continue
                if check:
                    for kind, message in check_instance(inst):
                        self._warnings[kind] += 1
                        self._log(lineno, message)
                self._ok += 1
                if row is not inst:
                    self._last = (inst, self._compact, row) if self._compact is not None else None
                yield inst
        finally:
            if rejects is not None:
                rejects.close()
            if self._unlogged and self._log_limit > 0:  # log_limit=0: silent (all still counted)
                log.warning(
                    "%s: %d more warnings and rejections not shown; %s", self.path, self._unlogged, self.stats.summary()
                )

    def passthrough(self, inst: Instance, fmt: str) -> bytes | None:
        """The line to write for ``inst`` in ``fmt``, taken from the line it was read from, or None.

        Only for the instance this reader yielded last (records are frozen, so the same object is unchanged),
        in Tevatron JSON Lines written back as Tevatron JSON Lines:

        - a line the strict Tevatron parser read (``_tevatron_fast``: only Tevatron fields, strict JSON) comes
          back as it was read, byte for byte (its line ending dropped; the writer ends it with "\\n"). For a
          line as negclean and ``json.dumps`` write it (``", "`` and ``": "``, fields in ``to_rows``'s order,
          no needless escapes) these are the bytes the writer would make; for any other line they keep the
          user's whitespace, field order and escapes, which read back as the same instance.
        - a line the general decoder read is written as ``json.dumps(row)`` from the compact form the decoder
          kept, when ``tevatron.to_rows(inst)`` is the row as read (fields in their order, types as written).
        """
        last = self._last
        if last is None or last[0] is not inst or fmt != "tevatron" or self.format != "tevatron":
            return None
        if not _fastjson.ENABLED:
            return None
        _, compact, row = last
        if compact is None:  # read by the fast Tevatron path: the line's own bytes
            return row  # type: ignore[no-any-return]
        if not (tevatron.writes_back_as_read(row) and _fastjson.plain_numbers(row)):
            return None
        return _fastjson.expand(compact)

    def _reason(self, err: RowError, row: Any) -> str:
        """The error's reason, or, for a row of another format, a reason that says so."""
        if isinstance(row, dict) and not self._codec.matches(row.keys()):
            other = match_format(row.keys())
            if other is not None and other != self._family:
                where = f", detected from line {self._detected_at}" if self._detected_at else ""
                return (
                    f"the row is {other} (keys: {show_keys(row.keys())}) but the file is read as "
                    f"{self.format}{where}; one file must hold one format: split or convert the other rows"
                )
        return err.reason

    def _reject(self, lineno: int, raw: Any, reason: str, rejects: _RejectFile | None) -> None:
        self._rejected += 1
        if rejects is not None:
            text = _parquet.raw_text(raw) if self._parquet else _jsonl.raw_text(raw)
            rejects.write(Rejected(str(self.path), lineno, reason, text))
        if self._on_error == "fail":
            what = "row" if self._parquet else "line"
            raise InputError(
                f"{reason}. Fix or remove this {what}, or run with --on-error skip (on_error='skip' in Python) "
                "to set bad lines aside in a reject file",
                path=str(self.path),
                line=lineno,
            ) from None
        self._log(lineno, f"rejected: {reason}")

    def _log(self, lineno: int, message: str) -> None:
        if self._logged < self._log_limit:
            self._logged += 1
            log.warning("%s:%d: %s", self.path, lineno, message)
        else:
            self._unlogged += 1
