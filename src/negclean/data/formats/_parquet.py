"""Parquet container (pyarrow): rows streamed in record batches, written in row groups.

Reading any Parquet file gives one dict per row, exactly as a JSON line would; columns of nested lists of
structs (Tevatron passages) become lists of dicts. Memory is bounded by one record batch and the file's
row-group size, never the whole file.

Writing uses a fixed schema, because a Parquet file has one: the format's own columns, typed, plus a string
column ``extra`` holding the JSON object of every other field (and an ``extra`` field in each passage struct
for the passage's other fields). The file's key-value metadata carries ``negclean`` so that a reader knows to
unpack ``extra``; in files written by other tools every column is read as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from negclean.data.formats import st, tevatron
from negclean.data.formats._base import RowError
from negclean.errors import ConfigError, InputError, require

MARKER = b"negclean"
LAYOUTS = ("tevatron", "st")
_BATCH_ROWS = 1024
_GROUP_BYTES = 64 << 20


def _pa() -> Any:
    return require("pyarrow", extra="parquet", purpose="Reading and writing Parquet")


def _pq() -> Any:
    return require("pyarrow.parquet", extra="parquet", purpose="Reading and writing Parquet")


def open_file(path: Path) -> Any:
    """A ``pyarrow.parquet.ParquetFile``, or InputError saying why the file cannot be opened."""
    pa, pq = _pa(), _pq()
    try:
        # pre_buffer=False: the default read cache keeps the buffers of every row group read so far, so memory
        # grew with the file (measured: +30 MB per 5,000-row group); now it stays at one group.
        return pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"not a readable Parquet file ({exc}); check that the file is complete and really Parquet",
            path=str(path),
        ) from None


def column_names(path: Path) -> list[str]:
    return list(open_file(path).schema_arrow.names)


def _load_extra(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        extra = json.loads(value)
    except (TypeError, ValueError):
        raise RowError(f"{where} is not valid JSON; the file was changed by another tool") from None
    if type(extra) is not dict:
        raise RowError(f"{where} must hold a JSON object")
    return extra


def _unpack(row: dict[str, Any]) -> dict[str, Any]:
    """Merge the JSON ``extra`` fields of a negclean-written row (and of its passages) back into it."""
    for key in ("positive_passages", "negative_passages"):
        passages = row.get(key)
        if type(passages) is list:
            for i, p in enumerate(passages):
                if type(p) is dict and "extra" in p:
                    for k, v in _load_extra(p.pop("extra"), f"{key}[{i}].extra").items():
                        p.setdefault(k, v)
    for k, v in _load_extra(row.pop("extra", None), "extra").items():
        row.setdefault(k, v)
    return row


def iter_rows(path: Path, *, whole: Callable[[int, Any], Any] | None = None) -> Iterator[tuple[int, Any, Any]]:
    """(1-based row number, raw row, row or the RowError that unpacking it raised) for every row.

    ``whole(first_row, batch)``: asked for each record batch of a file negclean wrote; what it returns (not None)
    stands for the whole batch, yielded as (first_row, None, it) instead of the batch's rows."""
    pa = _pa()
    pf = open_file(path)
    ours = MARKER in (pf.schema_arrow.metadata or {})
    if not ours:
        whole = None
    rowno = 0
    try:
        for batch in pf.iter_batches(batch_size=_BATCH_ROWS, use_threads=False):
            if whole is not None:
                got = whole(rowno + 1, batch)
                if got is not None:
                    yield rowno + 1, None, got
                    rowno += batch.num_rows
                    continue
            for row in batch.to_pylist():
                rowno += 1
                raw = dict(row)
                if ours:
                    try:
                        row = _unpack(row)
                    except RowError as err:
                        row = err
                yield rowno, raw, row
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"cannot read the rows after row {rowno} ({exc}); the file may be truncated or damaged",
            path=str(path),
        ) from None


def raw_text(raw: dict[str, Any]) -> str:
    return json.dumps(raw, ensure_ascii=False, default=str)


def _passage_type(pa: Any) -> Any:
    return pa.struct(
        [
            ("docid", pa.string()),
            ("title", pa.string()),
            ("text", pa.string()),
            ("score", pa.float64()),
            ("rank", pa.int64()),
            ("extra", pa.string()),
        ]
    )


def _dumps(extra: dict[str, Any]) -> str | None:
    return json.dumps(extra, ensure_ascii=False) if extra else None


def _pack_passages(passages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    size = 0
    for p in passages:
        size += len(p["text"])
        if not p.keys() <= tevatron.PASSAGE_KEYS:
            # pyarrow ignores dict keys that are not struct fields, so the extras can stay in the dict.
            p["extra"] = _dumps({k: v for k, v in p.items() if k not in tevatron.PASSAGE_KEYS})
    return passages, size


def _text_sizes(table: Any) -> Any:
    """Characters of text per row (query and passage texts), as ``ParquetSink.write`` counts them."""
    import numpy as np

    pc = require("pyarrow.compute", extra="parquet", purpose="Writing Parquet")
    sizes = pc.utf8_length(table.column("query")).to_numpy().astype(np.int64)
    for name in ("positive_passages", "negative_passages"):
        lists = table.column(name).combine_chunks()
        lengths = pc.utf8_length(pc.struct_field(pc.list_flatten(lists), "text")).to_numpy()
        parents = pc.list_parent_indices(lists).to_numpy()
        sizes += np.bincount(parents, weights=lengths, minlength=len(sizes)).astype(np.int64)
    return sizes


class ParquetSink:
    """Writes rows of one layout (tevatron or st) to a Parquet file in row groups."""

    def __init__(self, path: Path, *, layout: str, row_group_size: int, negatives: int | None = None):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown Parquet layout {layout!r}")
        self._pa, self._pq = _pa(), _pq()
        self._path = path
        self._layout = layout
        self._group_rows = row_group_size
        self._negatives = negatives
        self._rows: list[Any] = []
        # whole tables (write_table) waiting for the current row group; they come before the rows in _rows
        self._tables: list[Any] = []
        self._table_rows = 0
        self._bytes = 0
        self._writer: Any = None  # a pyarrow.parquet.ParquetWriter once the first group is written
        self._neg_columns: list[str] = []

    def write(self, row: dict[str, Any]) -> None:
        if self._layout == "tevatron":
            pos, a = _pack_passages(row["positive_passages"])
            neg, b = _pack_passages(row["negative_passages"])
            extra = {k: v for k, v in row.items() if k not in tevatron.ROW_KEYS}
            self._rows.append((row["query_id"], row["query"], pos, neg, row["subset"], _dumps(extra)))
            self._bytes += len(row["query"]) + a + b
        else:
            negs = [v for k, v in row.items() if st.is_negative_column(k)]
            limit = self._negatives if self._writer is None else len(self._neg_columns)
            if limit is not None and len(negs) > limit:
                raise ConfigError(
                    f"this Parquet file has {limit} negative column(s) (fixed by negatives= or by its first row "
                    f"group) but the row has {len(negs)} negatives; pass a larger negatives= to open_writer, "
                    "cap the negatives first, or write JSON Lines (.jsonl), which has no such limit"
                )
            extra = {k: v for k, v in row.items() if not st.is_core(k)}
            self._rows.append((row["anchor"], row["positive"], negs, _dumps(extra)))
            self._bytes += len(row["anchor"]) + len(row["positive"]) + sum(map(len, negs))
        if len(self._rows) + self._table_rows >= self._group_rows or self._bytes >= _GROUP_BYTES:
            self.flush()

    def write_table(self, table: Any) -> None:
        """Write the rows of a pyarrow Table (or RecordBatch) in the tevatron layout's columns, after the rows
        written so far; row groups are cut where ``write`` would cut them for the same rows."""
        if self._layout != "tevatron":
            raise ValueError("write_table writes the tevatron layout only")
        if self._rows:  # keep the order: rows written one by one go first
            self._tables.append(self._rows_table())
            self._table_rows += len(self._rows)
            self._rows.clear()
        import numpy as np

        table = self._pa.Table.from_batches([table]) if isinstance(table, self._pa.RecordBatch) else table
        sizes = _text_sizes(table)
        start, n = 0, len(sizes)
        while start < n:
            # the row after which write() would flush: the group is full, or its text reaches _GROUP_BYTES
            room = self._group_rows - self._table_rows
            reached = int(np.searchsorted(np.cumsum(sizes[start:]) + self._bytes, _GROUP_BYTES))
            take = min(room, reached + 1, n - start)
            self._tables.append(table.slice(start, take))
            self._table_rows += take
            self._bytes += int(sizes[start : start + take].sum())
            start += take
            if self._table_rows >= self._group_rows or self._bytes >= _GROUP_BYTES:
                self.flush()

    def _schema(self) -> Any:
        pa = self._pa
        meta = {MARKER: json.dumps({"layout": self._layout, "version": 1}).encode()}
        if self._layout == "tevatron":
            plist = pa.list_(_passage_type(pa))
            fields = [
                ("query_id", pa.string()),
                ("query", pa.string()),
                ("positive_passages", plist),
                ("negative_passages", plist),
                ("subset", pa.string()),
            ]
        else:
            n = self._negatives
            if n is None:
                n = max((len(r[2]) for r in self._rows), default=0)
            self._neg_columns = ["negative"] if n == 1 else [f"negative_{i}" for i in range(1, n + 1)]
            fields = [("anchor", pa.string()), ("positive", pa.string())]
            fields += [(c, pa.string()) for c in self._neg_columns]
        return pa.schema(fields + [("extra", pa.string())], metadata=meta)

    def _columns(self) -> list[list[Any]]:
        if self._layout == "tevatron":
            return [list(col) for col in zip(*self._rows)]
        n = len(self._neg_columns)
        anchors, positives, negs, extras = zip(*self._rows)
        neg_cols = [[row_negs[i] if i < len(row_negs) else None for row_negs in negs] for i in range(n)]
        return [list(anchors), list(positives), *neg_cols, list(extras)]

    def _rows_table(self) -> Any:
        if self._writer is None:
            schema = self._schema()
            self._writer = self._pq.ParquetWriter(str(self._path), schema, compression="zstd")
        schema = self._writer.schema
        arrays = [self._pa.array(col, type=f.type) for col, f in zip(self._columns(), schema)]
        return self._pa.Table.from_arrays(arrays, schema=schema)

    def flush(self) -> None:
        if not self._rows and not self._tables:
            return
        if self._writer is None:
            self._writer = self._pq.ParquetWriter(str(self._path), self._schema(), compression="zstd")
        schema = self._writer.schema
        # a file's list fields are named "element", an in-memory list's "item": cast() renames them
        parts = [t.cast(schema) for t in self._tables]
        if self._rows:
            parts.append(self._rows_table())
        # one chunk per column, as write() gives: the file's pages, so its bytes, are then the same
        table = parts[0] if len(parts) == 1 else self._pa.concat_tables(parts).combine_chunks()
        self._writer.write_table(table, row_group_size=len(table))
        self._rows.clear()
        self._tables.clear()
        self._table_rows = 0
        self._bytes = 0

    def close(self) -> None:
        self.flush()
        if self._writer is None:  # no rows at all: still write a valid, empty file
            self._writer = self._pq.ParquetWriter(str(self._path), self._schema(), compression="zstd")
        self._writer.close()
