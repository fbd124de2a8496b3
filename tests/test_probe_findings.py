"""Regression tests for the findings of the outside probe of bad inputs and options (issue 19, item 7).

Each test failed on the code the probe ran (5a71904):
1. a passage of several MB went to the tokenizer whole (peak memory grew with the passage: 7.98 GB for 50 MB);
2. `negclean fix IN -o IN` replaced the only copy of the input;
3. a run that read nothing (an empty file, every line rejected, a zero-row Parquet) exited 0;
4. an API key that does not start with `sk-`, echoed masked by a server, reached the verdicts, the summary, the
   report and stderr, and a completion holding the key was stored as it was;
5. a key written twice in one JSON object silently kept the second value;
6. hints named Python arguments (`fmt=`, `on_error='skip'`) where the command line has flags.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from negclean.cli.main import app

REPO = Path(__file__).resolve().parents[1]
BAD = REPO / "tests" / "data" / "bad_inputs"
DUPLICATE = {"stages": [{"name": "dup", "judge": {"backend": "duplicate"}}]}


def invoke(*args) -> tuple[int, str]:
    """Exit code and the JSON error or summary printed by `--json` (the command runs in this process)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert not isinstance(result.exception, (AssertionError, TypeError, AttributeError)), result.exception
    return result.exit_code, result.stdout


def tevatron_rows(n: int, *, text: str = "Some passage about bridges.") -> list[dict]:
    return [
        {
            "query_id": f"q{i}",
            "query": f"how do bridges {i} work",
            "positive_passages": [{"docid": f"p{i}", "title": "", "text": f"Bridges {i} work by spanning gaps."}],
            "negative_passages": [{"docid": f"n{i}", "title": "", "text": text}],
        }
        for i in range(n)
    ]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def cascade_file(tmp_path) -> Path:
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(DUPLICATE))
    return path


# ---- 1. texts are cut to what the model can see before they are tokenized

_RSS_SCRIPT = r"""
import json, resource, sys
from pathlib import Path
from negclean.cascade.stages import CascadeConfig
from negclean.pipeline import run_judge
from negclean.presets import load_cascade_dict

work = Path(sys.argv[1])
cascade = CascadeConfig.model_validate(load_cascade_dict("screen"))
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB (Linux reports KB)
run_judge(input_path=str(work / "cut.jsonl"), cascade=cascade, output_dir=work / "cut")  # loads the model
before = peak()
run_judge(input_path=str(work / "huge.jsonl"), cascade=cascade, output_dir=work / "huge")
print(json.dumps({"before_mb": before, "growth_mb": peak() - before}))
"""


@pytest.mark.slow  # ~25 s on 2 busy cores: a fresh process loads torch and the model
def test_a_huge_passage_keeps_memory_bounded_and_is_judged_as_its_first_part(tmp_path):
    """A 3 MB passage through the `screen` preset: peak memory grows by little more than the passage itself
    (measured +40 MB), and every verdict equals the run where the passage is cut to its first 20,000 characters.
    Before the fix the tokenizer took the whole passage: +740 MB for 6 MB, about half that here."""
    head = "Bridges carry loads across rivers and valleys; suspension bridges hang their deck from cables. " * 210
    head = head[:20_000]
    filler = "Unrelated filler words about cooking pasta and growing tomatoes in the garden. " * 38_000
    rows_cut, rows_huge = tevatron_rows(3), tevatron_rows(3)
    rows_cut[1]["negative_passages"][0]["text"] = head
    rows_huge[1]["negative_passages"][0]["text"] = head + filler  # ~3 MB in one passage
    write_rows(tmp_path / "cut.jsonl", rows_cut)
    write_rows(tmp_path / "huge.jsonl", rows_huge)
    assert len(rows_huge[1]["negative_passages"][0]["text"]) > 3_000_000
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\npeak RSS {measured['before_mb']:.0f} MB before the 3 MB passage, +{measured['growth_mb']:.0f} MB")
    assert measured["growth_mb"] < 120, measured
    verdicts = (tmp_path / "huge" / "verdicts.jsonl").read_text()
    assert verdicts == (tmp_path / "cut" / "verdicts.jsonl").read_text()  # scores to the last digit printed
    assert '"docid": "n1", "stage": "screen"' in verdicts  # the long passage reached the embedding screen


def test_the_embedder_never_hands_the_tokenizer_more_than_its_limit():
    from negclean.embed import CHARS_PER_TOKEN, load_embedder

    emb = load_embedder()
    seen: list[int] = []
    step = "preprocess" if hasattr(emb.model, "preprocess") else "tokenize"  # sentence-transformers 6 / older
    original = getattr(emb.model, step)

    def spy(texts, *args, **kwargs):
        seen.extend(len(t) for t in texts)
        return original(texts, *args, **kwargs)

    head = "A bridge spans a river. " * 2000  # 48,000 characters: far beyond 256 tokens
    setattr(emb.model, step, spy)
    try:
        whole = emb.encode([head + "x " * 1_000_000], prefix="passage: ")
    finally:
        delattr(emb.model, step)
    assert seen and max(seen) <= emb.max_chars == emb.model.max_seq_length * CHARS_PER_TOKEN
    assert (whole == emb.encode([head[:20_000]], prefix="passage: ")).all()


# ---- 2. an output that is the input is refused


def _judged(tmp_path: Path, cascade_file: Path) -> tuple[Path, Path]:
    data = write_rows(tmp_path / "train.jsonl", tevatron_rows(3))
    code, out = invoke("judge", data, "--cascade", cascade_file, "-o", tmp_path / "run", "--json")
    assert code == 0, out
    return data, tmp_path / "run" / "verdicts.jsonl"


def test_fix_refuses_to_write_over_its_input_however_the_path_is_spelled(tmp_path, cascade_file, monkeypatch):
    data, verdicts = _judged(tmp_path, cascade_file)
    original = data.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.jsonl").symlink_to(data)
    os.link(data, tmp_path / "hard.jsonl")
    monkeypatch.chdir(tmp_path)
    for output in (data, "train.jsonl", "sub/../train.jsonl", tmp_path / "link.jsonl", tmp_path / "hard.jsonl"):
        code, out = invoke("fix", data, "--verdicts", verdicts, "-o", output, "--json")
        error = json.loads(out)
        assert code == 2 and error["exit_code"] == 2, (output, out)
        assert "is the input file" in error["message"] and "--output" in error["message"], error
        assert data.read_bytes() == original
    code, out = invoke("fix", data, "--verdicts", verdicts, "-o", verdicts, "--json")
    assert code == 2 and "is the input file" in json.loads(out)["message"]
    code, out = invoke("fix", data, "--verdicts", verdicts, "-o", tmp_path / "fixed.jsonl", "--json")
    assert code == 0, out


def test_run_and_mine_refuse_to_write_over_their_input(tmp_path, cascade_file):
    data = write_rows(tmp_path / "train.jsonl", tevatron_rows(3))
    original = data.read_bytes()
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(
        yaml.safe_dump(
            {"input": "train.jsonl", "output_dir": "run", "cascade": DUPLICATE, "fix": {"output": "./train.jsonl"}}
        )
    )
    code, out = invoke("run", pipe, "--json")
    assert code == 2 and "is the input file" in json.loads(out)["message"], out
    # the run folder's own files: an input named like one of them, in the output folder
    inside = tmp_path / "run2"
    inside.mkdir()
    write_rows(inside / "verdicts.jsonl", tevatron_rows(2))
    code, out = invoke("judge", inside / "verdicts.jsonl", "--cascade", cascade_file, "-o", inside, "--json")
    assert code == 2 and "the verdicts file" in json.loads(out)["message"], out
    code, out = invoke("mine", data, "-o", data, "--retriever", "bm25", "--json")
    assert code == 2 and "is the input file" in json.loads(out)["message"], out
    assert data.read_bytes() == original


def test_training_refuses_a_model_folder_that_holds_its_data(tmp_path):
    """`negclean train ... -o FOLDER` replaces FOLDER as a whole: with the data inside it, the data would go."""
    from negclean.errors import ConfigError
    from negclean.train.common import read_data

    (tmp_path / "data").mkdir()
    data = write_rows(tmp_path / "data" / "train.jsonl", tevatron_rows(2))
    for folder in (tmp_path / "data", tmp_path, data):
        with pytest.raises(ConfigError, match="holds the input file"):
            read_data(data, output_dir=folder)
    assert len(read_data(data, output_dir=tmp_path / "model")[0]) == 2


# ---- 3. reading nothing is an error (exit 3)


def test_a_run_that_reads_nothing_exits_3_saying_where_the_rejects_are(tmp_path, cascade_file):
    every_line_bad = BAD / "undetectable.jsonl"  # read as st, every line is rejected
    code, out = invoke(
        "judge", every_line_bad, "--format", "st", "--cascade", cascade_file, "-o", tmp_path / "run", "--json"
    )
    error = json.loads(out)
    assert code == 3 and error["exit_code"] == 3, out
    rejects = tmp_path / "run" / "rejects.jsonl"
    assert "nothing was read" in error["message"] and str(rejects) in error["message"]
    assert len(rejects.read_text().splitlines()) == 2
    assert not (tmp_path / "run" / "verdicts.jsonl").exists()

    code, out = invoke(
        "judge",
        BAD / "empty.jsonl",
        "--format",
        "tevatron",
        "--cascade",
        cascade_file,
        "-o",
        tmp_path / "empty",
        "--json",
    )
    assert code == 3 and "nothing was read" in json.loads(out)["message"], out


def test_a_zero_row_parquet_exits_3_in_judge_and_fix(tmp_path, cascade_file):
    from negclean.data.io import open_writer

    empty = tmp_path / "empty.parquet"
    with open_writer(empty, fmt="parquet"):
        pass
    assert empty.stat().st_size > 0
    code, out = invoke("judge", empty, "--cascade", cascade_file, "-o", tmp_path / "run", "--json")
    assert code == 3 and "nothing was read" in json.loads(out)["message"], out
    (tmp_path / "verdicts.jsonl").write_text("")
    code, out = invoke("fix", empty, "--verdicts", tmp_path / "verdicts.jsonl", "-o", tmp_path / "f.parquet", "--json")
    assert code == 3 and "nothing was read" in json.loads(out)["message"], out
    assert not (tmp_path / "f.parquet").exists()


# ---- 4. the API key's value is redacted from everything a server sends back

KEY_ENV = "NEGCLEAN_PROBE_KEY"
KEY = "Zq8xT2mKp9LwV4nR7sJ1cH6bY3fD0gA5"  # no sk- prefix: only its value can find it


def key_traces(key: str) -> list[str]:
    return [key, key[-12:], key[:12], key[8:20]]


@pytest.mark.parametrize(
    "text",
    [
        f"Rate limit reached for key {KEY}.",
        f"Invalid key {KEY[:3]}...{KEY[-12:]} (masked)",
        f"quota for {KEY[:4]}****{KEY[-4:]} exceeded",
        f"the key is '{KEY[5:19]}'",
        f"<verdict>yes</verdict> {KEY}",
    ],
)
def test_redact_removes_the_key_whole_cut_or_masked(text):
    from negclean.judge.redact import redact

    clean = redact(text, KEY)
    assert "***" in clean and not any(t in clean for t in key_traces(KEY)) and KEY[-4:] not in clean


def test_redact_leaves_other_text_alone_and_masks_sk_keys():
    from negclean.judge.redact import redact

    text = "Document 1 is relevant... Document 2 is not; the server is overloaded (HTTP 503)."
    assert redact(text, KEY) == text
    assert redact("other key sk-proj-abcdef123456", KEY) == "other key sk-pr***"


def test_a_key_echoed_by_the_server_or_written_by_the_model_reaches_no_artifact(tmp_path):
    pytest.importorskip("openai")
    pytest.importorskip("aiohttp")
    from negclean.testing.openai_server import FaultPlan, OpenAITestServer
    from negclean.testing.responders import OverlapOracle, Reply
    from reliability.common import cascade_dict, cli_env, make_instances, run_cli, write_jsonl, write_pipeline

    oracle = OverlapOracle()

    def leaky(body):  # a model made to repeat the key in its answer
        return Reply(f"My instructions mention {KEY}.\n" + oracle(body).content)

    data = write_jsonl(tmp_path / "train.jsonl", make_instances(6, 4, seed=5))
    faults = FaultPlan(seed=7, rate_limit=0.25, server_error=0.25)
    with OpenAITestServer(responder=leaky, faults=faults, require_key=KEY, echo_key="masked") as srv:
        cascade = cascade_dict(srv.base_url, mode="listwise", api_key_env=KEY_ENV, max_retries=0)
        out = tmp_path / "run"
        pipe = write_pipeline(tmp_path / "pipe.yaml", input_path=data, output_dir=out, cascade=cascade)
        env = cli_env(**{KEY_ENV: KEY, "OPENAI_LOG": "debug"})
        run = run_cli("run", pipe, env=env)
        assert run.returncode == 0, run.stdout + run.stderr
        report = run_cli("report", out, "--scores", "none", env=env)
        assert report.returncode == 0, report.stdout + report.stderr
    assert srv.requests.statuses()[429] + srv.requests.statuses()[500] > 0
    reasons = [
        c["reason"]
        for r in map(json.loads, (out / "verdicts.jsonl").read_text().splitlines())
        for c in r["candidates"]
        if "HTTP" in (c.get("reason") or "")
    ]
    assert reasons and all("API key: ***" in r for r in reasons), reasons[:3]  # the echo was there, redacted
    with sqlite3.connect(out / "judgments.sqlite") as conn:
        raws = [r for (r,) in conn.execute("SELECT raw FROM calls WHERE raw IS NOT NULL")]
    assert raws and all("My instructions mention ***." in r for r in raws)
    assert (out / "report.html").exists()
    for name, blob in [("stdout+stderr", (run.stdout + run.stderr + report.stdout + report.stderr).encode())] + [
        (str(p), p.read_bytes()) for p in out.rglob("*") if p.is_file()
    ]:
        for trace in key_traces(KEY):
            assert trace.encode() not in blob, f"{name} holds {trace!r}"


def test_the_batch_backend_redacts_error_rows_and_answers(monkeypatch):
    """The Batch API path: error-file rows, failed responses and answers go through the same helper."""
    pytest.importorskip("openai")
    from negclean.judge.config import OpenAIBatchJudgeConfig
    from negclean.judge.openai_batch import OpenAIBatchJudge

    monkeypatch.setenv(KEY_ENV, KEY)
    judge = OpenAIBatchJudge(OpenAIBatchJudgeConfig(model="m", api_key_env=KEY_ENV, mode="listwise"))
    masked = f"{KEY[:3]}...{KEY[-12:]}"
    texts = [
        judge._row_failure({"custom_id": "a", "error": {"code": "server_error", "message": f"key {masked}"}}).reason,
        judge._row_failure(
            {"custom_id": "b", "response": {"status_code": 500, "body": {"error": {"message": f"bad key {KEY}"}}}}
        ).reason,
    ]
    answer = {
        "choices": [
            {"message": {"content": f'{KEY} <verdict>{{"better": [], "worse": []}}</verdict>'}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5},
    }
    texts.append(judge._row_output({"custom_id": "c", "response": {"status_code": 200, "body": answer}}).text)
    for text in texts:
        assert "***" in text and not any(t in text for t in key_traces(KEY)), text


# ---- 5. duplicate JSON keys are reported


def test_a_duplicate_key_is_an_error_naming_file_line_and_key(tmp_path, cascade_file):
    name = BAD / "duplicate_keys.jsonl"
    code, out = invoke(
        "judge", name, "--cascade", cascade_file, "-o", tmp_path / "fail", "--on-error", "fail", "--json"
    )
    error = json.loads(out)
    assert code == 3 and error["message"].startswith(f"{name}:2: duplicate key 'query'"), out
    code, out = invoke("judge", name, "--cascade", cascade_file, "-o", tmp_path / "skip", "--json")
    assert code == 0 and json.loads(out)["read"]["rejected"] == 2, out
    rejects = [json.loads(x) for x in (tmp_path / "skip" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(" in ")[0]) for r in rejects] == [
        (2, "duplicate key 'query'"),
        (3, "duplicate key 'text'"),
    ]


# ---- 6. hints name command-line flags


def test_hints_shown_by_the_cli_name_its_flags(tmp_path, cascade_file):
    code, out = invoke("judge", BAD / "undetectable.jsonl", "--cascade", cascade_file, "-o", tmp_path / "a", "--json")
    assert code == 3 and "--format" in json.loads(out)["message"], out
    code, out = invoke(
        "judge",
        BAD / "invalid_json.jsonl",
        "--cascade",
        cascade_file,
        "-o",
        tmp_path / "b",
        "--on-error",
        "fail",
        "--json",
    )
    assert code == 3 and "--on-error skip" in json.loads(out)["message"], out
    code, out = invoke(
        "judge", BAD / "bom.jsonl", "--format", "parquet", "--cascade", cascade_file, "-o", tmp_path / "c", "--json"
    )
    assert code == 3 and "--format tevatron" in json.loads(out)["message"], out
    code, out = invoke(
        "judge", BAD / "bom.jsonl", "--on-error", "ignore", "--cascade", cascade_file, "-o", tmp_path / "d", "--json"
    )
    assert code == 2 and "--on-error" in json.loads(out)["message"], out
    data = write_rows(tmp_path / "t.jsonl", tevatron_rows(2))
    code, out = invoke("judge", data, "--cascade", cascade_file, "-o", tmp_path / "e", "--json")
    code, out = invoke(
        "fix",
        data,
        "--verdicts",
        tmp_path / "e" / "verdicts.jsonl",
        "-o",
        tmp_path / "f.parquet",
        "--to",
        "tevatron",
        "--json",
    )
    assert code == 2 and "--to parquet" in json.loads(out)["message"], out
