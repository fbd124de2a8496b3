"""Parquet -> Parquet fix on Arrow record batches (fix/arrow_batches.py) against the per-row code.

The reference is the same ``run_fix`` with ``fix_batch`` made to give up on every batch, so that every batch
takes the per-row way (reader rows -> ``fix_row`` -> writer rows), which is the code every other format uses.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from negclean.data.formats import _parquet
from negclean.data.io import open_writer, read_instances
from negclean.errors import InputError
from negclean.fix import arrow_batches
from negclean.fix.operations import Operation
from negclean.pipeline import run_fix


def _candidate(rng: random.Random, docid: str) -> dict:
    r = rng.random()
    label = "relevant" if r < 0.12 else "undecided" if r < 0.22 else "not_relevant"
    top = {"stage": "llm", "label": label, "judge": "llm:a"}
    if label == "relevant":
        top["grade"] = rng.choice(["better", "worse"])
    if rng.random() < 0.5:
        top["confidence"] = round(rng.random(), 6)
    trail = [{"stage": "screen", "label": "undecided", "judge": "sim:m"}, dict(top)]
    return {"docid": docid, **top, "audited": rng.random() < 0.1, "trail": trail}


def _verdicts(src: Path, dst: Path, *, seed: int, reader_opts: dict | None = None) -> None:
    """A verdicts file in `negclean judge`'s row layout for the readable instances of ``src``, labels drawn at
    random (seeded)."""
    rng = random.Random(seed)
    with open(dst, "w") as f:
        for inst in read_instances(src, **(reader_opts or {})):
            cands = [_candidate(rng, p.docid) for p in inst.negatives]
            fns = [i for i, c in enumerate(cands) if c["label"] == "relevant" and c.get("grade") == "better"]
            row = {
                "line": inst.line,
                "query_id": inst.query_id,
                "false_negatives": [inst.negatives[i].docid for i in fns],
                "false_negative_index": fns,
                "ambiguous": len(fns) > 3,
                "candidates": cands,
            }
            f.write(json.dumps(row) + "\n")


@pytest.fixture
def tevatron_parquet(tmp_path: Path, examples_dir: Path) -> Path:
    """Real MS MARCO hard negatives (examples/, FlagEmbedding with scores) as negclean's Tevatron Parquet."""
    out = tmp_path / "in.parquet"
    with open_writer(out, fmt="parquet") as w:
        for inst in read_instances(examples_dir / "msmarco_hn_scored.jsonl"):
            w.write(inst)
    return out


def _fix_both(monkeypatch: pytest.MonkeyPatch, src: Path, verdicts: Path, tmp: Path, **opts) -> tuple:
    """(table, summary, batches fixed whole) for the batch path, then the same for the per-row path."""
    monkeypatch.setattr(_parquet, "_BATCH_ROWS", 3)  # several batches, and a last one that is shorter
    real = arrow_batches.fix_batch
    whole = []

    def counting(*args, **kwargs):
        got = real(*args, **kwargs)
        whole.append(got is not None)
        return got

    results = []
    for name, fix_batch in (("batch", counting), ("rows", lambda *a, **k: None)):
        monkeypatch.setattr(arrow_batches, "fix_batch", fix_batch)
        out = tmp / f"{name}.parquet"
        summary = run_fix(input_path=str(src), verdicts_path=str(verdicts), output_path=str(out), log_limit=0, **opts)
        results.append((pq.read_table(out), summary))
    (table, summary), (ref, ref_summary) = results
    return table, summary, ref, ref_summary, sum(whole)


@pytest.mark.parametrize("operation", list(Operation))
@pytest.mark.parametrize("drop_undecided", [False, True])
def test_batch_fix_equals_per_row_fix(
    tevatron_parquet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operation: Operation, drop_undecided: bool
) -> None:
    verdicts = tmp_path / "verdicts.jsonl"
    _verdicts(tevatron_parquet, verdicts, seed=7)
    table, summary, ref, ref_summary, whole = _fix_both(
        monkeypatch, tevatron_parquet, verdicts, tmp_path, operation=operation, drop_undecided=drop_undecided
    )
    assert whole == 4  # 10 rows in batches of 3: every batch was fixed whole
    assert table.equals(ref)
    assert summary["fix"] == ref_summary["fix"] and summary["read"] == ref_summary["read"]
    assert summary["reconciled"]
    if operation in (Operation.RELABEL, Operation.HN_REMOVE):
        assert summary["fix"]["changed"] > 0  # the data set exercises the change, not only the copy


def test_second_round_on_relabeled_output(tevatron_parquet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Fixing a fixed file: positives carry provenance in their JSON extra, and max_false_negatives decides."""
    first = tmp_path / "first.parquet"
    verdicts = tmp_path / "v1.jsonl"
    _verdicts(tevatron_parquet, verdicts, seed=1)
    run_fix(
        input_path=str(tevatron_parquet),
        verdicts_path=str(verdicts),
        output_path=str(first),
        operation=Operation.RELABEL,
        log_limit=0,
    )
    assert any(
        "negclean" in (p["extra"] or "") for row in pq.read_table(first).to_pylist() for p in row["positive_passages"]
    )
    again = tmp_path / "v2.jsonl"
    _verdicts(first, again, seed=2)
    table, summary, ref, ref_summary, whole = _fix_both(
        monkeypatch, first, again, tmp_path, operation=Operation.RELABEL, max_false_negatives=1
    )
    assert whole > 0
    assert table.equals(ref) and summary == {**ref_summary, "output": summary["output"]}


def _with_bad_row(src: Path, dst: Path, row: int) -> None:
    """``src`` with one row's positives emptied (a row the reader rejects), negclean's marker kept."""
    table = pq.read_table(src)
    pos = table.column("positive_passages").to_pylist()
    pos[row] = []
    table = table.set_column(2, table.schema.field(2), pa.array(pos, type=table.schema.field(2).type))
    pq.write_table(table, dst)


def test_rejected_row_goes_the_per_row_way(tevatron_parquet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    src = tmp_path / "bad.parquet"
    _with_bad_row(tevatron_parquet, src, row=4)
    opts = {"on_error": "skip"}
    verdicts = tmp_path / "verdicts.jsonl"
    _verdicts(src, verdicts, seed=3, reader_opts=opts)
    outs = [tmp_path / "rejects_batch.jsonl", tmp_path / "rejects_rows.jsonl"]  # each path writes its own
    monkeypatch.setattr(_parquet, "_BATCH_ROWS", 3)
    results = []
    real = arrow_batches.fix_batch
    for fix_batch, rejects in ((real, outs[0]), (lambda *a, **k: None, outs[1])):
        monkeypatch.setattr(arrow_batches, "fix_batch", fix_batch)
        out = tmp_path / f"{rejects.stem}.parquet"
        s = run_fix(
            input_path=str(src),
            verdicts_path=str(verdicts),
            output_path=str(out),
            operation=Operation.RELABEL,
            reject_path=str(rejects),
            log_limit=0,
            **opts,
        )
        results.append((pq.read_table(out), s))
    (table, summary), (ref, ref_summary) = results
    assert summary["read"] == ref_summary["read"] == {"format": "parquet", "read": 10, "ok": 9, "rejected": 1}
    assert table.equals(ref) and summary["fix"] == ref_summary["fix"] and summary["reconciled"]
    assert outs[0].read_text() == outs[1].read_text() != ""


def test_mismatched_verdicts_fail_as_per_row(tevatron_parquet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    verdicts = tmp_path / "verdicts.jsonl"
    _verdicts(tevatron_parquet, verdicts, seed=5)
    lines = verdicts.read_text().splitlines()
    row = json.loads(lines[7])
    row["candidates"][2]["docid"] = "not-this-one"
    lines[7] = json.dumps(row)
    verdicts.write_text("\n".join(lines[:9]) + "\n")  # and one row short
    messages = []
    for fix_batch in (arrow_batches.fix_batch, lambda *a, **k: None):
        monkeypatch.setattr(arrow_batches, "fix_batch", fix_batch)
        for v in (verdicts, tmp_path / "short.jsonl"):
            if v.name == "short.jsonl":
                v.write_text("\n".join(verdicts.read_text().splitlines()[:7]) + "\n")
            with pytest.raises(InputError) as err:
                run_fix(
                    input_path=str(tevatron_parquet),
                    verdicts_path=str(v),
                    output_path=str(tmp_path / "out.parquet"),
                    operation=Operation.RELABEL,
                    log_limit=0,
                )
            messages.append(str(err.value))
    assert messages[:2] == messages[2:]
    assert "verdict 2 of the row for query" in messages[0] and "names docid 'not-this-one'" in messages[0]
    assert "verdicts file ends before input line 8" in messages[1]
    assert not (tmp_path / "out.parquet").exists()
