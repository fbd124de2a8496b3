"""Comparing systems: paired tests with known answers, Holm adjustment, tables, plot, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from negclean.errors import ConfigError, InputError
from negclean.evaluate.compare import compare, holm, paired_tests

pytest.importorskip("scipy")


def system(values, measure="nDCG@10"):
    return {measure: {f"q{i}": float(v) for i, v in enumerate(values)}}


def test_holm_known_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.2]) == [0.2]


def test_randomisation_test_exact_small_case():
    # 5 queries, all differences positive: 2 of the 2^5 sign patterns are as extreme -> p = 2/32 (exact enumeration)
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    delta, ci, p_t, p_r = paired_tests(a, np.zeros(5), resamples=10_000, confidence=0.95, seed=0)
    assert delta == pytest.approx(3.0)
    assert p_r == pytest.approx(2 / 32)
    assert p_t == pytest.approx(0.0132, abs=1e-3)  # t = 3 / (sqrt(2.5)/sqrt(5)) = 4.243, 4 df
    assert ci[0] <= 3.0 <= ci[1]


def test_identical_systems_are_not_different():
    x = np.linspace(0, 1, 40)
    delta, ci, p_t, p_r = paired_tests(x, x.copy(), resamples=1000, confidence=0.95, seed=0)
    assert (delta, ci, p_t, p_r) == (0.0, (0.0, 0.0), 1.0, 1.0)


def test_clear_improvement_is_significant_and_noise_is_not():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.8, 300)
    better = np.clip(base + 0.05 + rng.normal(0, 0.05, 300), 0, 1)
    noise = np.clip(base + rng.normal(0, 0.05, 300), 0, 1)
    comp = compare({"base": system(base), "better": system(better), "noise": system(noise)}, resamples=2000, seed=3)
    rows = {r.name: r for r in comp.table("nDCG@10").rows}
    assert rows["better"].p_ttest < 1e-6 and rows["better"].p_randomisation < 1e-3
    assert rows["better"].delta_ci[0] > 0
    assert rows["noise"].p_holm > 0.05
    # the two tests agree closely on well-behaved data
    assert abs(rows["noise"].p_ttest - rows["noise"].p_randomisation) < 0.05
    assert rows["better"].wins > rows["better"].losses
    assert rows["base"].delta is None and rows["base"].mean == pytest.approx(base.mean())


def test_missing_queries_are_dropped_and_counted():
    a = system([0.1, 0.2, 0.3, 0.4])
    b = system([0.2, 0.3, 0.4])
    comp = compare({"a": a, "b": b}, resamples=200)
    assert comp.queries == 3 and comp.dropped == {"a": 1, "b": 0}
    with pytest.raises(ConfigError, match="baseline"):
        compare({"a": a, "b": b}, baseline="c")
    with pytest.raises(InputError, match="no scores for R@100"):
        compare({"a": a, "b": b}, measures=["R@100"])


def test_markdown_json_and_plot(tmp_path):
    from negclean.evaluate.plot import plot_comparison

    base = np.linspace(0.1, 0.9, 50)
    comp = compare({"default": system(base), "relabel": system(base + 0.05)}, resamples=500)
    md = comp.markdown()
    assert "| relabel | " in md and "+0.0500 †" in md and "**nDCG@10** (50 queries; baseline: default)" in md
    data = json.loads(json.dumps(comp.as_dict()))
    assert data["tables"][0]["rows"][1]["delta"] == pytest.approx(0.05)
    png = plot_comparison(comp, tmp_path / "c.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_compare_cli_on_run_files(tmp_path):
    from typer.testing import CliRunner

    from negclean.cli.main import app

    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(30)))
    good, bad = tmp_path / "good.trec", tmp_path / "bad.trec"
    good.write_text("".join(f"q{i} Q0 d{i} 1 2.0 g\nq{i} Q0 x{i} 2 1.0 g\n" for i in range(30)))
    bad.write_text("".join(f"q{i} Q0 x{i} 1 2.0 b\nq{i} Q0 d{i} 2 1.0 b\n" for i in range(30)))
    out = tmp_path / "cmp"
    res = CliRunner().invoke(
        app,
        [
            "compare",
            f"bad={bad}",
            f"good={good}",
            "--qrels",
            str(qrels),
            "-o",
            str(out),
            "--resamples",
            "500",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    row = data["tables"][0]["rows"][1]
    assert row["name"] == "good" and row["delta"] == pytest.approx(1 - 1 / np.log2(3))
    assert row["p_randomisation"] < 0.01 and row["wins"] == 30
    assert (out / "comparison.png").is_file() and (out / "comparison.md").is_file()
    res = CliRunner().invoke(app, ["compare", str(good)])
    assert res.exit_code == 2 and "--qrels" in res.output
