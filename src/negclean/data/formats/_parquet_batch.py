"""Record batches of negclean's own Tevatron Parquet that can be handled whole, with Arrow operations.

A batch is *plain* when the per-row reader would turn every one of its rows into an Instance (no reject, no
content-hash id, no null made into "") and writing that Instance back would give the row as read: the columns
are the writer's, typed as it types them, and every JSON ``extra`` (of a row or a passage) is a non-empty object
whose keys name no column and that ``json.dumps`` writes back to the same string. ``negclean.fix.arrow_batches``
fixes such batches with ``pyarrow.compute``; every other batch is read row by row, as before, so its messages
and rejects are unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from negclean.data.formats import tevatron
from negclean.data.formats._parquet import _passage_type, _unpack
from negclean.data.records import Instance
from negclean.errors import require

_ROW_EXTRA_KEYS = tevatron.ROW_KEYS | {"extra"}
_PASSAGE_EXTRA_KEYS = tevatron.PASSAGE_KEYS | {"extra"}


@dataclass(frozen=True)
class PlainBatch:
    """A plain record batch (see the module) and the 1-based row number of its first row."""

    first_row: int
    batch: Any  # pyarrow.RecordBatch, columns as ParquetSink writes them for the tevatron layout

    @property
    def rows(self) -> int:
        return int(self.batch.num_rows)

    def instances(self) -> list[Instance]:
        """The batch's rows as the per-row reader reads them (a plain batch has no row it would reject)."""
        first = self.first_row
        return [tevatron.parse(_unpack(row), line=first + i) for i, row in enumerate(self.batch.to_pylist())]


def _pa() -> Any:
    return require("pyarrow", extra="parquet", purpose="Reading and writing Parquet")


def _pc() -> Any:
    return require("pyarrow.compute", extra="parquet", purpose="Reading and writing Parquet")


def _same_type(got: Any, want: Any) -> bool:
    """Equal types, except for the name of a list's element field ("element" in files, "item" in memory)."""
    pa = _pa()
    if pa.types.is_list(got) and pa.types.is_list(want):
        return bool(got.value_type == want.value_type)
    return bool(got == want)


def _tevatron_layout(schema: Any) -> bool:
    pa = _pa()
    plist = pa.list_(_passage_type(pa))
    want = [
        ("query_id", pa.string()),
        ("query", pa.string()),
        ("positive_passages", plist),
        ("negative_passages", plist),
        ("subset", pa.string()),
        ("extra", pa.string()),
    ]
    if list(schema.names) != [name for name, _ in want]:
        return False
    return all(_same_type(schema.field(name).type, t) for name, t in want)


def canonical_extras(values: Any, taken: frozenset[str]) -> bool:
    """Whether every non-null string of ``values`` (an Arrow string array) is a non-empty JSON object with no key
    in ``taken`` that ``json.dumps(..., ensure_ascii=False)`` writes back as the same string."""
    if values.null_count == len(values):
        return True
    for text in values.drop_null().to_pylist():
        try:
            obj = json.loads(text)
        except ValueError:
            return False
        if type(obj) is not dict or not obj or not taken.isdisjoint(obj):
            return False
        if json.dumps(obj, ensure_ascii=False) != text:
            return False
    return True


def _plain_passages(lists: Any) -> bool:
    pc = _pc()
    if lists.null_count:
        return False
    values = pc.list_flatten(lists)
    if values.null_count:
        return False
    docid, title, text, score = (pc.struct_field(values, name) for name in ("docid", "title", "text", "score"))
    if docid.null_count or title.null_count or text.null_count:
        return False
    if len(docid) and pc.min(pc.binary_length(docid)).as_py() == 0:
        return False
    if score.null_count < len(score) and not pc.all(pc.is_finite(score)).as_py():
        return False
    return canonical_extras(pc.struct_field(values, "extra"), _PASSAGE_EXTRA_KEYS)


def plain_batch(first_row: int, batch: Any) -> PlainBatch | None:
    """``batch`` as a PlainBatch when it is plain (see the module), else None (read it row by row)."""
    pc = _pc()
    if batch.num_rows == 0 or not _tevatron_layout(batch.schema):
        return None
    qid = batch.column("query_id")
    if qid.null_count or pc.min(pc.binary_length(qid)).as_py() == 0:
        return None
    if batch.column("query").null_count or batch.column("subset").null_count:
        return None
    positives = batch.column("positive_passages")
    if positives.null_count or pc.min(pc.list_value_length(positives)).as_py() == 0:
        return None
    if not (_plain_passages(positives) and _plain_passages(batch.column("negative_passages"))):
        return None
    if not canonical_extras(batch.column("extra"), _ROW_EXTRA_KEYS):
        return None
    return PlainBatch(first_row, batch)
