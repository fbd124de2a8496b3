"""Arithmetic on nested counters (numbers and mappings of them): summing shards, and what a counter gained
between two snapshots. Its own module because both the shard worker (``judge_shard``) and the assembler use it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["add_counts", "sub_counts"]


def add_counts(a: Any, b: Any) -> Any:
    """a + b for counts: numbers add, mappings add key by key (recursively), None is nothing."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: add_counts(a.get(k), b.get(k)) for k in {**a, **b}}
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a + b
    return b


def sub_counts(a: Any, b: Any) -> Any:
    """a - b for counts (what a counter gained between two snapshots)."""
    if b is None:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: sub_counts(a.get(k), b.get(k)) for k in a}
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a - b
    return a
