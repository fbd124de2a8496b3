"""The rows of a verdicts file, read ahead and pushed back by the batch and line fixers."""

from __future__ import annotations

from collections import deque
from typing import Any

from negclean.cascade.outcome import decode_verdict_line, iter_verdict_lines


class VerdictRows:
    """The rows of a verdicts file as an iterator of dicts that rows can be pushed back onto (read ahead for a
    batch), or taken undecoded (``next_line``) by code that decodes them its own way."""

    def __init__(self, path: str):
        self.path = path
        self._lines = iter_verdict_lines(path)
        self._back: deque[dict[str, Any]] = deque()

    def __iter__(self) -> VerdictRows:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._back:
            return self._back.popleft()
        n, raw = next(self._lines)
        return decode_verdict_line(raw, path=self.path, line=n)

    def next_line(self) -> tuple[int, bytes] | None:
        """The next row undecoded, as (line number, bytes); None when the file has ended, or when rows were
        pushed back (then take them with ``next``)."""
        if self._back:
            return None
        return next(self._lines, None)

    def push_back(self, rows: list[dict[str, Any]]) -> None:
        self._back.extendleft(reversed(rows))
