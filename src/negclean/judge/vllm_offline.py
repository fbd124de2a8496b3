"""The ``vllm`` judge backend: a model on this machine's GPU(s) through vLLM's offline engine (``vllm.LLM``).

No server, no HTTP: calls are built by ``listwise.chunk_calls`` (the same prompts as every LLM backend) and
handed to ``LLM.chat`` a batch at a time; vLLM schedules them with continuous batching. Two of its features
matter here:

- **prefix caching** (``enable_prefix_caching``): every listwise call starts with the same system message,
  and the pointwise template puts the question and ground truth before the candidate, so the shared prefix
  of a prompt is computed once and reused;
- **structured output**: the answer is constrained to the verdict format -- for listwise prompts a regex
  of ``<reasoning>...</reasoning>`` (when reasoning) and ``<verdict>{"better": [...], "worse": [...]}</verdict>``
  whose numbers can only be 1..n; for pointwise prompts the choice ``yes`` / ``no``. Format failures
  disappear; what the parser still rejects (a number in both lists, a repeated number) stays undecided.

vLLM is an optional GPU dependency (``pip install 'negclean[vllm]'``); this module imports it only when a
judge is built. The request building and output parsing below are plain functions, tested without vLLM.
Written against vLLM's documented API: ``StructuredOutputsParams`` (vLLM >= 0.11) and, for older
releases, ``GuidedDecodingParams``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from negclean.errors import ConfigError, MissingDependency
from negclean.judge.base import JudgeBase, JudgeTask, OnCall, TaskResult
from negclean.judge.config import VLLMJudgeConfig
from negclean.judge.listwise import Call, CallOutput, assemble, chunk_calls
from negclean.judge.parse import ParseFailure, p_yes_from_logprobs
from negclean.judge.tokens import estimate_tokens

log = logging.getLogger(__name__)

#: pointwise: least probability the first token must put on yes/no for P(yes) to be used (as the openai backend)
MIN_YES_NO_MASS = 0.5
#: pointwise answers are one word; a few tokens let a multi-token "yes" finish inside the choice grammar
POINTWISE_MAX_TOKENS = 4
TOP_LOGPROBS = 5


def number_pattern(n: int) -> str:
    """A regex matching exactly the candidate numbers 1..n (longest first, so alternation never stops short)."""
    return "(?:" + "|".join(str(i) for i in range(n, 0, -1)) + ")"


def verdict_regex(n: int, *, reasoning: bool) -> str:
    """The listwise answer format for n candidates, as a regex for structured decoding.

    Reasoning text may hold anything but ``<`` (so it can neither close the block early nor forge a verdict).
    """
    num = number_pattern(n)
    lst = rf"\[(?:{num}(?:, {num})*)?\]"
    verdict = rf'<verdict>\{{"better": {lst}, "worse": {lst}\}}</verdict>'
    if not reasoning:
        return verdict
    return rf"<reasoning>[^<]*</reasoning>\n{verdict}"


@dataclass(frozen=True, slots=True)
class Request:
    """One engine request: the chat messages and the keyword arguments of its ``SamplingParams``.

    ``structured`` is ``("regex", pattern)``, ``("choice", [...])`` or None; it becomes the sampling
    parameters' structured-output constraint for the installed vLLM version.
    """

    messages: tuple[dict[str, Any], ...]
    sampling: dict[str, Any]
    structured: tuple[str, Any] | None


def build_request(call: Call, *, template: str, config: VLLMJudgeConfig) -> Request:
    """The engine request of one call (pure: no vLLM needed)."""
    sampling: dict[str, Any] = {"temperature": config.temperature, "seed": config.seed}
    structured: tuple[str, Any] | None = None
    if template == "pointwise":
        sampling.update(max_tokens=POINTWISE_MAX_TOKENS, logprobs=TOP_LOGPROBS)
        if config.structured_output:
            structured = ("choice", ["yes", "no"])
    else:
        sampling["max_tokens"] = config.max_tokens
        if config.structured_output:
            structured = ("regex", verdict_regex(len(call.positions), reasoning=template == "listwise"))
    return Request(call.messages, sampling, structured)


def p_yes_from_token_logprobs(first: Any) -> float | None:
    """P(yes) from vLLM's log-probs of the first generated token ({token id: Logprob}); None when unusable."""
    if not first:
        return None
    top: dict[str, float] = {}
    for entry in first.values():
        token = getattr(entry, "decoded_token", None)
        logprob = getattr(entry, "logprob", None)
        if token is None or logprob is None or not math.isfinite(logprob):
            continue
        top[token] = max(top.get(token, -math.inf), float(logprob))
    mass = sum(math.exp(lp) for tok, lp in top.items() if tok.strip().lower() in ("yes", "no"))
    if mass < MIN_YES_NO_MASS:  # an off-format first token: the answer word decides, as with the openai backend
        return None
    try:
        return p_yes_from_logprobs(top)
    except ParseFailure:
        return None


def call_output(result: Any, *, template: str) -> CallOutput:
    """CallOutput of one ``vllm.RequestOutput`` (read by attribute, so tests can pass look-alikes)."""
    outputs = getattr(result, "outputs", None) or []
    if not outputs:
        return CallOutput(None, None, error="the engine returned no output for this request")
    first = outputs[0]
    finish = getattr(first, "finish_reason", None)
    if finish == "abort":
        return CallOutput(None, finish, error="the engine aborted this request")
    tokens_in = len(getattr(result, "prompt_token_ids", None) or ())
    tokens_out = len(getattr(first, "token_ids", None) or ())
    p_yes = None
    if template == "pointwise":
        logprobs = getattr(first, "logprobs", None) or []
        p_yes = p_yes_from_token_logprobs(logprobs[0]) if logprobs else None
    return CallOutput(getattr(first, "text", None), finish, tokens_in=tokens_in, tokens_out=tokens_out, p_yes=p_yes)


def sampling_params(request: Request, vllm: Any) -> Any:
    """``vllm.SamplingParams`` of a request, with its structured-output constraint."""
    kwargs = dict(request.sampling)
    if request.structured is not None:
        kind, value = request.structured
        try:
            from vllm.sampling_params import StructuredOutputsParams  # vLLM >= 0.11

            kwargs["structured_outputs"] = StructuredOutputsParams(**{kind: value})
        except ImportError:
            from vllm.sampling_params import GuidedDecodingParams  # vLLM 0.6 - 0.10

            kwargs["guided_decoding"] = GuidedDecodingParams(**{kind: value})
    return vllm.SamplingParams(**kwargs)


def engine_kwargs(config: VLLMJudgeConfig) -> dict[str, Any]:
    """Arguments of ``vllm.LLM`` for a config."""
    kwargs: dict[str, Any] = {
        "model": config.model,
        "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "dtype": config.dtype,
        "seed": config.seed,
        "enable_prefix_caching": config.enable_prefix_caching,
    }
    if config.max_model_len is not None:
        kwargs["max_model_len"] = config.max_model_len
    if config.download_dir is not None:
        kwargs["download_dir"] = config.download_dir
    return kwargs


class VLLMJudge(JudgeBase):
    """Judge with a local vLLM engine (see the module docstring). The model loads on the first ``judge``
    call and stays loaded: in a Ray worker, once per worker."""

    def __init__(self, config: VLLMJudgeConfig) -> None:
        self.config = config
        self.judge_id = config.judge_id()
        self.fingerprint = config.fingerprint()
        self.listwise = config.mode == "listwise"
        self.template = config.prompt_names()[0]
        self._vllm: Any = None
        self._llm: Any = None

    def load(self) -> Any:
        """Import vLLM and start the engine (idempotent)."""
        if self._llm is None:
            try:
                import vllm
            except ImportError as exc:
                raise MissingDependency("vllm", "vllm", "The 'vllm' judge backend (a GPU machine)") from exc
            try:
                self._llm = vllm.LLM(**engine_kwargs(self.config))
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"vLLM could not load model '{self.config.model}': {exc}. Check the model "
                    "name or path, max_model_len and gpu_memory_utilization"
                ) from exc
            self._vllm = vllm
        return self._llm

    def judge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: Any = None
    ) -> list[TaskResult]:
        tasks = list(tasks)
        if not tasks:
            return []
        from negclean.judge.openai_chat import call_id

        calls = chunk_calls(
            tasks,
            template=self.template,
            max_candidates=self.config.max_candidates,
            include_titles=self.config.include_titles,
        )
        llm = self.load()
        outputs: list[CallOutput] = []
        size = self.config.batch_size
        for start in range(0, len(calls), size):
            part = calls[start : start + size]
            requests = [build_request(c, template=self.template, config=self.config) for c in part]
            results = llm.chat(
                [list(r.messages) for r in requests],
                sampling_params=[sampling_params(r, self._vllm) for r in requests],
                use_tqdm=False,
            )
            if len(results) != len(requests):
                raise RuntimeError(f"vLLM returned {len(results)} outputs for {len(requests)} requests")
            outputs.extend(call_output(r, template=self.template) for r in results)
        return assemble(
            tasks,
            calls,
            outputs,
            template=self.template,
            judge_id=self.judge_id,
            call_ids=[call_id(self.fingerprint, c.messages) for c in calls],
            yes_threshold=self.config.yes_threshold,
        )

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        pointwise = self.template == "pointwise"
        return estimate_tokens(
            task,
            template=self.template,
            max_candidates=self.config.max_candidates,
            include_titles=self.config.include_titles,
            model=None,
            max_tokens=1 if pointwise else self.config.max_tokens,
        )
