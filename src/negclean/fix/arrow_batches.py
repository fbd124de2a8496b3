"""Fixing negclean's own Tevatron Parquet a record batch at a time, with Arrow operations.

``run_fix`` reads instances one by one and fixes each with ``fix_row``. For a Parquet input written by negclean
and a Parquet output, ``instances`` below takes the batches the reader proves plain (``PlainBatch``), checks
every row's verdicts the way ``fix_row`` does, and, when all of them plainly match, builds the fixed batch with
pyarrow: the kept negatives by a filter over the flattened negatives, the relabeled ones appended to each row's
positives with ``take`` (their ``extra`` JSON carrying the provenance ``fix_row`` writes), removed rows dropped
by a filter. Any batch it cannot prove it fixes as ``fix_row`` would (a verdicts row that does not plainly
match, an id list such as ``negative_passage_ids`` in a row's extra fields) goes back to ``run_fix``'s loop as
instances with their verdict rows, so messages, errors and counts are those of the per-row code.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

from negclean.cascade.outcome import candidate_from_row
from negclean.data.formats._parquet_batch import PlainBatch
from negclean.data.io import InstanceReader, InstanceWriter
from negclean.data.records import Instance
from negclean.errors import require
from negclean.fix.operations import LABEL_VALUES, FixCounts, Operation, decide_drops, provenance
from negclean.fix.verdict_rows import VerdictRows


def instances(
    reader: InstanceReader,
    rows: VerdictRows,
    writer: InstanceWriter,
    operation: Operation,
    *,
    counts: FixCounts,
    drop_undecided: bool = False,
    max_false_negatives: int | None = None,
) -> Iterator[Instance]:
    """The instances of ``reader`` that ``run_fix`` must fix one by one (each with the next row of ``rows``);
    the plain batches of a negclean Tevatron Parquet input going to a Parquet ``writer`` are fixed, counted and
    written here. For any other input or output: the reader itself."""
    if reader.format != "parquet" or not writer.takes_tables:
        yield from reader
        return
    for item in reader.batches():
        if type(item) is not PlainBatch:
            yield item  # type: ignore[misc]  # an Instance
            continue
        with _gc_paused():
            got = _take_rows(rows, item.rows)
            fixed = (
                None
                if got is None
                else fix_batch(
                    item,
                    got,
                    operation,
                    counts=counts,
                    drop_undecided=drop_undecided,
                    max_false_negatives=max_false_negatives,
                )
            )
        if fixed is not None:
            if fixed.num_rows:
                writer.write_table(fixed)
            continue
        if got is not None:
            rows.push_back(got)
        yield from item.instances()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a batch's verdict rows (~60 acyclic objects each, freed by reference
    counting) are alive: they made it run full collections, measured at +11 µs per row for 1,024 rows."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _take_rows(rows: VerdictRows, n: int) -> list[dict[str, Any]] | None:
    """The next ``n`` verdict rows, or None (nothing taken) when there are fewer: then the per-row loop reports
    the first error it meets, as it does for any input."""
    got: list[dict[str, Any]] = []
    for _ in range(n):
        row = next(rows, None)
        if row is None:
            rows.push_back(got)
            return None
        got.append(row)
    return got


def _add(counts: FixCounts, more: FixCounts) -> None:
    for f in fields(FixCounts):
        setattr(counts, f.name, getattr(counts, f.name) + getattr(more, f.name))


def _relabeled_extra(extra: str | None, candidate: dict[str, Any]) -> str:
    """The ``extra`` JSON that the per-row writer gives a negative moved to the positives (``_with_provenance``)."""
    meta = json.loads(extra) if extra is not None else {}
    meta["negclean"] = {"relabeled_from": "negative", **provenance(candidate_from_row(candidate))}
    return json.dumps(meta, ensure_ascii=False)


def fix_batch(
    batch: PlainBatch,
    rows: list[dict[str, Any]],
    operation: Operation,
    *,
    counts: FixCounts,
    drop_undecided: bool = False,
    max_false_negatives: int | None = None,
) -> Any:
    """The fixed rows of a plain batch (a pyarrow RecordBatch), with ``counts`` updated as ``fix_row`` would
    update them row by row; None (nothing counted) when a verdicts row does not plainly match its instance, or
    a row keeps passage-id lists in its extra fields: then fix the batch's instances with ``fix_row``."""
    pa = require("pyarrow", extra="parquet", purpose="Fixing Parquet")
    pc = require("pyarrow.compute", extra="parquet", purpose="Fixing Parquet")
    import numpy as np

    rb = batch.batch
    n = rb.num_rows
    qids = rb.column("query_id").to_pylist()
    neg = rb.column("negative_passages")
    neg_values = pc.list_flatten(neg)
    neg_docids = pc.struct_field(neg_values, "docid").to_pylist()
    neg_offsets = neg.offsets.to_numpy()
    neg_offsets = neg_offsets - neg_offsets[0]
    local = FixCounts()
    keep_row = np.ones(n, dtype=bool)
    keep_neg = np.ones(len(neg_values), dtype=bool)
    moved: list[int] = []  # flat indices of the negatives moved to the positives, row by row
    moved_rows: list[int] = []
    moved_extra: list[str] = []
    neg_extra: list[Any] | None = None
    for r in range(n):
        row = rows[r]
        lo, hi = int(neg_offsets[r]), int(neg_offsets[r + 1])
        k = hi - lo
        cands = row.get("candidates")
        fns = row.get("false_negative_index")
        ambiguous = row.get("ambiguous")
        if (
            row.get("query_id") != qids[r]
            or type(cands) is not list
            or len(cands) != k
            or type(fns) is not list
            or type(ambiguous) is not bool
        ):
            return None
        undecided: list[int] = []
        for i, c in enumerate(cands):
            if type(c) is not dict or c.get("docid") != neg_docids[lo + i] or c.get("label") not in LABEL_VALUES:
                return None
            if c["label"] == "undecided":
                undecided.append(i)
        if not all(type(i) is int and 0 <= i < k for i in fns):
            return None
        if max_false_negatives is not None:
            ambiguous = len(fns) > max_false_negatives
        drop = decide_drops(
            fns, undecided, ambiguous=ambiguous, operation=operation, drop_undecided=drop_undecided, counts=local
        )
        if drop is None:
            keep_row[r] = False
            continue
        if not drop:
            continue
        for i in drop:
            keep_neg[lo + i] = False
        if operation is Operation.RELABEL:
            if neg_extra is None:
                neg_extra = pc.struct_field(neg_values, "extra").to_pylist()
            for i in sorted(set(fns)):
                try:
                    moved_extra.append(_relabeled_extra(neg_extra[lo + i], cands[i]))
                except Exception:  # a malformed verdict: the per-row code raises its own error for it
                    return None
                moved.append(lo + i)
                moved_rows.append(r)
            local.relabeled += len(set(fns))
    if local.changed and _keeps_id_lists(rb, pc):
        return None
    _add(counts, local)
    if local.changed:
        columns = dict(zip(rb.schema.names, rb.columns))
        kept = np.concatenate([[0], np.cumsum(keep_neg)])[neg_offsets]
        columns["negative_passages"] = pa.ListArray.from_arrays(
            pa.array(kept, pa.int32()), neg_values.filter(pa.array(keep_neg)), type=neg.type
        )
        if moved:
            columns["positive_passages"] = _append_moved(
                rb.column("positive_passages"), neg_values, moved, moved_rows, moved_extra, pa, pc, np
            )
        rb = pa.RecordBatch.from_arrays(list(columns.values()), schema=rb.schema)
    if not keep_row.all():
        rb = rb.filter(pa.array(keep_row))
    return rb


def _keeps_id_lists(rb: Any, pc: Any) -> bool:
    """Whether a row's extra fields may hold ``positive_passage_ids``/``negative_passage_ids``, which the per-row
    fix rewrites (``_sync_id_lists``); such batches go row by row."""
    extra = rb.column("extra")
    if extra.null_count == len(extra):
        return False
    return bool(pc.any(pc.match_substring(extra, "_passage_ids")).as_py())


def _append_moved(
    positives: Any,
    neg_values: Any,
    moved: list[int],
    moved_rows: list[int],
    moved_extra: list[str],
    pa: Any,
    pc: Any,
    np: Any,
) -> Any:
    """Each row's positives followed by the negatives moved to them (in index order), with their new extra."""
    n = len(positives)
    pos_values = pc.list_flatten(positives)
    pos_offsets = positives.offsets.to_numpy()
    pos_offsets = pos_offsets - pos_offsets[0]
    pos_len = np.diff(pos_offsets)
    taken = neg_values.take(pa.array(moved, pa.int64()))
    names = [f.name for f in taken.type]
    children = [pc.struct_field(taken, name) for name in names]
    children[names.index("extra")] = pa.array(moved_extra, pa.string())
    moved_values = pa.StructArray.from_arrays(children, fields=list(taken.type))
    rows = np.asarray(moved_rows, dtype=np.int64)
    moved_count = np.bincount(rows, minlength=n)
    new_offsets = np.concatenate([[0], np.cumsum(pos_len + moved_count)])
    n_pos, n_moved = len(pos_values), len(moved)
    order = np.empty(n_pos + n_moved, dtype=np.int64)
    parent = np.repeat(np.arange(n), pos_len)
    order[new_offsets[parent] + np.arange(n_pos) - pos_offsets[parent]] = np.arange(n_pos)
    rank = np.arange(n_moved) - (np.cumsum(moved_count) - moved_count)[rows]
    order[new_offsets[rows] + pos_len[rows] + rank] = n_pos + np.arange(n_moved)
    values = pa.concat_arrays([pos_values, moved_values]).take(pa.array(order))
    return pa.ListArray.from_arrays(pa.array(new_offsets, pa.int32()), values, type=positives.type)
