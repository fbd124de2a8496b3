"""Sparse-label benchmark (issue 15): keep rules, truth from the full qrels, the kept positive's rank,
recall at a flag budget, the raw-score screen, and leave-one-data-set-out fitting through the CLI. Tiny
BEIR folders written here, retrieved with the packaged MiniLM (real model, embeddings cached in tmp)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from negclean.benchjudges.metrics import recall_at_budget, threshold_for_recall
from negclean.benchjudges.sparse import choose_positive, from_beir_sparse

TOPICS = {
    "volcano": [
        "lava flows from the erupting volcano",
        "magma chambers beneath volcanic islands",
        "ash clouds after a volcanic eruption",
        "geologists monitor active volcanoes",
        "pyroclastic flows destroy villages near volcanoes",
    ],
    "bread": [
        "baking sourdough bread with a starter",
        "kneading dough for a crusty loaf",
        "yeast makes bread dough rise",
        "whole wheat flour in homemade bread",
        "oven temperature for baking a baguette",
    ],
    "chess": [
        "opening moves in a chess game",
        "grandmasters study chess endgames",
        "the queen gambit chess opening",
        "checkmate patterns with rook and king",
        "chess tournaments and rating systems",
    ],
    "whale": [
        "humpback whales sing long songs",
        "blue whales are the largest animals",
        "whale migration across the ocean",
        "killer whales hunt seals in packs",
        "sperm whales dive to great depths",
    ],
    "solar": [
        "solar panels convert sunlight to electricity",
        "photovoltaic cells on rooftops",
        "solar farms in the desert",
        "efficiency of silicon solar cells",
        "storing solar energy in batteries",
    ],
    "tennis": [
        "serving an ace at wimbledon",
        "tennis rackets and string tension",
        "clay court tennis tournaments",
        "a backhand volley at the net",
        "grand slam tennis champions",
    ],
}
# per topic: the first 4 docs are judged with these grades, the 5th is unjudged
GRADES = (3, 2, 1, 0)


def _write_set(root: Path, name: str, topics: list[str], *, filler: int = 0) -> Path:
    folder = root / name
    (folder / "qrels").mkdir(parents=True)
    docs, qrels = [], ["query-id\tcorpus-id\tscore"]
    for t in topics:
        for j, text in enumerate(TOPICS[t]):
            docs.append({"_id": f"{t}-{j}", "title": "", "text": text})
            if j < len(GRADES):
                qrels.append(f"{name}-{t}\t{t}-{j}\t{GRADES[j]}")
    for k in range(filler):
        docs.append({"_id": f"fill-{k}", "title": "", "text": f"unrelated note number {k} about paperwork"})
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"{name}-{t}", "text": f"tell me about {t}"}) + "\n" for t in topics)
    )
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return folder


# -- keep rules ------------------------------------------------------------------------------------


def test_keep_rules_by_hand():
    rel = {"d9": 3, "d2": 3, "d5": 1, "d7": 1, "d4": 2}
    assert choose_positive(rel, keep="best", seed=0, query_id="q") == "d2"  # highest grade, smallest docid
    weakest = {choose_positive(rel, keep="weakest", seed=s, query_id="q") for s in range(20)}
    assert weakest == {"d5", "d7"}  # only the lowest grade, ties drawn by seed (both happen over 20 seeds)
    picks = [choose_positive(rel, keep="random", seed=s, query_id="q") for s in range(40)]
    assert set(picks) == set(rel)  # uniform over all relevant documents
    assert picks == [choose_positive(rel, keep="random", seed=s, query_id="q") for s in range(40)]  # seeded
    with pytest.raises(Exception, match="keep"):
        choose_positive(rel, keep="strongest", seed=0, query_id="q")


# -- the benchmark: truth from the full qrels, the positive's rank ------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse")
    return root, _write_set(root, "setA", ["volcano", "bread", "chess", "whale"], filler=6)


def test_truth_candidates_and_positive_rank(tiny):
    from negclean.embed import load_embedder

    root, folder = tiny
    depth = 6
    bench = from_beir_sparse(folder, relevant_grade=2, keep="weakest", depth=depth, seed=3, cache_dir=root / "cache")
    assert bench.name == "setA" and len(bench.instances) == 4
    assert "unjudged candidates count as NOT relevant" in " ".join(bench.notes)
    emb = load_embedder()
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
    doc_vecs = emb.encode([d["text"] for d in corpus])
    qrels = {}
    for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, g = line.split("\t")
        qrels[(q, d)] = int(g)
    for inst in bench.instances:
        pos = inst.positives[0].docid
        topic = inst.query_id.split("-", 1)[1]
        assert pos == f"{topic}-1"  # weakest with grade >= 2: the grade-2 doc
        assert inst.subset == "setA" and len(inst.negatives) == depth
        assert pos not in {p.docid for p in inst.negatives}
        for p in inst.negatives:  # unjudged (the 5th doc, fillers) and grade < 2 count as not relevant
            assert bench.truth[(inst.query_id, p.docid)] == (qrels.get((inst.query_id, p.docid), 0) >= 2)
        # the positive's rank over the full corpus, by brute force
        s = doc_vecs @ emb.encode([inst.query])[0]
        at = [d["_id"] for d in corpus].index(pos)
        assert bench.positive_ranks[inst.query_id] == 1 + int((np.delete(s, at) > s[at]).sum())
        # candidates: the retriever's list with the positive's place skipped
        r = bench.positive_ranks[inst.query_id]
        expected = [k for k in range(1, depth + 2) if k != r][:depth]
        assert [p.rank for p in inst.negatives] == expected
    # every query has a relevant candidate here (the grade-3 doc of its topic is retrieved)
    assert bench.n_relevant == 4


def test_bm25_retriever_ranks_are_consistent(tiny):
    root, folder = tiny
    bench = from_beir_sparse(folder, relevant_grade=1, keep="best", retriever="bm25", depth=3, cache_dir=root / "cache")
    for inst in bench.instances:
        assert inst.positives[0].docid.endswith("-0")  # best: the grade-3 doc
        r = bench.positive_ranks[inst.query_id]
        assert [p.rank for p in inst.negatives] == [k for k in range(1, 5) if k != r][: len(inst.negatives)]


# -- recall at a flag budget ---------------------------------------------------------------------------


def test_recall_at_budget_by_hand():
    truth = [1, 0, 1, 0, 1, 0]
    conf = [0.9, 0.8, 0.7, 0.6, 0.2, None]
    # 3 true: budget 1x flags the top 3 (0.9, 0.8, 0.7): 2 of 3 found
    assert recall_at_budget(truth, conf, budget=1) == pytest.approx(2 / 3)
    # 2x flags 6: everything
    assert recall_at_budget(truth, conf, budget=2) == pytest.approx(1.0)
    # ties at the cut share out by expectation: top 2 of [0.9, 0.5 (true), 0.5 (false)] -> 1 + 0.5 of the tie
    assert recall_at_budget([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1], budget=1) == pytest.approx(0.75)
    # None ranks last: the duplicate judge's unflagged candidates
    assert recall_at_budget([1, 1, 0], [None, 1.0, None], budget=1) == pytest.approx(0.5 + 0.5 * 0.5)
    assert recall_at_budget([0, 0], [0.1, 0.2], budget=1) is None


# -- the raw-score screen ------------------------------------------------------------------------------


def test_similarity_raw_mode_flags_on_s_qc_alone_and_keeps_old_fingerprints():
    from negclean.data.records import Instance, Passage
    from negclean.judge.base import JudgeTask
    from negclean.judge.config import SimilarityJudgeConfig
    from negclean.judge.similarity import SimilarityJudge

    class Fixed:
        table = {"q": [1.0, 0.0], "pos": [1.0, 0.0], "a": [0.6, 0.8], "b": [0.3, 0.954]}

        def encode(self, texts, *, prefix="", batch_size=64, show_progress=False):
            return np.asarray([self.table[t] for t in texts], dtype=np.float32)

    assert "score" not in SimilarityJudgeConfig().canonical()  # stores filled before raw mode keep their keys
    raw = SimilarityJudgeConfig(score="raw", threshold=0.5, band=(-1.0, 1.0))
    assert raw.fingerprint() != SimilarityJudgeConfig(score="raw", threshold=0.4, band=(-1.0, 1.0)).fingerprint()
    with pytest.raises(ValueError, match="threshold"):
        SimilarityJudgeConfig(score="raw")
    inst = Instance("q1", "q", (Passage("p", "pos"),), (Passage("a", "a"), Passage("b", "b")))
    (res,) = SimilarityJudge(raw, embedder=Fixed()).judge([JudgeTask(inst, (0, 1))])
    assert [v.label.value for v in res.verdicts] == ["relevant", "not_relevant"]  # s = 0.6 > 0.5, 0.3 is not
    assert [v.confidence for v in res.verdicts] == pytest.approx([0.8, 0.65])  # (s + 1) / 2 on band (-1, 1)


# -- leave one data set out, through the CLI --------------------------------------------------------------


@pytest.mark.slow  # three benchmarks, three learned fits with nested CV: ~50 s on 2 shared cores
def test_lodo_fits_only_on_the_other_sets(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from negclean.cli.main import app

    monkeypatch.setenv("NEGCLEAN_CACHE_DIR", str(tmp_path / "cache"))
    sets = {
        "alpha": ["volcano", "bread", "chess"],
        "beta": ["whale", "solar", "tennis"],
        "gamma": ["volcano", "whale", "tennis"],
    }
    folders = [_write_set(tmp_path / "data", n, t, filler=3) for n, t in sets.items()]
    systems = tmp_path / "systems.yaml"
    systems.write_text(
        "systems:\n"
        "  - {name: learned, stages: [{name: s1, judge: {backend: learned, path: lodo}}]}\n"
        "  - {name: ratio, target_recall: 0.75, stages: [{name: s1, judge: {backend: similarity, ratio: lodo, "
        "band: [0.5, 1.2]}}]}\n"
        "  - {name: plain, stages: [{name: s1, judge: {backend: similarity, ratio: 0.9}}]}\n"
    )
    out = tmp_path / "run"
    args = ["bench-judges", "--sparse", "--systems", str(systems), "--depth", "5", "-o", str(out)]
    for f in folders:
        args += ["--beir", str(f)]
    res = CliRunner().invoke(app, args + ["--relevant-grade", "1", "--relevant-grade", "2", "--relevant-grade", "1"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert data["options"]["relevant_grade"] == [1, 2, 1]
    for held in sets:
        model = json.loads((out / "models" / f"learned-minus-{held}.json").read_text())
        others = [n for n in sets if n != held]
        assert model["training"]["fitted_on"] == others
        ids = model["training"]["query_ids"]
        assert ids and not any(i.startswith(held + "/") for i in ids)
        assert {i.split("/", 1)[0] for i in ids} == set(others)
        rows = {r["system"]: r for r in data["per_set"][held]}
        assert rows["learned"]["fitted_on"] == "fitted on " + "+".join(others)
        assert rows["plain"]["fitted_on"] == "-"
        # the ratio: chosen on the other sets' candidates for recall 0.75, by hand from their scores
        rel, truth = _ratios(data, out, others)
        t, _, _ = threshold_for_recall(rel, truth, target=0.75)
        assert rows["ratio"]["values"]["s1.ratio"] == pytest.approx(round(t, 4))
    pooled = {r["system"]: r for r in data["pooled"]}
    for name in ("learned", "ratio", "plain"):
        assert pooled[name]["scores"]["n"] == sum(
            next(r for r in data["per_set"][s] if r["system"] == name)["scores"]["n"] for s in sets
        )
    assert pooled["learned"]["fitted_on"].startswith("each set held out")
    assert "## pooled" in (out / "results.md").read_text()


def _ratios(data, out, names):
    """Recompute the ratio s(q,c)/s(q,p) of the named sets' candidates from scratch (MiniLM)."""
    from negclean.benchjudges.sparse import from_beir_sparse
    from negclean.embed import load_embedder
    from negclean.judge.similarity import relative_score

    emb = load_embedder()
    grades = dict(zip([b["name"] for b in data["benchmarks"]], data["options"]["relevant_grade"]))
    rel, truth = [], []
    for n in names:
        bench = from_beir_sparse(out.parent / "data" / n, relevant_grade=grades[n], depth=5)
        for inst in bench.instances:
            q = emb.encode([inst.query])[0]
            sp = float(emb.encode([inst.positives[0].text])[0] @ q)
            for p in inst.negatives:
                rel.append(float(relative_score(float(emb.encode([p.text])[0] @ q), sp)))
                truth.append(bench.truth[(inst.query_id, p.docid)])
    return np.asarray(rel), np.asarray(truth, dtype=bool)
