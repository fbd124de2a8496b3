"""sentence-transformers columns: ``anchor``, ``positive`` and ``negative`` or ``negative_1`` .. ``negative_n``
(the "triplet" and "n-tuple" layouts of ``sentence_transformers.util.mine_hard_negatives``), as JSON Lines or
Parquet. ``query`` is accepted in place of ``anchor`` when reading; the writer always writes ``anchor``.

Ids are content hashes as for FlagEmbedding. Null negative columns (a shorter row in a Parquet file) are skipped.
Other columns are kept in ``Instance.meta`` and written back.

Limits of the format, applied when writing: one positive per row, so an instance with several positives is
written as one row per positive (``multi_positive="expand"``, the default, each row with all the negatives) or
as its first positive only (``"first"``); no titles (written in front of the text), scores, ranks or
per-passage extra fields. One negative is written as ``negative``, several as ``negative_1`` .. ``negative_n``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from negclean.data.formats._base import RowError, as_str, flat_text, freeze, query_id_for
from negclean.data.hashing import content_docid
from negclean.data.records import Instance, Passage

NAME = "st"
_NEGATIVE_N = re.compile(r"negative_(\d+)\Z")
MULTI_POSITIVE = ("expand", "first")


def is_negative_column(key: str) -> bool:
    return key == "negative" or _NEGATIVE_N.match(key) is not None


def is_core(key: str) -> bool:
    """Whether a column is one of the format's own (not an extra field)."""
    return key in ("anchor", "positive") or is_negative_column(key)


def matches(keys: Collection[str]) -> bool:
    """Whether a row with these keys looks like this format."""
    return "anchor" in keys or "positive" in keys


def _negative_order(key: str) -> int:
    m = _NEGATIVE_N.match(key)
    return int(m.group(1)) if m else 0


def parse(row: Mapping[str, Any], *, line: int) -> Instance:
    """Turn one decoded row into an Instance, or raise RowError."""
    anchor_key = "anchor" if "anchor" in row else "query"
    if anchor_key not in row:
        raise RowError("missing required field 'anchor' (st rows need anchor, positive)", missing=True)
    if "positive" not in row:
        raise RowError("missing required field 'positive' (st rows need anchor, positive)", missing=True)
    query = as_str(row[anchor_key], anchor_key)
    positive = row["positive"]
    if positive is None or positive == "":
        raise RowError("no positives: 'positive' is empty; an instance needs a labeled positive")
    positive = as_str(positive, "positive")
    negatives: list[Passage] = []
    meta: dict[str, Any] = {}
    for key in sorted((k for k in row if is_negative_column(k)), key=_negative_order):
        value = row[key]
        if value is None:
            continue
        text = as_str(value, key)
        negatives.append(Passage(docid=content_docid(text), text=text))
    for key, value in row.items():
        if key != anchor_key and not is_core(key):
            meta[key] = value
    return Instance(
        query_id=query_id_for(query),
        query=query,
        positives=(Passage(docid=content_docid(positive), text=positive),),
        negatives=tuple(negatives),
        meta=freeze(meta),
        line=line,
    )


def to_rows(inst: Instance, *, multi_positive: str = "expand") -> list[dict[str, Any]]:
    """The rows that represent an instance: one per positive ("expand") or one ("first")."""
    negatives: dict[str, Any] = {}
    if len(inst.negatives) == 1:
        negatives["negative"] = flat_text(inst.negatives[0])
    else:
        for i, p in enumerate(inst.negatives, start=1):
            negatives[f"negative_{i}"] = flat_text(p)
    extra = {k: v for k, v in inst.meta.items() if not is_core(k)}
    positives = inst.positives if multi_positive == "expand" else inst.positives[:1]
    return [{"anchor": inst.query, "positive": flat_text(p), **negatives, **extra} for p in positives]
