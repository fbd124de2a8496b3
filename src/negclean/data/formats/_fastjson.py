"""Fast JSON for JSON Lines rows (msgspec), giving exactly what the tolerant ``_jsonl`` path gives.

Reading: ``decode`` parses a line with msgspec and falls back to ``_jsonl.decode`` (the tolerant parser, which
owns every error message) for any line msgspec rejects (raw control characters, ``NaN``, invalid UTF-8, lone
surrogates, numbers out of range, anything that is not an object) or may read differently (a repeated key,
which msgspec resolves silently; very deep nesting).

Writing: ``encode`` gives the bytes of ``json.dumps(row, ensure_ascii=False).encode("utf-8")``: msgspec's
compact output reformatted with ``json.dumps``'s separators (``expand``). Both escape strings alike (checked over
every code point in tests/test_io_fast.py); they write some floats differently (``1e+16`` vs ``1e16``, ``1e-05``
vs ``0.00001``, NaN vs null), so rows holding such a float (see ``plain_number``) or anything msgspec does not
take are written by ``json.dumps``.

``ENABLED`` (environment ``NEGCLEAN_FAST_JSON=0`` turns it off) switches both back to the old code; the byte
identity tests and ``benchmarks/bench_io.py`` use it to run old and new on the same input.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import msgspec

from negclean.data.formats._jsonl import decode as tolerant_decode

ENABLED = os.environ.get("NEGCLEAN_FAST_JSON", "1") != "0"
# Lines with many brackets go to the tolerant parser, so that its message for too deep nesting stays the one
# users see whichever parser gives up first.
_MAX_BRACKETS = 512
_DECODE = msgspec.json.Decoder().decode
_ENCODE = msgspec.json.Encoder().encode
_FORMAT = msgspec.json.format


def count_quotes(data: bytes) -> int:
    """Number of string delimiters (unescaped ``"``) in JSON text: twice the number of strings."""
    if b"\\" in data:
        data = data.replace(b"\\\\", b"")
        return data.count(b'"') - data.count(b'\\"')
    return data.count(b'"')


def decode_compact(raw: bytes) -> tuple[dict[str, Any], bytes | None]:
    """A line as a JSON object, and msgspec's compact form of it (None when the tolerant parser read it)."""
    if not ENABLED:
        return tolerant_decode(raw), None
    try:
        obj = _DECODE(raw)
    except (msgspec.DecodeError, RecursionError):
        return tolerant_decode(raw), None
    if type(obj) is not dict:
        return tolerant_decode(raw), None
    compact = _ENCODE(obj)
    # A repeated key loses a string: the tolerant parser rejects the line.
    if count_quotes(compact) != count_quotes(raw) or raw.count(b"[") + raw.count(b"{") > _MAX_BRACKETS:
        return tolerant_decode(raw), None
    return obj, compact


def decode(raw: bytes) -> dict[str, Any]:
    """One line as a JSON object, or the RowError of the tolerant parser."""
    return decode_compact(raw)[0]


def expand(compact: bytes) -> bytes:
    """Compact JSON (from msgspec) with ``json.dumps``'s separators (``", "`` and ``": "``) outside strings.

    Gives the bytes of ``json.dumps`` only for values whose floats are all ``plain_number``s: msgspec writes
    other floats differently (``1e16`` for ``1e+16``, ``0.00001`` for ``1e-05``, null for NaN).
    """
    return _FORMAT(compact, indent=0)


def plain_number(value: float) -> bool:
    """Whether msgspec and ``json.dumps`` write a float alike: finite, and 0 or in fixed notation (``repr``
    switches to an exponent below 1e-4 and from 1e16 on)."""
    return value == 0 or 1e-4 <= abs(value) < 1e16


def plain_numbers(value: Any) -> bool:
    """Whether every float in a value is a ``plain_number``."""
    t = type(value)
    if t is str or t is int or value is None:
        return True
    if t is float:
        return plain_number(value)
    if t is list or t is tuple:
        return all(plain_numbers(v) for v in value)
    if t is dict or isinstance(value, Mapping):
        return all(plain_numbers(v) for v in value.values())
    return not isinstance(value, float) or plain_number(value)


def encode(row: dict[str, Any], *, checked: bool = False) -> bytes:
    """``json.dumps(row, ensure_ascii=False)`` as UTF-8, with the old code's error for a lone surrogate.

    Args:
        checked: the caller knows that every float in the row is a ``plain_number`` (skips that walk).
    """
    if ENABLED and (checked or plain_numbers(row)):
        try:
            data = expand(_ENCODE(row))
        except (TypeError, ValueError):  # a type or a string (lone surrogate) msgspec refuses: json.dumps decides
            pass
        else:
            return data
    try:
        return json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone UTF-16 surrogate, which UTF-8 cannot encode") from None


__all__ = ["ENABLED", "count_quotes", "decode", "decode_compact", "encode", "expand", "plain_number", "plain_numbers"]
