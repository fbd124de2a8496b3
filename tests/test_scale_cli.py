"""`negclean scale judge|run|mine`: the local engine through the scale commands, usage errors, and the
message when Ray is not installed (no Ray instance is started here; tests/test_scale_ray.py starts one)."""

from __future__ import annotations

import json
import sys

from typer.testing import CliRunner

from negclean.cli.main import app

runner = CliRunner()


def test_local_engine_writes_what_negclean_judge_writes(tmp_path, examples_dir):
    src = str(examples_dir / "msmarco_hn_scored.jsonl")
    cascade = tmp_path / "dup.yaml"
    cascade.write_text("stages:\n  - name: dup\n    judge: {backend: duplicate}\n")
    a = runner.invoke(app, ["judge", src, "-c", str(cascade), "-o", str(tmp_path / "a"), "--json"])
    b = runner.invoke(
        app, ["scale", "judge", src, "-c", str(cascade), "-o", str(tmp_path / "b"), "--engine", "local", "--json"]
    )
    assert a.exit_code == b.exit_code == 0, b.output
    assert (tmp_path / "a" / "verdicts.jsonl").read_bytes() == (tmp_path / "b" / "verdicts.jsonl").read_bytes()
    assert json.loads(b.output)["read"]["read"] == 10


def test_usage_errors_exit_2(tmp_path, examples_dir):
    src = str(examples_dir / "msmarco_hn_scored.jsonl")
    bad = runner.invoke(app, ["scale", "judge", src, "-o", str(tmp_path / "x"), "--engine", "spark", "--json"])
    assert bad.exit_code == 2 and "choose ray or local" in json.loads(bad.output)["message"]
    opt = runner.invoke(
        app, ["scale", "mine", str(tmp_path), "-o", str(tmp_path / "m.jsonl"), "--set", "bogus", "--json"]
    )
    assert opt.exit_code == 2 and "KEY=VALUE" in json.loads(opt.output)["message"]


def test_missing_ray_names_the_extra(tmp_path, examples_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    cascade = tmp_path / "dup.yaml"
    cascade.write_text("stages:\n  - name: dup\n    judge: {backend: duplicate}\n")
    result = runner.invoke(
        app,
        [
            "scale",
            "judge",
            str(examples_dir / "msmarco_hn_scored.jsonl"),
            "-c",
            str(cascade),
            "-o",
            str(tmp_path / "r"),
            "--json",
        ],
    )
    assert result.exit_code == 2
    assert "pip install 'negclean[ray]'" in json.loads(result.output)["message"]
