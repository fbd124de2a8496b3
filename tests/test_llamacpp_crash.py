"""A native crash in the local LLM is an error, not a dead run; local verdicts are stored as they are made.

The fast tests run engines from ``tests/_fake_engines.py`` in the judge's child process: they crash for
real (a ctypes null pointer read: SIGSEGV; ``os.abort``: SIGABRT) after a set number of calls. Each check
can fail: a crash that took the caller down would kill pytest (or give exit -11 instead of 5 through the
CLI); verdicts held back until the end of a batch would be missing from the store; a child that outlived
its parent would still answer ``kill -0``. The slow test runs the real GGUF model in the child and
compares it with the same computation in-process, bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import negclean.judge.llamacpp as llamacpp_module
from negclean.cascade.store import JudgmentStore
from negclean.data.records import Instance, Passage
from negclean.errors import BackendError
from negclean.judge.base import JudgeTask, Label
from negclean.judge.config import LlamaCppJudgeConfig
from negclean.judge.isolated import ChildEngine, EngineDied, EngineError

TESTS = Path(__file__).resolve().parent
EXAMPLE = TESTS.parent / "examples" / "msmarco_hn_scored.jsonl"
FAKE = "_fake_engines:FakeLlamaEngine"
TOY = "_fake_engines:ToyEngine"
SIGNALS = {"segv": "SIGSEGV", "abort": "SIGABRT"}


def _gone(pid: int) -> bool:
    """No such process, or a zombie nobody has reaped yet (it runs nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


def _wait_gone(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if _gone(pid):
            return True
        time.sleep(0.1)
    return _gone(pid)


def _tasks(n_instances: int, n_candidates: int) -> list[JudgeTask]:
    out = []
    for q in range(n_instances):
        negs = tuple(Passage(f"d{q}-{c}", f"passage {c} about topic {q}") for c in range(n_candidates))
        inst = Instance(f"q{q}", f"question {q}?", (Passage(f"p{q}", f"the answer to {q}"),), negs)
        out.append(JudgeTask(inst, tuple(range(n_candidates))))
    return out


# -- the child process itself ---------------------------------------------------------------------


def test_child_answers_calls_streams_and_raises_the_engines_errors():
    with ChildEngine(TOY, kwargs={"greeting": "hi"}, name="toy") as engine:
        assert engine.pid != os.getpid() and engine.call("pid") == engine.pid
        assert engine.call("greet", "ada") == "hi ada"
        assert list(engine.stream("count", 4)) == [0, 1, 2, 3]
        with pytest.raises(KeyError, match="no such thing"):
            engine.call("fail")
        with pytest.raises(EngineError, match="does not pickle"):
            engine.call("unpicklable")
        assert engine.call("echo", {"still": "serving"}) == {"still": "serving"}
    with pytest.raises(ValueError, match="cannot build this engine"):
        ChildEngine("_fake_engines:BrokenEngine")


@pytest.mark.parametrize("kind", ["segv", "abort"])
def test_native_crash_in_the_child_is_engine_died_after_the_items_made(kind):
    engine = ChildEngine(TOY, name="toy")
    first = engine.pid
    got = []
    with pytest.raises(EngineDied) as info:
        for item in engine.stream("count", 10, crash_at=3, kind=kind):
            got.append(item)
    assert got == [0, 1, 2]  # every item made before the crash arrived
    assert info.value.signal_name == SIGNALS[kind] and info.value.returncode == -getattr(signal, SIGNALS[kind])
    assert isinstance(info.value, BackendError) and info.value.exit_code == 5
    assert f"killed by {SIGNALS[kind]}" in str(info.value)
    assert engine.pid is None and _gone(first)
    # the next call starts a fresh child
    assert engine.call("greet", "again") == "hello again" and engine.pid not in (None, first)
    with pytest.raises(EngineDied, match="exited unexpectedly with code 3"):
        engine.call("crash", "exit")
    engine.close()


def test_the_child_ends_with_close_with_an_abandoned_stream_and_with_its_parent(tmp_path):
    engine = ChildEngine(TOY)
    pid = engine.pid
    engine.close()
    assert _gone(pid) and engine.pid is None

    engine = ChildEngine(TOY)
    pid = engine.pid
    stream = engine.stream("count", 1000)
    assert next(stream) == 0
    stream.close()  # left early: the child would go on answering out of turn, so it is stopped
    assert _wait_gone(pid, 10) and engine.pid is None
    engine.close()

    # a parent killed outright (SIGKILL: no atexit, no finalizer) while its child is busy
    script = tmp_path / "parent.py"
    script.write_text(
        f"import sys, time\nsys.path.insert(0, {str(TESTS)!r})\n"
        "from negclean.judge.isolated import ChildEngine\n"
        f"e = ChildEngine({TOY!r})\nprint(e.pid, flush=True)\ne.call('sleep', 120)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert not _gone(child)
    parent.kill()
    parent.wait()
    assert _wait_gone(child, 10), "the engine process outlived its parent"


# -- the llamacpp judge with an engine that crashes ---------------------------------------------


@pytest.fixture
def fake_model(tmp_path) -> Path:
    path = tmp_path / "fake-model.gguf"  # never read: the fake engine loads nothing
    path.write_bytes(b"GGUF not a real model")
    return path


def test_judge_hands_over_every_pointwise_call_as_it_is_made(fake_model, tmp_path, monkeypatch):
    monkeypatch.setenv("NEGCLEAN_FAKE_LOG", str(tmp_path / "calls.jsonl"))
    tasks = _tasks(3, 4)
    judge = llamacpp_module.LlamaCppJudge(LlamaCppJudgeConfig(model=str(fake_model)), engine=FAKE)
    handed = []
    try:
        results = judge.judge(tasks, on_call=lambda part, result: handed.append((part, result)))
    finally:
        judge.close()
    assert len(handed) == 12 and all(len(part.candidates) == 1 for part, _ in handed)
    by_candidate = {(p.instance.query_id, p.candidates[0]): r.verdicts[0] for p, r in handed}
    for task, result in zip(tasks, results):
        assert [by_candidate[(task.instance.query_id, c)] for c in task.candidates] == list(result.verdicts)
    assert judge.stats.calls == 12 and judge.stats.tokens_in == 120


@pytest.mark.parametrize("kind", ["segv", "abort"])
def test_judge_crash_is_a_backend_error_naming_signal_model_and_fix(kind, fake_model, monkeypatch):
    monkeypatch.setenv("NEGCLEAN_FAKE_CRASH", f"{kind}:5")
    judge = llamacpp_module.LlamaCppJudge(LlamaCppJudgeConfig(model=str(fake_model)), engine=FAKE)
    pid = judge.pid
    handed = []
    with pytest.raises(BackendError) as info:
        judge.judge(_tasks(3, 4), on_call=lambda part, result: handed.append(part))
    message = str(info.value)
    assert len(handed) == 5  # every verdict made before the crash was handed over
    assert "\n" not in message and SIGNALS[kind] in message and fake_model.name in message
    assert "scripts/install-llama.sh" in message and llamacpp_module.PORTABLE_CMAKE_ARGS in message
    assert "rerun" in message
    assert _gone(pid)
    judge.close()


# -- through the CLI --------------------------------------------------------------------------------

# runs the real CLI in a fresh process whose llamacpp judge runs the fake engine in its child
_BOOT = (
    f"import sys, runpy; sys.path.insert(0, {str(TESTS)!r}); import negclean.judge.llamacpp as m; "
    f"m.ENGINE = {FAKE!r}; sys.argv = ['negclean', *sys.argv[1:]]; "
    "runpy.run_module('negclean.cli.main', run_name='__main__')"
)


def _cli(*args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _BOOT, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        timeout=300,
    )


def _asked(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [c for line in log.read_text().splitlines() for c in json.loads(line)["candidates"]]


@pytest.mark.parametrize("kind", ["segv", "abort"])
def test_cli_crash_exits_5_keeps_what_was_judged_and_a_rerun_resumes(kind, fake_model, tmp_path):
    cascade = tmp_path / "local.yaml"
    cascade.write_text(f"stages:\n  - name: llm\n    judge: {{backend: llamacpp, model: {fake_model}}}\n")
    run = tmp_path / "run"
    log = tmp_path / "calls.jsonl"
    crashed = _cli(
        "judge",
        EXAMPLE,
        "--cascade",
        cascade,
        "-o",
        run,
        env={"NEGCLEAN_FAKE_CRASH": f"{kind}:7", "NEGCLEAN_FAKE_LOG": str(log)},
    )
    output = crashed.stdout + crashed.stderr
    assert crashed.returncode == 5, output
    assert SIGNALS[kind] in crashed.stderr and "scripts/install-llama.sh" in crashed.stderr, output
    assert "Traceback" not in output, output
    first = _asked(log)
    assert len(first) == 7
    with JudgmentStore(run / "judgments.sqlite") as store:
        assert store.count() == 7  # each verdict was stored as it was made

    resumed = _cli("judge", EXAMPLE, "--cascade", cascade, "-o", run, "--json", env={"NEGCLEAN_FAKE_LOG": str(log)})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    stage = json.loads(resumed.stdout)["cascade"]["stages"][0]
    second = _asked(log)[len(first) :]
    assert stage["from_store"] == 7 and stage["judged"] == stage["candidates"] - 7 == len(second)
    assert not set(first) & set(second)  # nothing judged before the crash was asked again


# -- slow: the real model in the child ------------------------------------------------------------


@pytest.mark.slow
def test_real_model_in_the_child_gives_the_in_process_verdicts_call_by_call():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install 'negclean[llamacpp]'")
    from negclean.data.io import read_instances
    from negclean.judge.gguf_models import ModelPartsMissing
    from negclean.judge.llamacpp import LlamaCppJudge
    from negclean.judge.llamacpp_engine import LlamaCppEngine

    instance = next(iter(read_instances(str(EXAMPLE))))
    tasks = [JudgeTask(instance, (0, 1))]
    # pointwise (the second candidate reuses the cached prefix) and listwise with one candidate per call
    # (a few generated tokens: truncated, hence undecided, but the raw text is compared)
    for config in (
        LlamaCppJudgeConfig(n_threads=2),
        LlamaCppJudgeConfig(n_threads=2, mode="listwise", max_candidates=1, max_tokens=6),
    ):
        try:
            judge = LlamaCppJudge(config)
        except ModelPartsMissing as exc:
            pytest.skip(str(exc))
        handed = []
        try:
            assert judge.pid != os.getpid()
            results = judge.judge(
                tasks,
                on_call=lambda part, result, handed=handed, judge=judge: handed.append(
                    (part, result, judge.stats.calls)
                ),
            )
            child_stats = judge.stats.as_dict()
        finally:
            judge.close()
        engine = LlamaCppEngine(config, model_path=str(judge.model_path))
        try:
            outputs = [(i, out) for i, out, _ in engine.run_calls(tasks)]  # in the order they were made
            in_process = engine.stats.as_dict()
        finally:
            engine.close()

        # one hand-over per call, each as that call finished (the call counter had just moved)
        assert [calls for _, _, calls in handed] == [1, 2] and len(outputs) == 2
        for part, result, _ in handed:
            assert part.instance is instance and len(part.candidates) == 1
            assert list(result.verdicts) == [results[0].verdicts[tasks[0].candidates.index(part.candidates[0])]]
        # the same computation: raw outputs and P(yes) bit-identical, the same tokens and cache hits
        assert [r.raw for _, r, _ in handed] == [out.text for _, out in outputs]
        if config.mode == "pointwise":
            assert [v.confidence for v in results[0].verdicts] == [out.p_yes for _, out in sorted(outputs)]
            assert all(v.label is not Label.UNDECIDED for v in results[0].verdicts)
        for key in ("calls", "tokens_in", "tokens_out", "tokens_evaluated", "prefix_hits"):
            assert child_stats[key] == in_process[key], key
