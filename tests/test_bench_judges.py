"""Judge benchmarks (issue 5): metric code against hand-computed values, the audit interval's coverage in a
seeded simulation through the real Cascade, routing that sends exactly what the rules say, calibration,
the frontier, and the benchmark built from TREC DL 2019."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from negclean.benchjudges.metrics import binary_scores, threshold_for_recall
from negclean.benchjudges.report import pareto
from negclean.cascade.audit import estimate_misses, wilson_interval
from negclean.cascade.runner import Cascade, _audit_draw
from negclean.cascade.stages import CascadeConfig, StageConfig
from negclean.cascade.store import JudgmentStore, task_keys
from negclean.data.records import Instance, Passage
from negclean.judge.base import Grade, JudgeBase, Label, TaskResult, Verdict
from negclean.judge.config import DuplicateJudgeConfig

# -- metrics ---------------------------------------------------------------------------------------


def test_binary_scores_match_hand_computed_values():
    truth = [1, 1, 0, 0, 1, 0]
    pred = [1, 0, 1, 0, 1, None]  # the undecided one counts as cleared
    s = binary_scores(truth, pred)
    assert (s.tp, s.fp, s.fn, s.tn, s.undecided) == (2, 1, 1, 2, 1)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3)
    # observed agreement 4/6; expected 0.5*0.5 + 0.5*0.5 = 0.5 -> kappa (2/3 - 1/2) / (1/2) = 1/3
    assert s.kappa == pytest.approx(1 / 3)
    dropped = binary_scores(truth, pred, undecided="drop")
    assert dropped.n == 5 and (dropped.tp, dropped.fp, dropped.fn, dropped.tn) == (2, 1, 1, 1)


def test_auc_and_undefined_cases_by_hand():
    # positives scored 0.9, 0.4; negatives 0.5, 0.1: pairs won 1 + 1 + 0 + 1 = 3 of 4
    s = binary_scores([1, 1, 0, 0], [1, 0, 1, 0], confidence=[0.9, 0.4, 0.5, 0.1])
    assert s.auc == pytest.approx(0.75)
    none_flagged = binary_scores([1, 0, 0], [0, 0, 0])
    assert none_flagged.precision is None and none_flagged.recall == 0.0 and none_flagged.kappa == 0.0
    all_same = binary_scores([0, 0], [0, 0])
    assert all_same.kappa is None and all_same.recall is None
    assert binary_scores([1, 0], [1, 0], confidence=[0.9, None]).auc is None


def test_threshold_for_recall_by_hand():
    scores = [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4]
    truth = [1, 0, 1, 0, 1, 0, 1, 0]
    # recall 0.75 needs the 3 best positives (0.95, 0.85, 0.7): t between 0.6 and 0.7
    t, rec, saved = threshold_for_recall(scores, truth, target=0.75)
    assert 0.6 < t < 0.7 and t == pytest.approx(0.65)
    assert rec == 0.75 and saved == pytest.approx(3 / 8)
    t1, rec1, saved1 = threshold_for_recall(scores, truth, target=1.0)
    assert t1 == pytest.approx(0.45) and rec1 == 1.0 and saved1 == pytest.approx(1 / 8)
    with pytest.raises(ValueError):
        threshold_for_recall([0.1], [0], target=0.9)


def test_pareto_frontier_by_hand():
    pts = [(0.0, 0.2), (1.0, 0.5), (2.0, 0.4), (0.0, 0.1), (3.0, 0.6)]
    assert pareto(pts) == [0, 1, 4]


# -- audit interval coverage through the real Cascade -------------------------------------------


class ScriptedJudge(JudgeBase):
    """Returns fixed verdicts by docid (a stand-in for any judge; the cascade does the routing)."""

    listwise = False

    def __init__(self, verdicts: dict[str, Verdict], name: str):
        self.verdicts, self.judge_id, self.fingerprint = verdicts, name, name
        self.seen: list[str] = []

    def judge(self, tasks):
        out = []
        for t in tasks:
            self.seen.extend(p.docid for p in t.passages)
            out.append(TaskResult(tuple(self.verdicts[p.docid] for p in t.passages)))
        return out

    def estimate_tokens(self, task):
        return (0, 0)


def _rel(name, conf=None):
    return Verdict(Label.RELEVANT, conf, name, grade=Grade.BETTER)


def _not(name, conf=None):
    return Verdict(Label.NOT_RELEVANT, conf, name)


def _instances(n_inst, n_neg, tag=""):
    return [
        Instance(
            f"q{tag}{i}",
            f"query {tag} {i}",
            (Passage(f"p{tag}{i}", f"positive {tag} {i}"),),
            tuple(Passage(f"d{tag}{i}-{j}", f"passage {tag} {i} {j}") for j in range(n_neg)),
        )
        for i in range(n_inst)
    ]


def test_audit_wilson_interval_covers_the_truth_in_seeded_simulation():
    """500 runs: a screen clears everything; 5% of what it clears are false negatives; an oracle second stage
    sees the 10% audit sample. The 95% Wilson interval on the missed count must cover the true missed count
    among the cleared-and-not-audited candidates in >= 93% of runs."""
    insts = _instances(20, 50)
    docids = [p.docid for i in insts for p in i.negatives]
    covered = runs = 0
    rng = np.random.default_rng(12345)
    for run in range(500):
        truth = {d: bool(rng.random() < 0.05) for d in docids}
        screen = ScriptedJudge({d: _not("screen") for d in docids}, "screen")
        oracle = ScriptedJudge({d: (_rel if truth[d] else _not)("oracle") for d in docids}, "oracle")
        cfg = CascadeConfig(
            stages=[
                StageConfig(name="screen", judge=DuplicateJudgeConfig(near_threshold=0.11), audit_rate=0.1),
                StageConfig(name="oracle", judge=DuplicateJudgeConfig(near_threshold=0.12)),
            ],
            max_false_negatives=None,
            seed=run,
            chunk_size=1000,
        )
        cascade = Cascade(cfg, store=JudgmentStore(), judges={"screen": screen, "oracle": oracle})
        outcomes = list(cascade.run(insts))
        st = cascade.stats.stages[0]
        audited = {o.instance.negatives[c].docid for o in outcomes for c, v in enumerate(o.candidates) if v.audited}
        assert audited == set(oracle.seen)  # only the audit sample reached the oracle
        true_missed = sum(1 for d in docids if truth[d] and d not in audited)
        m = st.miss_estimate()
        assert m is not None and m.audited == len(audited) and m.cleared == len(docids) - len(audited)
        covered += m.missed_low <= true_missed <= m.missed_high
        runs += 1
    assert covered / runs >= 0.93, f"coverage {covered / runs:.3f}"


def test_wilson_interval_hand_values():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    m = estimate_misses("s", cleared=1000, audited=100, found=5)
    assert m.missed == pytest.approx(50) and m.missed_low < 50 < m.missed_high


# -- routing sends exactly what the rules say ---------------------------------------------------


def test_routing_sends_exactly_flagged_band_undecided_and_audit_sample():
    insts = _instances(6, 30, tag="r")
    rng = np.random.default_rng(7)
    verdicts, expected = {}, set()
    for inst in insts:
        for p in inst.negatives:
            u = rng.random()
            conf = float(rng.random())
            if u < 0.2:
                v = _rel("s1", conf)
            elif u < 0.3:
                v = Verdict(Label.UNDECIDED, None, "s1", reason="x")
            else:
                v = _not("s1", conf)
            verdicts[p.docid] = v
    cfg = CascadeConfig(
        stages=[
            StageConfig(
                name="s1",
                judge=DuplicateJudgeConfig(near_threshold=0.21),
                escalate="flagged",
                uncertain=(0.4, 0.6),
                audit_rate=0.15,
            ),
            StageConfig(name="s2", judge=DuplicateJudgeConfig(near_threshold=0.22)),
        ],
        max_false_negatives=None,
        seed=3,
    )
    for inst in insts:
        for key, p in zip(task_keys(_task(inst)), inst.negatives):
            v = verdicts[p.docid]
            rule = (
                v.label is Label.RELEVANT
                or v.label is Label.UNDECIDED
                or (v.confidence is not None and 0.4 <= v.confidence <= 0.6)
            )
            if rule or _audit_draw(3, "s1", key) < 0.15:
                expected.add(p.docid)
    s1 = ScriptedJudge(verdicts, "s1")
    s2 = ScriptedJudge({d: _not("s2") for d in verdicts}, "s2")
    cascade = Cascade(cfg, store=JudgmentStore(), judges={"s1": s1, "s2": s2})
    list(cascade.run(insts))
    assert set(s2.seen) == expected and len(s2.seen) == len(expected)
    st = cascade.stats.stages[0]
    assert st.escalated == len(expected)
    audited_rule = sum(
        1 for d in expected if verdicts[d].label is Label.NOT_RELEVANT and not 0.4 <= verdicts[d].confidence <= 0.6
    )
    assert st.audited == audited_rule > 0


def _task(inst):
    from negclean.judge.base import JudgeTask

    return JudgeTask(inst, tuple(range(len(inst.negatives))))


def test_routing_unit_instance_sends_whole_lists_and_escalate_none_sends_nothing():
    insts = _instances(3, 4, tag="u")
    verdicts = {
        p.docid: (_rel if p.docid.endswith("-0") and i == 0 else _not)("s1")
        for i, inst in enumerate(insts)
        for p in inst.negatives
    }
    for unit, escalate, expected in (
        ("instance", "flagged", {p.docid for p in insts[0].negatives}),
        ("candidate", "flagged", {insts[0].negatives[0].docid}),
        ("candidate", "none", set()),
    ):
        cfg = CascadeConfig(
            stages=[
                StageConfig(name="s1", judge=DuplicateJudgeConfig(near_threshold=0.31), escalate=escalate, unit=unit),
                StageConfig(name="s2", judge=DuplicateJudgeConfig(near_threshold=0.32)),
            ],
            max_false_negatives=None,
        )
        s2 = ScriptedJudge({d: _not("s2") for d in verdicts}, "s2")
        list(Cascade(cfg, store=JudgmentStore(), judges={"s1": ScriptedJudge(verdicts, "s1"), "s2": s2}).run(insts))
        assert set(s2.seen) == expected, (unit, escalate)


def test_negclean_judge_prints_the_audit_miss_estimate(tmp_path, examples_dir):
    from typer.testing import CliRunner

    from negclean.cli.main import app

    cascade = tmp_path / "c.yaml"
    cascade.write_text(
        "stages:\n"
        "  - {name: dup, judge: {backend: duplicate}, escalate: flagged, audit_rate: 0.5}\n"
        "  - {name: again, judge: {backend: duplicate, near_threshold: 0.5}}\n"
    )
    result = CliRunner().invoke(
        app,
        [
            "judge",
            str(examples_dir / "msmarco_hn_scored.jsonl"),
            "--cascade",
            str(cascade),
            "-o",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "audit: dup:" in result.output and "audited candidates were false negatives" in result.output
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["cascade"]["stages"][0]["miss_estimate"]["audited"] > 0


# -- calibration ----------------------------------------------------------------------------------


def test_calibrated_ratio_is_written_into_a_loadable_cascade(tmp_path):
    from negclean.benchjudges.calibrate import calibrate_ratio, write_cascade_yaml
    from negclean.presets import load_cascade_dict

    rel = np.array([1.1, 1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6])
    truth = np.array([1, 0, 1, 0, 1, 0, 0, 0], dtype=bool)
    cal = calibrate_ratio(rel, truth, target_recall=1.0)
    assert cal.ratio == pytest.approx(0.825) and cal.recall == 1.0 and cal.saved == pytest.approx(3 / 8)
    path = write_cascade_yaml(cal, tmp_path / "c.yaml")
    cfg = CascadeConfig.model_validate(load_cascade_dict(str(path)))
    assert cfg.stages[0].judge.ratio == pytest.approx(0.825) and cfg.stages[1].judge.backend == "llamacpp"


# -- the benchmark on shared data ----------------------------------------------------------------


def test_dl19_benchmark_is_deterministic_and_follows_the_grades(shared_data):
    from negclean.benchjudges.dataset import from_beir
    from negclean.judge.qrels import read_qrels

    root = shared_data / "trec-dl-2019-passage"
    a = from_beir(root, queries=5, seed=1, max_candidates=12)
    b = from_beir(root, queries=5, seed=1, max_candidates=12)
    c = from_beir(root, queries=5, seed=2, max_candidates=12)
    assert [i.query_id for i in a.instances] == [i.query_id for i in b.instances]
    assert [i.query_id for i in a.instances] != [i.query_id for i in c.instances]
    assert [[p.docid for p in i.negatives] for i in a.instances] == [
        [p.docid for p in i.negatives] for i in b.instances
    ]
    qrels = read_qrels(root / "qrels" / "test.tsv")
    for inst in a.instances:
        judged = qrels[inst.query_id]
        assert judged[inst.positives[0].docid] == 3
        assert inst.positives[0].docid == min(d for d, g in judged.items() if g >= 3)
        assert len(inst.negatives) <= 12 and [p.rank for p in inst.negatives] == list(range(1, len(inst.negatives) + 1))
        scores = [p.score for p in inst.negatives]
        assert scores == sorted(scores, reverse=True)
        for p in inst.negatives:
            assert a.truth[(inst.query_id, p.docid)] == (judged[p.docid] >= 2)


def test_benchmark_runner_scores_an_oracle_perfectly_and_reruns_free(shared_data, tmp_path):
    from negclean.benchjudges.dataset import from_beir
    from negclean.benchjudges.run import System, run_benchmark

    root = shared_data / "trec-dl-2019-passage"
    bench = from_beir(root, queries=4, seed=0, max_candidates=10)
    qrels = str(root / "qrels" / "test.tsv")
    systems = [
        System("oracle", {"stages": [{"name": "o", "judge": {"backend": "qrels", "path": qrels, "min_grade": 2}}]}),
        System("dup", {"stages": [{"name": "d", "judge": {"backend": "duplicate"}}]}),
        System(
            "dup>oracle",
            {
                "stages": [
                    {"name": "d", "judge": {"backend": "duplicate"}, "escalate": "all"},
                    {"name": "o", "judge": {"backend": "qrels", "path": qrels, "min_grade": 2}},
                ]
            },
            relative_to="oracle",
        ),
    ]
    res = {r.name: r for r in run_benchmark(bench, systems, store_path=tmp_path / "s.sqlite")}
    o = res["oracle"].scores
    assert o.precision == o.recall == o.kappa == 1.0 and o.fp == o.fn == 0 and o.tp == bench.n_relevant
    assert res["dup>oracle"].relative_recall == 1.0 and res["dup>oracle"].share_to_last == 1.0
    assert res["dup"].scores.tp == 0 and res["dup"].cost == 0.0
    again = run_benchmark(bench, systems[:1], store_path=tmp_path / "s.sqlite")
    assert again[0].scores == o


def test_rlhn_reference_truth_is_gpt4o_stage2(shared_data):
    from negclean.benchjudges.dataset import from_rlhn_reference

    bench = from_rlhn_reference(shared_data / "rlhn-reference-msmarco")
    assert len(bench.instances) == 25 and bench.n_candidates == len(bench.truth)
    flagged = set((shared_data / "rlhn-reference-msmarco" / "stage_1.query_ids_flagged.txt").read_text().split())
    for inst in bench.instances:
        if inst.query_id not in flagged:
            assert not any(bench.truth[(inst.query_id, p.docid)] for p in inst.negatives)
    assert 0 < bench.n_relevant < bench.n_candidates


def test_prompt_economy_counts_tokens_per_candidate(shared_data):
    from negclean.benchjudges.dataset import from_rlhn_reference
    from negclean.benchjudges.economy import input_tokens, reference_reasoning_output

    bench = from_rlhn_reference(shared_data / "rlhn-reference-msmarco")
    insts = bench.instances[:3]
    pw = input_tokens(insts, template="pointwise")
    lw = input_tokens(insts, template="listwise_brief")
    assert pw[0] == pw[1] == sum(len(i.negatives) for i in insts) and lw[0] == 3
    # the listwise prompt shows instructions, query and positive once per call, pointwise once per candidate
    assert lw[2] / lw[1] < pw[2] / pw[1]
    out = reference_reasoning_output(shared_data / "rlhn-reference-msmarco")
    assert 5 < out["gpt-4o-mini"] < 200 and 5 < out["gpt-4o"] < 200
    assert math.isfinite(out["gpt-4o"])


def test_shipped_system_sets_validate():
    from negclean.benchjudges.run import _cascade_config, load_systems

    for name in ("cheap", "llm"):
        systems = load_systems(name)
        assert systems and all(_cascade_config(s).stages for s in systems)
    names = {s.name for s in load_systems("llm")}
    assert {s.relative_to for s in load_systems("llm") if s.relative_to} <= names


def test_systems_file_errors_are_actionable(tmp_path):
    from negclean.benchjudges.run import load_systems
    from negclean.errors import ConfigError

    with pytest.raises(ConfigError, match="shipped set"):
        load_systems("nope")
    bad = tmp_path / "s.yaml"
    bad.write_text("systems:\n  - {name: x}\n")
    with pytest.raises(ConfigError, match="needs 'name' and 'stages'"):
        load_systems(str(bad))
    assert Path(bad).exists()
