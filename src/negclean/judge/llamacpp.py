"""Local GGUF judge through llama-cpp-python (extra ``llamacpp``), with llama.cpp in a child process.

The computation (prompts, prefix reuse, P(yes), listwise generation) is ``LlamaCppEngine`` in
``judge/llamacpp_engine.py``; this judge runs that engine in a child process (``judge/isolated.py``)
and keeps the Judge protocol here. Verdicts are those of the engine run in-process, bit for bit (the
child runs the same code on the same library with the same settings; the slow tests compare them).

Why a child: a llama.cpp build made for another CPU dies with SIGSEGV or SIGILL at its first decode,
and in-process that killed the whole run without a word. Now the judge raises ``BackendError``
(exit 5) naming the model, the signal and the fix (a portable build, ``scripts/install-llama.sh``).

Each call's verdicts are handed over as the call finishes (``judge(tasks, on_call=...)``: every
candidate in pointwise mode, every call in listwise mode), so the cascade stores them at once: a crash
or a kill loses at most the call in progress. Starting the child costs about a second (a fresh
interpreter) plus the model load, once per judge.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
from collections.abc import Iterator, Sequence
from typing import Any

from negclean.data.records import Instance, Passage
from negclean.errors import BackendError, MissingDependency
from negclean.judge.base import JudgeBase, JudgeTask, OnCall, TaskResult
from negclean.judge.config import LlamaCppJudgeConfig
from negclean.judge.gguf_models import resolve_model
from negclean.judge.isolated import ChildEngine, EngineDied, EngineError
from negclean.judge.listwise import Call, CallOutput, assemble, call_result, chunk_calls
from negclean.judge.llamacpp_engine import (  # noqa: F401  (the computation's names, importable from here too)
    BRIEF_FIXED,
    BRIEF_PER_CANDIDATE,
    NO_WORDS,
    PREFIX_ALIGN,
    REASONING_PER_CANDIDATE,
    SAMPLING,
    YES_WORDS,
    LlamaCppStats,
    PointwiseScore,
    common_prefix,
    split_point,
)

#: the engine the judge runs in its child, ``"module:name"``; tests point it at engines that crash
ENGINE = "negclean.judge.llamacpp_engine:LlamaCppEngine"
_LLAMA_ENGINE = ENGINE

#: CMake flags of a llama.cpp build that runs on any x86-64 CPU with AVX2 (scripts/install-llama.sh)
PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"

#: called with (the part of a task one call covered, its verdicts) as soon as that call is done


class LlamaCppJudge(JudgeBase):
    """Judge with a local GGUF model (see the module docstring).

    Args:
        config: the judge's settings; ``model`` is a GGUF path or a packaged model name.
        prefix_cache: reuse a cached prefix batch (verdicts are unchanged); False evaluates both
            batches of every prompt (for benchmarks and tests).
        engine: ``"module:name"`` of the engine to run in the child (default ``ENGINE``); it is built
            as ``engine(config=..., model_path=...)`` and must offer ``LlamaCppEngine``'s methods.

    Attributes:
        stats: ``LlamaCppStats`` over every call this judge made.
        n_ctx: the context size llama.cpp gave (it may round ``config.n_ctx`` up).
    """

    streams = True  # on_call as each call finishes in the child process

    def __init__(self, config: LlamaCppJudgeConfig, *, prefix_cache: bool = True, engine: str | None = None):
        factory = engine or ENGINE
        if factory == _LLAMA_ENGINE and importlib.util.find_spec("llama_cpp") is None:
            # checked here: llama.cpp itself is only ever imported in the child
            raise MissingDependency("llama_cpp", "llamacpp", "The llamacpp judge")

        self.config = config
        self.judge_id = config.judge_id()
        self.fingerprint = config.fingerprint()
        self.listwise = config.mode == "listwise"
        self.template = config.prompt_names()[0]
        self.prefix_cache = prefix_cache
        self.model_path = resolve_model(config.model, cache_dir=config.cache_dir)
        self.stats = LlamaCppStats()
        self._seen: tuple[int | None, dict[str, float]] = (None, {})  # (child pid, its last stats)
        self._engine: ChildEngine | None = None
        with self._crash_is_backend_error():
            self._engine = ChildEngine(
                factory,
                kwargs={"config": config, "model_path": str(self.model_path)},
                name=f"llamacpp judge ({self.model_path.name})",
            )
            self.n_ctx = int(self._engine.call("info")["n_ctx"])
            self._absorb(self._engine.call("stats_dict"))

    # -- the Judge protocol -------------------------------------------------------------------

    def judge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: Any = None
    ) -> list[TaskResult]:
        """One TaskResult per task; model or context failures become undecided verdicts.

        ``on_call(part, result)``, when given, is called as each model call finishes, with the part of
        a task the call covered and its verdicts (the cascade stores them at once).

        Raises:
            BackendError: the llama.cpp process died (SIGSEGV, SIGILL, abort...); ``on_call`` has
                had every verdict made before.
        """
        tasks = list(tasks)
        if not tasks:
            return []
        calls = chunk_calls(
            tasks,
            template=self.template,
            max_candidates=self.config.max_candidates,
            include_titles=self.config.include_titles,
        )
        ids = [self.call_id(c) for c in calls]
        outputs: list[CallOutput | None] = [None] * len(calls)
        engine = self._running()
        with (
            self._crash_is_backend_error(),
            contextlib.closing(
                engine.stream("run_calls", [_sendable(t) for t in tasks], prefix_cache=self.prefix_cache)
            ) as made,
        ):
            for i, out, stats in made:
                outputs[i] = out
                self._absorb(stats)
                if on_call is not None:
                    on_call(
                        *call_result(
                            tasks,
                            calls[i],
                            out,
                            template=self.template,
                            judge_id=self.judge_id,
                            call_id=ids[i],
                            yes_threshold=self.config.yes_threshold,
                        )
                    )
        missing = [i for i, out in enumerate(outputs) if out is None]
        if missing:
            raise EngineError(f"{engine.name}: no output for {len(missing)} of {len(calls)} calls")
        return assemble(
            tasks,
            calls,
            [out for out in outputs if out is not None],  # none is None: checked above
            template=self.template,
            judge_id=self.judge_id,
            call_ids=ids,
            yes_threshold=self.config.yes_threshold,
        )

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        """(input, output) tokens of the calls for ``task``, input counted with the model's tokenizer."""
        tokens_in, tokens_out = self._call("estimate_tokens", _sendable(task))
        return int(tokens_in), int(tokens_out)

    def call_id(self, call: Call) -> str:
        """Content id of a call: the same judge and messages give the same id."""
        blob = json.dumps([self.fingerprint, list(call.messages)], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]

    # -- model access (each a round trip to the child) ------------------------------------------

    def encode_messages(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Prompt tokens for chat ``messages`` (``LlamaCppEngine.encode_messages``)."""
        tokens: list[int] = self._call("encode_messages", list(messages))  # the child's answer is untyped
        return tokens

    def render(self, messages: Sequence[dict[str, Any]]) -> str:
        """The model's chat template applied to ``messages``, with the assistant turn's opening."""
        rendered: str = self._call("render", list(messages))
        return rendered

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        """Tokens of ``text`` by the model's tokenizer (``special``: control-token spellings count)."""
        tokens: list[int] = self._call("tokenize", text, special=special)
        return tokens

    def pointwise_scores(
        self, task: JudgeTask, *, prefix_cache: bool | None = None, one_batch: bool = False
    ) -> list[PointwiseScore]:
        """P(yes) readings for the candidates of one task, in order (``LlamaCppEngine.pointwise_scores``;
        ``prefix_cache`` None: the judge's setting)."""
        use_cache = self.prefix_cache if prefix_cache is None else prefix_cache
        scores: list[PointwiseScore] = self._call(
            "pointwise_scores", _sendable(task), prefix_cache=use_cache, one_batch=one_batch
        )
        self._absorb(self._call("stats_dict"))
        return scores

    def clear_cache(self) -> None:
        """Empty the KV cache (the next call evaluates its prompt in full)."""
        self._call("clear_cache")

    @property
    def pid(self) -> int | None:
        """Process id of the llama.cpp child, None when it is not running."""
        return self._engine.pid if self._engine is not None else None

    def close(self) -> None:
        """End the child process and free the model."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> LlamaCppJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------

    def _running(self) -> ChildEngine:
        if self._engine is None:
            raise BackendError(f"the llamacpp judge for {self.model_path.name} was closed; build a new one")
        return self._engine

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        engine = self._running()
        with self._crash_is_backend_error():
            return engine.call(method, *args, **kwargs)

    def _absorb(self, snapshot: dict[str, float]) -> None:
        """Add what the child's counters grew by since the last snapshot (a fresh child starts at 0)."""
        pid = self.pid
        last = self._seen[1] if self._seen[0] == pid else {}
        for key, value in snapshot.items():
            setattr(self.stats, key, getattr(self.stats, key) + value - last.get(key, 0))
        self._seen = (pid, snapshot)

    @contextlib.contextmanager
    def _crash_is_backend_error(self) -> Iterator[None]:
        try:
            yield
        except EngineDied as died:
            raise BackendError(crash_message(died, model=self.model_path.name)) from None


def _sendable(task: JudgeTask) -> JudgeTask:
    """The task as it crosses to the child: ``meta`` fields (read-only mappings, which do not pickle) as
    plain dicts. Prompts never read them."""

    def plain(p: Passage) -> Passage:
        return dataclasses.replace(p, meta=dict(p.meta))

    inst: Instance = task.instance
    return JudgeTask(
        dataclasses.replace(
            inst,
            positives=tuple(map(plain, inst.positives)),
            negatives=tuple(map(plain, inst.negatives)),
            meta=dict(inst.meta),
        ),
        task.candidates,
    )


def crash_message(died: EngineDied, *, model: str) -> str:
    """One line: what died, how, its last words, the likely cause and fix, and that a rerun resumes."""
    last = f" (its last output: {died.output_tail[-1][:200]})" if died.output_tail else ""
    return (
        f"the llamacpp judge's llama.cpp process (model {model}) {died.how}{last}. A llama-cpp-python "
        f"built for another CPU (a native build) does this: reinstall it portably with "
        f'scripts/install-llama.sh, or by hand with CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" pip install '
        f"--force-reinstall --no-cache-dir --no-binary llama-cpp-python llama-cpp-python (README, Set up). "
        f"Verdicts made before the crash are stored: rerun the same command to resume."
    )
