"""The learned judge (issue 9): features by hand, JSON model round trip, calibration, query-grouped CV with no
leakage, the judge in a cascade (confidence = calibrated probability, uncertain band routed), distillation labels
from a store, active sampling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from negclean.data.records import Instance, Passage
from negclean.learned.features import FEATURES, FeatureTable, compute_features
from negclean.learned.fit import fit_learned, grouped_folds
from negclean.learned.model import LearnedModel, sigmoid


class TableEmbedder:
    """Vectors given by hand per text (rows L2-normalised), so similarities are known exactly."""

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors = {k: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for k, v in vectors.items()}

    def encode(self, texts, *, prefix="", batch_size=64, show_progress=False):
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, 2), np.float32)


def _hand_instance():
    pos = Passage("p", "alpha beta gamma delta")
    negs = (
        Passage("a", "alpha beta gamma delta", rank=3, score=12.5),  # exact copy of the positive
        Passage("b", "unrelated words here entirely"),
    )
    return Instance("q1", "the query", (pos,), negs)


def test_features_by_hand():
    inst = _hand_instance()
    emb = TableEmbedder(
        {"the query": [1, 0], "alpha beta gamma delta": [0.6, 0.8], "unrelated words here entirely": [0, 1]}
    )
    key_b = (inst.query_key, inst.positives_key, inst.negatives[1].key)
    t = compute_features([inst], embedder=emb, prior={key_b: 0.25})
    assert t.names == FEATURES and t.values.shape == (2, len(FEATURES))
    row = dict(zip(FEATURES, t.values[0]))
    assert row["s_qc"] == pytest.approx(0.6) and row["s_pc"] == pytest.approx(1.0)
    assert row["ratio"] == pytest.approx(1.0) and row["gap"] == pytest.approx(0.0)
    assert row["log_rank"] == pytest.approx(np.log1p(3)) and row["retriever_score"] == 12.5
    assert row["dup_exact"] == 1.0 and row["jaccard"] == 1.0 and np.isnan(row["prior"])
    row = dict(zip(FEATURES, t.values[1]))
    assert row["s_qc"] == pytest.approx(0.0) and row["s_pc"] == pytest.approx(0.8)
    assert row["ratio"] == pytest.approx(1 + (0.0 - 0.6) / 0.6) and row["gap"] == pytest.approx(-0.6)
    assert row["log_rank"] == pytest.approx(np.log1p(2))  # no rank: position 2
    assert np.isnan(row["retriever_score"]) and row["dup_exact"] == 0.0 and row["jaccard"] == 0.0
    assert row["prior"] == 0.25 and row["bm25"] == 0.0 and row["bm25_gap"] <= 0.0
    assert t.ids == (("q1", "a"), ("q1", "b")) and list(t.groups) == ["q1", "q1"]


def _synthetic(n_groups=30, per=20, seed=0, slope=2.0):
    rng = np.random.default_rng(seed)
    n = n_groups * per
    x = rng.normal(size=(n, len(FEATURES)))
    z = slope * x[:, 0] - 1.0
    y = (rng.random(n) < sigmoid(z)).astype(int)
    groups = np.repeat([f"g{i}" for i in range(n_groups)], per).astype(object)
    table = FeatureTable(
        FEATURES,
        x,
        tuple(("k", "p", str(i)) for i in range(n)),
        tuple((g, str(i)) for i, g in enumerate(groups)),
        groups,
    )
    return table, y


def test_model_json_round_trip_and_prediction_equal_sklearn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    table, y = _synthetic()
    report = fit_learned(table, y, folds=5)
    model = report.model
    text = model.to_json()
    assert "pickle" not in text and json.loads(text)["format_version"] == 1
    again = LearnedModel.from_json(text)
    assert again == model
    scaler = StandardScaler().fit(table.values)
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(table.values), y)
    np.testing.assert_allclose(
        model.decision(table.values), lr.decision_function(scaler.transform(table.values)), rtol=1e-6, atol=1e-6
    )
    with_nan = table.values.copy()
    with_nan[0, 3] = np.nan  # missing -> training mean -> contributes nothing
    expect = table.values[0].copy()
    expect[3] = model.mean[3]
    assert model.predict_proba(with_nan)[0] == pytest.approx(model.predict_proba(expect[None])[0])


def test_model_file_errors_are_actionable(tmp_path):
    from negclean.errors import ConfigError

    with pytest.raises(ConfigError, match="fit-judge"):
        LearnedModel.load(tmp_path / "missing.json")
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"format": "negclean-learned-judge", "format_version": 99}))
    with pytest.raises(ConfigError, match="format version 99"):
        LearnedModel.load(bad)


def test_calibration_matches_observed_frequencies():
    table, y = _synthetic(n_groups=60, per=30, seed=1)
    report = fit_learned(table, y, folds=5)
    p = report.oof  # held-out probabilities
    bins = np.digitize(p, [0.2, 0.4, 0.6, 0.8])
    for b in range(5):
        m = bins == b
        if m.sum() >= 60:
            assert abs(p[m].mean() - y[m].mean()) < 0.08, (b, p[m].mean(), y[m].mean())
    assert report.learned.auc > 0.75
    # an uncalibrated score (the raw decision value squashed twice as steeply) would miss by far more
    assert abs(sigmoid(2 * np.log(p / (1 - p)))[bins == 4].mean() - y[bins == 4].mean()) > 0.02


def test_kappa_threshold_search_agrees_with_sklearn():
    from sklearn.metrics import cohen_kappa_score

    from negclean.learned.fit import best_kappa_threshold

    rng = np.random.default_rng(2)
    s = rng.normal(size=300)
    y = (rng.random(300) < sigmoid(2 * s)).astype(int)
    t = best_kappa_threshold(s, y)
    vals = np.unique(s)
    best = max(cohen_kappa_score(y, (s >= m).astype(int)) for m in (vals[:-1] + vals[1:]) / 2)
    assert cohen_kappa_score(y, (s >= t).astype(int)) == pytest.approx(best)


def test_no_test_fold_query_is_in_training():
    table, y = _synthetic(n_groups=12, per=10)
    report = fit_learned(table, y, folds=4)
    assert len(report.folds) == 4
    seen_test = set()
    for train, test in report.folds:
        g_train = {table.groups[i] for i in train}
        g_test = {table.groups[i] for i in test}
        assert not g_train & g_test
        seen_test |= set(test)
    assert seen_test == set(range(len(y)))


def test_grouped_cv_does_not_reward_memorising_queries():
    """Labels are a per-query coin flip and one feature is a per-query id code: a model that saw the test
    queries in training would score AUC ~1 held out; with grouped folds it cannot beat chance."""
    rng = np.random.default_rng(3)
    n_groups, per = 40, 10
    groups = np.repeat([f"g{i}" for i in range(n_groups)], per).astype(object)
    group_label = rng.integers(0, 2, n_groups)
    group_code = rng.normal(size=n_groups)
    x = rng.normal(size=(n_groups * per, len(FEATURES))) * 0.01
    x[:, 0] = np.repeat(group_code, per)
    x[:, 1] = np.repeat(group_code**2, per)
    y = np.repeat(group_label, per)
    table = FeatureTable(
        FEATURES,
        x,
        tuple(("k", "p", str(i)) for i in range(len(y))),
        tuple((g, str(i)) for i, g in enumerate(groups)),
        groups,
    )
    report = fit_learned(table, y, folds=5)
    assert report.learned.auc < 0.75
    # the same model with ungrouped folds (rows of a query on both sides) would look excellent
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    leaky = cross_val_predict(
        KNeighborsClassifier(3), x[:, :1], y, cv=KFold(5, shuffle=True, random_state=0), method="predict_proba"
    )[:, 1]
    assert roc_auc_score(y, leaky) > 0.9


def test_learned_judge_in_a_cascade_routes_its_uncertain_band(tmp_path):
    from negclean.cascade.runner import Cascade
    from negclean.cascade.stages import CascadeConfig
    from negclean.cascade.store import JudgmentStore
    from negclean.judge.config import LearnedJudgeConfig
    from negclean.judge.learned import LearnedJudge

    texts = {"the query": [1, 0]}
    negs = []
    for i in range(12):
        angle = i / 11 * np.pi / 2
        t = f"candidate number {i}"
        texts[t] = [np.cos(angle), np.sin(angle)]
        negs.append(Passage(f"d{i}", t))
    texts["alpha positive"] = [0.9, 0.1]
    inst = Instance("q", "the query", (Passage("p", "alpha positive"),), tuple(negs))
    emb = TableEmbedder(texts)
    model = LearnedModel(("s_qc",), (0.5,), (0.2,), (3.0,), 0.0, 1.0, 0.0, 0.5)
    path = model.save(tmp_path / "m.json")
    cfg_j = LearnedJudgeConfig(path=str(path))
    judge = LearnedJudge(cfg_j, embedder=emb)
    probs = judge.probabilities(
        [__import__("negclean.judge.base", fromlist=["JudgeTask"]).JudgeTask(inst, tuple(range(12)))]
    )[0]
    s_qc = np.array([np.cos(i / 11 * np.pi / 2) for i in range(12)])
    np.testing.assert_allclose(probs, sigmoid(3.0 * (s_qc - 0.5) / 0.2), rtol=1e-5)

    from negclean.judge.base import JudgeBase

    class Recorder(JudgeBase):
        listwise, judge_id, fingerprint = False, "rec", "rec"

        def __init__(self):
            self.seen = []

        def judge(self, tasks):
            from negclean.judge.base import Label, TaskResult, Verdict

            for t in tasks:
                self.seen.extend(p.docid for p in t.passages)
            return [TaskResult(tuple(Verdict(Label.NOT_RELEVANT, None, "rec") for _ in t.candidates)) for t in tasks]

        def estimate_tokens(self, task):
            return (0, 0)

    from negclean.judge.config import DuplicateJudgeConfig

    cfg = CascadeConfig(
        stages=[
            {"name": "learned", "judge": cfg_j.model_dump(), "escalate": "none", "uncertain": [0.2, 0.8]},
            {"name": "strong", "judge": DuplicateJudgeConfig(near_threshold=0.77).model_dump()},
        ],
        max_false_negatives=None,
    )
    rec = Recorder()
    outcomes = list(Cascade(cfg, store=JudgmentStore(), judges={"learned": judge, "strong": rec}).run([inst]))
    expected = {f"d{i}" for i, p in enumerate(probs) if 0.2 <= p <= 0.8}
    assert set(rec.seen) == expected and 0 < len(expected) < 12
    trail0 = [cv.trail[0][1] for cv in outcomes[0].candidates]
    assert [v.confidence for v in trail0] == pytest.approx(list(probs), rel=1e-6)
    assert all((v.label.value == "relevant") == (v.confidence >= 0.5) for v in trail0)


def test_learned_judge_fingerprint_follows_the_model_file(tmp_path):
    from negclean.judge.config import LearnedJudgeConfig
    from negclean.judge.learned import LearnedJudge

    path = tmp_path / "m.json"
    LearnedModel(("s_qc",), (0.5,), (0.2,), (3.0,), 0.0).save(path)
    a = LearnedJudge(LearnedJudgeConfig(path=str(path)), embedder=object()).fingerprint
    LearnedModel(("s_qc",), (0.5,), (0.2,), (2.0,), 0.0).save(path)
    b = LearnedJudge(LearnedJudgeConfig(path=str(path)), embedder=object()).fingerprint
    assert a != b


def test_distillation_labels_come_from_a_judges_stored_verdicts():
    from negclean.cascade.store import JudgmentStore
    from negclean.judge.base import Grade, JudgeTask, Label, TaskResult, Verdict
    from negclean.learned.labels import labels_from_judge

    inst = _hand_instance()
    store = JudgmentStore()
    store.register_judge("fp1", "strong", "{}")
    store.put("fp1", JudgeTask(inst, (0,)), TaskResult((Verdict(Label.RELEVANT, 0.9, "strong", Grade.WORSE),)))
    emb = TableEmbedder(
        {"the query": [1, 0], "alpha beta gamma delta": [0.6, 0.8], "unrelated words here entirely": [0, 1]}
    )
    table = compute_features([inst], embedder=emb)
    assert labels_from_judge(table, store, "strong").tolist() == [1, -1]
    store.put("fp1", JudgeTask(inst, (1,)), TaskResult((Verdict(Label.NOT_RELEVANT, 0.1, "strong"),)))
    assert labels_from_judge(table, store, "fp1").tolist() == [1, 0]
    from negclean.errors import ConfigError

    with pytest.raises(ConfigError, match="judges there: strong"):
        labels_from_judge(table, store, "other")


def test_active_sampling_picks_uncertain_first_and_stops():
    from negclean.learned.active import StopRule, active_loop, uncertainty_order

    assert uncertainty_order(np.array([0.9, 0.45, 0.1, 0.55, 0.5])).tolist() == [4, 1, 3, 0, 2]
    table, y = _synthetic(n_groups=40, per=20, seed=5, slope=3.0)
    x, g = table.values, table.groups
    hist, why, labeled = active_loop(
        x, g, lambda idx: y[idx], start=40, batch=20, rule=StopRule(budget=200, min_delta=-1.0, margin=0.5), seed=0
    )
    assert why == "label budget 200 spent" and len(labeled) == 200 == hist[-1].labeled
    assert len(set(labeled.tolist())) == 200
    hist2, why2, _ = active_loop(
        x, g, lambda idx: y[idx], start=40, batch=20, rule=StopRule(patience=2, min_delta=0.5), seed=0
    )
    assert "held-out AUC" in why2 and len(hist2) == 3  # patience + 1 rounds: the first chance to stop


def test_grouped_folds_need_two_queries():
    from negclean.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 2 queries"):
        grouped_folds(np.array(["a", "a"], dtype=object), folds=5)
    assert len(grouped_folds(np.array(["a", "b", "c"], dtype=object), folds=5)) == 3


@pytest.mark.slow
def test_fit_judge_command_end_to_end_on_dl19(shared_data, tmp_path):
    from typer.testing import CliRunner

    from negclean.cli.main import app

    out = tmp_path / "m.json"
    result = CliRunner().invoke(
        app,
        [
            "fit-judge",
            "--beir",
            str(shared_data / "trec-dl-2019-passage"),
            "--queries",
            "10",
            "--max-candidates",
            "10",
            "--folds",
            "3",
            "-o",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["groups"] == 10 and data["learned"]["auc"] is not None
    model = LearnedModel.load(out)
    assert model.training["queries"] == 10 and "prior" not in model.features
