"""Extra verdict sources in `negclean experiment`: an oracle (qrels judge over the truth) and named cascades,
each with its own fix variants named <source>/<variant>, all beside `default` in one comparison."""

from __future__ import annotations

import json

import pytest
from tests.test_experiment import TOPICS, experiment_yaml, read_jsonl, write_inputs

from negclean.errors import ConfigError

pytest.importorskip("sentence_transformers")


def write_truth(root, *, grades):
    """BEIR qrels for the training queries: ``grades`` maps (topic, docid suffix) -> grade, for every topic."""
    lines = ["query-id\tcorpus-id\tscore"]
    for topic in TOPICS:
        for subset in ("a", "b"):
            for suffix, grade in grades.items():
                lines.append(f"{topic}-{subset}\t{topic}{suffix}\t{grade}")
    path = root / "truth.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_oracle_and_cascade_sources_make_their_own_variants(tmp_path):
    from negclean.experiment import load_experiment
    from negclean.experiment.runner import ExperimentRunner

    train, beir = write_inputs(tmp_path)
    # the same-topic negative (<topic>1) is truly relevant at grade 2; the copy only at grade 1
    truth = write_truth(tmp_path, grades={"1": 2, "-copy": 1, "0": 2})
    cfg = load_experiment(
        experiment_yaml(
            tmp_path,
            train,
            beir,
            variants=["default"],
            sources={
                "oracle": {"qrels": "truth.tsv", "min_grade": 2},
                "screen": "screen",
                "oracle1": {"qrels": str(truth), "variants": ["relabel"], "max_false_negatives": 1},
            },
            compare={"baseline": "oracle/relabel", "resamples": 200},
        )
    )
    assert cfg.sources["oracle"].qrels == str(truth)  # relative to the YAML file
    # in the file's order (yaml.safe_dump wrote the sources sorted by name)
    assert list(cfg.source_variants()) == [
        "oracle/hn_remove",
        "oracle/relabel",
        "oracle1/relabel",
        "screen/hn_remove",
        "screen/relabel",
    ]
    runner = ExperimentRunner(cfg)
    verdicts, _ = runner.judge(str(train), None)
    files = runner.variants(str(train), None, verdicts)
    for source in cfg.sources:
        src_verdicts, summary = runner.judge(str(train), None, source=source)
        assert src_verdicts == str(tmp_path / "out" / f"judge-{source}" / "verdicts.jsonl")
        files |= runner.variants(str(train), None, src_verdicts, source=source)
    assert list(files) == ["default", *cfg.source_variants()]
    assert files["oracle/relabel"]["source"] == "oracle" and files["default"]["source"] == "cascade"

    def data(name):
        return {r["query_id"]: r for r in read_jsonl(tmp_path / "out" / "data" / f"{name}.jsonl")}

    relabeled = data("oracle/relabel")
    assert len(relabeled) == 8  # the oracle has no cap by default: nothing dropped as ambiguous
    for q, row in relabeled.items():
        topic = q.split("-")[0]
        assert {p["docid"] for p in row["positive_passages"]} == {f"{topic}0", f"{topic}1"}
        assert f"{topic}1" not in {p["docid"] for p in row["negative_passages"]}
        assert (f"{topic}-copy" in {p["docid"] for p in row["negative_passages"]}) == q.endswith("-a")
    removed = data("oracle/hn_remove")
    assert all(len(r["positive_passages"]) == 1 for r in removed.values())
    assert files["oracle/relabel"]["relabeled"] == 8 == files["oracle/hn_remove"]["negatives_removed"]
    # min_grade 1 also takes the copy: the 4 "-a" instances have 2 false negatives, over the cap of 1
    assert files["oracle1/relabel"]["dropped_ambiguous"] == 4 and files["oracle1/relabel"]["written"] == 4
    # the screen source's verdicts are the main cascade's (same judge, same store): same fixes as a plain run
    screen = data("screen/relabel")
    main_rows = read_jsonl(tmp_path / "out" / "judge" / "verdicts.jsonl")
    screen_rows = read_jsonl(tmp_path / "out" / "judge-screen" / "verdicts.jsonl")
    assert [r["false_negatives"] for r in main_rows] == [r["false_negatives"] for r in screen_rows]
    assert set(screen) <= set(data("default"))


@pytest.mark.parametrize(
    "sources, message",
    [
        ({"o": {"qrels": "truth.tsv", "cascade": "screen"}}, "exactly one of 'cascade'"),
        ({"o": {"variants": ["relabel"]}}, "exactly one of 'cascade'"),
        ({"o": {"qrels": "missing.tsv"}}, r"sources.o.qrels: no such file .*missing.tsv"),
        ({"o": {"qrels": "truth.tsv", "variants": ["default"]}}, "'default' is shared"),
        ({"o": {"qrels": "truth.tsv", "variants": ["relabel", "relabel"]}}, "distinct names"),
        ({"o": {"cascade": "screen", "min_grade": 2}}, "belong to a 'qrels' source"),
        ({"relabel": "screen"}, "not a variant name"),
        ({"a/b": "screen"}, "source name 'a/b'"),
        ({"o": "nope"}, "unknown cascade preset 'nope'"),
        ({"o": {"cascade": {"stages": []}}}, "sources.o"),
    ],
)
def test_source_errors_name_the_source(tmp_path, sources, message):
    from negclean.experiment import load_experiment

    train, beir = write_inputs(tmp_path)
    write_truth(tmp_path, grades={"1": 1})
    with pytest.raises(ConfigError, match=message):
        load_experiment(experiment_yaml(tmp_path, train, beir, sources=sources))


def test_baseline_must_name_a_training_set_of_some_source(tmp_path):
    from negclean.experiment import load_experiment

    train, beir = write_inputs(tmp_path)
    write_truth(tmp_path, grades={"1": 1})
    with pytest.raises(ConfigError, match="compare.baseline 'oracle/remove'"):
        load_experiment(
            experiment_yaml(
                tmp_path, train, beir, sources={"oracle": {"qrels": "truth.tsv"}}, compare={"baseline": "oracle/remove"}
            )
        )


@pytest.mark.slow
def test_sources_train_and_compare_in_one_table(tmp_path, monkeypatch):
    from negclean.experiment import load_experiment, run_experiment

    monkeypatch.setenv("NEGCLEAN_CACHE_DIR", str(tmp_path / "cache"))
    train, beir = write_inputs(tmp_path)
    write_truth(tmp_path, grades={"1": 1})
    cfg = load_experiment(
        experiment_yaml(
            tmp_path,
            train,
            beir,
            variants=["default"],
            sources={"oracle": {"qrels": "truth.tsv", "variants": ["relabel"]}},
        )
    )
    result = run_experiment(cfg)
    assert result.training_sets == ("default", "oracle/relabel")
    rows = result.comparisons["tiny-test"]["tables"][0]["rows"]
    assert [r["name"] for r in rows] == ["default", "base", "oracle/relabel"]
    assert (tmp_path / "out" / "models" / "oracle" / "relabel" / "negclean_train.json").is_file()
    out = json.loads((tmp_path / "out" / "results.json").read_text())
    assert out["data"]["sources"]["oracle"]["false_negatives"] == 8
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| oracle/relabel | 8 |" in md and "| base | untrained |" in md
