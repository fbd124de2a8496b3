"""Read and write training instances in every supported format, streaming, plain or gzip.

    from negclean.data.io import read_instances, open_writer

    reader = read_instances("train.jsonl.gz", on_error="skip", reject_path="rejects.jsonl")
    with open_writer("fixed.jsonl.gz", like=reader) as w:
        for inst in reader:
            w.write(inst)
    print(reader.stats.summary(), w.count)

Formats (``FORMATS``): ``tevatron`` (also RLHN) and ``flagembedding`` JSON Lines, ``st`` (sentence-transformers
columns, JSON Lines or Parquet) and ``parquet`` (Tevatron columns in Parquet). JSON Lines files are gzip-compressed
when their name ends in ``.gz`` (on reading, gzip is recognised by content). The format of an input is detected
from its first record (``detect_format``) unless ``fmt=`` says it. What each format keeps and loses is described
in the docstring of its module in ``negclean.data.formats``.

A line that cannot be read is an ``InputError`` naming file and line (``on_error="fail"``) or is set aside in the
reject file (``on_error="skip"``); either way ``stats.read == stats.ok + stats.rejected``. Writers are atomic:
the output appears under its name only when the writer closes without error.

Speed: JSON Lines are decoded with msgspec (typed, straight into records, for plain Tevatron lines) and the
tolerant parser takes every line msgspec rejects, so results and messages do not depend on the path. A writer
opened with ``like=reader`` writes an instance the reader yielded last and nobody changed from its parsed row
(Tevatron JSON Lines to Tevatron JSON Lines). ``convert`` copies a whole file that way without building records
for the lines it copies as they are (``InstanceReader.plain()``, ``InstanceWriter.write_plain``): 1.4x less user
CPU than the record loop above (measured on 200,000 lines). ``NEGCLEAN_FAST_JSON=0`` turns all of this off (same
bytes, several times the CPU); see ``negclean.data.formats._fastjson`` and benchmarks/RESULTS-io.md. Gzip, read
and written, goes through ISA-L (``negclean.data.gz``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from negclean.data.formats import st
from negclean.data.formats._checks import WARNING_KINDS
from negclean.data.formats._parquet_batch import PlainBatch
from negclean.data.formats._reader import InstanceReader, ReadStats, detect_format
from negclean.data.formats._registry import FORMATS, FormatInfo
from negclean.data.formats._tevatron_fast import PlainLine
from negclean.data.formats._writer import InstanceWriter, write_format
from negclean.data.paths import refuse_overwrite
from negclean.errors import ConfigError, InputError

__all__ = [
    "FORMATS",
    "WARNING_KINDS",
    "FormatInfo",
    "InstanceReader",
    "InstanceWriter",
    "ReadStats",
    "convert",
    "detect_format",
    "open_writer",
    "read_instances",
    "require_instances",
    "write_format",
]


def read_instances(
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    on_error: Literal["fail", "skip"] = "fail",
    reject_path: str | os.PathLike[str] | None = None,
    log_limit: int = 20,
    check: bool = True,
) -> InstanceReader:
    """Stream the instances of a file.

    Args:
        path: input file (JSON Lines, plain or gzip, or Parquet).
        fmt: a key of ``FORMATS``; detected from the content when None (``tevatron`` on a Parquet file means
            ``parquet``).
        on_error: "fail" raises InputError at the first bad line; "skip" sets it aside and goes on.
        reject_path: where rejected lines go, as JSON Lines {path, line, reason, raw} (gzip if ``.gz``);
            created (empty) even when nothing is rejected, so a rerun never leaves a stale one. Written as
            lines are rejected (not atomically), so it also holds the line that stopped an on_error="fail" run.
        log_limit: how many warnings and rejections are logged one by one (all are counted); 0 logs none.
        check: run the warning checks (``WARNING_KINDS``). False skips them (``stats.warnings`` stays empty,
            ~5 µs less per instance): for a second pass over an input whose warnings were already reported.

    Returns:
        An iterable of ``Instance`` (each with ``line`` set) with a ``stats`` property (``ReadStats``).
        Each iteration reads the file again and restarts the counts.

    Raises:
        InputError: missing or undetectable file (at once); a bad line with on_error="fail", or a damaged
            gzip/Parquet stream (while iterating).
    """
    return InstanceReader(path, fmt=fmt, on_error=on_error, reject_path=reject_path, log_limit=log_limit, check=check)


def open_writer(
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    like: Any = None,
    multi_positive: Literal["expand", "first"] = "expand",
    row_group_size: int = 5000,
    negatives: int | None = None,
    compresslevel: int = 3,
) -> InstanceWriter:
    """Open an atomic writer of instances.

    Args:
        path: output file; ``.gz`` compresses JSON Lines; ``.parquet`` writes Parquet.
        fmt: a key of ``FORMATS``. When None, the format of ``like``; when both are None, ``parquet`` for a
            ``.parquet`` path (otherwise a ConfigError).
        like: the input's format (a name, a reader or its ``ReadStats``), so that the output keeps it;
            Tevatron data stays Tevatron whether the new path is JSON Lines or Parquet.
        multi_positive: for ``st`` (one positive per row): "expand" writes one row per positive, "first" only
            the first positive.
        row_group_size: instances per Parquet row group (groups are also cut at ~64 MB of text).
        negatives: for ``st`` Parquet, the number of negative columns (default: the most in the first row group).
        compresslevel: gzip level, 0 (store) .. 9 (smallest). 0-3 are ISA-L's (``negclean.data.gz``): at the
            default, 3, about 4.5x less CPU than zlib's level 3 for a slightly smaller file; 4-9 are zlib's
            (benchmarks/RESULTS-io.md).
    """
    p = Path(path)
    fmt = write_format(p, fmt, like)
    if multi_positive not in st.MULTI_POSITIVE:
        raise ConfigError(f"multi_positive must be one of {st.MULTI_POSITIVE}, not {multi_positive!r}")
    if row_group_size < 1:
        raise ConfigError(f"row_group_size must be at least 1, not {row_group_size}")
    if not 0 <= compresslevel <= 9:
        raise ConfigError(f"compresslevel must be 0..9, not {compresslevel}")
    return InstanceWriter(
        p,
        fmt=fmt,
        multi_positive=multi_positive,
        row_group_size=row_group_size,
        negatives=negatives,
        compresslevel=compresslevel,
        source=like if isinstance(like, InstanceReader) else None,
    )


def require_instances(stats: ReadStats, *, reject_path: str | os.PathLike[str] | None = None) -> None:
    """Raise InputError (exit 3) when a finished pass produced no instance: an empty file, or one whose every
    line was rejected. A command that read nothing has nothing to judge, fix or mine, and must not look like a
    successful run."""
    if stats.ok:
        return
    if stats.read == 0:
        raise InputError(
            "nothing was read: the file holds no records. Check the path, and that the file was written completely",
            path=stats.path,
        )
    where = f"the reasons are in {reject_path}" if reject_path is not None else "no reject file was kept"
    raise InputError(
        f"nothing was read: all {stats.read} records were rejected ({where}). Fix the input, or "
        f"check that --format (read as {stats.format}) is right",
        path=stats.path,
    )


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    to: str | None = None,
    on_error: Literal["fail", "skip"] = "fail",
    reject_path: str | os.PathLike[str] | None = None,
    log_limit: int = 20,
    multi_positive: Literal["expand", "first"] = "expand",
    compresslevel: int = 3,
) -> tuple[ReadStats, int]:
    """Copy every instance of ``src`` to ``dst``: ``read_instances`` + ``open_writer(dst, fmt=to, like=reader)``
    + ``write`` for each instance, with the same output, counts, warnings and rejects, but without building
    records for what is copied as it is: a Tevatron JSON line that reads plainly and draws no warning is
    written as its own bytes when ``dst`` is Tevatron JSON Lines (``InstanceReader.plain()``), a plain
    batch of negclean's Tevatron Parquet whole when ``dst`` is such Parquet and ``log_limit=0``.

    Args: as ``read_instances`` (``fmt``, ``on_error``, ``reject_path``, ``log_limit``; the warning checks run
        when ``log_limit > 0``) and ``open_writer`` (``to`` is its ``fmt``; ``multi_positive``, ``compresslevel``).

    Returns:
        The read counts (``read == ok + rejected``) and the number of instances written (``== ok``).

    Raises:
        ConfigError: ``dst`` or ``reject_path`` is ``src``. InputError: as ``read_instances``, and when nothing
            could be read (``require_instances``).
    """
    refuse_overwrite(src, {"the output": dst, "the reject file": reject_path})
    reader = read_instances(
        src, fmt=fmt, on_error=on_error, reject_path=reject_path, log_limit=log_limit, check=log_limit > 0
    )
    with open_writer(dst, fmt=to, like=reader, multi_positive=multi_positive, compresslevel=compresslevel) as writer:
        for item in reader.plain():
            if type(item) is PlainLine:
                writer.write_plain(item)
            elif type(item) is PlainBatch:
                if writer.takes_tables:
                    writer.write_table(item.batch)
                else:
                    for inst in item.instances():
                        writer.write(inst)
            else:
                writer.write(item)  # type: ignore[arg-type]  # an Instance
        require_instances(reader.stats, reject_path=reject_path)
    return reader.stats, writer.count
