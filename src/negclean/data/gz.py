"""Gzip for every file negclean reads or writes: ISA-L (``isal.igzip``) where it can, the standard library where
it cannot.

Reading goes through ``igzip`` always (the same bytes out as ``gzip``; 7 against 20 µs of CPU per 4.4 KB line
here). Writing uses ISA-L for levels 0-3, its whole range, and ``gzip`` for 4-9: on the benchmark's Tevatron
text ISA-L's level 3 compresses to 0.390 of the input at 13 µs per line against zlib's level 3 at 0.409 and
60 µs (benchmarks/RESULTS-io.md, "gzip through ISA-L"). The default, 3, is ISA-L's. Headers are deterministic
(``mtime=0``, the name given), so the same input gives the same file with the same isal version. Either way the
file is standard gzip that any tool reads.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import IO, Any, cast

from isal import igzip, isal_zlib

#: what reading a corrupt or truncated gzip file can raise (BadGzipFile is an OSError)
ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, cast(type[Exception], isal_zlib.error))
#: the highest level ISA-L writes; above it the standard library's zlib does
ISAL_MAX_LEVEL = isal_zlib.ISAL_BEST_COMPRESSION


def open_read(path: str | Path, mode: str = "rb", *, encoding: str | None = None) -> IO[Any]:
    """A gzip file opened for reading (``"rb"``, or ``"rt"`` with an encoding)."""
    return igzip.open(path, mode, encoding=encoding)  # type: ignore[no-any-return,no-untyped-call]


def writer(raw: IO[bytes], *, level: int, name: str) -> IO[bytes]:
    """A gzip stream over the open binary file ``raw`` (closing it leaves ``raw`` open), with a deterministic
    header naming ``name``; ISA-L for ``level`` 0-3, zlib above."""
    if not 0 <= level <= 9:
        raise ValueError(f"gzip level {level}: choose 0 (store) to 9 (smallest)")
    if level <= ISAL_MAX_LEVEL:
        return igzip.IGzipFile(  # type: ignore[no-untyped-call,return-value]
            filename=name, mode="wb", fileobj=raw, compresslevel=level, mtime=0
        )
    return gzip.GzipFile(filename=name, mode="wb", fileobj=raw, compresslevel=level, mtime=0)  # type: ignore[return-value]


def open_text(path: Path) -> IO[str]:
    """A UTF-8 text file, gunzipped when its name ends in ``.gz``."""
    if path.suffix == ".gz":
        return open_read(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")
