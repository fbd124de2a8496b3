"""Shared pieces of the format codecs: the row error and typed access to the fields of a row.

A codec turns one decoded row (a dict, from a JSON line or a Parquet row) into an ``Instance`` and back.
Everything here raises ``RowError`` with a reason a user can act on; the reader adds path and line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from negclean.data.hashing import text_hash
from negclean.data.records import Passage

EMPTY: Mapping[str, Any] = MappingProxyType({})


class RowError(ValueError):
    """A row cannot be turned into an Instance; ``reason`` says what is wrong and, where useful, what to do."""

    def __init__(self, reason: str, *, missing: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.missing = missing


def type_name(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def freeze(values: dict[str, Any]) -> Mapping[str, Any]:
    """Read-only view of extra fields (the shared empty mapping when there are none)."""
    return MappingProxyType(values) if values else EMPTY


def query_id_for(query: str) -> str:
    """Content-hash query id for formats that carry no id."""
    return "q" + text_hash(query, length=16)


def flat_text(passage: Passage) -> str:
    """Title and text as one string, for formats without a title field (as BGE's training data does)."""
    return f"{passage.title} {passage.text}" if passage.title else passage.text


def require(row: Mapping[str, Any], key: str, fmt: str, needs: str) -> Any:
    """The value of a required field, or a RowError that lists what the format needs."""
    try:
        return row[key]
    except KeyError:
        raise RowError(f"missing required field '{key}' ({fmt} rows need {needs})", missing=True) from None


def as_str(value: Any, where: str, *, allow_null: bool = False) -> str:
    """A string field; null becomes "" where allowed (e.g. titles)."""
    if type(value) is str:
        return value
    if value is None and allow_null:
        return ""
    raise RowError(f"{where} must be a string, got {type_name(value)}")


def as_id(value: Any, where: str) -> str:
    """An id: a string, or an integer (kept as its decimal string)."""
    if type(value) is str:
        if not value:
            raise RowError(f"{where} is an empty string; give every record a non-empty id")
        return value
    if type(value) is int:
        return str(value)
    raise RowError(f"{where} must be a string (or integer) id, got {type_name(value)}")


def as_list(value: Any, where: str) -> list[Any]:
    if type(value) is list:
        return value
    raise RowError(f"{where} must be a list, got {type_name(value)}")


def as_score(value: Any, where: str) -> float | None:
    """A finite number or null."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        score = float(value)
        if math.isfinite(score):
            return score
        raise RowError(f"{where} is {value}, not a finite number; fix the scores or drop the field")
    raise RowError(f"{where} must be a number or null, got {type_name(value)}")


def as_rank(value: Any, where: str) -> int | None:
    """A whole number or null (integral floats, as Parquet may store them, are accepted)."""
    if value is None:
        return None
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    raise RowError(f"{where} must be a whole number or null, got {type_name(value)} {value!r}")


def str_list(value: Any, where: str) -> list[str]:
    """A list of strings (FlagEmbedding ``pos``/``neg``)."""
    items = as_list(value, where)
    for i, item in enumerate(items):
        if type(item) is not str:
            raise RowError(f"{where}[{i}] must be a string, got {type_name(item)}")
    return items


def score_list(value: Any, where: str, n: int, of: str) -> list[float] | None:
    """Optional scores matching a list of passages one to one."""
    if value is None:
        return None
    items = as_list(value, where)
    if len(items) != n:
        raise RowError(f"{where} has {len(items)} score(s) for {n} passage(s) in '{of}'; give one score per passage")
    return [as_score(v, f"{where}[{i}]") for i, v in enumerate(items)]  # type: ignore[misc]


def has_lone_surrogate(value: Any) -> bool:
    """True if a decoded JSON value holds a lone UTF-16 surrogate (from a bad ``\\udXXX`` escape)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_lone_surrogate(v) for v in value)
    return False
