"""`negclean holes` end to end on CISI: two TREC runs, thinned qrels, the free screen, a rerun from the store;
`negclean compare --filled-qrels` on the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from negclean.cli.main import app
from negclean.evaluate.measures import write_trec_run
from negclean.holes.files import write_qrels_tsv
from negclean.judge.qrels import read_qrels


@pytest.fixture(scope="module")
def cisi_inputs(shared_data: Path, tmp_path_factory) -> dict[str, Path]:
    from negclean.evaluate.retrieval import bm25_run, load_beir_split

    root = shared_data / "cisi"
    if not root.is_dir():
        pytest.skip(f"CISI not found at {root}")
    tmp = tmp_path_factory.mktemp("holes-cli")
    data = load_beir_split(root, split="test")
    qids = list(data.qrels)[:3]
    run, _ = bm25_run(data, depth=20, cache_dir=str(tmp / "cache"))
    write_trec_run({q: run[q] for q in qids}, tmp / "bm25.trec", tag="bm25")
    write_trec_run({q: {d: -s for d, s in run[q].items()} for q in qids}, tmp / "rev.trec", tag="rev")
    write_qrels_tsv({q: dict(sorted(data.qrels[q].items())[:1]) for q in qids}, tmp / "thin.tsv")
    return {"root": root, "tmp": tmp, "bm25": tmp / "bm25.trec", "rev": tmp / "rev.trec", "thin": tmp / "thin.tsv"}


def _holes(inputs: dict[str, Path], out: Path) -> dict:
    res = CliRunner().invoke(
        app,
        [
            "holes",
            "--beir",
            str(inputs["root"]),
            "--qrels",
            str(inputs["thin"]),
            "--run",
            str(inputs["bm25"]),
            "--run",
            f"rev={inputs['rev']}",
            "--depth",
            "5",
            "-o",
            str(out),
            "--threads",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_holes_cli_writes_filled_qrels_provenance_report_and_resumes(cisi_inputs):
    out = cisi_inputs["tmp"] / "out"
    first = _holes(cisi_inputs, out)
    fill = first["fill"]
    assert fill["pooled"] == fill["relevant"] + fill["not_relevant"] + fill["undecided"] > 0
    assert fill["judged_now"] > 0
    thin = read_qrels(cisi_inputs["thin"])
    filled = read_qrels(out / "qrels.filled.tsv")
    assert all(filled[q][d] == g for q, docs in thin.items() for d, g in docs.items())
    lines = [json.loads(x) for x in (out / "holes.provenance.jsonl").read_text().splitlines()]
    assert len(lines) == fill["judged"]
    assert sum(len(d) for d in filled.values()) == sum(len(d) for d in thin.values()) + len(lines)
    for row in lines:
        assert filled[row["query_id"]][row["doc_id"]] == row["grade"]
        assert row["stage"] and row["judge_id"] and row["fingerprint"] and row["systems"]
    report = json.loads((out / "holes.json").read_text())
    assert [s["name"] for s in report["report"]["systems"]] == ["bm25", "rev"]
    assert "original vs filled" in (out / "holes.md").read_text()
    again = _holes(cisi_inputs, out)  # same output folder: same store
    assert again["fill"]["judged_now"] == 0 and again["fill"]["from_store"] > 0
    assert again["fill"]["judged"] == fill["judged"]

    res = CliRunner().invoke(
        app,
        [
            "compare",
            f"bm25={cisi_inputs['bm25']}",
            f"rev={cisi_inputs['rev']}",
            "--qrels",
            str(cisi_inputs["thin"]),
            "--filled-qrels",
            str(out),
            "--resamples",
            "200",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["filled"]["systems"] == ["bm25", "rev"]
    base = {r["name"]: r["mean"] for r in doc["tables"][0]["rows"]}
    holes_ndcg = {s["name"]: s["ndcg_original"] for s in report["report"]["systems"]}
    assert base == pytest.approx(holes_ndcg, abs=1e-6)
    filled_ndcg = {r["name"]: r["mean"] for r in doc["filled"]["tables"][0]["rows"]}
    assert filled_ndcg == pytest.approx({s["name"]: s["ndcg_filled"] for s in report["report"]["systems"]}, abs=1e-6)


def test_holes_cli_needs_a_system(cisi_inputs):
    res = CliRunner().invoke(
        app, ["holes", "--beir", str(cisi_inputs["root"]), "-o", str(cisi_inputs["tmp"] / "none"), "--json"]
    )
    assert res.exit_code == 2
    assert "--run" in json.loads(res.stdout)["message"]
