"""`mine()` end to end on small synthetic BEIR folders: positives never mined, window, filters, several
positives, shortfall report, duplicates, retrievers, caches, instance input, formats, CLI, judge/fix."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from _mine_util import HashEmbedder, TableEmbedder, topic_folder, write_beir
from negclean.data.io import read_instances
from negclean.judge.qrels import read_qrels
from negclean.mine.mine import mine

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture()
def folder(tmp_path):
    return topic_folder(tmp_path / "beir")


def rows(path):
    return list(read_instances(str(path)))


def run(folder, tmp_path, name="out.jsonl", embedder=None, **opts):
    out = tmp_path / name
    opts.setdefault("cache_dir", str(tmp_path / "cache"))
    summary = mine(beir=str(folder), output=str(out), embedder=embedder or HashEmbedder(), **opts)
    return summary, (rows(out) if out.suffix != ".parquet" else None)


def test_positives_never_mined_and_ranks_in_window(folder, tmp_path):
    summary, insts = run(folder, tmp_path, rank_range="0:60", num_negatives=20, ratio=None)
    qrels = read_qrels(folder / "qrels" / "train.tsv")
    assert len(insts) == 4 and summary.queries_written == 4
    for inst in insts:
        labeled = {d for d, g in qrels[inst.query_id].items() if g >= 1}
        assert {p.docid for p in inst.positives} == labeled  # several positives, all kept
        assert len(inst.positives) == 3
        assert not labeled & {n.docid for n in inst.negatives}
        ranks = [n.rank for n in inst.negatives]
        assert ranks == sorted(ranks) and all(1 <= r <= 60 for r in ranks)
        scores = [n.score for n in inst.negatives]
        assert scores == sorted(scores, reverse=True)
        meta = inst.meta["negclean_mine"]
        assert meta["params"]["rank_range"] == "0:60" and meta["params_hash"] == summary.params_hash
    # every retrieved positive fell in the window (0:60) and was dropped there
    assert summary.dropped["positive"] == 12 - summary.positives_outside_depth
    # the grade-0 document is a legitimate negative: it may be mined
    assert summary.dropped["judged_relevant"] == 0


def test_top_sampling_takes_the_first_unlabeled_ranks(folder, tmp_path):
    summary, insts = run(folder, tmp_path, rank_range="5:100", num_negatives=7, ratio=None, exclude_duplicates=False)
    assert len(insts) == 4
    for inst in insts:
        pos_ranks = {p.rank for p in inst.positives if p.rank is not None}
        expect = [r for r in range(6, 101) if r not in pos_ranks][:7]
        assert [n.rank for n in inst.negatives] == expect


def test_multi_positive_filter_uses_lowest_positive(tmp_path):
    # query at 0 deg; positives at 10 and 60 deg; candidates between and beyond
    angles = {"p-hi": 10, "p-lo": 60, "c55": 55, "c58": 58, "c70": 70, "c80": 80, "c85": 85}
    docs = {k: ("", k) for k in angles}
    table = {k: np.array([np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))]) for k, a in angles.items()}
    table["query"] = np.array([1.0, 0.0])
    folder = write_beir(tmp_path / "b", docs, {"q": "query"}, [("q", "p-hi", 1), ("q", "p-lo", 1)])
    summary, [inst] = run(
        folder,
        tmp_path,
        embedder=TableEmbedder(table),
        include_title=False,
        rank_range="0:10",
        num_negatives=5,
        ratio=0.95,
    )
    # cos 60 = 0.5; threshold 0.475: c55 (0.574) and c58 (0.530) go, c70 (0.342) stays
    assert [n.docid for n in inst.negatives] == ["c70", "c80", "c85"]
    assert summary.dropped["ratio"] == 2
    assert inst.meta["negclean_mine"]["positive_score_min"] == pytest.approx(0.5, abs=1e-6)
    assert [p.rank for p in inst.positives] == [1, 4]  # ranks before filtering: c55, c58 come between


def test_percentage_rule_with_negative_positive_scores(tmp_path):
    # the positive scores cos(100 deg) = -0.174; threshold -0.182 (sign-safe), naive 0.95*s = -0.165
    angles = {"pos": 100, "a95": 95, "a100_5": 100.5, "a101": 101, "a102": 102, "a130": 130, "a170": 170}
    docs = {k: ("", k) for k in angles}
    table = {k: np.array([np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))]) for k, a in angles.items()}
    table["query"] = np.array([1.0, 0.0])
    folder = write_beir(tmp_path / "b", docs, {"q": "query"}, [("q", "pos", 1)])
    summary, [inst] = run(
        folder,
        tmp_path,
        embedder=TableEmbedder(table),
        include_title=False,
        rank_range="0:10",
        num_negatives=10,
        ratio=0.95,
    )
    kept = [n.docid for n in inst.negatives]
    # cos(100.5) = -0.1822 (> -0.1824: dropped, it is as close as the rule allows); cos(101) = -0.1908 kept
    assert kept == ["a101", "a102", "a130", "a170"]
    assert summary.dropped["ratio"] == 2  # a95 (above the positive) and a100_5
    assert all(n.score < -0.18 for n in inst.negatives)
    # absolute margin and ceiling on the same data
    summary, [inst] = run(
        folder,
        tmp_path,
        name="m.jsonl",
        embedder=TableEmbedder(table),
        include_title=False,
        rank_range="0:10",
        num_negatives=10,
        ratio=None,
        margin=0.1,
        max_score=-0.3,
    )
    assert [n.docid for n in inst.negatives] == ["a130", "a170"]
    # margin threshold -0.174 - 0.1 = -0.274: a95, a100_5, a101, a102 (-0.208) go; the ceiling has nothing left
    assert summary.dropped["margin"] == 4 and summary.dropped["max_score"] == 0
    summary, [inst] = run(
        folder,
        tmp_path,
        name="c.jsonl",
        embedder=TableEmbedder(table),
        include_title=False,
        rank_range="0:10",
        num_negatives=10,
        ratio=None,
        max_score=-0.3,
    )
    assert [n.docid for n in inst.negatives] == ["a130", "a170"] and summary.dropped["max_score"] == 4


def test_shortfall_is_reported_never_silent(folder, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="negclean.mine"):
        summary, insts = run(folder, tmp_path, rank_range="0:20", num_negatives=25, ratio=None)
    assert any("SHORTFALL: 4 of 4 queries" in r.getMessage() for r in caplog.records)
    sf = summary.shortfall
    assert sf.queries_short == 4  # 20 ranks minus 3 positives < 25
    assert sf.negatives_missing == sum(25 - len(i.negatives) for i in insts)
    assert sum(sf.by_missing.values()) == 4
    text = "\n".join(summary.lines())
    assert "SHORTFALL: 4 of 4 queries" in text and f"{sf.negatives_missing} missing" in text
    assert all(i.meta["negclean_mine"]["shortfall"] == 25 - len(i.negatives) for i in insts)
    dropped = mine(
        beir=str(folder),
        output=str(tmp_path / "d.jsonl"),
        embedder=HashEmbedder(),
        rank_range="0:20",
        num_negatives=25,
        ratio=None,
        on_shortfall="drop",
        cache_dir=str(tmp_path / "cache"),
    )
    assert list(read_instances(str(tmp_path / "d.jsonl"), fmt="tevatron")) == []
    assert dropped.shortfall.dropped_queries == 4 and dropped.queries_written == 0
    assert "4 dropped (on_shortfall=drop)" in "\n".join(dropped.lines())
    full, _ = run(folder, tmp_path, name="f.jsonl", rank_range="0:40", num_negatives=5, ratio=None)
    assert full.shortfall.queries_short == 0 and "every mined query got 5 negatives" in "\n".join(full.lines())


def test_duplicates_of_positives_and_query_are_excluded(tmp_path):
    docs = {
        "pos": ("", "The quick brown fox jumps over the lazy dog near the river bank today"),
        "copy": ("", "the QUICK brown fox   jumps over the lazy dog near the river bank today"),
        "near": ("", "The quick brown fox jumps over the lazy dog near the river bank today again"),
        "q": ("", "quick brown fox"),
        "other": ("", "quick brown fox facts and figures"),
        "far": ("", "an unrelated sentence about brown bread"),
    }
    folder = write_beir(tmp_path / "b", docs, {"q1": "quick brown fox"}, [("q1", "pos", 1)])
    summary, [inst] = run(folder, tmp_path, include_title=False, rank_range="0:10", num_negatives=10, ratio=None)
    assert {n.docid for n in inst.negatives} == {"other", "far"}
    assert summary.dropped["duplicate"] == 3
    summary, [inst] = run(
        folder,
        tmp_path,
        name="x.jsonl",
        include_title=False,
        rank_range="0:10",
        num_negatives=10,
        ratio=None,
        exclude_duplicates=False,
    )
    assert {n.docid for n in inst.negatives} == {"copy", "near", "q", "other", "far"}


def test_chunk_size_does_not_change_the_output(folder, tmp_path):
    """Queries are selected a chunk at a time (numpy over the chunk): one query per chunk and every query
    in one chunk give the same instances and the same counts."""
    opts = dict(rank_range="0:40", num_negatives=4, ratio=0.99, near_threshold=0.5)
    a, ia = run(folder, tmp_path, name="one.jsonl", query_chunk=1, **opts)
    b, ib = run(folder, tmp_path, name="all.jsonl", query_chunk=1000, **opts)

    def as_rows(insts):
        return [
            (
                i.query_id,
                [(n.docid, n.score, n.rank) for n in i.negatives],
                [(p.docid, p.score, p.rank) for p in i.positives],
            )
            for i in insts
        ]

    assert as_rows(ia) == as_rows(ib) and len(ia) > 1
    assert (a.dropped, a.candidates, a.duplicates_examined, a.shortfall) == (
        b.dropped,
        b.candidates,
        b.duplicates_examined,
        b.shortfall,
    )
    assert a.queries_with_candidate_above_lowest_positive == b.queries_with_candidate_above_lowest_positive


def test_judged_relevant_below_min_grade_is_never_a_negative(tmp_path):
    docs = {f"d{i}": ("", f"apple banana cherry {i}") for i in range(10)}
    folder = write_beir(
        tmp_path / "b", docs, {"q": "apple banana cherry"}, [("q", "d0", 2), ("q", "d1", 1), ("q", "d2", 0)]
    )
    summary, [inst] = run(
        folder, tmp_path, include_title=False, rank_range="0:10", num_negatives=10, ratio=None, min_grade=2
    )
    negs = {n.docid for n in inst.negatives}
    assert "d0" not in negs and "d1" not in negs and "d2" in negs
    assert [p.docid for p in inst.positives] == ["d0"] and summary.dropped["judged_relevant"] == 1


def test_skipped_queries_are_counted(tmp_path):
    docs = {f"d{i}": ("", f"word{i} common") for i in range(5)}
    folder = write_beir(
        tmp_path / "b",
        docs,
        {"q1": "common", "q2": "word1", "q3": "x"},
        [("q1", "d0", 1), ("q2", "d1", 0), ("q3", "missing-doc", 1), ("q4", "d2", 1)],
    )
    summary, insts = run(folder, tmp_path, rank_range="0:5", num_negatives=2, ratio=None)
    assert [i.query_id for i in insts] == ["q1"]
    assert dict(summary.queries_skipped) == {
        "no_positive": 1,
        "positives_not_in_corpus": 1,
        "query_not_in_queries_file": 1,
    }
    assert summary.positives_missing_from_corpus == 1 and summary.queries_total == 4


def test_embedding_cache_is_reused_and_chunks_bound_the_work(folder, tmp_path):
    emb = HashEmbedder()
    first, _ = run(folder, tmp_path, embedder=emb, query_chunk=3, rank_range="0:30", num_negatives=3)
    assert first.retriever["embeddings_cached"] is False
    passage_calls = emb.calls[0]
    assert passage_calls == 160
    assert emb.calls[1:] == [3, 1]  # queries encoded chunk by chunk
    emb2 = HashEmbedder()
    second, _ = run(folder, tmp_path, name="again.jsonl", embedder=emb2, rank_range="0:30", num_negatives=3)
    # passages from the corpus matrix, queries from the shared text cache (they came in other chunks before)
    assert second.retriever["embeddings_cached"] is True and emb2.calls == []
    cache_file = second.retriever["embeddings_cache"]
    assert cache_file.endswith(".npy") and np.load(cache_file, allow_pickle=False).shape == (160, 512)
    third, _ = run(
        folder,
        tmp_path,
        name="p.jsonl",
        embedder=HashEmbedder(),
        rank_range="0:30",
        num_negatives=3,
        passage_prefix="passage: ",
    )
    assert third.retriever["embeddings_cached"] is False  # another prefix, other vectors
    # re-mining the same queries with other selection options embeds nothing: query chunks are cached too
    emb4 = HashEmbedder()
    fourth, insts4 = run(folder, tmp_path, name="again2.jsonl", embedder=emb4, rank_range="0:30", num_negatives=2)
    assert emb4.calls == [] and fourth.negatives_written > 0
    again = {i.query_id: [(n.docid, n.score) for n in i.negatives] for i in insts4}
    fresh = {
        i.query_id: [(n.docid, n.score) for n in i.negatives]
        for i in run(
            folder,
            tmp_path,
            name="nocache.jsonl",
            embedder=HashEmbedder(),
            rank_range="0:30",
            num_negatives=2,
            use_cache=False,
        )[1]
    }
    assert again == fresh  # cached query vectors give the very same scores
    emb5 = HashEmbedder()
    run(folder, tmp_path, name="qp.jsonl", embedder=emb5, rank_range="0:30", num_negatives=3, query_prefix="query: ")
    assert emb5.calls == [4]  # another query prefix: queries embedded again, passages still cached


def test_sampling_modes_are_reproducible(folder, tmp_path):
    a, ia = run(
        folder, tmp_path, name="a.jsonl", sampling="simans", rank_range="0:100", num_negatives=5, ratio=None, seed=3
    )
    b, ib = run(
        folder,
        tmp_path,
        name="b.jsonl",
        sampling="simans",
        rank_range="0:100",
        num_negatives=5,
        ratio=None,
        seed=3,
        query_chunk=1,
    )
    c, ic = run(
        folder, tmp_path, name="c.jsonl", sampling="random", rank_range="0:100", num_negatives=5, ratio=None, seed=3
    )
    ids = lambda insts: [[n.docid for n in i.negatives] for i in insts]  # noqa: E731
    assert ids(ia) == ids(ib) != ids(ic)
    assert all(len(i.negatives) == 5 for i in ia + ic)


@pytest.mark.parametrize("retriever", ["bm25", "hybrid"])
def test_bm25_and_hybrid(folder, tmp_path, retriever):
    summary, insts = run(folder, tmp_path, retriever=retriever, rank_range="0:50", num_negatives=10, ratio=None)
    qrels = read_qrels(folder / "qrels" / "train.tsv")
    for inst in insts:
        topic = inst.query_id.split("-")[1]
        assert sum(n.docid.startswith(topic) for n in inst.negatives) >= 8  # lexical matches rank first
        assert not {d for d, g in qrels[inst.query_id].items() if g} & {n.docid for n in inst.negatives}
        if retriever == "hybrid":
            n = inst.negatives[0]
            assert set(n.meta) == {"dense_rank", "bm25_rank", "dense_score", "bm25_score"}
            assert n.score < 0.05  # an RRF value
    assert summary.score_name == ("bm25" if retriever == "bm25" else "rrf")
    assert summary.filter_score_name == ("bm25" if retriever == "bm25" else "cosine")
    again, _ = run(
        folder, tmp_path, name="again.jsonl", retriever=retriever, rank_range="0:50", num_negatives=10, ratio=None
    )
    bm = again.retriever if retriever == "bm25" else again.retriever["bm25"]
    assert bm["index_cached"] is True


def test_instance_input_is_remined_from_its_own_pool(folder, tmp_path):
    first, insts = run(folder, tmp_path, rank_range="0:40", num_negatives=5, ratio=None, out_fmt="flagembedding")
    src = tmp_path / "out.jsonl"
    out = tmp_path / "remined.jsonl"
    summary = mine(
        input=str(src),
        output=str(out),
        embedder=HashEmbedder(),
        rank_range="0:100",
        num_negatives=4,
        ratio=None,
        cache_dir=str(tmp_path / "cache"),
    )
    again = rows(out)
    assert summary.format == "flagembedding" and len(again) == 4
    for old, new in zip(insts, again):
        assert new.query == old.query and len(new.negatives) == 4
        assert {p.text for p in new.positives} == {p.text for p in old.positives}
        assert not {p.text for p in new.positives} & {n.text for n in new.negatives}


def test_instance_input_with_a_corpus(folder, tmp_path):
    _, insts = run(folder, tmp_path, rank_range="0:40", num_negatives=2, ratio=None)
    out = tmp_path / "r.jsonl"
    summary = mine(
        input=str(tmp_path / "out.jsonl"),
        corpus=str(folder / "corpus.jsonl"),
        output=str(out),
        embedder=HashEmbedder(),
        rank_range="0:60",
        num_negatives=10,
        ratio=None,
        cache_dir=str(tmp_path / "cache"),
    )
    assert summary.retriever["embeddings_cached"] is True  # same corpus content as the BEIR run
    for inst in rows(out):
        assert len(inst.negatives) == 10 and inst.subset == ""
        assert not {p.docid for p in inst.positives} & {n.docid for n in inst.negatives}


def test_parquet_and_st_outputs(folder, tmp_path):
    pytest.importorskip("pyarrow")
    summary, _ = run(folder, tmp_path, name="out.parquet", rank_range="0:40", num_negatives=3)
    assert summary.format == "parquet"
    assert len(list(read_instances(str(tmp_path / "out.parquet")))) == 4
    summary, _ = run(folder, tmp_path, name="st.jsonl", out_fmt="st", rank_range="0:40", num_negatives=3)
    assert summary.format == "st"


def test_summary_is_frozen_and_json_ready(folder, tmp_path):
    summary, _ = run(folder, tmp_path, rank_range="0:40", num_negatives=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.queries_written = 0  # type: ignore[misc]
    data = json.loads(json.dumps(summary.as_dict()))
    assert data["scores"]["positives"]["count"] == 12
    assert set(data["dropped"]) >= {"positive", "duplicate", "ratio", "margin", "max_score", "min_score"}
    assert data["queries_with_candidate_above_lowest_positive"] >= 0


def test_mine_from_options_for_pipelines(folder, tmp_path):
    from negclean.errors import ConfigError
    from negclean.mine.mine import mine_from_options

    with pytest.raises(ConfigError, match="pipeline 'mine'"):
        mine_from_options({"beir": str(folder), "nope": 1}, output=str(tmp_path / "x.jsonl"))


def test_cli_mine_real_minilm(tmp_path):
    """`negclean mine` through typer with the real MiniLM on 40 short passages."""
    from typer.testing import CliRunner

    from negclean.cli.main import app

    folder = topic_folder(tmp_path / "small", docs_per_topic=10)
    out = tmp_path / "cli.jsonl.gz"
    res = CliRunner().invoke(
        app,
        [
            "mine",
            str(folder),
            "-o",
            str(out),
            "--range",
            "0:30",
            "-n",
            "5",
            "--no-ratio",
            "--cache-dir",
            str(tmp_path / "c"),
            "--summary",
            str(tmp_path / "s.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "wrote 4 instances, 20 negatives" in res.output
    assert json.loads((tmp_path / "s.json").read_text())["queries_written"] == 4
    insts = rows(out)
    assert all(len(i.negatives) == 5 for i in insts)
    res = CliRunner().invoke(app, ["mine", str(folder), "-o", str(out), "--range", "30:10"])
    assert res.exit_code == 2 and "START < END" in res.output
    res = CliRunner().invoke(app, ["mine", str(tmp_path / "nowhere.jsonl"), "-o", str(out)])
    assert res.exit_code == 3


def test_mined_output_goes_through_judge_and_fix(folder, tmp_path):
    """The mined file is a normal input for `negclean judge` (screen preset) and `negclean fix`."""
    from negclean.fix.operations import Operation
    from negclean.pipeline import run_fix, run_judge, validate_pipeline
    from negclean.presets import load_cascade_dict

    _, insts = run(folder, tmp_path, rank_range="0:30", num_negatives=5, exclude_duplicates=False)
    cascade = validate_pipeline({"cascade": load_cascade_dict("screen")}).cascade
    summary = run_judge(input_path=str(tmp_path / "out.jsonl"), cascade=cascade, output_dir=tmp_path / "run")
    assert summary["read"]["ok"] == 4 and summary["read"]["rejected"] == 0
    fixed = run_fix(
        input_path=str(tmp_path / "out.jsonl"),
        verdicts_path=str(tmp_path / "run" / "verdicts.jsonl"),
        output_path=str(tmp_path / "fixed.jsonl"),
        operation=Operation.RELABEL,
    )
    assert fixed["reconciled"]


@pytest.mark.parametrize("index", ["hnsw", "ivf"])
def test_approximate_index_is_cached_next_to_the_embeddings(folder, tmp_path, index):
    exact, ie = run(folder, tmp_path, name="exact.jsonl", rank_range="0:20", num_negatives=5, ratio=None)
    first, ia = run(
        folder, tmp_path, name="a.jsonl", index=index, rank_range="0:20", num_negatives=5, ratio=None, nprobe=64
    )
    second, _ = run(
        folder, tmp_path, name="b.jsonl", index=index, rank_range="0:20", num_negatives=5, ratio=None, nprobe=64
    )
    assert first.retriever["index"] == index and first.retriever["index_cached"] is False
    assert second.retriever["index_cached"] is True
    assert list((tmp_path / "cache").glob(f"*.{index}*.faiss"))
    # on 160 vectors the approximate search finds nearly what the exact one finds
    overlap = np.mean(
        [len({n.docid for n in a.negatives} & {n.docid for n in e.negatives}) / 5 for a, e in zip(ia, ie)]
    )
    assert overlap >= 0.8


def test_pipeline_with_a_mine_step(tmp_path):
    """`negclean run` with a `mine:` section: mined.jsonl is made, then judged and fixed (real MiniLM, 40 docs)."""
    import yaml

    from negclean.pipeline import load_pipeline, run_pipeline

    folder = topic_folder(tmp_path / "small", docs_per_topic=10)
    spec = {
        "output_dir": "run",
        "mine": {"beir": str(folder), "range": "0:20", "num_negatives": 4, "ratio": None, "cache_dir": "cache"},
        "cascade": {"stages": [{"name": "duplicate", "judge": {"backend": "duplicate"}}]},
    }
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(spec))
    summary = run_pipeline(load_pipeline(path))
    assert summary["mine"]["queries_written"] == 4 and summary["mine"]["negatives_written"] == 16
    assert summary["read"]["ok"] == 4 and summary["reconciled"]
    assert (tmp_path / "cache").is_dir()  # relative to the YAML file
