"""In-memory tables of training data <-> instances: a Hugging Face ``datasets.Dataset``, a pandas DataFrame or
a list of row dicts, read into ``Instance`` records and written back in the same kind and column layout.

Row layouts (``TableLayout.shape``), detected from the columns:

- ``tevatron``: ``query_id``, ``query``, ``positive_passages``, ``negative_passages`` (the Tevatron codec);
- ``flagembedding``: ``query``, ``pos``, ``neg`` (the FlagEmbedding codec);
- ``n-tuple``: anchor, positive, ``negative_1`` .. ``negative_n`` (sentence-transformers'
  ``mine_hard_negatives(output_format="n-tuple")``; the ``st`` codec);
- ``triplet``: anchor, positive, ``negative``, one row per negative (``output_format="triplet"``). Consecutive
  rows with the same anchor and positive form one instance, so a judge sees the query's whole candidate list;
- ``labeled-list``: anchor, a list of documents, and ``labels`` (1 positive, 0 negative) or ``scores`` (the first
  document is the positive), as ``output_format="labeled-list"`` writes.

As sentence-transformers does, the anchor and positive columns of the ``st`` layouts are the first two columns
unless they are named ``anchor``/``query`` and ``positive``. Other columns are kept and written back (for
``triplet``, per row; they follow the negative of their row). Lists of scores beside the texts (an n-tuple's
``scores`` column) are passed through as they are, so they no longer line up once negatives move.

Writing an ``n-tuple`` needs the same number of negatives in every row, which a fix breaks; ``ragged`` says what
happens to a row left with fewer: ``repeat`` (the default) cycles the row's own remaining negatives up to the
width of the input, so no row and no true negative is lost and nothing new is claimed; ``truncate`` cuts every row to
the shortest; ``drop`` drops short rows. Rows left with no negative at all are dropped in every mode and counted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from negclean.data.formats import flagembedding, st, tevatron
from negclean.data.formats._base import RowError, flat_text, freeze, query_id_for, type_name
from negclean.data.hashing import content_docid
from negclean.data.records import Instance, Passage, Rejected
from negclean.errors import ConfigError, InputError

Shape = Literal["tevatron", "flagembedding", "n-tuple", "triplet", "labeled-list"]
Container = Literal["dataset", "dataframe", "rows"]
Ragged = Literal["repeat", "truncate", "drop"]
_NEGATIVE_N = re.compile(r"negative_\d+\Z")


@dataclass(frozen=True, slots=True)
class TableLayout:
    """How a table holds instances, so that a fixed copy can be written the same way.

    Args:
        container: ``dataset`` (``datasets.Dataset``), ``dataframe`` (pandas) or ``rows`` (a list of dicts).
        shape: the row layout (see the module docstring).
        columns: the input's columns, in order (the output keeps it).
        anchor: the query column (``st`` layouts and labeled-list).
        positive: the positive column (``st`` layouts) or the documents column (labeled-list).
        labels: labeled-list: the ``labels`` or ``scores`` column.
        negatives: n-tuple: how many negative columns the input has.
    """

    container: Container
    shape: Shape
    columns: tuple[str, ...]
    anchor: str = "anchor"
    positive: str = "positive"
    labels: str = ""
    negatives: int = 0


@dataclass(frozen=True, slots=True)
class TableRead:
    """The instances of a table, the rows each came from, and the rows that could not be read."""

    layout: TableLayout
    instances: tuple[Instance, ...]
    rows_per_instance: tuple[int, ...]
    rejected: tuple[Rejected, ...]
    records: int


@dataclass
class TableWriteCounts:
    """What writing instances back as rows did (``rows`` written; instances dropped for lack of negatives)."""

    rows: int = 0
    dropped_no_negatives: int = 0
    negatives_repeated: int = 0
    negatives_cut: int = 0
    dropped_short: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def container_of(data: Any) -> Container | None:
    """``dataset``, ``dataframe``, ``rows`` (a list or tuple of dicts) or None, without importing pandas or
    datasets (an object of theirs can exist only when they are already imported)."""
    module = type(data).__module__ or ""
    if module.startswith("datasets") and hasattr(data, "column_names") and hasattr(data, "to_list"):
        return "dataset"
    if module.startswith("pandas") and hasattr(data, "to_dict") and hasattr(data, "columns"):
        return "dataframe"
    if isinstance(data, (list, tuple)) and data and all(isinstance(r, Mapping) for r in data):
        return "rows"
    return None


def _plain(value: Any) -> Any:
    """A value from pandas/numpy as plain Python (lists, str, int, float, None; NaN becomes None)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    tolist = getattr(value, "tolist", None)
    if tolist is not None and not isinstance(value, (str, bytes)):
        return _plain(tolist())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def table_rows(data: Any, container: Container) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The rows of a table as plain dicts, and its columns in order."""
    if container == "dataset":
        return data.to_list(), tuple(data.column_names)
    if container == "dataframe":
        columns = tuple(str(c) for c in data.columns)
        return [{str(k): _plain(v) for k, v in row.items()} for row in data.to_dict("records")], columns
    rows = [dict(r) for r in data]
    seen: dict[str, None] = {}  # every row's keys, in first-seen order
    for r in rows:
        seen.update(dict.fromkeys(r))
    return rows, tuple(seen)


def detect_layout(columns: Sequence[str], first: Mapping[str, Any] | None, container: Container) -> TableLayout:
    """The layout of a table from its columns (and its first row, for labeled-list); ConfigError if none fits."""
    cols = tuple(columns)
    keys = set(cols)
    if tevatron.matches(keys):
        return TableLayout(container, "tevatron", cols)
    if flagembedding.matches(keys):
        return TableLayout(container, "flagembedding", cols)
    negs = [c for c in cols if _NEGATIVE_N.match(c)]
    anchor = "anchor" if "anchor" in keys else "query" if "query" in keys else cols[0] if cols else ""
    if negs or "negative" in keys:
        rest = [c for c in cols if c != anchor]
        positive = "positive" if "positive" in keys else rest[0] if rest else ""
        if negs:
            return TableLayout(container, "n-tuple", cols, anchor=anchor, positive=positive, negatives=len(negs))
        return TableLayout(container, "triplet", cols, anchor=anchor, positive=positive, negatives=1)
    for labels in ("labels", "scores"):
        if labels in keys and len(cols) >= 3 and first is not None:
            docs = next((c for c in cols if c not in (anchor, labels) and isinstance(first.get(c), list)), None)
            if docs is not None and isinstance(first.get(labels), list):
                return TableLayout(container, "labeled-list", cols, anchor=anchor, positive=docs, labels=labels)
    if "label" in keys or "score" in keys:
        raise ConfigError(
            f"the columns ({', '.join(cols)}) look like sentence-transformers' 'labeled-pair' layout, "
            "one (query, passage, label) pair per row, which has no instance to judge; mine with "
            "output_format='n-tuple', 'triplet' or 'labeled-list' instead"
        )
    raise ConfigError(
        f"cannot tell the layout of a table with the columns {', '.join(cols) or '(none)'}; expected "
        "Tevatron (query, positive_passages, negative_passages), FlagEmbedding (query, pos, neg), or "
        "sentence-transformers' n-tuple (anchor, positive, negative_1..n), triplet (anchor, positive, "
        "negative) or labeled-list (anchor, documents, labels)"
    )


def _parse_labeled(row: Mapping[str, Any], lay: TableLayout, line: int) -> Instance:
    query = row.get(lay.anchor)
    if type(query) is not str:
        raise RowError(f"'{lay.anchor}' must be a string, got {type_name(query)}")
    docs, marks = row.get(lay.positive), row.get(lay.labels)
    if type(docs) is not list or type(marks) is not list or len(docs) != len(marks):
        raise RowError(f"'{lay.positive}' and '{lay.labels}' must be lists of the same length")
    positives: list[Passage] = []
    negatives: list[Passage] = []
    for i, (text, mark) in enumerate(zip(docs, marks)):
        if type(text) is not str:
            raise RowError(f"{lay.positive}[{i}] must be a string, got {type_name(text)}")
        if lay.labels == "labels":
            (positives if mark else negatives).append(Passage(docid=content_docid(text), text=text))
        else:  # scores: sentence-transformers puts the positive first
            score = float(mark) if isinstance(mark, (int, float)) and not isinstance(mark, bool) else None
            (negatives if i else positives).append(Passage(docid=content_docid(text), text=text, score=score))
    if not positives:
        raise RowError(f"no positives: no document of '{lay.positive}' is labeled 1")
    meta = {k: v for k, v in row.items() if k not in (lay.anchor, lay.positive, lay.labels)}
    return Instance(
        query_id=query_id_for(query),
        query=query,
        positives=tuple(positives),
        negatives=tuple(negatives),
        meta=freeze(meta),
        line=line,
    )


def _parse(row: Mapping[str, Any], lay: TableLayout, line: int) -> Instance:
    if lay.shape == "tevatron":
        return tevatron.parse(row, line=line)
    if lay.shape == "flagembedding":
        return flagembedding.parse(row, line=line)
    if lay.shape == "labeled-list":
        return _parse_labeled(row, lay, line)
    if lay.anchor not in row or lay.positive not in row:
        raise RowError(f"missing column '{lay.anchor}' or '{lay.positive}'", missing=True)
    renamed = {"anchor": row[lay.anchor], "positive": row[lay.positive]}
    renamed.update((k, v) for k, v in row.items() if k not in (lay.anchor, lay.positive))
    inst = st.parse(renamed, line=line)
    if lay.shape == "triplet":  # the row's other columns follow its negative
        return inst.replace(
            negatives=tuple(p.__class__(p.docid, p.text, meta=inst.meta) for p in inst.negatives), meta=freeze({})
        )
    return inst


def read_table(data: Any, *, on_error: Literal["fail", "skip"] = "fail", name: str = "") -> TableRead:
    """Read a Dataset, DataFrame or list of row dicts into instances (rows numbered from 1 in messages)."""
    container = container_of(data)
    if container is None:
        raise ConfigError(
            f"not a table: {type(data).__name__} (expected a datasets.Dataset, a pandas DataFrame or a list of dicts)"
        )
    rows, columns = table_rows(data, container)
    where = name or f"<{type(data).__name__}>"
    if not rows:
        raise InputError("the table has no rows: nothing to judge or fix", path=where)
    lay = detect_layout(columns, rows[0], container)
    instances: list[Instance] = []
    counts: list[int] = []
    rejected: list[Rejected] = []
    for n, row in enumerate(rows, start=1):
        try:
            inst = _parse(row, lay, n)
        except RowError as err:
            if on_error == "fail":
                raise InputError(
                    f"{err.reason}. Fix this row, or pass on_error='skip' to set it aside", path=where, line=n
                ) from None
            rejected.append(Rejected(where, n, err.reason, repr(row)[:2000]))
            continue
        last = instances[-1] if instances else None
        if (
            lay.shape == "triplet"
            and last is not None
            and last.query == inst.query
            and last.positives == inst.positives
        ):
            instances[-1] = last.replace(negatives=last.negatives + inst.negatives)
            counts[-1] += 1
        else:
            instances.append(inst)
            counts.append(1)
    if not instances:
        raise InputError(
            f"nothing was read: all {len(rows)} rows were rejected (first: row {rejected[0].line}: "
            f"{rejected[0].reason})",
            path=where,
        )
    return TableRead(lay, tuple(instances), tuple(counts), tuple(rejected), len(rows))


def _st_rows(
    inst: Instance, lay: TableLayout, width: int, ragged: Ragged, counts: TableWriteCounts, multi_positive: str
) -> list[dict[str, Any]]:
    negs = [flat_text(p) for p in inst.negatives]
    if not negs:
        counts.dropped_no_negatives += 1
        return []
    positives = inst.positives if multi_positive == "expand" else inst.positives[:1]
    if lay.shape == "triplet":
        return [
            {lay.anchor: inst.query, lay.positive: flat_text(p), "negative": text, **dict(n.meta)}
            for p in positives
            for n, text in zip(inst.negatives, negs)
        ]
    if len(negs) < width:
        if ragged == "drop":
            counts.dropped_short += 1
            return []
        if ragged == "repeat":
            counts.negatives_repeated += width - len(negs)
            negs = [negs[i % len(negs)] for i in range(width)]
    if len(negs) > width:
        counts.negatives_cut += len(negs) - width
        negs = negs[:width]
    cols = {f"negative_{i}": t for i, t in enumerate(negs, start=1)}
    extra = {k: v for k, v in inst.meta.items() if not st.is_core(k) and k not in (lay.anchor, lay.positive)}
    return [{lay.anchor: inst.query, lay.positive: flat_text(p), **cols, **extra} for p in positives]


def _labeled_row(inst: Instance, lay: TableLayout) -> dict[str, Any]:
    passages = inst.positives + inst.negatives
    if lay.labels == "labels":
        marks: list[Any] = [1] * len(inst.positives) + [0] * len(inst.negatives)
    else:
        marks = [p.score for p in passages]
    return {
        lay.anchor: inst.query,
        lay.positive: [flat_text(p) for p in passages],
        lay.labels: marks,
        **dict(inst.meta),
    }


def instance_rows(
    instances: Iterable[Instance],
    lay: TableLayout,
    *,
    ragged: Ragged = "repeat",
    multi_positive: Literal["expand", "first"] = "expand",
) -> tuple[list[dict[str, Any]], TableWriteCounts]:
    """The rows of ``instances`` in ``lay``'s layout, and what writing them had to change."""
    if ragged not in ("repeat", "truncate", "drop"):
        raise ConfigError(f"ragged must be 'repeat', 'truncate' or 'drop', not {ragged!r}")
    if multi_positive not in st.MULTI_POSITIVE:
        raise ConfigError(f"multi_positive must be one of {st.MULTI_POSITIVE}, not {multi_positive!r}")
    items = list(instances)
    counts = TableWriteCounts()
    width = lay.negatives
    if lay.shape == "n-tuple" and ragged == "truncate":
        width = min((len(i.negatives) for i in items if i.negatives), default=0)
    rows: list[dict[str, Any]] = []
    for inst in items:
        if lay.shape == "tevatron":
            rows.extend(tevatron.to_rows(inst))
        elif lay.shape == "flagembedding":
            rows.extend(flagembedding.to_rows(inst))
        elif lay.shape == "labeled-list":
            rows.append(_labeled_row(inst, lay))
        else:
            rows.extend(_st_rows(inst, lay, width, ragged, counts, multi_positive))
    counts.rows = len(rows)
    return rows, counts


def build_table(rows: list[dict[str, Any]], lay: TableLayout) -> Any:
    """Rows as the layout's container, columns in the input's order (new ones after them)."""
    order: dict[str, None] = {}
    if lay.shape == "n-tuple":  # the negative columns are rewritten: keep only those the rows have
        order.update((c, None) for c in lay.columns if not _NEGATIVE_N.match(c))
    else:
        order.update(dict.fromkeys(lay.columns))
    for r in rows:
        order.update(dict.fromkeys(r))
    if lay.shape == "n-tuple":
        negs = sorted((c for c in order if _NEGATIVE_N.match(c)), key=lambda c: int(c.split("_")[1]))
        head = [c for c in order if not _NEGATIVE_N.match(c)]
        at = head.index(lay.positive) + 1 if lay.positive in head else len(head)
        order = dict.fromkeys(head[:at] + negs + head[at:])
    columns = list(order)
    if lay.container == "rows":
        return rows
    if lay.container == "dataframe":
        import pandas as pd

        return pd.DataFrame(rows, columns=columns)
    import datasets

    return datasets.Dataset.from_dict({c: [r.get(c) for r in rows] for c in columns})
