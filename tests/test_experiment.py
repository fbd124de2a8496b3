"""The experiment runner: four variants from one set of judgments, the same training for each, evaluation,
comparison, reuse on a rerun, leave-one-out, and configuration errors."""

from __future__ import annotations

import json

import pytest
import yaml

from negclean.errors import ConfigError

pytest.importorskip("sentence_transformers")

TOPICS = {
    "cats": [
        "Cats purr when they are content.",
        "Domestic cats sleep most of the day.",
        "A kitten learns to hunt from its mother.",
    ],
    "rockets": [
        "Rockets burn fuel to reach orbit.",
        "The launch was delayed by strong winds.",
        "Satellites are carried into space by rockets.",
    ],
    "bread": [
        "Bread dough rises because of yeast.",
        "Sourdough uses a fermented starter.",
        "Bakers knead dough to build gluten.",
    ],
    "rivers": [
        "Rivers carry water to the sea.",
        "The Nile is a very long river.",
        "Floods happen when rivers overflow.",
    ],
}
TRAIN_Q = {
    "cats": "why do cats purr",
    "rockets": "how do rockets reach orbit",
    "bread": "why does bread rise",
    "rivers": "where do rivers go",
}
TEST_Q = {
    "cats": "how do kittens learn to hunt",
    "rockets": "how do satellites get to space",
    "bread": "why do bakers knead dough",
    "rivers": "why do floods happen",
}


def passage(topic, i):
    return {"docid": f"{topic}{i}", "title": "", "text": TOPICS[topic][i]}


def write_inputs(root):
    """A tevatron file (2 instances per topic, subsets a/b) and a BEIR folder with a test split."""
    rows = []
    names = list(TOPICS)
    for k, topic in enumerate(names):
        for j, subset in enumerate(("a", "b")):
            negs = [passage(names[(k + 1) % 4], 0), passage(names[(k + 2) % 4], 1)]
            if j == 0:  # a copy of the positive among the negatives: a false negative for free
                negs.append({"docid": f"{topic}-copy", "title": "", "text": TOPICS[topic][0]})
            negs.append(passage(topic, 1))  # same topic: the similarity screen may flag it
            rows.append(
                {
                    "query_id": f"{topic}-{subset}",
                    "query": TRAIN_Q[topic] + ("" if j == 0 else "?"),
                    "positive_passages": [passage(topic, 0)],
                    "negative_passages": negs,
                    "subset": subset,
                }
            )
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    beir = root / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": f"{t}{i}", "title": "", "text": x}) + "\n"
            for t, xs in TOPICS.items()
            for i, x in enumerate(xs)
        )
    )
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"t-{t}", "text": q}) + "\n" for t, q in TEST_Q.items())
    )
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"t-{t}\t{t}2\t1\n" for t in TOPICS)
    )
    return train, beir


def experiment_yaml(root, train_file, beir, **extra):
    cfg = {
        "name": "tiny",
        "output_dir": "out",
        "seed": 3,
        "threads": 1,
        "data": {"input": str(train_file)},
        "cascade": "screen",
        "train": {
            "epochs": 1,
            "batch_size": 4,
            "hard_negatives": 2,
            "max_steps": 1,
            "max_seq_length": 32,
            "logging_steps": 1,
        },
        "eval": {"sets": [{"name": "tiny-test", "beir": str(beir)}], "measures": ["nDCG@10", "R@100"], "depth": 10},
        "compare": {"resamples": 200},
        **extra,
    }
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_four_variants_from_one_set_of_judgments(tmp_path):
    from negclean.experiment import load_experiment
    from negclean.experiment.runner import ExperimentRunner

    train, beir = write_inputs(tmp_path)
    cfg = load_experiment(experiment_yaml(tmp_path, train, beir))
    assert cfg.output_dir == str(tmp_path / "out")  # relative to the YAML file
    runner = ExperimentRunner(cfg)
    verdicts, summary = runner.judge(str(train), None)
    files = runner.variants(str(train), None, verdicts)
    assert list(files) == ["default", "remove", "hn_remove", "relabel"]
    assert {f["verdicts"] for f in files.values()} == {verdicts}  # one judge run feeds every variant
    rows = {r["query_id"]: r for r in read_jsonl(tmp_path / "out" / "judge" / "verdicts.jsonl")}
    fns = {q: set(r["false_negatives"]) for q, r in rows.items() if r["false_negatives"]}
    assert all(f"{t}-copy" in fns[f"{t}-a"] for t in TOPICS)  # the duplicates were caught
    n_fn = sum(len(v) for v in fns.values())
    data = {name: {r["query_id"]: r for r in read_jsonl(tmp_path / "out" / "data" / f"{name}.jsonl")} for name in files}
    assert len(data["default"]) == 8
    assert set(data["remove"]) == set(data["default"]) - set(fns)
    for q, fn in fns.items():
        negs_default = {p["docid"] for p in data["default"][q]["negative_passages"]}
        assert {p["docid"] for p in data["hn_remove"][q]["negative_passages"]} == negs_default - fn
        assert {p["docid"] for p in data["relabel"][q]["positive_passages"]} == {q.split("-")[0] + "0"} | fn
        assert {p["docid"] for p in data["relabel"][q]["negative_passages"]} == negs_default - fn
    assert files["relabel"]["relabeled"] == n_fn == files["hn_remove"]["negatives_removed"]
    assert summary["cascade"]["false_negatives"] == n_fn


@pytest.mark.slow
def test_experiment_end_to_end_and_rerun_reuses_work(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from negclean.cli.main import app

    monkeypatch.setenv("NEGCLEAN_CACHE_DIR", str(tmp_path / "cache"))
    train, beir = write_inputs(tmp_path)
    path = experiment_yaml(tmp_path, train, beir)
    res = CliRunner().invoke(app, ["experiment", str(path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["training_sets"] == ["default", "remove", "hn_remove", "relabel"]
    table = out["comparisons"]["tiny-test"]["tables"][0]
    assert [r["name"] for r in table["rows"]] == ["default", "base", "remove", "hn_remove", "relabel"]
    assert table["queries"] == 4 and table["rows"][0]["delta"] is None
    models = tmp_path / "out" / "models"
    summaries = {v: json.loads((models / v / "negclean_train.json").read_text()) for v in out["training_sets"]}
    assert len({s["config_hash"] for s in summaries.values()}) == 1  # same training for every variant
    assert all(s["config"]["seed"] == 3 and s["steps"] == 1 for s in summaries.values())
    assert len({s["data_hash"] for s in summaries.values()}) == 4  # on different data
    for system in ("base", "default", "remove", "hn_remove", "relabel"):
        assert (tmp_path / "out" / "evals" / "tiny-test" / system / "per_query.tsv").is_file()
    md = (tmp_path / "out" / "results.md").read_text()
    assert "## tiny-test" in md and "| relabel |" in md and "CPU s" in md
    assert (tmp_path / "out" / "results" / "tiny-test.png").stat().st_size > 0
    # a rerun judges nothing new and trains and evaluates nothing again
    res = CliRunner().invoke(app, ["experiment", str(path), "--json"])
    assert res.exit_code == 0, res.output
    steps = {s["name"]: s for s in json.loads(res.stdout)["steps"]}
    assert steps["judge"]["reused"] and "0 verdicts new" in steps["judge"]["detail"]
    assert all(s["reused"] for n, s in steps.items() if n.startswith(("train", "eval")))
    # a new seed retrains every variant (and keeps the judgments)
    res = CliRunner().invoke(app, ["experiment", str(path), "--json", "--seed", "4"])
    steps = {s["name"]: s for s in json.loads(res.stdout)["steps"]}
    assert steps["judge"]["reused"] and not steps["train default"]["reused"]


@pytest.mark.slow
def test_leave_one_out(tmp_path, monkeypatch):
    from negclean.experiment import load_experiment, run_experiment

    monkeypatch.setenv("NEGCLEAN_CACHE_DIR", str(tmp_path / "cache"))
    train, beir = write_inputs(tmp_path)
    cfg = load_experiment(
        experiment_yaml(
            tmp_path,
            train,
            beir,
            variants=["default"],
            leave_one_out=True,
            eval={"sets": [{"name": "t", "beir": str(beir)}], "base_model": False, "depth": 5},
        )
    )
    result = run_experiment(cfg)
    assert result.training_sets == ("default", "default-minus-a", "default-minus-b")
    kept = read_jsonl(tmp_path / "out" / "data" / "default-minus-a.jsonl")
    assert len(kept) == 4 and {r["subset"] for r in kept} == {"b"}
    assert set(result.scores["t"]) == {"default", "default-minus-a", "default-minus-b"}


@pytest.mark.slow
def test_reranker_experiment_compares_with_the_first_stage(tmp_path, monkeypatch):
    from negclean.experiment import load_experiment, run_experiment

    monkeypatch.setenv("NEGCLEAN_CACHE_DIR", str(tmp_path / "cache"))
    train, beir = write_inputs(tmp_path)
    cfg = load_experiment(
        experiment_yaml(
            tmp_path,
            train,
            beir,
            variants=["default", "relabel"],
            train={
                "kind": "reranker",
                "epochs": 1,
                "batch_size": 8,
                "hard_negatives": 2,
                "max_steps": 1,
                "max_seq_length": 48,
            },
            eval={"sets": [{"name": "t", "beir": str(beir)}], "first_stage": "bm25", "top_k": 5, "depth": 10},
        )
    )
    result = run_experiment(cfg)
    assert set(result.scores["t"]) == {"base", "default", "relabel"}
    base = json.loads((tmp_path / "out" / "evals" / "t" / "base" / "metrics.json").read_text())
    assert base["kind"] == "first_stage" and base["details"]["first_stage"]["first_stage"] == "bm25"
    reranked = json.loads((tmp_path / "out" / "evals" / "t" / "default" / "metrics.json").read_text())
    assert reranked["kind"] == "reranker" and reranked["details"]["top_k"] == 5


def test_configuration_errors(tmp_path):
    from negclean.experiment import load_experiment

    train, beir = write_inputs(tmp_path)
    with pytest.raises(ConfigError, match="variants"):
        load_experiment(experiment_yaml(tmp_path, train, beir, variants=["default", "rlhn"]))
    with pytest.raises(ConfigError, match="compare.baseline"):
        load_experiment(experiment_yaml(tmp_path, train, beir, variants=["remove"]))
    with pytest.raises(ConfigError, match="exactly one of 'input'"):
        load_experiment(experiment_yaml(tmp_path, train, beir, data={"input": str(train), "mine": {"beir": "x"}}))
    with pytest.raises(ConfigError, match="unknown cascade preset"):
        load_experiment(experiment_yaml(tmp_path, train, beir, cascade="nope"))
    with pytest.raises(ConfigError, match="train.epochs"):
        load_experiment(experiment_yaml(tmp_path, train, beir, train={"epochs": 0}))


def test_leave_one_out_needs_two_subsets(tmp_path):
    from negclean.experiment import load_experiment
    from negclean.experiment.runner import ExperimentRunner

    train, beir = write_inputs(tmp_path)
    one = tmp_path / "one.jsonl"
    one.write_text("".join(json.dumps({**r, "subset": "a"}) + "\n" for r in read_jsonl(train)))
    cfg = load_experiment(experiment_yaml(tmp_path, one, beir, variants=["default"], leave_one_out=True))
    runner = ExperimentRunner(cfg)
    files = runner.variants(str(one), None, runner.judge(str(one), None)[0])
    with pytest.raises(ConfigError, match="at least 2 subsets"):
        runner.leave_one_out(files)
