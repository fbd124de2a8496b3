"""`negclean eval` end to end on a hand-made BEIR folder with the real MiniLM: known scores, agreement with
ir-measures on the written run, embedding cache reuse, re-ranking a first stage."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sentence_transformers")
ir_measures = pytest.importorskip("ir_measures")

DOCS = {
    "cats0": "Cats purr when they are content.",
    "cats1": "Domestic cats sleep most of the day.",
    "bread0": "Bread dough rises because of yeast.",
    "bread1": "Sourdough uses a fermented starter.",
    "river0": "Rivers carry water to the sea.",
    "river1": "The Nile is a very long river.",
    "echo": "how long do domestic cats sleep",  # the exact text of query q1
    "q2": "Volcanoes erupt molten lava.",  # a document whose id equals a query id
}
QUERIES = {
    "q1": "how long do domestic cats sleep",
    "q2": "what makes bread dough rise",
    "q3": "why do rivers flood",
    "q9": "a query without qrels",
}
QRELS = [("q1", "echo", 1), ("q2", "bread0", 1), ("q2", "bread1", 0), ("q3", "river_missing", 1), ("q4", "cats0", 1)]


@pytest.fixture()
def beir(tmp_path):
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in DOCS.items())
    )
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in QUERIES.items()))
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in QRELS)
    )
    return root


def test_dense_eval_known_scores_and_agreement(beir, tmp_path):
    from negclean.evaluate import evaluate
    from negclean.judge.qrels import read_qrels

    cache = str(tmp_path / "cache")
    res = evaluate(
        model="all-MiniLM-L6-v2",
        beir=beir,
        output_dir=tmp_path / "ev",
        cache_dir=cache,
        measures=["nDCG@10", "R@100", "RR@10"],
        depth=5,
    )
    pq = res.per_query
    # q1: its relevant document repeats the query, so it ranks first whatever the model
    assert pq["nDCG@10"]["q1"] == pytest.approx(1.0) and pq["RR@10"]["q1"] == pytest.approx(1.0)
    # q3: its relevant document is not in the corpus; q4: no query text -> both 0
    assert pq["nDCG@10"]["q3"] == 0.0 and pq["nDCG@10"]["q4"] == 0.0
    assert res.queries == 4 and res.details["missing_query_texts"] == 1
    # the run file, read back and scored by ir-measures directly, gives the same means
    run = {}
    for sd in ir_measures.read_trec_run(str(tmp_path / "ev" / "run.trec")):
        run.setdefault(sd.query_id, {})[sd.doc_id] = sd.score
    direct = ir_measures.calc_aggregate(
        [ir_measures.parse_measure(m) for m in res.scores], read_qrels(beir / "qrels" / "test.tsv"), run
    )
    for m, v in res.scores.items():
        assert v == pytest.approx(direct[ir_measures.parse_measure(m)], abs=1e-5)
    # BEIR's rule: a document whose id is the query's id is not retrieved for it; depth is honoured
    assert "q2" not in run["q2"] and all(len(d) == 5 for d in run.values())
    assert set(run) == {"q1", "q2", "q3"}  # queries with a text and qrels; q9 has no qrels
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["scores"]["nDCG@10"] == pytest.approx(res.scores["nDCG@10"], abs=1e-6)
    assert res.details["embeddings_cached"] is False
    again = evaluate(model="all-MiniLM-L6-v2", beir=beir, cache_dir=cache, depth=5)
    assert again.details["embeddings_cached"] is True and again.scores["nDCG@10"] == pytest.approx(
        res.scores["nDCG@10"], abs=1e-6
    )
    # a different token limit is a different cache entry
    short = evaluate(model="all-MiniLM-L6-v2", beir=beir, cache_dir=cache, depth=5, max_seq_length=16)
    assert short.details["embeddings_cached"] is False


def test_reranker_reorders_the_first_stage(beir, tmp_path):
    from negclean.evaluate import evaluate
    from negclean.evaluate.measures import read_trec_run, write_trec_run

    first = {"q1": {"cats0": 3.0, "cats1": 2.0, "echo": 1.0}, "q2": {"river0": 2.0, "bread0": 1.0}}
    run_file = write_trec_run(first, tmp_path / "first.trec")
    res = evaluate(
        model="all-MiniLM-L6-v2",
        kind="reranker",
        beir=beir,
        first_stage=str(run_file),
        top_k=2,
        output_dir=tmp_path / "rr",
        measures=["R@100"],
    )
    reranked = read_trec_run(tmp_path / "rr" / "run.trec")
    assert set(reranked["q1"]) == {"cats0", "cats1"} and set(reranked["q2"]) == {"river0", "bread0"}
    assert res.details["top_k"] == 2 and res.details["first_stage"]["first_stage"] == "run file"
    bm25 = evaluate(model="all-MiniLM-L6-v2", kind="reranker", beir=beir, top_k=3, cache_dir=str(tmp_path / "c"))
    assert bm25.details["first_stage"]["first_stage"] == "bm25"


def test_eval_cli_json(beir, tmp_path):
    from typer.testing import CliRunner

    from negclean.cli.main import app

    res = CliRunner().invoke(
        app,
        [
            "eval",
            "all-MiniLM-L6-v2",
            "--beir",
            str(beir),
            "--json",
            "--depth",
            "3",
            "--cache-dir",
            str(tmp_path / "c"),
            "-o",
            str(tmp_path / "ev"),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["queries"] == 4 and set(data["scores"]) == {"nDCG@10", "R@100"}
    res = CliRunner().invoke(app, ["eval", "all-MiniLM-L6-v2", "--beir", str(beir), "--split", "dev"])
    assert res.exit_code == 3 and "split 'dev'" in res.output
