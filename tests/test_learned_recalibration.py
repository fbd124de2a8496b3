"""Recalibrating a learned screen on a few labels (negclean.learned.recalibration, `fit-judge --recalibrate`)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from negclean.errors import ConfigError
from negclean.judge.learned_model import LearnedModel, resolve_model_path, sigmoid
from negclean.learned.recalibration import (
    ADVISED_LABELS,
    expected_kappa_threshold,
    platt_parameters,
    recalibrate,
)


def _toy_model() -> LearnedModel:
    return LearnedModel(("s",), (0.0,), (1.0,), (1.0,), 0.0, calib_a=1.0, calib_b=0.0, threshold=0.5)


def test_platt_parameters_recover_the_generating_map_and_the_shift_keeps_the_slope():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    z = rng.normal(size=4000)
    y = (rng.random(4000) < sigmoid(1.6 * z - 1.2)).astype(int)
    a, b = platt_parameters(z, y)
    lr = LogisticRegression(C=1e9).fit(z[:, None], y)
    # Platt's smoothed targets move the optimum by O(1/n) only
    assert a == pytest.approx(float(lr.coef_[0, 0]), abs=0.02) and b == pytest.approx(float(lr.intercept_[0]), abs=0.02)
    a2, b2 = platt_parameters(z, y, fixed_a=1.0)
    assert a2 == 1.0 and -1.2 < b2 < 0  # a flatter slope needs a smaller shift to match the same base rate
    # perfectly separated labels still give finite parameters
    a3, b3 = platt_parameters(np.array([-2.0, -1.0, 1.0, 2.0]), np.array([0, 0, 1, 1]))
    assert np.isfinite(a3) and np.isfinite(b3) and a3 > 0


def test_expected_kappa_threshold_matches_a_brute_force_search():
    rng = np.random.default_rng(5)
    p = rng.beta(1, 4, size=300)

    def expected_kappa(t: float) -> float:
        f = p >= t
        n, pos = len(p), p.sum()
        tp = p[f].sum()
        fp, fn = f.sum() - tp, pos - tp
        tn = n - tp - fp - fn
        po, pe = (tp + tn) / n, (f.sum() * pos + (n - f.sum()) * (n - pos)) / n**2
        return (po - pe) / (1 - pe)

    grid = np.unique(p)
    best = max(((grid[k] + grid[k + 1]) / 2 for k in range(len(grid) - 1)), key=expected_kappa)
    assert expected_kappa_threshold(p) == pytest.approx(best)


def test_refuses_one_class_and_warns_on_few_labels():
    m = _toy_model()
    x = np.linspace(-2, 2, 30)[:, None]
    with pytest.raises(ConfigError, match="none is relevant.*Label more"):
        recalibrate(m, x, np.zeros(30, dtype=int), label_source="qrels q.tsv")
    with pytest.raises(ConfigError, match="none is not-relevant"):
        recalibrate(m, x, np.ones(30, dtype=int))
    few = recalibrate(m, x[:10], (x[:10, 0] > -1.5).astype(int), pool=x)
    assert few.warnings and f"{ADVISED_LABELS} or more" in few.warnings[0]
    many = recalibrate(m, x, (x[:, 0] > 0.5).astype(int), pool=x)
    assert many.warnings == ()


@pytest.fixture(scope="module")
def cranfield_features(shared_data):
    """The shipped screen's features (packaged MiniLM) of 12 Cranfield queries, and their qrels labels."""
    from negclean.benchjudges.dataset import from_beir
    from negclean.judge.learned_features import compute_features
    from negclean.learned.labels import labels_from_truth

    model = LearnedModel.load("default")
    bench = from_beir(shared_data / "cranfield", queries=12, seed=0, max_candidates=20)
    table = compute_features(bench.instances, model=model.embedder)
    y = labels_from_truth(table, bench.truth)
    keep = np.flatnonzero(y >= 0)
    return model, model.columns_from(table.names, table.values)[keep], y[keep], table.groups[keep]


def test_labels_with_a_higher_base_rate_flag_more_on_real_data(cranfield_features):
    model, x, y, groups = cranfield_features
    assert 0 < y.sum() < len(y)
    rel, non = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    k = min(len(rel), len(non)) // 2
    assert k >= 10, "too few labels of each kind in the sample"
    high = np.concatenate([rel, non[:k]])  # base rate above the sample's
    low = np.concatenate([rel[:k], non])  # below it
    flagged = {}
    for name, rows in (("high", high), ("low", low)):
        for method in ("platt", "shift"):
            for rule in ("labels", "expected"):
                rec = recalibrate(model, x[rows], y[rows], method=method, threshold_rule=rule, pool=x[rows])
                # only the calibration and the threshold move: the feature weights are the model's
                assert rec.model.coef == model.coef and rec.model.mean == model.mean
                flagged[name, method, rule] = float((rec.model.predict_proba(x) >= rec.threshold).mean())
    for method in ("platt", "shift"):
        for rule in ("labels", "expected"):
            assert flagged["high", method, rule] > flagged["low", method, rule], (method, rule, flagged)


def test_recalibration_matches_the_labels_base_rate_where_the_shipped_screen_does_not(cranfield_features):
    model, x, y, groups = cranfield_features
    rec = recalibrate(model, x, y, pool=x, groups=groups, recalibrated_from="default", label_source="qrels")
    before = float(model.predict_proba(x).sum() / y.sum())
    after = float(rec.model.predict_proba(x).sum() / y.sum())
    assert abs(np.log(after)) < abs(np.log(before)) and 0.8 < after < 1.25, (before, after)
    facts = rec.model.training["recalibration"]
    assert facts["labels"] == len(y) and facts["relevant"] == int(y.sum()) and facts["queries"] == 12
    assert facts["threshold"] == rec.threshold and facts["previous_threshold"] == model.threshold
    assert rec.model.training["fitted"] == model.training


@pytest.mark.slow
def test_fit_judge_recalibrate_command_writes_a_loadable_model(shared_data, tmp_path):
    from typer.testing import CliRunner

    from negclean.cli.main import app

    out = tmp_path / "recal.json"
    args = ["fit-judge", "--beir", str(shared_data / "cranfield"), "--queries", "4", "--recalibrate", "default"]
    result = CliRunner().invoke(app, [*args, "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    model = LearnedModel.load(out)
    shipped = LearnedModel.load("default")
    assert model.coef == shipped.coef and model.threshold == pytest.approx(data["threshold"])
    digest = hashlib.sha256(resolve_model_path("default").read_bytes()).hexdigest()
    assert digest in model.training["recalibrated_from"]
    assert model.training["recalibration"]["labels"] == data["labels"] > 0
    refused = CliRunner().invoke(app, [*args, "--features", "s_qc", "-o", str(tmp_path / "x.json")])
    assert refused.exit_code != 0 and "leave out --features" in refused.output
