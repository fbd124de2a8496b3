"""The llama.cpp work of the ``llamacpp`` judge: a GGUF model through llama-cpp-python, in this process.

``LlamaCppJudge`` (``judge/llamacpp.py``) runs this engine in a child process (``judge/isolated.py``) so
that a native crash cannot take the caller down; the engine itself knows nothing of that and can be used
directly (benchmarks, the tests that compare the child's computation with this one).

Prompts come from the shared templates (``listwise.chunk_calls``) and are formatted with the model's
own chat template (GGUF metadata ``tokenizer.chat_template``), as ``create_chat_completion`` would.
Message contents are tokenized as plain text: a passage that contains ``<|im_end|>`` or another
control token's spelling cannot open or close a turn (the template's own markup keeps its special
tokens).

Pointwise mode reads P(yes) from the next-token logits at the start of the assistant turn: the
probability mass of the yes variants ("yes", "Yes", " yes", ...) renormalised over yes + no
variants. Nothing is generated; ``tokens_out`` is 0.

Prefix reuse: every prompt is evaluated in two batches, split where its candidate part begins
(instructions, question and positives come first in the templates). The split point depends only
on the prompt's content: it is where the task's prompt stops agreeing with the same prompt rendered
around two sentinel candidates. When the KV cache already holds that exact prefix batch (the
previous call was for the same query and positives) only the second batch is evaluated. Cached and
uncached evaluation are then the same computation, hence bit-identical: verdicts never depend on
what was judged before, which resumed runs and the judgment store rely on. Reusing an arbitrary
common prefix is not: llama.cpp's quantised CPU kernels round differently depending on how tokens
are grouped into a batch; a 4-aligned reuse was exact for long suffixes here, but suffixes of 1-7
tokens and some alignments still moved P(yes) by up to ~0.01 (0.5B model). The split is aligned
down to ``PREFIX_ALIGN`` tokens so that it matches one-batch evaluation as often as possible. Calls
are reordered by query to make reuse likely; the tests check cached == uncached.

Listwise mode generates from the same formatted tokens through ``create_completion`` (the same
sampler ``create_chat_completion`` uses, with the same prefix reuse) with the configured
temperature, ``max_tokens`` and seed; the output is parsed by the shared strict parser, and a
truncated output (``finish_reason == "length"``) is undecided.

Token counts use the model's tokenizer. ``CallOutput.tokens_in`` counts whole prompts (comparable
across backends); ``stats.tokens_evaluated`` counts the prompt tokens actually run after reuse.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from negclean.data.records import Passage
from negclean.errors import BackendError, require
from negclean.judge.base import JudgeTask
from negclean.judge.config import LlamaCppJudgeConfig
from negclean.judge.listwise import Call, CallOutput, chunk_calls

if TYPE_CHECKING:
    from llama_cpp.llama_types import ChatCompletionRequestMessage

#: the prefix/candidate split is aligned down to a multiple of this many tokens (module docstring)
PREFIX_ALIGN = 4

YES_WORDS = ("yes", "Yes", "YES", " yes", " Yes", " YES")
NO_WORDS = ("no", "No", "NO", " no", " No", " NO")

#: sampler settings for listwise generation, pinned here rather than left to the library's
#: defaults (they only matter when temperature > 0; temperature 0 is greedy)
SAMPLING = {
    "top_k": 40,
    "top_p": 0.95,
    "min_p": 0.05,
    "typical_p": 1.0,
    "repeat_penalty": 1.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
}

#: listwise output estimate per call of n candidates, in tokens (capped at max_tokens): the verdict
#: line (tags, JSON keys, one number and a separator per candidate as if every one were listed),
#: plus a short reasoning line per candidate when the prompt asks for reasoning
BRIEF_FIXED, BRIEF_PER_CANDIDATE, REASONING_PER_CANDIDATE = 16, 4, 40

_MARK = "\u241f{}NEGCLEAN-CONTENT\u241f"
_SENTINELS = ("A", "B")  # two candidate texts that differ in their first token
_Probes = dict[tuple[int, int], list[list[int]]]  # (task index, candidates per call) -> probe prompts


@dataclass
class LlamaCppStats:
    """Running totals of one judge.

    Args:
        calls: model calls made (one per candidate in pointwise mode).
        tokens_in: prompt tokens of those calls, whole prompts.
        tokens_out: generated tokens (listwise only).
        tokens_evaluated: prompt tokens actually evaluated, after prefix reuse.
        prefix_hits: calls whose prefix batch came from the KV cache.
        seconds: wall time spent in calls (tokenizing, evaluating, generating).
        load_seconds: time to load the model.
    """

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_evaluated: int = 0
    prefix_hits: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PointwiseScore:
    """The yes/no reading of one pointwise prompt.

    Args:
        p_yes: P(yes) renormalised over the yes and no variants.
        yes_no_mass: share of the whole next-token distribution on yes or no variants (low means the
            model wanted to say something else; P(yes) is then less meaningful).
        answer: the single most likely next token, as text.
        prompt_tokens: length of the prompt.
        split: length of the prefix batch (0: evaluated in one batch).
        evaluated: prompt tokens evaluated for this reading (the rest came from the cache).
    """

    p_yes: float
    yes_no_mass: float
    answer: str
    prompt_tokens: int
    split: int
    evaluated: int


@dataclass(frozen=True, slots=True)
class _Prompt:
    tokens: list[int]
    split: int


def common_prefix(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> int:
    """Length of the longest common prefix of two token sequences."""
    m = min(len(a), len(b))
    if m == 0:
        return 0
    differ = np.flatnonzero(np.asarray(a[:m], dtype=np.int64) != np.asarray(b[:m], dtype=np.int64))
    return int(differ[0]) if differ.size else m


def split_point(tokens: Sequence[int], probes: Sequence[Sequence[int]], *, align: int | None = None) -> int:
    """Where a prompt's shared prefix ends: its agreement with every probe (the same prompt around
    sentinel candidates) and theirs with each other, leaving at least one token, aligned down."""
    align = PREFIX_ALIGN if align is None else align
    split = len(tokens) - 1
    for i, probe in enumerate(probes):
        split = min(split, common_prefix(tokens, probe))
        for other in probes[i + 1 :]:
            split = min(split, common_prefix(probe, other))
    split = max(split, 0)
    return split - split % align


class _PromptTooLong(Exception):
    def __init__(self, n: int, n_ctx: int):
        super().__init__(f"prompt of {n} tokens does not fit n_ctx={n_ctx}; raise n_ctx")
        self.n = n


class LlamaCppEngine:
    """A loaded GGUF model that turns judge calls into outputs (see the module docstring).

    Args:
        config: the judge's settings.
        model_path: the GGUF file (``gguf_models.resolve_model`` of ``config.model``).
    """

    def __init__(self, config: LlamaCppJudgeConfig, *, model_path: str):
        llama_cpp = require("llama_cpp", extra="llamacpp", purpose="The llamacpp judge")

        self.config = config
        self.listwise = config.mode == "listwise"
        self.template = config.prompt_names()[0]
        self.model_path = model_path
        self._lib = llama_cpp
        self._lock = threading.Lock()
        kwargs: dict[str, Any] = {
            "model_path": str(model_path),
            "n_ctx": config.n_ctx,
            "seed": config.seed,
            "logits_all": False,
            "verbose": False,
        }
        if config.n_threads is not None:
            kwargs["n_threads"] = config.n_threads
            kwargs["n_threads_batch"] = config.n_threads
        start = time.perf_counter()
        try:
            self._llm = llama_cpp.Llama(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise BackendError(
                f"llama.cpp could not load {model_path}: {exc}; is it a GGUF file this "
                f"llama-cpp-python version supports?"
            ) from exc
        self.stats = LlamaCppStats(load_seconds=time.perf_counter() - start)
        self.n_ctx = self._llm.n_ctx()  # llama.cpp may round the configured context up
        self._n_vocab = self._llm.n_vocab()
        self._cached_prefix: list[int] | None = None  # the prefix batch now in the KV cache, if any

        try:
            self._set_up_chat()
        except BaseException:
            self.close()
            raise

    def _set_up_chat(self) -> None:
        chat_template = self._llm.metadata.get("tokenizer.chat_template")
        if not chat_template:
            raise BackendError(
                f"{self.model_path} has no chat template in its metadata "
                f"(tokenizer.chat_template); the llamacpp judge needs an instruction-tuned "
                f"model that carries one"
            )
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos, bos = self._llm.token_eos(), self._llm.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=chat_template,
            eos_token=self._piece(eos) if eos >= 0 else "",
            bos_token=self._piece(bos) if bos >= 0 else "",
            add_generation_prompt=True,
        )
        self._yes_ids = self._single_token_ids(YES_WORDS)
        self._no_ids = self._single_token_ids(NO_WORDS)
        if not self.listwise and (not self._yes_ids or not self._no_ids):
            raise BackendError(
                f"the tokenizer of {self.model_path} has no single token for yes or no; "
                f"use mode=listwise with this model"
            )

    # -- what the judge asks for ----------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """What the judge reads once after loading: the context size llama.cpp gave."""
        return {"n_ctx": self.n_ctx}

    def stats_dict(self) -> dict[str, float]:
        return self.stats.as_dict()

    def run_calls(
        self, tasks: Sequence[JudgeTask], *, prefix_cache: bool = True
    ) -> Iterator[tuple[int, CallOutput, dict[str, float]]]:
        """Run the calls ``listwise.chunk_calls`` makes of ``tasks``, yielding (call index, its output,
        the running stats) as each one is done; model or context failures become outputs, not errors.

        Calls of one query (and positives) run in a row, so that their prefix batch stays cached.
        """
        calls = self._calls(tasks)
        order = sorted(
            range(len(calls)),
            key=lambda i: (
                tasks[calls[i].task_index].instance.query_key,
                tasks[calls[i].task_index].instance.positives_key,
                i,
            ),
        )
        probes: _Probes = {}
        with self._lock:
            for i in order:
                yield i, self._run(tasks, calls[i], probes, prefix_cache), self.stats.as_dict()

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        """(input, output) tokens of the calls for ``task``, input counted with the model's tokenizer."""
        calls = self._calls([task])
        tokens_in = sum(len(self.encode_messages(c.messages)) for c in calls)
        if not self.listwise:
            return tokens_in, 0
        per = REASONING_PER_CANDIDATE if self.config.reasoning else BRIEF_PER_CANDIDATE
        tokens_out = sum(min(self.config.max_tokens, BRIEF_FIXED + per * len(c.positions)) for c in calls)
        return tokens_in, tokens_out

    def encode_messages(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Prompt tokens for chat ``messages`` plus the assistant turn's opening, as the model expects.

        The template is rendered with placeholders for the contents; template markup is tokenized
        with special tokens, contents as plain text. If a template moves or repeats a content (no
        known one does), the whole rendered prompt is tokenized as ``create_chat_completion`` does.
        """
        marks = [_MARK.format(i) for i in range(len(messages))]
        rendered = self.render([{**m, "content": mark} for m, mark in zip(messages, marks)])
        pieces: list[tuple[str, bool]] = []
        pos = 0
        for mark, message in zip(marks, messages):
            at = rendered.find(mark, pos)
            if at < 0 or rendered.count(mark) != 1:
                return self.tokenize(self.render(list(messages)), special=True)
            pieces += [(rendered[pos:at], True), (message["content"], False)]
            pos = at + len(mark)
        pieces.append((rendered[pos:], True))
        tokens: list[int] = []
        for text, special in pieces:
            tokens += self.tokenize(text, special=special)
        return tokens

    def pointwise_scores(
        self, task: JudgeTask, *, prefix_cache: bool = True, one_batch: bool = False
    ) -> list[PointwiseScore]:
        """P(yes) readings for the candidates of one task, in order (pointwise template).

        Args:
            prefix_cache: False: evaluate every prompt in full.
            one_batch: evaluate each prompt in a single batch, as a plain llama.cpp call would (not
                the judge's computation: P(yes) may differ from ``judge`` in the last digits).
        """
        calls = chunk_calls([task], template="pointwise", max_candidates=1, include_titles=self.config.include_titles)
        probes: _Probes = {}
        with self._lock:
            out = []
            for call in calls:
                prompt = self._prompt([task], call, probes, template="pointwise")
                if one_batch:
                    prompt = _Prompt(prompt.tokens, 0)
                out.append(self._score(prompt, prefix_cache and not one_batch))
            return out

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The chat template applied to ``messages`` (with the assistant turn's opening)."""
        # our messages are {"role", "content"} dicts, the shape llama_cpp's message TypedDicts describe
        return self._formatter(messages=cast("list[ChatCompletionRequestMessage]", messages)).prompt

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        """Tokens of ``text``; ``special``: spelled-out control tokens become control tokens."""
        if not text:
            return []
        tokens: list[int] = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        return tokens

    def clear_cache(self) -> None:
        """Empty the KV cache (the next call evaluates its prompt in full)."""
        self._llm.reset()
        self._cached_prefix = None

    def close(self) -> None:
        """Free the model now rather than at garbage collection."""
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None

    # -- internals ------------------------------------------------------------------------------

    def _calls(self, tasks: Sequence[JudgeTask], template: str | None = None) -> list[Call]:
        return chunk_calls(
            tasks,
            template=template or self.template,
            max_candidates=self.config.max_candidates,
            include_titles=self.config.include_titles,
        )

    def _prompt(
        self, tasks: Sequence[JudgeTask], call: Call, probes: _Probes, *, template: str | None = None
    ) -> _Prompt:
        """Tokens of a call and its split point (probe prompts cached per task and call size)."""
        tokens = self.encode_messages(call.messages)
        key = (call.task_index, len(call.positions))
        if key not in probes:
            task = tasks[call.task_index]
            probes[key] = [self._probe(task, len(call.positions), text, template) for text in _SENTINELS]
        return _Prompt(tokens, split_point(tokens, probes[key]))

    def _probe(self, task: JudgeTask, n: int, text: str, template: str | None) -> list[int]:
        fake = task.instance.replace(negatives=tuple(Passage(f"probe{i}", text) for i in range(n)))
        calls = chunk_calls(
            [JudgeTask(fake, tuple(range(n)))],
            template=template or self.template,
            max_candidates=n,
            include_titles=self.config.include_titles,
        )
        return self.encode_messages(calls[0].messages)

    def _run(self, tasks: Sequence[JudgeTask], call: Call, probes: _Probes, prefix_cache: bool) -> CallOutput:
        start = time.perf_counter()
        n = 0
        try:
            prompt = self._prompt(tasks, call, probes)
            n = len(prompt.tokens)
            if self.listwise:
                out = self._generate(prompt, prefix_cache)
            else:
                score = self._score(prompt, prefix_cache)
                raw = json.dumps(
                    {
                        "answer": score.answer,
                        "p_yes": round(score.p_yes, 6),
                        "yes_no_mass": round(score.yes_no_mass, 6),
                    },
                    ensure_ascii=False,
                )
                out = CallOutput(raw, "stop", tokens_in=n, p_yes=score.p_yes)
        except _PromptTooLong as exc:
            # deterministic for this config (n_ctx is in the fingerprint): stored as undecided, not retried
            out = CallOutput(None, str(exc), tokens_in=exc.n)
        except Exception as exc:  # a decode failure must not take the batch down; retried on a rerun
            self.clear_cache()
            out = CallOutput(None, None, tokens_in=n, error=f"llama.cpp call failed: {exc!r}")
        self.stats.calls += 1
        self.stats.tokens_in += out.tokens_in
        self.stats.tokens_out += out.tokens_out
        self.stats.seconds += time.perf_counter() - start
        return out

    def _load_prefix(self, prompt: _Prompt, use_cache: bool) -> int:
        """Put the prompt's prefix batch in the KV cache, evaluating it unless it is there; return
        the number of tokens evaluated. Afterwards the model's position is the split point."""
        prefix = prompt.tokens[: prompt.split]
        if use_cache and prompt.split and self._cached_prefix == prefix and self._llm.n_tokens >= prompt.split:
            self._llm.n_tokens = prompt.split
            self.stats.prefix_hits += 1
            return 0
        self._llm.n_tokens = 0
        self._cached_prefix = None
        if prefix:
            self._llm.eval(prefix)
            self._cached_prefix = prefix
        return len(prefix)

    def _score(self, prompt: _Prompt, use_cache: bool) -> PointwiseScore:
        n = len(prompt.tokens)
        if n >= self.n_ctx:
            raise _PromptTooLong(n, self.n_ctx)
        evaluated = self._load_prefix(prompt, use_cache)
        self._llm.eval(prompt.tokens[prompt.split :])
        evaluated += n - prompt.split
        self.stats.tokens_evaluated += evaluated
        ptr = self._lib.llama_get_logits_ith(self._llm.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).astype(np.float64)
        log_yes = np.logaddexp.reduce(logits[self._yes_ids])
        log_no = np.logaddexp.reduce(logits[self._no_ids])
        log_all = np.logaddexp.reduce(logits)
        p_yes = float(1.0 / (1.0 + np.exp(log_no - log_yes)))
        mass = float(np.exp(np.logaddexp(log_yes, log_no) - log_all))
        return PointwiseScore(p_yes, mass, self._piece(int(np.argmax(logits))), n, prompt.split, evaluated)

    def _generate(self, prompt: _Prompt, use_cache: bool) -> CallOutput:
        n = len(prompt.tokens)
        room = self.n_ctx - n
        if room <= 0:
            raise _PromptTooLong(n, self.n_ctx)
        evaluated = self._load_prefix(prompt, use_cache)
        # create_completion matches its prompt against the cache, which now holds exactly the prefix
        # batch: it evaluates the rest of the prompt as one batch, then samples
        response = self._llm.create_completion(
            prompt=prompt.tokens,
            max_tokens=min(self.config.max_tokens, room),
            temperature=self.config.temperature,
            seed=self.config.seed,
            stream=False,
            **SAMPLING,
        )
        choice = response["choices"][0]
        usage = response["usage"]
        self.stats.tokens_evaluated += evaluated + n - prompt.split
        return CallOutput(
            choice["text"], choice["finish_reason"], tokens_in=n, tokens_out=int(usage["completion_tokens"])
        )

    def _piece(self, token: int) -> str:
        piece: bytes = self._llm.detokenize([token], special=True)
        return piece.decode("utf-8", errors="replace")

    def _single_token_ids(self, words: Sequence[str]) -> list[int]:
        ids = []
        for w in words:
            toks = self.tokenize(w, special=False)
            if len(toks) == 1 and toks[0] not in ids:
                ids.append(toks[0])
        return ids
