"""The command line end to end on the shipped example: judge, fix, run, inspect, exit codes, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "msmarco_hn_scored.jsonl"


def cli(*args, check=None):
    proc = subprocess.run(
        [sys.executable, "-m", "negclean.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


def test_help_imports_nothing_heavy():
    code = (
        "import sys, negclean.cli.main as m; heavy = [x for x in ('torch', 'sentence_transformers', 'faiss', "
        "'llama_cpp', 'openai', 'ray', 'pyarrow', 'bm25s', 'sklearn', 'matplotlib') if x in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    proc = cli("judge", EXAMPLE, "--cascade", "screen", "-o", run_dir, "--json", check=0)
    return run_dir, json.loads(proc.stdout)


def test_judge_writes_run_folder(screened):
    run_dir, summary = screened
    assert summary["read"] == {"format": "flagembedding", "read": 10, "ok": 10, "rejected": 0, "warnings": {}}
    rows = [json.loads(line) for line in (run_dir / "verdicts.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and all(len(r["candidates"]) == 25 for r in rows)
    cas = summary["cascade"]
    assert cas["candidates"] == 250 and cas["stages"][0]["candidates"] == 250
    assert cas["false_negatives"] == sum(len(r["false_negatives"]) for r in rows)
    assert json.loads((run_dir / "summary.json").read_text())["cascade"] == cas


def test_rerun_uses_the_store(screened):
    run_dir, _ = screened
    again = json.loads(cli("judge", EXAMPLE, "--cascade", "screen", "-o", run_dir, "--json", check=0).stdout)
    assert all(s["judged"] == 0 for s in again["cascade"]["stages"])
    assert again["cascade"]["stages"][0]["from_store"] == 250


@pytest.mark.parametrize("op", ["none", "remove", "hn_remove", "relabel"])
def test_fix_every_operation_reconciles(screened, tmp_path, op):
    run_dir, summary = screened
    out = tmp_path / f"{op}.jsonl"
    res = json.loads(
        cli("fix", EXAMPLE, "-v", run_dir / "verdicts.jsonl", "-o", out, "--op", op, "--json", check=0).stdout
    )
    assert res["reconciled"] is True
    lines = out.read_text().splitlines()
    assert len(lines) == res["fix"]["written"]
    first = json.loads(lines[0])
    assert set(first) >= {"query", "pos", "neg"}  # kept the input's FlagEmbedding format
    if op == "relabel":
        assert res["fix"]["relabeled"] > 0


def test_fix_with_mismatched_verdicts_is_a_clear_error(screened, tmp_path):
    run_dir, _ = screened
    other = tmp_path / "other.jsonl"
    rows = EXAMPLE.read_text().splitlines()
    other.write_text("\n".join(rows[1:]) + "\n")
    proc = cli("fix", other, "-v", run_dir / "verdicts.jsonl", "-o", tmp_path / "o.jsonl", check=3)
    assert "does not match input line 1" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_inspect(screened):
    run_dir, _ = screened
    row = json.loads(cli("inspect", run_dir, "--flagged", "--json", check=0).stdout)
    assert row["false_negatives"] and row["query"] and len(row["candidates"]) == 25


def test_bad_input_fail_mode_exit_code(tmp_path):
    bad = tmp_path / "bad.jsonl"
    rows = EXAMPLE.read_text().splitlines()
    bad.write_text(rows[0] + "\n{not json\n" + rows[1] + "\n")
    proc = cli("judge", bad, "--cascade", "screen", "-o", tmp_path / "r", "--on-error", "fail", check=3)
    assert f"{bad}:2" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "verdicts.jsonl").exists()  # nothing half-written


def test_bad_input_skip_mode_reconciles(tmp_path):
    bad = tmp_path / "bad.jsonl"
    rows = EXAMPLE.read_text().splitlines()
    bad.write_text(rows[0] + "\n{not json\n" + rows[1] + "\n")
    proc = cli("run", _pipeline(tmp_path, bad), "--json", check=0)
    summary = json.loads(proc.stdout)
    assert summary["read"]["read"] == 3 and summary["read"]["rejected"] == 1
    assert summary["reconciled"] is True
    rejects = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert rejects[0]["line"] == 2


def _pipeline(tmp_path, input_path, **fix):
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(
        f"input: {input_path}\noutput_dir: out\ncascade: screen\non_error: skip\n"
        f"fix: {json.dumps({'operation': 'relabel', **fix})}\n"
    )
    return cfg


@pytest.mark.parametrize(
    "args,fragment",
    [
        (("judge", EXAMPLE, "--cascade", "no-such-preset"), "unknown cascade preset"),
        (("fix", EXAMPLE, "-v", "x", "-o", "y", "--op", "explode"), "--op 'explode'"),
    ],
)
def test_usage_errors_exit_2(args, fragment, tmp_path):
    proc = cli(*args, check=2)
    assert fragment in proc.stderr and "Traceback" not in proc.stderr


def test_invalid_pipeline_names_the_field(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        "input: x.jsonl\ncascade:\n  stages:\n    - name: a\n      judge: {backend: similarity, ratio: high}\n"
    )
    proc = cli("run", cfg, "--json", check=2)
    err = json.loads(proc.stdout)
    assert err["exit_code"] == 2 and "cascade.stages.0.judge.similarity.ratio" in err["message"]


def test_error_messages_print_verbatim_and_unwrapped(capsys):
    """Brackets in a message are text, not rich markup (a "[/tmp/x]" used to raise MarkupError), and a
    long message is not hard-wrapped at the terminal width (paths stay copyable)."""
    import typer

    from negclean.cli.console import fail
    from negclean.errors import InputError

    message = "negative_passages[3] is not an object, see [/tmp/x] and " + "/very/long/path" * 10
    with pytest.raises(typer.Exit) as exc:
        fail(InputError(message, path="/tmp/a.jsonl", line=3), as_json=False)
    assert exc.value.exit_code == InputError("x").exit_code
    err = capsys.readouterr().err
    assert err == f"error: /tmp/a.jsonl:3: {message}\n"


def test_inspect_prints_bracketed_texts_as_text(tmp_path):
    """Passage texts and ids are data: "[/x]" or "[bold]" in them is printed, not parsed as rich markup."""
    from typer.testing import CliRunner

    from negclean.cli.main import app

    data = tmp_path / "in.jsonl"
    data.write_text(
        json.dumps(
            {
                "query_id": "q[1]",
                "query": "what is [/x]?",
                "positive_passages": [{"docid": "p", "text": "a [bold]positive[/bold] text"}],
                "negative_passages": [{"docid": "n[2]", "text": "closing [/tmp/x] tag"}],
            }
        )
        + "\n"
    )
    res = CliRunner().invoke(app, ["judge", str(data), "--cascade", "screen", "-o", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["inspect", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "what is [/x]?" in out and "a [bold]positive[/bold] text" in out and "[/tmp/x]" in out


def test_config_paths_expand_home_and_environment_variables(tmp_path, monkeypatch):
    """Pipeline and experiment YAMLs resolve paths alike: ~ and $VARS expanded, the rest relative to the file."""
    from negclean.experiment.config import load_experiment
    from negclean.pipeline import load_pipeline

    monkeypatch.setenv("NEGCLEAN_TEST_DATA", str(tmp_path / "data"))
    (tmp_path / "cfg").mkdir()
    pipe = tmp_path / "cfg" / "p.yaml"
    pipe.write_text("input: $NEGCLEAN_TEST_DATA/train.jsonl\noutput_dir: runs/x\ncascade: screen\n")
    cfg = load_pipeline(pipe)
    assert cfg.input == str(tmp_path / "data" / "train.jsonl")
    assert cfg.output_dir == str(tmp_path / "cfg" / "runs" / "x")
    exp = tmp_path / "cfg" / "e.yaml"
    exp.write_text(
        "output_dir: ${NEGCLEAN_TEST_DATA}/exp\ndata: {input: t.jsonl}\ncascade: screen\n"
        "train: {kind: retriever}\neval: {sets: [{name: t, beir: ~/beir, split: test}]}\n"
    )
    e = load_experiment(exp)
    assert str(e.output_dir) == str(tmp_path / "data" / "exp")
    assert str(e.eval.sets[0].beir) == str(Path.home() / "beir")
