"""The streaming file API (``negclean.judge_file``, ``fix_file``, ``run``) on the shipped example with the real
``screen`` preset (duplicate stage, then the learned MiniLM + BM25 screen): the returned ``RunSummary`` is what
``summary.json`` holds, the counts reconcile, and a rerun is served from the judgment store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import negclean
from negclean.api_records import RunSummary
from negclean.errors import ConfigError, InputError
from negclean.pipeline import standard_json

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "msmarco_hn_scored.jsonl"


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunSummary]:
    run_dir = tmp_path_factory.mktemp("run")
    return run_dir, negclean.judge_file(EXAMPLE, "screen", output_dir=run_dir)


def test_judge_file_returns_what_summary_json_holds(judged):
    run_dir, result = judged
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert standard_json(result.as_dict()) == on_disk
    assert result.as_dict() is not result.as_dict()  # a fresh copy: a caller's edit changes nothing held
    assert result.command == "judge" and result.input == str(EXAMPLE) and result.format == on_disk["read"]["format"]
    assert [s.name for s in result.funnel] == ["duplicate", "screen"]
    assert result.verdicts == str(run_dir / "verdicts.jsonl") and result.store == str(run_dir / "judgments.sqlite")
    assert result.written is None and result.reconciled is None and result.fixed is None  # no fix ran


def test_judge_file_counts_reconcile(judged):
    run_dir, result = judged
    lines = [x for x in EXAMPLE.read_text().splitlines() if x.strip()]
    assert result.records_read == len(lines) == result.records_ok + result.rejected and result.rejected == 0
    rows = (run_dir / "verdicts.jsonl").read_text().splitlines()
    assert result.instances == len(rows) == result.records_ok
    first, second = result.funnel
    assert second.candidates == first.escalated
    assert result.false_negatives == result.as_dict()["cascade"]["false_negatives"]
    assert result.cost == 0.0  # no stage of the screen preset calls a paid model


def test_rerun_is_served_from_the_store(judged):
    run_dir, first = judged
    again = negclean.judge_file(EXAMPLE, "screen", output_dir=run_dir)
    for before, now in zip(first.funnel, again.funnel):
        assert now.candidates == before.candidates and now.judged == 0 and now.from_store == now.candidates
    assert again.false_negatives == first.false_negatives


@pytest.mark.parametrize("op", ["relabel", "remove"])
def test_fix_file_reconciles(judged, tmp_path, op):
    run_dir, result = judged
    out = tmp_path / "fixed.jsonl"
    fixed = negclean.fix_file(EXAMPLE, run_dir / "verdicts.jsonl", output=out, op=op)
    assert fixed.command == "fix" and fixed.fixed == str(out) and fixed.reconciled is True
    assert fixed.written is not None and fixed.dropped is not None
    assert fixed.records_read == fixed.written + fixed.dropped + fixed.rejected == result.records_read
    assert len(out.read_text().splitlines()) == fixed.written
    assert fixed.as_dict()["fix"]["written"] == fixed.written and fixed.funnel == ()
    if op == "remove":
        flagged = sum(
            1 for row in (run_dir / "verdicts.jsonl").read_text().splitlines() if json.loads(row)["false_negatives"]
        )
        assert fixed.dropped == flagged


def test_run_pipeline_with_skipped_lines(tmp_path):
    bad = tmp_path / "bad.jsonl"
    rows = EXAMPLE.read_text().splitlines()
    bad.write_text(rows[0] + "\n{not json\n" + rows[1] + "\n")
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text("output_dir: out\ncascade: screen\non_error: skip\nfix: {operation: relabel}\n")
    result = negclean.run(pipe, input=bad)
    assert result.command == "run" and result.records_read == 3 and result.rejected == 1
    assert result.reconciled is True and result.written is not None and result.dropped is not None
    assert result.written + result.dropped + result.rejected == result.records_read
    assert result.fixed == str(tmp_path / "out" / "fixed.bad.jsonl") and Path(result.fixed).exists()
    assert standard_json(result.as_dict()) == json.loads((tmp_path / "out" / "summary.json").read_text())
    with pytest.raises(InputError, match=r"bad\.jsonl:2"):
        negclean.judge_file(bad, "screen", output_dir=tmp_path / "strict")  # on_error="fail" by default


def test_bad_options_say_what_to_do(judged, tmp_path):
    run_dir, _ = judged
    with pytest.raises(ConfigError, match="op must be one of none, remove, hn_remove, relabel"):
        negclean.fix_file(EXAMPLE, run_dir / "verdicts.jsonl", output=tmp_path / "x.jsonl", op="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no-such-preset"):
        negclean.judge_file(EXAMPLE, "no-such-preset", output_dir=tmp_path / "r")
