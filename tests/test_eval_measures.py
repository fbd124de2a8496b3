"""Measures: known nDCG@10 on hand-made examples, agreement with ir-measures called directly, run files."""

from __future__ import annotations

import math

import pytest

from negclean.errors import ConfigError, InputError
from negclean.evaluate.measures import (
    mean_scores,
    per_query,
    read_per_query,
    read_trec_run,
    write_per_query,
    write_trec_run,
)

ir_measures = pytest.importorskip("ir_measures")

QRELS = {"q1": {"d1": 1, "d2": 1, "d9": 0}, "q2": {"a": 2, "b": 1}, "q3": {"x": 1}}
RUN = {"q1": {"d3": 0.9, "d1": 0.8, "d4": 0.7, "d2": 0.6}, "q2": {"b": 2.0, "a": 1.0}}


def log2(x):
    return math.log(x, 2)


def test_hand_computed_ndcg_at_10():
    scores = per_query(RUN, QRELS, ["nDCG@10", "R@100"])
    # q1: relevant at ranks 2 and 4 of 2 relevant; linear gains (trec_eval)
    expect_q1 = (1 / log2(3) + 1 / log2(5)) / (1 + 1 / log2(3))
    # q2: grades 1 then 2, ideal 2 then 1
    expect_q2 = (1 + 2 / log2(3)) / (2 + 1 / log2(3))
    assert scores["nDCG@10"]["q1"] == pytest.approx(expect_q1, abs=1e-9)
    assert scores["nDCG@10"]["q2"] == pytest.approx(expect_q2, abs=1e-9)
    assert expect_q1 == pytest.approx(0.650921, abs=1e-6) and expect_q2 == pytest.approx(0.859719, abs=1e-6)
    # q3 has a relevant document but no results: it counts, as 0
    assert scores["nDCG@10"]["q3"] == 0.0 and scores["R@100"]["q3"] == 0.0
    assert mean_scores(scores)["nDCG@10"] == pytest.approx((expect_q1 + expect_q2) / 3)
    assert scores["R@100"]["q1"] == 1.0


def test_agrees_with_ir_measures_called_directly():
    run = {**RUN, "q3": {"y": 3.0, "x": 2.0, "z": 1.0}}
    names = ["nDCG@10", "R@100", "RR@10", "AP"]
    ours = mean_scores(per_query(run, QRELS, names))
    theirs = ir_measures.calc_aggregate([ir_measures.parse_measure(n) for n in names], QRELS, run)
    for n in names:
        assert ours[n] == pytest.approx(theirs[ir_measures.parse_measure(n)], abs=1e-12)
    # a query the run lacks (q3) and one without any relevant document (q4) count as 0, as in ir-measures
    qrels = {**QRELS, "q4": {"d1": 0}}
    ours = per_query(RUN, qrels, ["nDCG@10"])
    assert set(ours["nDCG@10"]) == {"q1", "q2", "q3", "q4"}
    theirs = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, RUN)[ir_measures.nDCG @ 10]
    assert mean_scores(ours)["nDCG@10"] == pytest.approx(theirs, abs=1e-12)
    # ... and per query, as ir_measures.iter_calc gives them
    for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], qrels, RUN):
        assert ours["nDCG@10"][m.query_id] == pytest.approx(m.value, abs=1e-12)


def test_nothing_relevant_is_an_input_error():
    with pytest.raises(InputError, match="no relevant document"):
        per_query(RUN, {"q4": {"d1": 0}}, ["nDCG@10"])


def test_unknown_measure_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown measure"):
        per_query(RUN, QRELS, ["nDCG@ten"])


def test_trec_run_round_trip_and_ranks(tmp_path):
    run = {"q1": {"d1": 0.5, "d2": 0.9, "d3": 0.5}, "q2": {"z": 1.0}}
    path = write_trec_run(run, tmp_path / "run.trec", tag="my system")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 d2 1 0.900000 my_system"
    assert [ln.split()[2] for ln in lines[:3]] == ["d2", "d3", "d1"]  # ties: doc id descending, as trec_eval
    assert read_trec_run(path) == run
    # ranks as written agree with how trec_eval-based measures read the scores (ties included)
    qrels = {"q1": {"d3": 1}, "q2": {"z": 1}}
    assert per_query(read_trec_run(path), qrels, ["nDCG@10"])["nDCG@10"]["q1"] == pytest.approx(1 / log2(3))
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 d1 1\n")
    with pytest.raises(InputError, match="bad.trec:1"):
        read_trec_run(bad)


def test_per_query_file_round_trip(tmp_path):
    scores = per_query(RUN, QRELS, ["nDCG@10", "R@100"])
    back = read_per_query(write_per_query(scores, tmp_path / "pq.tsv"))
    assert list(back) == ["nDCG@10", "R@100"]
    for m in back:
        for q, v in scores[m].items():
            assert back[m][q] == pytest.approx(v, abs=1e-6)
