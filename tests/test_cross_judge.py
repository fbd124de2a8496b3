"""The cross-encoder judge: trained on the input's own positives against random passages, then judging candidates
(real MiniLM checkpoint, tiny data, a few optimizer steps)."""

from __future__ import annotations

import json
import shutil

import pytest

from negclean.data.records import Instance, Passage
from negclean.errors import ConfigError, InputError

pytest.importorskip("sentence_transformers")
pytest.importorskip("datasets")

# (query, labeled positive, an unlabeled relevant candidate)
FACTS = [
    ("what do cats do when content", "Cats purr when they are content.", "A happy cat purrs softly."),
    ("how do rockets reach orbit", "Rockets burn fuel to reach orbit.", "Burning propellant lifts a rocket to orbit."),
    ("why does bread rise", "Bread dough rises because of yeast.", "Yeast makes dough rise by releasing gas."),
    ("where do rivers flow", "Rivers carry water to the sea.", "Most rivers end in the ocean."),
    ("what do volcanoes erupt", "Volcanoes erupt molten lava.", "Lava pours out of an erupting volcano."),
    (
        "which chess piece is strongest",
        "The queen is the strongest chess piece.",
        "In chess the queen is the most powerful piece.",
    ),
    ("how do plants make food", "Plants make food by photosynthesis.", "Leaves turn sunlight into sugar."),
    ("what causes tides", "The moon's gravity causes the tides.", "Tides rise and fall because of the moon."),
]


def instances() -> list[Instance]:
    out = []
    n = len(FACTS)
    for i, (q, pos, fn) in enumerate(FACTS):
        unrelated = FACTS[(i + 3) % n][2]
        out.append(Instance(f"q{i}", q, (Passage(f"p{i}", pos),), (Passage(f"c{i}", fn), Passage(f"u{i}", unrelated))))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from negclean.train.cross_judge import fit_cross_judge

    out = tmp_path_factory.mktemp("ce") / "judge"
    fit = fit_cross_judge(
        instances(),
        output_dir=out,
        negatives=3,
        epochs=4,
        max_length=48,
        batch_size=8,
        learning_rate=2e-4,
        seed=3,
        threads=1,
        flag_rate=0.5,
        source="facts",
    )
    return out, fit


def test_random_negatives_never_draw_the_querys_own_passages():
    from negclean.train.cross_judge import random_negatives

    data = instances()
    drawn = random_negatives(data, per_query=4, seed=1)
    assert [d.query_id for d in drawn] == [d.query_id for d in data]
    for orig, new in zip(data, drawn):
        own = {p.key for p in (*orig.positives, *orig.negatives)}
        assert len(new.negatives) == 4 and len({p.key for p in new.negatives}) == 4
        assert not own & {p.key for p in new.negatives}, orig.query_id
    assert random_negatives(data, per_query=4, seed=1) == drawn  # seeded
    assert random_negatives(data, per_query=4, seed=2) != drawn
    with pytest.raises(InputError, match="--corpus"):
        random_negatives(data[:2], per_query=4, seed=0)  # each of 2 queries has 3 passages outside its own


def test_trained_judge_ranks_unlabeled_relevant_candidates_first(trained):
    from negclean.judge.base import JudgeTask, Label
    from negclean.judge.config import CrossEncoderJudgeConfig, build_judge

    out, fit = trained
    meta = json.loads((out / "negclean_judge.json").read_text())
    assert meta["queries"] == 8 and meta["pairs"] == 8 * 4 * 4 and meta["steps"] == fit.steps > 0
    assert len(meta["pairs_sha256"]) == 64 and meta["settings"]["negatives"] == 3
    judge = build_judge(CrossEncoderJudgeConfig(path=str(out), threads=1))
    tasks = [JudgeTask(inst, (0, 1)) for inst in instances()]
    results = judge.judge(tasks)
    conf = [[v.confidence for v in r.verdicts] for r in results]
    assert all(0.0 <= c <= 1.0 for pair in conf for c in pair)
    # never trained on these candidates: the unlabeled relevant one should still win on most queries
    wins = sum(rel > unrel for rel, unrel in conf)
    assert wins >= 6, conf
    # the saved threshold flags half of the input's candidates (flag_rate 0.5; 16 candidates, no ties)
    flagged = sum(v.label is Label.RELEVANT for r in results for v in r.verdicts)
    assert flagged == 8 and fit.threshold == pytest.approx(meta["threshold"])
    strict = build_judge(CrossEncoderJudgeConfig(path=str(out), threshold=1.0, threads=1))
    assert all(v.label is Label.NOT_RELEVANT for r in strict.judge(tasks) for v in r.verdicts)


def test_fingerprint_follows_the_folder_content(trained, tmp_path):
    from negclean.judge.config import CrossEncoderJudgeConfig

    out, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    first = CrossEncoderJudgeConfig(path=str(copy)).fingerprint()
    assert first == CrossEncoderJudgeConfig(path=str(out)).fingerprint()  # where it lies does not matter
    meta = json.loads((copy / "negclean_judge.json").read_text())
    meta["threshold"] = 0.9
    (copy / "negclean_judge.json").write_text(json.dumps(meta))
    assert CrossEncoderJudgeConfig(path=str(copy)).fingerprint() != first
    assert (
        CrossEncoderJudgeConfig(path=str(out), threshold=0.7).fingerprint()
        != CrossEncoderJudgeConfig(path=str(out)).fingerprint()
    )


def test_missing_or_foreign_folder_is_a_config_error(tmp_path):
    from negclean.judge.config import CrossEncoderJudgeConfig, build_judge

    missing = CrossEncoderJudgeConfig(path=str(tmp_path / "nope"))
    assert missing.fingerprint() != CrossEncoderJudgeConfig(path=str(tmp_path / "other")).fingerprint()
    with pytest.raises(ConfigError, match="nope does not exist.*fit-judge --cross-encoder"):
        build_judge(missing)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="negclean_judge.json is missing"):
        build_judge(CrossEncoderJudgeConfig(path=str(tmp_path / "plain")))
    (tmp_path / "plain" / "negclean_judge.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        build_judge(CrossEncoderJudgeConfig(path=str(tmp_path / "plain")))


def test_fit_judge_cross_encoder_command(tmp_path):
    from typer.testing import CliRunner

    from negclean.cli.main import app

    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(
            json.dumps({"query": inst.query, "pos": [inst.positives[0].text], "neg": [p.text for p in inst.negatives]})
            + "\n"
            for inst in instances()
        )
    )
    out = tmp_path / "judge"
    result = CliRunner().invoke(
        app,
        [
            "fit-judge",
            "--cross-encoder",
            "-i",
            str(data),
            "-o",
            str(out),
            "--negatives",
            "2",
            "--max-steps",
            "2",
            "--max-length",
            "32",
            "--threads",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["queries"] == 8 and report["steps"] == 2 and report["threshold"] == 0.5
    assert (out / "negclean_judge.json").is_file() and (out / "config.json").is_file()
    bad = CliRunner().invoke(app, ["fit-judge", "--cross-encoder", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--input" in bad.output
    # a folder that is not a judge is never replaced
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    kept = CliRunner().invoke(
        app, ["fit-judge", "--cross-encoder", "-i", str(data), "-o", str(tmp_path / "keep"), "--max-steps", "1"]
    )
    assert kept.exit_code == 2 and "not a cross-encoder judge folder" in kept.output
    assert (tmp_path / "keep" / "notes.txt").read_text() == "mine"


def test_cross_encoder_stage_in_a_cascade_stores_and_reuses_its_verdicts(trained, tmp_path):
    from negclean.cascade.runner import Cascade
    from negclean.cascade.stages import CascadeConfig
    from negclean.cascade.store import JudgmentStore
    from negclean.judge.config import CrossEncoderJudgeConfig

    out, _ = trained
    judge_cfg = CrossEncoderJudgeConfig(path=str(out), threads=1)
    cfg = CascadeConfig(stages=[{"name": "ce", "judge": judge_cfg.model_dump()}], max_false_negatives=None)
    data = instances()
    with JudgmentStore(tmp_path / "store.sqlite") as store:
        first = list(Cascade(cfg, store=store).run(data))

    from negclean.judge.base import JudgeBase

    class Boom(JudgeBase):
        listwise, judge_id, fingerprint = False, judge_cfg.judge_id(), judge_cfg.fingerprint()

        def judge(self, tasks):
            raise AssertionError("stored verdicts should have been reused")

        def estimate_tokens(self, task):
            return (0, 0)

    with JudgmentStore(tmp_path / "store.sqlite") as store:
        again = list(Cascade(cfg, store=store, judges={"ce": Boom()}).run(data))
    conf = lambda outs: [cv.trail[0][1].confidence for o in outs for cv in o.candidates]  # noqa: E731
    assert len(conf(first)) == 16 and conf(again) == pytest.approx(conf(first))
