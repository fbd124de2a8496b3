"""The holes simulation's own code (benchmarks/bench_holes.py): binarising and thinning qrels, the errors and
Kendall's tau against full qrels (through the real holes report and ir-measures), the judge's precision and
recall on the holes, and reciprocal-rank fusion. Tiny inputs, no model: fast."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from negclean.holes import AddedJudgment, holes_report, pool_unjudged

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_holes.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_holes", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FULL_GRADED = {
    "q1": {"a": 3, "b": 2, "c": 1, "d": 0, "e": 2},
    "q2": {"f": 2, "g": 0, "h": 3},
    "q3": {"i": 1, "j": 0},  # nothing at grade >= 2: not evaluable
}


def test_binarise_keeps_judgments_and_drops_queries_without_relevant(bench):
    full = bench.binarise(FULL_GRADED, grade=2)
    assert full == {"q1": {"a": 1, "b": 1, "c": 0, "d": 0, "e": 1}, "q2": {"f": 1, "g": 0, "h": 1}}


def test_thin_keeps_k_relevant_only_and_is_seeded(bench):
    full = bench.binarise(FULL_GRADED, grade=2)
    one = bench.thin(full, k=1, seed=13)
    assert set(one) == {"q1", "q2"}
    for qid, docs in one.items():
        assert len(docs) == 1 and all(g == 1 for g in docs.values())  # non-relevant judgments dropped
        assert set(docs) <= {d for d, g in full[qid].items() if g}
    assert bench.thin(full, k=1, seed=13) == one  # same seed, same choice
    many = {bench.thin(full, k=1, seed=s)["q1"].popitem()[0] for s in range(40)}
    assert len(many) == 3  # the seed does choose: every relevant document of q1 is picked by some seed
    assert bench.thin(full, k=5, seed=13) == {"q1": {"a": 1, "b": 1, "e": 1}, "q2": {"f": 1, "h": 1}}
    kept = bench.thin(full, k=1, seed=13, keep_nonrelevant=True)
    assert {q: {d for d, g in docs.items() if g} for q, docs in kept.items()} == {q: set(d) for q, d in one.items()}
    assert kept["q1"].keys() - one["q1"].keys() == {"c", "d"} and kept["q2"].keys() - one["q2"].keys() == {"g"}
    with pytest.raises(ValueError, match="k must be"):
        bench.thin(full, k=0, seed=13)


def _runs():
    # "good" puts the relevant documents first, "bad" last; "mid" in between
    return {
        "good": {"q1": {"a": 5, "b": 4, "e": 3, "d": 2, "x": 1}, "q2": {"h": 3, "f": 2, "y": 1}},
        "mid": {"q1": {"x": 5, "a": 4, "d": 3, "b": 2, "e": 1}, "q2": {"y": 3, "h": 2, "f": 1}},
        "bad": {"q1": {"x": 5, "d": 4, "c": 3, "a": 2, "b": 1}, "q2": {"y": 3, "g": 2, "f": 1}},
    }


def test_errors_vs_full_match_the_report(bench):
    full = bench.binarise(FULL_GRADED, grade=2)
    thinned = bench.thin(full, k=1, seed=13)
    # filling with the truth itself: the filled scores equal the full ones, so tau 1 and no error
    rep = holes_report(_runs(), original=thinned, filled=full, reference=full)
    err = bench.errors_vs_full(rep)
    assert set(err) == {"thinned", "filled", "condensed"}
    assert err["filled"]["mae"] == pytest.approx(0.0)
    assert err["filled"]["tau"] == pytest.approx(1.0)
    truth, thin_scores = rep.ndcg("reference"), rep.ndcg("original")
    expected = sum(abs(thin_scores[s] - truth[s]) for s in truth) / 3
    assert err["thinned"]["mae"] == pytest.approx(expected) and expected > 0
    # a filling that reverses the order gives tau -1
    flipped = {q: {d: 1 - g for d, g in docs.items()} for q, docs in full.items()}
    rep2 = holes_report(_runs(), original=thinned, filled=flipped, reference=full)
    assert bench.errors_vs_full(rep2)["filled"]["tau"] == pytest.approx(-1.0)


def _added(qid: str, doc: str, grade: int) -> AddedJudgment:
    return AddedJudgment(qid, doc, grade, "relevant" if grade else "not_relevant", "s", "j", None, "", ("good",), 1)


def test_hole_precision_recall_counts_undecided_as_missed(bench):
    full = bench.binarise(FULL_GRADED, grade=2)
    thinned = {"q1": {"a": 1}, "q2": {"h": 1}}
    pool = pool_unjudged(_runs(), thinned, depth=10)
    holes = {(q, d.doc_id) for q, docs in pool.items() for d in docs}
    truly = {(q, d) for q, d in holes if full[q].get(d, 0)}
    assert truly == {("q1", "b"), ("q1", "e"), ("q2", "f")}
    added = [_added("q1", "b", 1), _added("q1", "x", 1), _added("q1", "d", 0), _added("q2", "f", 0)]  # e undecided
    pr = bench.hole_precision_recall(pool, added, full)
    assert (pr["holes"], pr["truly_relevant"], pr["said_relevant"], pr["tp"]) == (len(holes), 3, 2, 1)
    assert pr["precision"] == pytest.approx(0.5) and pr["recall"] == pytest.approx(1 / 3)
    assert math.isnan(bench.hole_precision_recall(pool, [], full)["precision"])


def test_rrf_fuses_by_rank(bench):
    fused = bench.rrf({"q": {"a": 9.0, "b": 1.0}}, {"q": {"b": 0.9, "c": 0.5}}, depth=2)
    assert list(fused["q"]) == ["b", "a"]  # b: 1/62 + 1/61 beats a: 1/61
    assert fused["q"]["b"] == pytest.approx(1 / 62 + 1 / 61)
