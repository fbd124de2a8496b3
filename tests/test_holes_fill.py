"""fill_holes on TREC DL 2019 passage: real BM25 run, the real `screen` cascade (MiniLM), a real SQLite store."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest

from negclean.cascade.runner import Cascade
from negclean.cascade.store import JudgmentStore
from negclean.evaluate.measures import sorted_docs
from negclean.holes import fill_holes, holes_report
from negclean.pipeline import load_cascade

DEPTH = 5


@pytest.fixture(scope="module")
def dl19(shared_data: Path, tmp_path_factory) -> SimpleNamespace:
    import torch

    from negclean.evaluate.retrieval import bm25_run, load_beir_split

    torch.set_num_threads(1)
    root = shared_data / "trec-dl-2019-passage"
    if not root.is_dir():
        pytest.skip(f"TREC DL 2019 passage not found at {root}")
    data = load_beir_split(root, split="test")
    qids = list(data.qrels)[:4]
    bm25, _ = bm25_run(data, depth=30, cache_dir=str(tmp_path_factory.mktemp("bm25")))
    bm25 = {q: bm25[q] for q in qids}
    # a second system: BM25's top 30 in reverse order (its top 5 is BM25's ranks 26-30: a disjoint pool)
    reverse = {q: {d: -s for d, s in docs.items()} for q, docs in bm25.items()}
    runs = {"bm25": bm25, "bm25-reversed": reverse}
    # thinned qrels: one relevant (grade >= 2) document per query, as a sparse test set has; the last query keeps
    # only its judged-irrelevant documents (no positive to show the screen)
    thin: dict[str, dict[str, int]] = {}
    for q in qids[:-1]:
        best = sorted(d for d, g in data.qrels[q].items() if g >= 2)[0]
        thin[q] = {best: data.qrels[q][best]}
    last = qids[-1]
    thin[last] = {d: g for d, g in data.qrels[last].items() if g == 0}
    store = tmp_path_factory.mktemp("holes") / "judgments.sqlite"
    given = copy.deepcopy(thin)
    first = fill_holes(data, runs, qrels=thin, cascade="screen", depth=DEPTH, store=store, min_grade=2)
    rerun = fill_holes(data, runs, qrels=thin, cascade="screen", depth=DEPTH, store=store, min_grade=2)
    return SimpleNamespace(
        data=data, runs=runs, thin=thin, given=given, store=store, first=first, rerun=rerun, last=last
    )


def test_original_judgments_are_never_changed(dl19):
    assert dl19.thin == dl19.given  # the input dict is not modified
    for q, docs in dl19.given.items():
        for d, g in docs.items():
            assert dl19.first.qrels[q][d] == g
    assert not any(
        (a.query_id, a.doc_id) in {(q, d) for q, docs in dl19.given.items() for d in docs} for a in dl19.first.added
    )


def test_a_judged_zero_stays_zero_where_the_judge_says_relevant(dl19):
    flagged = next(a for a in dl19.first.added if a.grade >= 1)  # the screen calls this relevant
    qrels = copy.deepcopy(dl19.thin)
    qrels[flagged.query_id][flagged.doc_id] = 0
    again = fill_holes(dl19.data, dl19.runs, qrels=qrels, cascade="screen", depth=DEPTH, store=dl19.store, min_grade=2)
    assert again.qrels[flagged.query_id][flagged.doc_id] == 0
    assert (flagged.query_id, flagged.doc_id) not in {(a.query_id, a.doc_id) for a in again.added}
    assert again.pooled == dl19.first.pooled - 1


def test_counts_add_up_and_match_an_independent_pool(dl19):
    f = dl19.first
    expected = set()
    for run in dl19.runs.values():
        for q, docs in run.items():
            for d, _s in sorted_docs(docs)[:DEPTH]:
                if d not in dl19.thin[q]:
                    expected.add((q, d))
    assert f.pooled == len(expected) > 0
    assert f.pooled == f.relevant + f.not_relevant + f.undecided
    assert f.judged == len(f.added) == f.relevant + f.not_relevant
    assert f.relevant > 0 and f.not_relevant > 0
    added = {(a.query_id, a.doc_id) for a in f.added}
    assert added <= expected
    # the query without a positive: the screen cannot compare, so its holes stay undecided
    assert f.no_positive_queries == 1
    assert not any(a.query_id == dl19.last for a in f.added)
    assert f.undecided >= sum(1 for q, _d in expected if q == dl19.last)


def test_provenance_names_stage_judge_fingerprint_systems_and_rank(dl19):
    f = dl19.first
    with JudgmentStore(":memory:") as db, Cascade(load_cascade("screen"), store=db) as cascade:
        fps = {s.name: cascade.stage_fingerprint(s.name) for s in cascade.config.stages}
    for a in f.added:
        assert a.stage in fps and a.fingerprint == fps[a.stage]
        assert a.judge_id and a.label in ("relevant", "not_relevant")
        assert a.grade == (1 if a.label == "relevant" else 0)
        assert a.confidence is not None and 0.0 <= a.confidence <= 1.0
        assert a.systems and set(a.systems) <= set(dl19.runs)
        for system in a.systems:
            top = [d for d, _s in sorted_docs(dl19.runs[system][a.query_id])[:DEPTH]]
            assert a.doc_id in top
        assert a.rank == min(
            1 + [d for d, _s in sorted_docs(dl19.runs[s][a.query_id])].index(a.doc_id) for s in a.systems
        )
        assert a.as_dict()["fingerprint"] == a.fingerprint


def test_rerun_is_served_from_the_store(dl19):
    first, rerun = dl19.first, dl19.rerun
    assert first.judged_now > 0
    assert rerun.judged_now == 0 and rerun.model_calls == 0 and rerun.cost == 0.0
    assert rerun.from_store == sum(s.candidates for s in rerun.stages)
    assert rerun.added == first.added and rerun.qrels == first.qrels


def test_report_on_the_filled_qrels(dl19):
    report = holes_report(dl19.runs, original=dl19.thin, filled=dl19.first.qrels, reference=dl19.data.qrels)
    by = {s.name: s for s in report.systems}
    assert by["bm25"].judged_filled > by["bm25"].judged_original
    assert set(report.rankings) == {"original", "filled", "condensed", "reference"}
    assert "original vs reference" in report.taus
