"""An endpoint that cannot be reached stops the run with exit 5; it is never recorded as undecided verdicts.

Before this, a refused connection went through the openai client's aiohttp transport as a *timeout*: every
candidate became `undecided` ("no answer within 30 s (timeout)", although it failed at once) and the run
exited 0. Here: a port nothing listens on, a host name that does not resolve, and a server process killed
(SIGKILL) mid-run. Each must end with `BackendError` (exit 5) and a one-line message naming the endpoint and
the real error, keep every verdict answered before, and let a rerun against a live server resume.
A connection dropped in the middle of an answer is still a per-call failure (undecided, retried by a rerun):
tests/test_reliability_faults.py covers that.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("openai")
pytest.importorskip("aiohttp")

from negclean.data.records import Instance, Passage
from negclean.errors import EXIT_BACKEND, BackendError
from negclean.judge.base import JudgeTask
from negclean.judge.config import OpenAIJudgeConfig, build_judge
from reliability.common import cascade_dict, cli_env, make_instances, read_rows, run_cli, stored_call_ids, write_jsonl
from reliability.crash import start

FAST_RETRIES = {"max_retries": 2, "backoff_base": 0.05, "max_backoff": 0.2, "timeout": 10.0}


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_cascade(path: Path, base_url: str, **judge) -> Path:
    path.write_text(yaml.safe_dump(cascade_dict(base_url, **{**FAST_RETRIES, **judge})), encoding="utf-8")
    return path


def stored_count(store: Path) -> int:
    """Calls with a stored verdict; 0 while the store is still being created."""
    try:
        return len(stored_call_ids(store)) if store.exists() else 0
    except sqlite3.OperationalError:
        return 0


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_refused_port_exits_5_within_seconds_naming_the_url(tmp_path, transport):
    data = write_jsonl(tmp_path / "train.jsonl", make_instances(3, 4, seed=1))
    url = f"http://127.0.0.1:{free_port()}/v1"
    cascade = write_cascade(tmp_path / "cascade.yaml", url, transport=transport)
    started = time.monotonic()
    proc = run_cli("judge", data, "--cascade", cascade, "-o", tmp_path / "run", timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == EXIT_BACKEND, (proc.returncode, proc.stdout, proc.stderr)
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert url in lines[0] and "unreachable" in lines[0] and "connection refused" in lines[0], lines[0]
    assert "timeout" not in lines[0]
    assert not (tmp_path / "run" / "verdicts.jsonl").exists()  # nothing pretends to be a finished run
    assert elapsed < 30, f"took {elapsed:.1f} s"  # CLI start-up included; the retries take < 1 s


def test_unknown_host_is_a_backend_error_naming_it(monkeypatch):
    monkeypatch.setenv("NEGCLEAN_TEST_KEY", "not-used")
    inst = Instance(
        "q1",
        "what is a river",
        (Passage("p", "A river is water flowing."),),
        (Passage("n1", "A lake is still water."),),
    )
    judge = build_judge(
        OpenAIJudgeConfig(
            model="m",
            mode="pointwise",
            base_url="http://no-such-host.invalid/v1",
            api_key_env="NEGCLEAN_TEST_KEY",
            **FAST_RETRIES,
        )
    )
    try:
        with pytest.raises(BackendError) as info:
            judge.judge([JudgeTask(inst, (0,))])
    finally:
        judge.close()
    message = str(info.value)
    assert "no-such-host.invalid" in message and "unreachable" in message and "not resolved" in message
    assert judge.stats.errors == {"unreachable": FAST_RETRIES["max_retries"] + 1}


def test_server_killed_mid_run_exits_5_keeps_verdicts_and_resumes(tmp_path):
    """SIGKILL the server process once some verdicts are stored: exit 5 at once (not 0 with the rest
    undecided); a rerun against a new server asks only for the rest and ends as a clean run does."""
    rows = make_instances(6, 5, seed=3)
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    calls = sum(len(r["negative_passages"]) for r in rows)  # pointwise: one call per candidate

    def serve() -> tuple[subprocess.Popen, str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "negclean.testing.openai_server", "--delay", "0.15"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        return proc, proc.stdout.readline().strip()

    def summary(run: Path) -> dict:
        return json.loads((run / "summary.json").read_text())["cascade"]["stages"][0]

    clean_srv, clean_url = serve()
    try:
        proc = run_cli(
            "judge",
            data,
            "--cascade",
            write_cascade(tmp_path / "clean.yaml", clean_url, concurrency=2),
            "-o",
            tmp_path / "clean",
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
    finally:
        clean_srv.kill()
        clean_srv.wait()

    store = tmp_path / "store.sqlite"
    srv, url = serve()
    run = tmp_path / "run"
    job = start(
        [
            "judge",
            data,
            "--cascade",
            write_cascade(tmp_path / "a.yaml", url, concurrency=2),
            "-o",
            run,
            "--store",
            store,
        ],
        tmp_path / "killed.log",
    )
    try:
        deadline = time.monotonic() + 60
        while job.poll() is None and stored_count(store) < 6:
            assert time.monotonic() < deadline, "no verdicts were stored"
            time.sleep(0.02)
        srv.send_signal(signal.SIGKILL)
        srv.wait()
        killed_at = time.monotonic()
        code = job.wait(timeout=60)
        stopped_after = time.monotonic() - killed_at
    finally:
        if srv.poll() is None:
            srv.kill()
        if job.poll() is None:
            job.kill()
    log = (tmp_path / "killed.log").read_text()
    assert code == EXIT_BACKEND, log
    assert stopped_after < 15, f"the run went on for {stopped_after:.1f} s after the server died"
    lines = [line for line in error_lines(log) if line.startswith("error:")]  # the log has the progress bar too
    assert len(lines) == 1 and url in lines[0] and "unreachable" in lines[0] and "Traceback" not in log, log
    stored = stored_call_ids(store)
    assert 6 <= len(stored) < calls, len(stored)
    assert not (run / "verdicts.jsonl").exists()

    srv, url = serve()  # a new port: base_url is operational, not part of the stored verdicts' key
    try:
        proc = run_cli(
            "judge",
            data,
            "--cascade",
            write_cascade(tmp_path / "b.yaml", url, concurrency=2),
            "-o",
            run,
            "--store",
            store,
            timeout=120,
        )
    finally:
        srv.kill()
        srv.wait()
    assert proc.returncode == 0, proc.stderr
    resumed = summary(run)
    assert resumed["from_store"] == len(stored)
    assert resumed["backend"]["calls"] == calls - len(stored)  # asked only for the rest
    assert resumed["undecided"] == 0
    assert read_rows(run / "verdicts.jsonl") == read_rows(tmp_path / "clean" / "verdicts.jsonl")
