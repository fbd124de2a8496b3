"""The registry of formats: names, codecs and how a row's keys tell its format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from negclean.data.formats import flagembedding, st, tevatron


@dataclass(frozen=True, slots=True)
class FormatInfo:
    """A supported format: its name (the ``fmt=`` value), what it looks like, and its containers."""

    name: str
    description: str
    containers: tuple[str, ...]


FORMATS: Mapping[str, FormatInfo] = MappingProxyType(
    {
        "tevatron": FormatInfo(
            "tevatron", "Tevatron/RLHN JSONL: query_id, query, positive_passages, negative_passages", ("jsonl",)
        ),
        "flagembedding": FormatInfo("flagembedding", "FlagEmbedding JSONL: query, pos, neg[, scores]", ("jsonl",)),
        "st": FormatInfo("st", "sentence-transformers columns: anchor, positive, negative_1..n", ("jsonl", "parquet")),
        "parquet": FormatInfo("parquet", "Parquet with the Tevatron columns", ("parquet",)),
    }
)
CODECS = {"tevatron": tevatron, "flagembedding": flagembedding, "st": st, "parquet": tevatron}


def match_format(keys: Any) -> str | None:
    """The format family a row (or Parquet schema) with these keys belongs to, if any."""
    for name in ("tevatron", "flagembedding", "st"):
        if CODECS[name].matches(keys):
            return name
    return None


def show_keys(keys: Any) -> str:
    names = sorted(map(str, keys))
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") if names else "none"


EXPECTED = (
    "tevatron (query, positive_passages, negative_passages), flagembedding (query, pos, neg) "
    "or st (anchor, positive, negative_1..)"
)
