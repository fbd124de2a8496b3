"""Progress reporting passed in as a callback, so that no library layer imports the command line.

A long step (judging a file, mining) takes an ``advance(n)`` callback (``Advance``), or a ``ProgressFactory``
that opens one for a known total. The command line hands in ``progress_bar`` (rich, imported only when a bar
is shown); library callers hand in their own, or nothing.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, cast

from isal import igzip, isal_zlib

#: called with the number of items just finished
Advance = Callable[[int], None]


class ProgressFactory(Protocol):
    """Opens a progress display for ``total`` items (None: unknown) and yields its ``advance`` callback."""

    def __call__(self, total: int | None, description: str) -> AbstractContextManager[Advance]: ...


@contextmanager
def no_progress(total: int | None, description: str) -> Iterator[Advance]:
    """A ``ProgressFactory`` that shows nothing."""
    yield lambda n: None


@contextmanager
def progress_bar(total: int | None, description: str, *, enabled: bool = True) -> Iterator[Advance]:
    """A rich progress bar with rate and ETA on stderr's terminal; yields an ``advance(n)`` callback."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f}/s" if task.speed else "-/s")

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, transient=False, refresh_per_second=4, console=None) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def count_lines(path: str) -> int | None:
    """Non-blank lines of a JSONL(.gz) file, for the progress total (None for other files or huge ones).

    None too when the file cannot be read (missing, truncated gzip): the reader then reports that with
    file and line (exit 3); an exception here would be a bare OSError (exit 1) or, for EOFError, click's
    "Aborted!"."""
    try:
        if not path.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")) or os.path.getsize(path) > 2_000_000_000:
            return None
        if path.endswith(".gz"):
            with igzip.open(path, "rb") as gz:
                return sum(1 for line in gz if line.strip())
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except (OSError, EOFError, zlib.error, cast(type[Exception], isal_zlib.error)):
        return None


__all__ = ["Advance", "ProgressFactory", "count_lines", "no_progress", "progress_bar"]
