"""Measures of negclean.holes against tiny examples checked by hand (no data, no model)."""

from __future__ import annotations

import math

import pytest

from negclean.holes import condensed_run, holes_report, judged_at, kendall_tau, pool_unjudged

LOG3 = math.log2(3)

# q1: a and c relevant, b judged not relevant; x and y unjudged. The run ranks x, a, y, b.
QRELS = {"q1": {"a": 1, "b": 0, "c": 1}}
RUN = {"q1": {"x": 5.0, "a": 4.0, "y": 3.0, "b": 2.0}}


def test_condensed_list_drops_unjudged_and_moves_the_rest_up():
    assert condensed_run(RUN, QRELS) == {"q1": {"a": 4.0, "b": 2.0}}
    assert condensed_run({"other": {"a": 1.0}}, QRELS) == {}  # a query the qrels lack is not evaluated


def test_report_against_hand_computed_ndcg_condensed_and_judged():
    filled = {"q1": {**QRELS["q1"], "x": 1, "y": 0}}
    report = holes_report({"sys": RUN}, original=QRELS, filled=filled)
    s = report.systems[0]
    idcg = 1 + 1 / LOG3  # two relevant documents (a, c)
    # original: a at rank 2 -> DCG 1/log2(3)
    assert s.ndcg_original == pytest.approx((1 / LOG3) / idcg, abs=1e-6)
    # condensed: x and y removed, a at rank 1 -> DCG 1
    assert s.ndcg_condensed == pytest.approx(1 / idcg, abs=1e-6)
    # filled: x (rank 1) and a (rank 2) relevant, c still relevant and unretrieved: IDCG over 3 relevant
    assert s.ndcg_filled == pytest.approx((1 + 1 / LOG3) / (1 + 1 / LOG3 + 0.5), abs=1e-6)
    # Judged@10 over a run of 4: a and b judged -> 2/4; filled: all 4
    assert s.judged_original == pytest.approx(0.5)
    assert s.judged_filled == pytest.approx(1.0)
    assert report.queries == 1


def test_judged_breaks_ties_as_trec_eval():
    # e and d tie: trec_eval ranks the larger doc id first (e), so the top 1 is unjudged
    assert judged_at({"q": {"d": 1.0, "e": 1.0}}, {"q": {"d": 1}}, k=1) == {"q": 0.0}
    assert judged_at({"q": {"d": 2.0, "e": 1.0}}, {"q": {"d": 1}}, k=1) == {"q": 1.0}
    assert judged_at({}, {"q": {"d": 1}}, k=10) == {"q": 0.0}  # a query the run lacks


def test_kendall_tau_by_hand():
    # pairs (A,B), (A,C) agree, (B,C) disagree: (2 - 1) / 3
    assert kendall_tau({"A": 3.0, "B": 2.0, "C": 1.0}, {"A": 3.0, "B": 1.0, "C": 2.0}) == pytest.approx(1 / 3)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau({"A": 1.0}, {"A": 2.0}))
    assert math.isnan(kendall_tau([1.0, 1.0], [1.0, 2.0]))


def test_report_ranks_systems_and_correlates_the_rankings():
    qrels = {"q": {"a": 1, "b": 0}}
    runs = {
        "good": {"q": {"a": 2.0, "u": 1.0}},  # relevant first
        "holey": {"q": {"u": 2.0, "a": 1.0}},
    }  # an unjudged document first
    report = holes_report(runs, original=qrels, filled={"q": {"a": 1, "b": 0, "u": 1}})
    assert report.rankings["original"] == ("good", "holey")
    # filled: u is relevant too, both systems retrieve two relevant documents in the top 2 -> tie, ranked by name
    assert report.ndcg("filled") == {"good": pytest.approx(1.0), "holey": pytest.approx(1.0)}
    # condensed: u removed, a moves to rank 1 for both: the penalty for the hole is gone
    assert report.ndcg("condensed") == {"good": pytest.approx(1.0), "holey": pytest.approx(1.0)}
    assert report.ndcg("original")["holey"] == pytest.approx(1 / LOG3)
    assert math.isnan(report.taus["original vs filled"])  # the filled scoring ties every system
    md = report.to_markdown()
    assert "| good |" in md and "original vs filled" in md
    assert report.as_dict()["taus"]["original vs filled"] is None


def test_pool_takes_each_runs_top_k_unjudged_once_with_best_rank():
    qrels = {"q": {"a": 1}}
    runs = {
        "s1": {"q": {"a": 3.0, "u": 2.0, "v": 1.0}, "not-in-qrels": {"z": 1.0}},
        "s2": {"q": {"u": 3.0, "w": 2.0, "v": 1.0}},
    }
    pool = pool_unjudged(runs, qrels, depth=2)
    assert [(d.doc_id, d.rank, d.systems) for d in pool["q"]] == [("u", 1, ("s1", "s2")), ("w", 2, ("s2",))]
    assert "not-in-qrels" not in pool
