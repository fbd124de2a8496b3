"""The effect benchmark's recalibrated screen (benchmarks/bench_effect.py, ``--cascades screen-recal``): the
labeled queries are drawn with a seeded rng, every candidate of them is labeled from truth.tsv, the saved model
keeps the screen's weights and records what it was recalibrated on, a one-class draw keeps the screen, and the
``-recal`` cascade swaps exactly its learned stage. Tiny instances, the packaged MiniLM (real model)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from negclean.judge.learned_model import LearnedModel, resolve_model_path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_effect.py"

TOPICS = {
    "volcano": ["lava flows from the volcano", "magma under volcanic islands", "ash clouds of an eruption"],
    "bread": ["baking sourdough bread", "kneading dough for a loaf", "yeast makes dough rise"],
    "chess": ["opening moves in chess", "chess endgames for masters", "the queen gambit opening"],
    "whale": ["humpback whales sing", "blue whales are huge", "whales migrate in oceans"],
    "rain": ["rain clouds form over hills", "monsoon rain floods rivers", "measuring rainfall with a gauge"],
    "piano": ["playing scales on a piano", "tuning piano strings", "a grand piano concert"],
}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_effect", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_fold(folder: Path, *, relevant_per_query: int) -> tuple[Path, Path]:
    """One instance per topic: its first text the labeled positive, the other topics' texts and its own rest as
    candidates; truth.tsv lists the first ``relevant_per_query`` of its own rest (grade 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, truth = [], ["query-id\tcorpus-id\tscore"]
    for q, (name, texts) in enumerate(TOPICS.items()):
        own = [(f"{name}{i}", t) for i, t in enumerate(texts)]
        other = [(f"{n}{i}", t) for n, ts in TOPICS.items() if n != name for i, t in enumerate(ts[:1])]
        rows.append(
            {
                "query_id": f"q{q}",
                "query": f"about {name}",
                "positive_passages": [{"docid": own[0][0], "title": "", "text": own[0][1]}],
                "negative_passages": [{"docid": d, "title": "", "text": t} for d, t in own[1:] + other],
            }
        )
        truth += [f"q{q}\t{d}\t1" for d, _ in own[1 : 1 + relevant_per_query]]
    mined, truth_path = folder / "mined.jsonl", folder / "truth.tsv"
    mined.write_text("".join(json.dumps(r) + "\n" for r in rows))
    truth_path.write_text("\n".join(truth) + "\n")
    return mined, truth_path


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    LearnedModel.load("default").save(folder / "screen-without-toy.json")
    return folder


def _recal(bench, tmp_path: Path, models: Path, *, relevant: int, seed: int = 13, fold: str = "fold0") -> dict:
    mined, truth = _write_fold(tmp_path / f"fold-{relevant}", relevant_per_query=relevant)
    out = tmp_path / f"run-{relevant}-{seed}-{fold}"
    out.mkdir(exist_ok=True)
    path = bench.recalibrated_screen(
        mined, truth, grade=1, seed=seed, fold=fold, data_set="toy", models=models, out=out
    )
    assert path == out / "screen-recal.json"
    return json.loads(path.read_text())


def test_recalibrated_on_every_candidate_of_four_seeded_queries(bench, tmp_path: Path, models: Path) -> None:
    model = _recal(bench, tmp_path, models, relevant=2)
    facts = model["training"]["benchmark"]
    assert len(facts["labeled_queries"]) == bench.RECAL_QUERIES == 4
    assert set(facts["labeled_queries"]) <= {f"q{i}" for i in range(len(TOPICS))}
    per_query = 2 + len(TOPICS) - 1  # own rest + one text of each other topic
    assert facts["labels"] == 4 * per_query
    assert facts["relevant_among_labels"] == 4 * 2
    assert facts["true_false_negatives"] == 2 * len(TOPICS)
    assert facts["training_candidates"] == len(TOPICS) * per_query
    assert facts["refused"] == ""
    # the screen's weights are kept; its intercept and threshold come from these labels
    base = LearnedModel.load(resolve_model_path("default"))
    assert tuple(model["coef"]) == base.coef and model["calib_a"] == base.calib_a
    assert model["calib_b"] != base.calib_b
    assert model["training"]["recalibration"]["labels"] == facts["labels"]
    # the same fold and seed draw the same queries; the draw depends on them
    again = _recal(bench, tmp_path, models, relevant=2)["training"]["benchmark"]
    assert again["labeled_queries"] == facts["labeled_queries"]
    draws = {
        tuple(_recal(bench, tmp_path, models, relevant=2, seed=s, fold=f)["training"]["benchmark"]["labeled_queries"])
        for s, f in ((14, "fold0"), (13, "fold1"), (15, "fold2"))
    }
    assert len(draws | {tuple(facts["labeled_queries"])}) > 1


def test_one_class_labels_keep_the_screen(bench, tmp_path: Path, models: Path) -> None:
    model = _recal(bench, tmp_path, models, relevant=0)
    facts = model["training"]["benchmark"]
    assert "none is relevant" in facts["refused"]
    base = LearnedModel.load(resolve_model_path("default"))
    assert model["threshold"] == base.threshold and model["calib_b"] == base.calib_b


def test_recal_cascade_swaps_only_the_learned_stage(bench, tmp_path: Path, models: Path) -> None:
    models.joinpath("screen-without-toy.json").rename(models / "screen-without-cisi.json")
    recal = tmp_path / "screen-recal.json"
    cascade = bench.held_out_cascade_with("screen-recal", data_set="cisi", models=models, recalibrated=recal)
    plain = bench.held_out_cascade_with("screen", data_set="cisi", models=models, recalibrated=recal)
    learned = [s["judge"]["path"] for s in cascade["stages"] if s["judge"]["backend"] == "learned"]
    assert learned == [str(recal)]
    assert [s["judge"]["path"] for s in plain["stages"] if s["judge"]["backend"] == "learned"] == [
        str(models / "screen-without-cisi.json")
    ]
    assert [s["name"] for s in cascade["stages"]] == [s["name"] for s in plain["stages"]]
    with pytest.raises(SystemExit, match="recalibrated screen"):
        bench.held_out_cascade_with("screen-recal", data_set="cisi", models=models, recalibrated=None)
