"""The API key never leaves the environment variable it was read from.

A full `negclean run` (judge + fix, with faults) against a server that requires a key: first with a wrong key
(the server's 401 message repeats the key it was sent, as OpenAI's does), then with the right one. Every
artifact of both runs is searched for either key, byte for byte: the store (with its WAL and shared-memory
files), verdicts, summary, rejects, the fixed file, anything else in the run folder, stdout and stderr of
the commands (with the openai client's own debug logging on), and every log record of an in-process run
captured at DEBUG level from every logger.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("aiohttp")

from negclean.cascade.stages import CascadeConfig
from negclean.pipeline import FixConfig, run_judge
from negclean.testing.openai_server import FaultPlan, OpenAITestServer
from reliability.common import cascade_dict, cli_env, make_instances, run_cli, write_jsonl, write_pipeline

ENV = "NEGCLEAN_RELIABILITY_KEY"
KEY = "sk-proj-Rel1abil1tyT3st-9c2f4e6a8b0d1357"
WRONG = "sk-proj-Wr0ngKeyT3st-0a1b2c3d4e5f6789"
FAULTS = FaultPlan(
    seed=3,
    rate_limit=0.1,
    server_error=0.1,
    bad_request=0.05,
    malformed=0.05,
    truncated=0.05,
    bad_json=0.05,
    reset=0.05,
    retry_after=0.01,
)


def needles(key: str) -> list[bytes]:
    """The key, and fragments a redactor that keeps a prefix or suffix would still leak."""
    secret = key.removeprefix("sk-proj-")
    return [key.encode(), secret.encode(), secret[-12:].encode(), secret[:12].encode()]


def assert_clean(name: str, data: bytes | str) -> None:
    blob = data.encode() if isinstance(data, str) else data
    for key in (KEY, WRONG):
        for needle in needles(key):
            assert needle not in blob, f"{name} holds {needle!r}"


def assert_folder_clean(folder: Path) -> int:
    files = [p for p in folder.rglob("*") if p.is_file()]
    for path in files:
        assert_clean(str(path), path.read_bytes())
    return len(files)


def test_the_needles_would_be_found(tmp_path):
    """The search itself can fail: a file holding the key, or the server's 401 body, is caught."""
    (tmp_path / "leak.txt").write_text(f"Incorrect API key provided: {WRONG[:7]}...{WRONG[-12:]}.")
    with pytest.raises(AssertionError, match="leak.txt"):
        assert_folder_clean(tmp_path)


def test_no_artifact_of_a_run_holds_the_key(tmp_path, caplog):
    data = write_jsonl(tmp_path / "train.jsonl", make_instances(6, 8, seed=4), bad_line_at=2)
    with OpenAITestServer(usage="approx", require_key=KEY, faults=FAULTS) as srv:
        cascade = cascade_dict(srv.base_url, api_key_env=ENV, max_retries=2)
        out = tmp_path / "run"
        pipe = write_pipeline(tmp_path / "pipe.yaml", input_path=data, output_dir=out, cascade=cascade)
        outputs = []
        # 1. a wrong key: the server answers 401 and repeats the key it got; the run stops with exit 5
        proc = run_cli("run", pipe, "--json", env=cli_env(**{ENV: WRONG, "OPENAI_LOG": "debug"}))
        assert proc.returncode == 5, proc.stdout + proc.stderr
        assert "rejected the API key (HTTP 401)" in proc.stdout and ENV in proc.stdout
        outputs.append(proc.stdout + proc.stderr)
        assert srv.requests.statuses()[401] >= 1
        # 2. the right key, through faults: the run completes
        proc = run_cli("run", pipe, env=cli_env(**{ENV: KEY, "OPENAI_LOG": "debug"}))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outputs.append(proc.stdout + proc.stderr)
        proc = run_cli("inspect", out, "--json", env=cli_env(**{ENV: KEY}))
        outputs.append(proc.stdout + proc.stderr)
        # 3. in-process, every logger at DEBUG (the openai client, aiohttp, negclean's retries and failures)
        caplog.set_level(logging.DEBUG)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(ENV, KEY)
            summary = run_judge(
                input_path=str(data),
                cascade=CascadeConfig.model_validate(cascade),
                output_dir=tmp_path / "inproc",
                fix=FixConfig(),
            )
        served = srv.requests.records
    assert sum(r.authorized is True for r in served) > 0 and summary["cascade"]["stages"][0]["backend"]["retries"] > 0
    assert any(r.fault != "ok" for r in served)
    for i, text in enumerate(outputs):
        assert_clean(f"output of command {i}", text)
    assert_clean("log records", "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records))
    assert_clean("caplog text", caplog.text)
    assert len(caplog.records) > 0
    assert (out / "judgments.sqlite").exists() and (out / "verdicts.jsonl").exists()
    assert (out / "rejects.jsonl").read_text().count("\n") == 1
    assert assert_folder_clean(tmp_path) >= 10  # store, -wal/-shm, verdicts, summary, rejects, fixed, pipe.yaml, ...
