"""FlagEmbedding (BGE) rows: ``query``, ``pos`` and ``neg`` (lists of strings), optional ``pos_scores`` and
``neg_scores`` (one number per passage), ``prompt``, ``type`` and any other field.

The format has no ids: the query id is ``q`` + a content hash of the query and each docid is
``negclean.data.hashing.content_docid(text)``, so the same text gets the same id in every file. Scores go to
``Passage.score``. ``prompt``, ``type`` and every other field are kept in ``Instance.meta`` and written back as
top-level fields; a ``subset`` field, if present, becomes ``Instance.subset``.

Limits of the format, applied when writing: passages have no title (a title is written in front of the text,
``"{title} {text}"``, as BGE's own data does), no rank and no per-passage extra fields (``Passage.meta`` is not
written); score lists are written only when every passage in that list has a score.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from negclean.data.formats._base import (
    RowError,
    as_str,
    flat_text,
    freeze,
    query_id_for,
    require,
    score_list,
    str_list,
)
from negclean.data.hashing import content_docid
from negclean.data.records import Instance, Passage

NAME = "flagembedding"
ROW_KEYS = frozenset({"query", "pos", "neg", "pos_scores", "neg_scores", "subset"})
_NEEDS = "query, pos, neg"


def matches(keys: Collection[str]) -> bool:
    """Whether a row with these keys looks like this format."""
    return "pos" in keys or "neg" in keys


def _passages(texts: Sequence[str], scores: Sequence[float] | None) -> tuple[Passage, ...]:
    if scores is None:
        return tuple(Passage(docid=content_docid(t), text=t) for t in texts)
    return tuple(Passage(docid=content_docid(t), text=t, score=s) for t, s in zip(texts, scores))


def parse(row: Mapping[str, Any], *, line: int) -> Instance:
    """Turn one decoded row into an Instance, or raise RowError."""
    query = as_str(require(row, "query", NAME, _NEEDS), "query")
    pos = str_list(require(row, "pos", NAME, _NEEDS), "pos")
    if not pos:
        raise RowError("no positives: 'pos' is empty; an instance needs at least one labeled positive")
    neg = require(row, "neg", NAME, _NEEDS)
    if neg is None:
        raise RowError("'neg' is null; write [] for an instance without negatives")
    neg = str_list(neg, "neg")
    pos_scores = score_list(row.get("pos_scores"), "pos_scores", len(pos), "pos")
    neg_scores = score_list(row.get("neg_scores"), "neg_scores", len(neg), "neg")
    return Instance(
        query_id=query_id_for(query),
        query=query,
        positives=_passages(pos, pos_scores),
        negatives=_passages(neg, neg_scores),
        subset=as_str(row.get("subset"), "subset", allow_null=True),
        meta=freeze({k: v for k, v in row.items() if k not in ROW_KEYS}),
        line=line,
    )


def _scores(passages: Sequence[Passage]) -> list[float] | None:
    scores = [p.score for p in passages]
    return None if any(s is None for s in scores) else scores  # type: ignore[return-value]


def to_rows(inst: Instance) -> list[dict[str, Any]]:
    """The row(s) that represent an instance in this format (always one)."""
    row: dict[str, Any] = {
        "query": inst.query,
        "pos": [flat_text(p) for p in inst.positives],
        "neg": [flat_text(p) for p in inst.negatives],
    }
    pos_scores = _scores(inst.positives)
    neg_scores = _scores(inst.negatives)
    if pos_scores is not None:
        row["pos_scores"] = pos_scores
    # An empty negative list has (vacuously) all its scores; write it only next to positive scores.
    if neg_scores is not None and (inst.negatives or pos_scores is not None):
        row["neg_scores"] = neg_scores
    if inst.subset:
        row["subset"] = inst.subset
    for k, v in inst.meta.items():
        if k not in ROW_KEYS:
            row[k] = v
    return [row]
