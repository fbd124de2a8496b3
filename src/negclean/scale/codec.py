"""Instances and mining query specs as JSON, to ship them to workers (records hold read-only mappings,
which pickle cannot carry; JSON also keeps what travels readable and free of code)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from negclean.data.records import Instance, Passage
from negclean.mine.mine import QuerySpec


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def passage_to_dict(p: Passage) -> dict[str, Any]:
    out: dict[str, Any] = {"docid": p.docid, "text": p.text, "title": p.title, "score": p.score, "rank": p.rank}
    if p.meta:
        out["meta"] = _plain(p.meta)
    return out


def passage_from_dict(d: Mapping[str, Any]) -> Passage:
    if d.get("meta"):
        return Passage(d["docid"], d["text"], d["title"], d["score"], d["rank"], d["meta"])
    return Passage(d["docid"], d["text"], d["title"], d["score"], d["rank"])


def instance_to_dict(inst: Instance) -> dict[str, Any]:
    out: dict[str, Any] = {
        "query_id": inst.query_id,
        "query": inst.query,
        "subset": inst.subset,
        "line": inst.line,
        "positives": [passage_to_dict(p) for p in inst.positives],
        "negatives": [passage_to_dict(p) for p in inst.negatives],
    }
    if inst.meta:
        out["meta"] = _plain(inst.meta)
    return out


def instance_from_dict(d: Mapping[str, Any]) -> Instance:
    pos = tuple(passage_from_dict(p) for p in d["positives"])
    neg = tuple(passage_from_dict(p) for p in d["negatives"])
    if d.get("meta"):
        return Instance(d["query_id"], d["query"], pos, neg, d["subset"], d["meta"], d["line"])
    return Instance(d["query_id"], d["query"], pos, neg, d["subset"], line=d["line"])


def spec_to_dict(spec: Any) -> dict[str, Any]:
    """A ``negclean.mine.mine.QuerySpec`` as JSON-ready data."""
    return {
        "query_id": spec.query_id,
        "text": spec.text,
        "positives": list(spec.positives),
        "excluded": sorted(spec.excluded),
        "base": instance_to_dict(spec.base) if spec.base is not None else None,
    }


def spec_from_dict(d: Mapping[str, Any]) -> Any:
    base = instance_from_dict(d["base"]) if d["base"] is not None else None
    return QuerySpec(d["query_id"], d["text"], tuple(d["positives"]), frozenset(d["excluded"]), base)
