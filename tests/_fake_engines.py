"""Engines for the crash tests: no LLM, but real native crashes in the child process that runs them.

``FakeLlamaEngine`` stands in for ``LlamaCppEngine`` behind ``LlamaCppJudge``. It is set up through the
environment (the child inherits it): ``NEGCLEAN_FAKE_CRASH=KIND:N`` makes it crash when about to make
its (N+1)-th call, KIND one of ``segv`` (a null pointer read through ctypes), ``abort`` (``os.abort``),
``exit`` (``os._exit(3)``); ``NEGCLEAN_FAKE_LOG=PATH`` appends one JSON line per call made (the
candidate texts' hashes), so a test can see exactly what a run asked for.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence

from negclean.judge.base import JudgeTask
from negclean.judge.listwise import CallOutput, chunk_calls
from negclean.judge.llamacpp_engine import LlamaCppStats


def crash(kind: str) -> None:
    """Die the way native code does."""
    if kind == "segv":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    elif kind == "abort":
        os.abort()  # SIGABRT, as a failed GGML_ASSERT does
    elif kind == "exit":
        os._exit(3)
    raise ValueError(f"unknown crash kind {kind!r}")


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def fake_p_yes(text: str) -> float:
    """A fixed P(yes) per passage text, in [0, 1)."""
    return int(text_key(text)[:8], 16) / 16**8


class FakeLlamaEngine:
    """Answers pointwise calls with a P(yes) drawn from the passage text (see the module docstring)."""

    def __init__(self, config, *, model_path: str):
        self.config = config
        self.template = config.prompt_names()[0]
        self.stats = LlamaCppStats(load_seconds=0.0)
        kind, _, after = os.environ.get("NEGCLEAN_FAKE_CRASH", "").partition(":")
        self.crash_kind, self.crash_after = kind or None, int(after or 0)
        self.log = os.environ.get("NEGCLEAN_FAKE_LOG")

    def info(self) -> dict:
        return {"n_ctx": self.config.n_ctx}

    def stats_dict(self) -> dict:
        return self.stats.as_dict()

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        return 10 * len(task.candidates), 0

    def run_calls(self, tasks: Sequence[JudgeTask], *, prefix_cache: bool = True) -> Iterator[tuple]:
        calls = chunk_calls(
            tasks,
            template=self.template,
            max_candidates=self.config.max_candidates,
            include_titles=self.config.include_titles,
        )
        for i, call in enumerate(calls):
            if self.crash_kind and self.stats.calls >= self.crash_after:
                crash(self.crash_kind)
            task = tasks[call.task_index]
            texts = [task.passages[p].text for p in call.positions]
            if self.log:
                with open(self.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"pid": os.getpid(), "candidates": [text_key(t) for t in texts]}) + "\n")
            p_yes = fake_p_yes(texts[0])
            self.stats.calls += 1
            self.stats.tokens_in += 10
            yield i, CallOutput(json.dumps({"p_yes": p_yes}), "stop", tokens_in=10, p_yes=p_yes), self.stats.as_dict()

    def close(self) -> None:
        pass


class GarbageLlamaEngine(FakeLlamaEngine):
    """Answers every call with text that is no verdict and no log-probs (a model gone off format)."""

    def run_calls(self, tasks: Sequence[JudgeTask], *, prefix_cache: bool = True) -> Iterator[tuple]:
        calls = chunk_calls(
            tasks,
            template=self.template,
            max_candidates=self.config.max_candidates,
            include_titles=self.config.include_titles,
        )
        for i, _ in enumerate(calls):
            self.stats.calls += 1
            yield i, CallOutput("Lorem ipsum; I would rather not say.", "stop", tokens_in=10), self.stats.as_dict()


class ToyEngine:
    """For the tests of ``isolated.ChildEngine`` itself."""

    def __init__(self, *, greeting: str = "hello"):
        self.greeting = greeting

    def echo(self, value):
        return value

    def greet(self, name: str) -> str:
        return f"{self.greeting} {name}"

    def pid(self) -> int:
        return os.getpid()

    def count(self, n: int, *, crash_at: int | None = None, kind: str = "segv") -> Iterator[int]:
        for i in range(n):
            if i == crash_at:
                crash(kind)
            yield i

    def crash(self, kind: str) -> None:
        crash(kind)

    def fail(self) -> None:
        raise KeyError("no such thing")

    def unpicklable(self):
        return lambda: None

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class BrokenEngine:
    """An engine whose construction fails."""

    def __init__(self):
        raise ValueError("cannot build this engine")
