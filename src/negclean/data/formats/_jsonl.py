"""JSON Lines container, plain or gzip: lines in, decoded rows out, and rows back to lines.

Reading works on bytes so that one badly encoded line is one rejected line, not a failed file. Tolerated:
a byte-order mark (at the start of the file or of any line, as ``cat`` of several files leaves it), CRLF line
endings, blank lines, literal control characters inside strings. Gzip is recognised by its magic bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from negclean.data import gz
from negclean.data.formats._base import RowError, has_lone_surrogate, type_name
from negclean.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members as a dict; RowError when a key repeats (json keeps the last value, silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                break
            seen.add(key)
        raise RowError(
            f"duplicate key {key!r} in a JSON object: only one of its values could be kept, so the "
            "line is ambiguous; remove or rename one of them"
        )
    return obj


# strict=False: allow raw tabs/newlines inside strings. The pairs hook reports duplicate keys; it costs ~8 µs per
# Tevatron line of 31 passages (decoding 16 -> 24 µs; reading such a line ~100 -> ~105 µs of CPU).
_DECODER = json.JSONDecoder(strict=False, object_pairs_hook=_unique_keys)
_FLUSH_BYTES = 1 << 20


def sniff(path: Path) -> bytes:
    """The first four bytes of a file ("" for an empty one)."""
    with open(path, "rb") as f:
        return f.read(4)


def _open(path: Path) -> IO[bytes]:
    if sniff(path).startswith(GZIP_MAGIC):
        return gz.open_read(path)
    return open(path, "rb", buffering=1 << 20)


def _utf16_error(path: Path) -> InputError:
    return InputError(
        "the file is UTF-16 encoded; negclean reads UTF-8 JSON Lines. "
        "Convert it first, e.g. iconv -f UTF-16 -t UTF-8 in.jsonl > out.jsonl",
        path=str(path),
    )


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without line ending or BOM) for every non-blank line."""
    lineno = 0
    with _open(path) as f:
        try:
            for lineno, line in enumerate(f, start=1):
                if lineno == 1 and line.startswith(_UTF16_BOMS):
                    raise _utf16_error(path)
                line = line.rstrip(b"\r\n")
                if line.startswith(BOM):
                    line = line[3:]
                if not line or line.isspace():
                    continue
                yield lineno, line
        except gz.ERRORS as exc:
            raise InputError(
                f"the file is corrupt or truncated after line {lineno} ({exc}); re-create or re-download it",
                path=str(path),
            ) from None


def decode(raw: bytes) -> dict[str, Any]:
    """One line as a JSON object, or RowError saying why it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 4]
        raise RowError(
            f"invalid UTF-8 at byte {exc.start + 1} of the line ({bad!r}); "
            "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    body = text.lstrip()  # the same object when there is nothing to strip
    try:
        # raw_decode and a check of the tail do what JSONDecoder.decode does, minus two regex calls.
        obj, end = _DECODER.raw_decode(body)
        if end != len(body):
            tail = body[end:]
            if not tail.isspace():
                raise json.JSONDecodeError("Extra data", body, end + len(tail) - len(tail.lstrip()))
    except RowError:
        raise
    except RecursionError:
        raise RowError("invalid JSON: nested too deeply to read") from None
    except json.JSONDecodeError as exc:
        column = exc.pos + 1 + len(text) - len(body)
        hint = "; the line holds NUL bytes: is the file UTF-16 or UTF-32 encoded?" if "\x00" in text else ""
        raise RowError(f"invalid JSON at column {column}: {exc.msg}{hint}") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise RowError(f"invalid JSON: {exc}") from None
    if type(obj) is not dict:
        hint = " (is the file one JSON array instead of JSON Lines?)" if type(obj) is list else ""
        raise RowError(f"the line is a JSON {type_name(obj)}, not an object{hint}")
    # A lone surrogate can only come from a \uD800-\uDFFF escape; look for one only where such escapes are.
    if (b"\\ud" in raw or b"\\uD" in raw) and has_lone_surrogate(obj):
        raise RowError("a string holds a lone UTF-16 surrogate escape (\\udXXX), which is not valid Unicode text")
    return obj


def raw_text(raw: bytes) -> str:
    """A line as text for the reject file, bad bytes shown as \\xNN."""
    return raw.decode("utf-8", errors="backslashreplace")


class JsonlSink:
    """Writes rows as JSON lines to an open binary file, gzip-compressed if asked (deterministic header)."""

    def __init__(self, raw: IO[bytes], *, compresslevel: int | None, name: str):
        self._raw = raw
        self._out: IO[bytes] = raw
        if compresslevel is not None:
            self._out = gz.writer(raw, level=compresslevel, name=name)
        self._buf: list[bytes] = []
        self._size = 0

    def write(self, row: dict[str, Any]) -> None:
        try:
            data = json.dumps(row, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string holds a lone UTF-16 surrogate, which UTF-8 cannot encode") from None
        self.write_line(data)

    def write_line(self, data: bytes) -> None:
        """Write one encoded row (UTF-8 JSON without the line ending)."""
        self._buf.append(data)
        self._size += len(data)
        if self._size >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._buf.append(b"")
            self._out.write(b"\n".join(self._buf))
            self._buf.clear()
            self._size = 0

    def close(self) -> None:
        self.flush()
        if self._out is not self._raw:
            self._out.close()
