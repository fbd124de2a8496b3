"""`negclean experiment` with eval.fill_holes: every variant compared under the original and the filled qrels."""

from __future__ import annotations

import pytest

from negclean.errors import ConfigError
from test_experiment import experiment_yaml, write_inputs

pytest.importorskip("sentence_transformers")


def test_fill_holes_option_parses(tmp_path):
    from negclean.experiment import load_experiment

    train, beir = write_inputs(tmp_path)
    cfg = load_experiment(
        experiment_yaml(
            tmp_path,
            train,
            beir,
            eval={"sets": [{"name": "t", "beir": str(beir)}], "fill_holes": "screen", "fill_depth": 5},
        )
    )
    assert cfg.eval.fill_holes == "screen" and cfg.eval.fill_depth == 5
    with pytest.raises(ConfigError):
        load_experiment(
            experiment_yaml(
                tmp_path,
                train,
                beir,
                eval={"sets": [{"name": "t", "beir": str(beir)}], "fill_holes": "screen", "fill_depth": 0},
            )
        )


@pytest.mark.slow
def test_experiment_compares_every_variant_under_both_qrels(tmp_path, monkeypatch):
    from negclean.experiment import load_experiment, run_experiment
    from negclean.judge.qrels import read_qrels

    monkeypatch.setenv("NEGCLEAN_CACHE_DIR", str(tmp_path / "cache"))
    train, beir = write_inputs(tmp_path)
    cfg = load_experiment(
        experiment_yaml(
            tmp_path,
            train,
            beir,
            variants=["default", "relabel"],
            eval={"sets": [{"name": "t", "beir": str(beir)}], "depth": 10, "fill_holes": "screen", "fill_depth": 3},
        )
    )
    result = run_experiment(cfg)
    assert set(result.comparisons) == {"t", "t+filled"}
    assert set(result.scores["t+filled"]) == set(result.scores["t"]) == {"default", "base", "relabel"}
    holes = tmp_path / "out" / "holes" / "t"
    original, filled = read_qrels(beir / "qrels" / "test.tsv"), read_qrels(holes / "qrels.filled.tsv")
    assert all(filled[q][d] == g for q, docs in original.items() for d, g in docs.items())
    added = sum(len(d) for d in filled.values()) - sum(len(d) for d in original.values())
    assert added == len((holes / "holes.provenance.jsonl").read_text().splitlines()) > 0
    md = (tmp_path / "out" / "results.md").read_text()
    assert "## t\n" in md and "## t+filled" in md
    assert any(s.name == "fill holes t" for s in result.steps)
