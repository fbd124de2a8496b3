"""A judge backend from another package (tests/plugins/negclean_testjudge), found through its entry point and used
by name in a cascade YAML, end to end through the command line in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from _plugin_util import PLUGIN_ROOT, write_dist_info
from negclean.cascade.stages import CascadeConfig
from negclean.errors import ConfigError
from negclean.judge.registry import ENTRY_POINT_GROUP, backend_names, config_class

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "msmarco_hn_scored.jsonl"
CASCADE = """\
stages:
  - name: words
    judge: {backend: testjudge, min_overlap: 0.6}
max_false_negatives: null
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """The plugin installed in this process; returns the folder holding its .dist-info."""
    where = tmp_path / "site"
    write_dist_info(where)
    monkeypatch.syspath_prepend(str(where))
    monkeypatch.syspath_prepend(str(PLUGIN_ROOT))
    return where


def _cli(*args, pythonpath: list[Path] | None = None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "negclean.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_the_entry_point_names_the_backend_and_its_options_are_validated(site):
    assert "testjudge" in backend_names()
    cls = config_class("testjudge")
    assert cls.__module__ == "negclean_testjudge.config"
    cfg = CascadeConfig.model_validate(
        {"stages": [{"name": "w", "judge": {"backend": "testjudge", "min_overlap": 0.7}}]}
    )
    judge = cfg.stages[0].judge
    assert isinstance(judge, cls) and judge.min_overlap == 0.7  # type: ignore[attr-defined]
    assert CascadeConfig.model_validate(cfg.model_dump()) == cfg  # a dumped cascade (Ray jobs) reads back whole
    for bad, field in (({"min_overlap": 2.0}, "min_overlap"), ({"min_overlp": 0.5}, "min_overlp")):
        with pytest.raises(ValidationError) as info:
            CascadeConfig.model_validate({"stages": [{"name": "w", "judge": {"backend": "testjudge", **bad}}]})
        assert any(err["loc"][-1] == field for err in info.value.errors()), info.value


def test_an_unknown_backend_lists_the_known_ones(site):
    with pytest.raises(ValidationError) as info:
        CascadeConfig.model_validate({"stages": [{"name": "w", "judge": {"backend": "tesjudge"}}]})
    text = str(info.value)
    assert "unknown judge backend 'tesjudge'" in text and ENTRY_POINT_GROUP in text
    assert all(name in text for name in ("duplicate", "similarity", "openai", "testjudge"))
    with pytest.raises(ConfigError, match="known backends"):
        config_class("tesjudge")


def test_a_cascade_yaml_runs_the_plugin_end_to_end(site, tmp_path):
    from negclean_testjudge.config import TestJudgeConfig

    from negclean.data.io import read_instances
    from negclean.judge.base import JudgeTask, Label

    cascade = tmp_path / "cascade.yaml"
    cascade.write_text(CASCADE, encoding="utf-8")
    run = tmp_path / "run"
    proc = _cli("judge", EXAMPLE, "--cascade", cascade, "-o", run, "--json", pythonpath=[site, PLUGIN_ROOT])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    (stage,) = summary["cascade"]["stages"]
    assert stage["judge_id"] == "testjudge:0.6"
    # the same judge in this process gives the verdicts the run reports
    instances = list(read_instances(str(EXAMPLE)))
    judge = TestJudgeConfig(min_overlap=0.6).build()
    results = judge.judge([JudgeTask(i, tuple(range(len(i.negatives)))) for i in instances])
    relevant = sum(v.label is Label.RELEVANT for r in results for v in r.verdicts)
    total = sum(len(i.negatives) for i in instances)
    assert (stage["candidates"], stage["judged"], stage["relevant"]) == (total, total, relevant)
    assert 0 < relevant < total  # the threshold splits this data: a judge that flags all or none would not pass
    rows = [json.loads(line) for line in (run / "verdicts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(instances)
    # rerun: every verdict comes from the store, keyed by the plugin config's fingerprint
    again = json.loads(
        _cli("judge", EXAMPLE, "--cascade", cascade, "-o", run, "--json", pythonpath=[site, PLUGIN_ROOT]).stdout
    )
    assert (again["cascade"]["stages"][0]["from_store"], again["cascade"]["stages"][0]["judged"]) == (total, 0)


def test_without_the_package_the_yaml_is_refused_naming_the_known_backends(tmp_path):
    cascade = tmp_path / "cascade.yaml"
    cascade.write_text(CASCADE, encoding="utf-8")
    proc = _cli("judge", EXAMPLE, "--cascade", cascade, "-o", tmp_path / "run", "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "unknown judge backend 'testjudge'" in out and "similarity" in out
