"""Mining the real SciFact train split (809 queries, 5,183 docs) from ../shared/data."""

from __future__ import annotations

import os

import pytest

from negclean.data.io import read_instances
from negclean.judge.qrels import read_qrels
from negclean.mine.mine import mine

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def scifact(shared_data):
    path = shared_data / "scifact"
    if not (path / "qrels" / "train.tsv").is_file():
        pytest.skip(f"SciFact not found under {path}")
    return path


def check_output(path, scifact, summary, *, num_negatives):
    qrels = read_qrels(scifact / "qrels" / "train.tsv")
    insts = list(read_instances(str(path)))
    assert len(insts) == summary.queries_written == 809
    multi = 0
    for inst in insts:
        labeled = {d for d, g in qrels[inst.query_id].items() if g >= 1}
        assert {p.docid for p in inst.positives} == labeled
        assert not labeled & {n.docid for n in inst.negatives}, inst.query_id
        assert not {p.text for p in inst.positives} & {n.text for n in inst.negatives}
        assert len(inst.negatives) == num_negatives - inst.meta["negclean_mine"]["shortfall"]
        multi += len(labeled) > 1
    assert multi >= 50  # SciFact train has queries with several positives
    sf = summary.shortfall
    assert sf.negatives_missing == sum(num_negatives - len(i.negatives) for i in insts)
    assert summary.negatives_written == sum(len(i.negatives) for i in insts)
    return insts


def test_scifact_bm25_end_to_end(scifact, tmp_path):
    out = tmp_path / "bm25.jsonl"
    summary = mine(
        beir=str(scifact),
        split="train",
        output=str(out),
        retriever="bm25",
        rank_range="0:100",
        num_negatives=15,
        ratio=0.95,
        cache_dir=str(tmp_path / "cache"),
    )
    check_output(out, scifact, summary, num_negatives=15)
    assert summary.dropped["positive"] > 700  # BM25 finds most SciFact positives in its top 100
    assert summary.queries_with_candidate_above_lowest_positive > 0


@pytest.mark.slow
def test_scifact_dense_minilm_then_judge_and_fix(scifact, tmp_path):
    """Dense MiniLM over the whole corpus (embeddings cached in ~/.cache/negclean: minutes the first time on
    2 cores), then the mined file goes through `judge` and `fix` unchanged. The cascade here is the free
    duplicate stage: the embedding screen would re-encode ~5K abstracts (its own cost, tested on small data)."""
    from negclean.fix.operations import Operation
    from negclean.pipeline import run_fix, run_judge, validate_pipeline

    out = tmp_path / "dense.jsonl.gz"
    summary = mine(beir=str(scifact), split="train", output=str(out), rank_range="10:100", num_negatives=15)
    check_output(out, scifact, summary, num_negatives=15)
    assert summary.retriever["model"] == "all-MiniLM-L6-v2"
    assert summary.dropped["ratio"] > 0
    cascade = validate_pipeline(
        {"cascade": {"stages": [{"name": "duplicate", "judge": {"backend": "duplicate"}}]}}
    ).cascade
    judged = run_judge(input_path=str(out), cascade=cascade, output_dir=tmp_path / "run")
    assert judged["read"]["ok"] == 809 and judged["read"]["rejected"] == 0
    fixed = run_fix(
        input_path=str(out),
        verdicts_path=str(tmp_path / "run" / "verdicts.jsonl"),
        output_path=str(tmp_path / "fixed.jsonl.gz"),
        operation=Operation.RELABEL,
    )
    assert fixed["reconciled"]
    assert judged["cascade"]["false_negatives"] == 0  # duplicates were already excluded while mining
