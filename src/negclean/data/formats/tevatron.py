"""Tevatron / RLHN rows: ``query_id``, ``query``, ``positive_passages``, ``negative_passages``, ``subset``.

Passages are objects ``{docid, title, text, score?, rank?, ...}``. Any other field of a row is kept in
``Instance.meta`` and any other field of a passage in ``Passage.meta``; both are written back as they were
(e.g. RLHN's ``response``, or negclean's ``negclean`` provenance object on a passage).
A row without ``query_id`` gets a content-hash id (``q`` + hash of the query), written back as ``query_id``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from negclean.data.formats._base import (
    RowError,
    as_id,
    as_list,
    as_rank,
    as_score,
    as_str,
    freeze,
    query_id_for,
    require,
    type_name,
)
from negclean.data.records import Instance, Passage

NAME = "tevatron"
ROW_KEYS = frozenset({"query_id", "query", "positive_passages", "negative_passages", "subset"})
PASSAGE_KEYS = frozenset({"docid", "title", "text", "score", "rank"})
_NEEDS = "query, positive_passages, negative_passages"


def matches(keys: Collection[str]) -> bool:
    """Whether a row with these keys looks like this format."""
    return "positive_passages" in keys or "negative_passages" in keys


def parse_passage(obj: Any, where: str) -> Passage:
    if type(obj) is not dict:
        raise RowError(f"{where} must be an object {{docid, title, text}}, got {type_name(obj)}")
    docid = obj.get("docid")
    text = obj.get("text")
    title = obj.get("title", "")
    score = obj.get("score")
    rank = obj.get("rank")
    # Field names in messages are built only on error: this runs for every passage (~14M at BGE scale).
    if type(docid) is not str or not docid:
        if docid is None and "docid" not in obj:
            raise RowError(f"{where} has no 'docid'; every Tevatron passage needs one")
        docid = as_id(docid, f"{where}.docid")
    if type(text) is not str:
        if "text" not in obj:
            raise RowError(f"{where} has no 'text'")
        text = as_str(text, f"{where}.text")
    if type(title) is not str:
        title = as_str(title, f"{where}.title", allow_null=True)
    if score is not None:
        score = as_score(score, f"{where}.score")
    if rank is not None and type(rank) is not int:
        rank = as_rank(rank, f"{where}.rank")
    if obj.keys() <= PASSAGE_KEYS:
        return Passage(docid=docid, text=text, title=title, score=score, rank=rank)
    meta = {k: v for k, v in obj.items() if k not in PASSAGE_KEYS}
    return Passage(docid=docid, text=text, title=title, score=score, rank=rank, meta=freeze(meta))


def parse(row: Mapping[str, Any], *, line: int) -> Instance:
    """Turn one decoded row into an Instance, or raise RowError."""
    query = as_str(require(row, "query", NAME, _NEEDS), "query")
    pos = as_list(require(row, "positive_passages", NAME, _NEEDS), "positive_passages")
    if not pos:
        raise RowError("no positives: 'positive_passages' is empty; an instance needs at least one labeled positive")
    neg = require(row, "negative_passages", NAME, _NEEDS)
    if neg is None:
        raise RowError("'negative_passages' is null; write [] for an instance without negatives")
    neg = as_list(neg, "negative_passages")
    qid = row.get("query_id")
    return Instance(
        query_id=query_id_for(query) if qid is None else as_id(qid, "query_id"),
        query=query,
        positives=tuple(parse_passage(p, f"positive_passages[{i}]") for i, p in enumerate(pos)),
        negatives=tuple(parse_passage(p, f"negative_passages[{i}]") for i, p in enumerate(neg)),
        subset=as_str(row.get("subset"), "subset", allow_null=True),
        meta=freeze({k: v for k, v in row.items() if k not in ROW_KEYS}),
        line=line,
    )


def passage_row(p: Passage) -> dict[str, Any]:
    out: dict[str, Any] = {"docid": p.docid, "title": p.title, "text": p.text}
    if p.score is not None:
        out["score"] = p.score
    if p.rank is not None:
        out["rank"] = p.rank
    for k, v in p.meta.items():
        if k not in PASSAGE_KEYS:  # a meta key never shadows a field of the record
            out[k] = v
    return out


def to_rows(inst: Instance) -> list[dict[str, Any]]:
    """The row(s) that represent an instance in this format (always one)."""
    row: dict[str, Any] = {
        "query_id": inst.query_id,
        "query": inst.query,
        "positive_passages": [passage_row(p) for p in inst.positives],
        "negative_passages": [passage_row(p) for p in inst.negatives],
        "subset": inst.subset,
    }
    for k, v in inst.meta.items():
        if k not in ROW_KEYS:
            row[k] = v
    return [row]


_ROW_ORDER = ["query_id", "query", "positive_passages", "negative_passages", "subset"]
_PASSAGE_ORDER = ["docid", "title", "text"]


def _passage_as_written(p: dict[str, Any]) -> bool:
    keys = list(p)
    if keys[:3] != _PASSAGE_ORDER or type(p["docid"]) is not str or type(p["title"]) is not str:
        return False
    i = 3
    if len(keys) > i and keys[i] == "score":
        if type(p["score"]) is not float:  # an integer score is written back as a float, a null one left out
            return False
        i += 1
    if len(keys) > i and keys[i] == "rank":
        if type(p["rank"]) is not int:
            return False
        i += 1
    rest = keys[i:]
    return not rest or ("score" not in rest and "rank" not in rest)


def writes_back_as_read(row: Mapping[str, Any]) -> bool:
    """Whether ``to_rows(parse(row))`` is ``row`` itself, key order and types included, for a row that parses:
    then writing the instance back gives the JSON of the row as read."""
    if list(row)[:5] != _ROW_ORDER or type(row["query_id"]) is not str or type(row["subset"]) is not str:
        return False
    return all(map(_passage_as_written, row["positive_passages"])) and all(
        map(_passage_as_written, row["negative_passages"])
    )
