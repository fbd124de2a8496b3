"""The ``openai`` judge backend: any OpenAI-compatible Chat Completions endpoint (OpenAI, Azure OpenAI,
vLLM, SGLang, Ollama, llama.cpp server).

The backend only transports messages: calls are built by ``listwise.chunk_calls`` and verdicts by
``listwise.assemble``. Calls run concurrently (at most ``config.concurrency`` requests in flight per
event loop, across batches), with bounded retries of its own (the client's are off): exponential
backoff with jitter, ``Retry-After`` honoured on 429/503 (and then held by every call, since a rate
limit is per account). A call that still fails becomes an undecided verdict with the reason; only
configuration errors (401/403/404, missing key) and an endpoint that cannot be reached on the last
attempt (connection refused, unknown host, no route) raise ``BackendError``. The API key is read from the
environment variable ``config.api_key_env`` and never appears in a message or a log record.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import math
import os
import random
import socket
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from negclean.errors import BackendError, require
from negclean.judge.base import JudgeBase, JudgeTask, OnCall, TaskResult
from negclean.judge.config import OpenAIJudgeConfig
from negclean.judge.listwise import CallOutput, assemble, call_result, chunk_calls
from negclean.judge.meter import SpendMeter
from negclean.judge.openai_retry import OpenAIStats, backoff_delay, is_loopback, parse_retry_after, safe_url
from negclean.judge.parse import ParseFailure, p_yes_from_logprobs
from negclean.judge.redact import redact
from negclean.judge.tokens import count_message_tokens, count_tokens, estimate_tokens

log = logging.getLogger(__name__)

#: key used when the endpoint is on this machine and no key is set (vLLM, llama.cpp and Ollama ignore it)
LOCAL_DUMMY_KEY = "EMPTY"
#: pointwise: least probability the first token must put on yes/no for P(yes) to be used
MIN_YES_NO_MASS = 0.5


#: called with (the part of a task one call covered, its verdicts) as soon as that call is done


@dataclass(frozen=True)
class _Failure:
    kind: str
    detail: str
    retryable: bool
    retry_after: float | None = None


@dataclass
class _LoopState:
    """Client and limits bound to one event loop (HTTP connections cannot cross loops)."""

    client: Any
    semaphore: asyncio.Semaphore
    not_before: float = 0.0  # loop time before which no request is sent (Retry-After)

    async def hold_off(self) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self.not_before - loop.time()) > 0:
            await asyncio.sleep(wait)


def call_id(fingerprint: str, messages: Sequence[Mapping[str, Any]]) -> str:
    """Stable id of a call: the same judge fingerprint and messages give the same id."""
    blob = json.dumps(
        {"fingerprint": fingerprint, "messages": list(messages)},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class OpenAIJudge(JudgeBase):
    """Judge through an OpenAI-compatible chat endpoint (see the module docstring).

    Attributes:
        stats: ``OpenAIStats`` counters over every batch this judge ran.
    """

    streams = True  # on_call as each request finishes
    meters_budget = True  # each request's worst case is held right before it is sent
    stats: OpenAIStats

    def __init__(self, config: OpenAIJudgeConfig) -> None:
        self.config = config
        self.judge_id = config.judge_id()
        self.fingerprint = config.fingerprint()
        self.listwise = config.mode == "listwise"
        self.template = config.prompt_names()[0]
        self.stats = OpenAIStats()
        self._rng = random.Random()
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finalizer: weakref.finalize[[asyncio.AbstractEventLoop, threading.Thread], OpenAIJudge] | None = None

    # ---- Judge protocol
    def judge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: SpendMeter | None = None
    ) -> list[TaskResult]:
        """Judge a batch; runs on the judge's own event-loop thread (so it also works inside Jupyter).

        ``on_call(part, result)``, when given, is called (on that thread) as each call finishes, with the
        part of a task the call covered and its verdicts: the cascade stores them at once, so that a
        crash loses only the calls in flight, not the whole batch. ``budget``, when given, holds each
        request's worst case right before it is sent; a request that does not fit is not sent (its
        candidates come back undecided and retryable) and neither is any later one."""
        tasks = list(tasks)
        if not tasks:
            return []
        future = asyncio.run_coroutine_threadsafe(
            self.ajudge(tasks, on_call=on_call, budget=budget), self._runner_loop()
        )
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    async def ajudge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: SpendMeter | None = None
    ) -> list[TaskResult]:
        """Judge a batch in the running event loop (``on_call``, ``budget``: see ``judge``)."""
        tasks = list(tasks)
        if not tasks:
            return []
        calls = chunk_calls(
            tasks,
            template=self.template,
            max_candidates=self.config.max_candidates,
            include_titles=self.config.include_titles,
        )
        ids = [call_id(self.fingerprint, c.messages) for c in calls]
        done = None
        if on_call is not None:

            def done(i: int, output: CallOutput) -> None:
                on_call(
                    *call_result(
                        tasks,
                        calls[i],
                        output,
                        template=self.template,
                        judge_id=self.judge_id,
                        call_id=ids[i],
                        yes_threshold=self.config.yes_threshold,
                    )
                )

        state = self._state()
        outputs = await self._run_calls(state, [c.messages for c in calls], on_output=done, budget=budget)
        return assemble(
            tasks,
            calls,
            outputs,
            template=self.template,
            judge_id=self.judge_id,
            call_ids=ids,
            yes_threshold=self.config.yes_threshold,
        )

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        pointwise = self.template == "pointwise"
        return estimate_tokens(
            task,
            template=self.template,
            max_candidates=self.config.max_candidates,
            include_titles=self.config.include_titles,
            model=self.config.model,
            max_tokens=1 if pointwise else self.config.max_tokens,
        )

    # ---- lifecycle
    def close(self) -> None:
        """Close the HTTP client and stop the judge's event-loop thread (a later ``judge`` starts anew)."""
        with self._lock:
            loop, self._loop = self._loop, None
            finalizer, self._finalizer = self._finalizer, None
        if loop is not None and loop.is_running():
            state = self._states.pop(loop, None)
            if state is not None:
                try:
                    asyncio.run_coroutine_threadsafe(state.client.close(), loop).result(10)
                except Exception:  # closing is best effort
                    log.debug("closing the HTTP client failed", exc_info=True)
        if finalizer is not None:
            finalizer()

    async def aclose(self) -> None:
        """Close the HTTP client bound to the running event loop."""
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.client.close()

    def __enter__(self) -> OpenAIJudge:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _runner_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"negclean-{self.judge_id}", daemon=True)
                thread.start()
                self._loop = loop
                self._finalizer = weakref.finalize(self, _stop_loop, loop, thread)
            return self._loop

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = _LoopState(self._make_client(), asyncio.Semaphore(self.config.concurrency))
            self._states[loop] = state
        return state

    # ---- client and key
    def _endpoint(self) -> str:
        cfg = self.config
        if cfg.azure_api_version:
            return cfg.base_url or os.environ.get("AZURE_OPENAI_ENDPOINT") or ""
        return cfg.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"

    def _api_key(self) -> str:
        env = self.config.api_key_env
        key = os.environ.get(env, "").strip()
        if key:
            return key
        if is_loopback(self._endpoint()):
            return LOCAL_DUMMY_KEY
        raise BackendError(
            f"No API key for {safe_url(self._endpoint())}: the environment variable {env} is not set. "
            f"Set it (export {env}=...), or point api_key_env in the judge config at the variable that holds "
            "your key. Endpoints on localhost need no key."
        )

    def _make_client(self) -> Any:
        openai = require("openai", extra="openai", purpose="The 'openai' judge backend")
        cfg = self.config
        common = {"api_key": self._api_key(), "max_retries": 0, "timeout": cfg.timeout}
        http_client = self._aiohttp_client(openai) if cfg.transport != "httpx" else None
        if http_client is not None:
            common["http_client"] = http_client
        if cfg.azure_api_version:
            endpoint = self._endpoint()
            if not endpoint:
                raise BackendError(
                    "Azure OpenAI needs its endpoint: set base_url in the judge config "
                    "(https://<resource>.openai.azure.com) or the AZURE_OPENAI_ENDPOINT variable."
                )
            return openai.AsyncAzureOpenAI(azure_endpoint=endpoint, api_version=cfg.azure_api_version, **common)
        return openai.AsyncOpenAI(base_url=cfg.base_url, **common)

    def _aiohttp_client(self, openai: Any) -> Any:
        """openai's aiohttp-based HTTP client (about half the CPU per call of httpx), or None for httpx."""
        factory = getattr(openai, "DefaultAioHttpClient", None)  # openai >= 1.9x
        try:
            import aiohttp  # noqa: F401

            return factory(timeout=self.config.timeout) if factory is not None else None
        except (ImportError, RuntimeError):
            if self.config.transport == "aiohttp":
                raise BackendError(
                    "transport 'aiohttp' needs aiohttp and an openai client that supports it: "
                    "pip install -U 'openai[aiohttp]', or set transport: httpx"
                ) from None
            return None

    def _redact(self, text: str) -> str:
        """Every text from the server passes here before it reaches a message, a log or the store."""
        return redact(text, os.environ.get(self.config.api_key_env))

    # ---- calls
    async def _run_calls(
        self,
        state: _LoopState,
        messages: Sequence[Sequence[dict[str, Any]]],
        *,
        on_output: Callable[[int, CallOutput], None] | None = None,
        budget: SpendMeter | None = None,
    ) -> list[CallOutput]:
        """Run every call. At most 4x concurrency calls exist at once (bounded memory for large batches)
        while the semaphore bounds requests in flight, so calls waiting out a backoff leave their slot."""
        outputs: list[CallOutput | None] = [None] * len(messages)
        window = asyncio.Semaphore(max(4 * self.config.concurrency, 8))

        async def run(i: int) -> None:
            try:
                output = await self._call(state, messages[i], budget=budget)
                outputs[i] = output
                if on_output is not None:
                    on_output(i, output)
            finally:
                window.release()

        try:
            async with asyncio.TaskGroup() as group:  # a BackendError in one call cancels the others
                for i in range(len(messages)):
                    await window.acquire()
                    group.create_task(run(i))
        except BaseExceptionGroup as group_error:
            raise group_error.exceptions[0] from None
        return outputs  # type: ignore[return-value]  # the task group ran every call (or raised): no None left

    def _request(self, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        cfg = self.config
        params: dict[str, Any] = {
            **cfg.extra_body,
            "model": cfg.model,
            "messages": list(messages),
            "temperature": cfg.temperature,
        }
        if self.template == "pointwise":
            params.update(max_tokens=1, logprobs=True, top_logprobs=5)
        else:
            params["max_tokens"] = cfg.max_tokens
        return params

    async def _call(
        self, state: _LoopState, messages: Sequence[dict[str, Any]], *, budget: SpendMeter | None = None
    ) -> CallOutput:
        cfg = self.config
        params = self._request(messages)
        self.stats.add(calls=1)
        worst_in = count_message_tokens(messages, cfg.model) if budget is not None else 0
        attempts = cfg.max_retries + 1
        failure = _Failure("none", "", False)
        for attempt in range(attempts):
            try:
                async with state.semaphore:  # released as soon as the answer is in: parsing needs no slot
                    await state.hold_off()
                    held = None
                    if budget is not None:  # reserved right before sending: the cap holds at any concurrency
                        held = budget.reserve(worst_in, params["max_tokens"])
                        if held is None:
                            self.stats.add(budget_refused=1)
                            return CallOutput(None, None, error=f"not sent: {budget.refused}")
                        if held.recorded is not None:  # committed before sending: a kill still counts it
                            await asyncio.wrap_future(held.recorded)
                            if not budget.confirmed(held):  # another process of this run took the room
                                self.stats.add(budget_refused=1)
                                return CallOutput(None, None, error=f"not sent: {budget.refused}")
                    self.stats.add(requests=1)
                    try:
                        # the client's generic POST: same auth, URL rules (Azure deployments), timeouts and
                        # error classes as chat.completions.create, without its typed request/response layer,
                        # which costs ~1 ms of CPU per call (a third of the client's budget on 2 cores)
                        data = await state.client.post("/chat/completions", body=params, cast_to=object)
                    except BaseException as exc:
                        if budget is not None and held is not None:
                            # the provider may have run (and billed) a request that timed out or lost its
                            # connection: it is counted at its worst case; an HTTP error answer costs nothing
                            if _maybe_billed(exc):
                                budget.settle_worst(held)
                            else:
                                budget.settle(held, 0, 0)
                        raise
                try:
                    output = self._output(data, messages)
                except BaseException:
                    if budget is not None and held is not None:  # answered (and billed) but unusable: usage unknown
                        budget.settle_worst(held)
                    raise
                if budget is not None and held is not None:
                    budget.settle(held, output.tokens_in, output.tokens_out)
            except BackendError:
                raise
            except Exception as exc:  # classified below; unknown exceptions re-raise there
                failure = self._classify(exc, state)
            else:
                self.stats.add(succeeded=1)
                return output
            self.stats.error(failure.kind)
            if not failure.retryable or attempt + 1 == attempts:
                break
            delay = backoff_delay(
                attempt, base=cfg.backoff_base, cap=cfg.max_backoff, retry_after=failure.retry_after, rng=self._rng
            )
            if failure.retry_after is not None:
                loop = asyncio.get_running_loop()
                state.not_before = max(state.not_before, loop.time() + delay)
            log.debug(
                "%s: %s; retry %d/%d in %.2f s", self.judge_id, failure.detail, attempt + 1, cfg.max_retries, delay
            )
            self.stats.add(retries=1, backoff_s=delay)
            await asyncio.sleep(delay)
        self.stats.add(failed=1)
        tries = f"{attempt + 1} attempt" + ("s" if attempt else "")
        if failure.kind == "unreachable":
            # nothing answers there: every other call would fail the same way, so the run stops (exit 5)
            # rather than record the whole batch as undecided; calls answered before are already stored
            raise BackendError(
                f"{self.judge_id}: the endpoint {safe_url(str(state.client.base_url)).rstrip('/')} is unreachable "
                f"({failure.detail}; {tries}). Start the server or fix base_url; verdicts made so far are "
                "stored and a rerun resumes from them."
            )
        reason = f"call failed after {tries}: {failure.detail}"
        log.warning("%s: %s", self.judge_id, reason)
        return CallOutput(None, None, error=reason)

    def _classify(self, exc: Exception, state: _LoopState) -> _Failure:
        openai = require("openai", extra="openai", purpose="The 'openai' judge backend")
        root = _root_cause(exc)
        unreachable = _unreachable(exc)
        if unreachable is not None:  # before the timeout test: aiohttp reports a refused connect as one
            return _Failure("unreachable", unreachable, True)
        # openai's aiohttp transport reports a dropped connection as a timeout: look at the root cause
        dropped = type(root).__module__.startswith("aiohttp") and not isinstance(root, TimeoutError)
        if isinstance(exc, openai.APITimeoutError) and not dropped:
            return _Failure("timeout", f"no answer within {self.config.timeout:g} s (timeout)", True)
        if isinstance(exc, openai.APIConnectionError):
            return _Failure("connection", f"connection failed ({type(root).__name__})", True)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status in (401, 403, 404):
                raise self._config_error(exc, str(state.client.base_url)) from None
            message = self._redact(_server_message(exc))[:300]
            retry_after = parse_retry_after(exc.response.headers)
            if status == 429:
                return _Failure("rate_limited", f"HTTP 429 rate limited: {message}", True, retry_after)
            if status >= 500 or status in (408, 409):
                return _Failure("server_error", f"HTTP {status}: {message}", True, retry_after)
            # 400/413/422...: this request is at fault (too long a prompt, a filter); others may pass
            return _Failure("bad_request", f"HTTP {status} (not retried): {message}", False)
        if isinstance(exc, (openai.APIError, ValueError)):
            # a 200 whose body is not a chat completion (a proxy's error page, a broken server)
            return _Failure(
                "bad_response", f"unusable response ({type(exc).__name__}: {self._redact(str(exc))[:200]})", True
            )
        raise exc

    def _config_error(self, exc: Any, url: str) -> BackendError:
        cfg, status, where = self.config, exc.status_code, safe_url(url)
        if status == 401:
            # the server's message is left out on purpose: OpenAI's repeats part of the key
            return BackendError(
                f"{where} rejected the API key (HTTP 401). The key is read from the environment variable "
                f"{cfg.api_key_env}: set it to a valid key for this endpoint, or point api_key_env at the "
                "variable that holds one."
            )
        message = self._redact(_server_message(exc))[:300]
        if status == 403:
            return BackendError(
                f"{where} refused access to model '{cfg.model}' (HTTP 403: {message}). The key in "
                f"{cfg.api_key_env} lacks permission for this model, project or region."
            )
        hint = (
            "the Azure deployment name (model) and endpoint (base_url)"
            if cfg.azure_api_version
            else "the model name and base_url (OpenAI-compatible servers usually end in /v1)"
        )
        return BackendError(f"{where} answered 404 for model '{cfg.model}' ({message}). Check {hint}.")

    def _output(self, data: Any, messages: Sequence[dict[str, Any]]) -> CallOutput:
        """CallOutput of a Chat Completions answer (a JSON object); ValueError when it is none."""
        if not isinstance(data, dict):
            raise ValueError(f"the answer is {type(data).__name__}, not a JSON object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            error = data.get("error")
            detail = f" (error: {self._redact(str(error.get('message')))})" if isinstance(error, dict) else ""
            raise ValueError("the answer holds no choices" + detail)
        choice = choices[0]
        raw_message = choice.get("message")
        message: dict[str, Any] = raw_message if isinstance(raw_message, dict) else {}
        text = message.get("content")
        if isinstance(text, list):  # content parts, as some servers send them
            text = "".join(str(part.get("text", "")) for part in text if isinstance(part, dict))
        elif text is not None and not isinstance(text, str):
            raise ValueError(f"message content is {type(text).__name__}, not text")
        if text:
            text = self._redact(text)  # an answer that repeats the key must not be stored with it
        finish = choice.get("finish_reason")
        p_yes = self._p_yes(choice) if self.template == "pointwise" else None
        raw_usage = data.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        if isinstance(usage.get("prompt_tokens"), int):
            tokens_in, tokens_out = usage["prompt_tokens"], int(usage.get("completion_tokens") or 0)
        else:
            tokens_in = count_message_tokens(messages, self.config.model)
            tokens_out = count_tokens(text or "", self.config.model)
            self.stats.add(usage_missing=1)
        self.stats.add(tokens_in=tokens_in, tokens_out=tokens_out, truncated=int(finish == "length"))
        return CallOutput(text, finish, tokens_in=tokens_in, tokens_out=tokens_out, p_yes=p_yes)

    @staticmethod
    def _p_yes(choice: dict[str, Any]) -> float | None:
        """P(yes) from the first token's log-probs; None when the server gave none usable."""
        try:
            first = choice["logprobs"]["content"][0]
            top = {str(t["token"]): float(t["logprob"]) for t in first.get("top_logprobs") or []}
            top.setdefault(str(first["token"]), float(first["logprob"]))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            return None
        # Renormalising over yes/no is only meaningful when the model mostly answered yes or no: an
        # off-format answer ("It depends") with yes/no far down the list would give a confident-looking
        # number from a few thousandths of the mass. Then the answer word decides (and fails to parse).
        mass = sum(math.exp(lp) for tok, lp in top.items() if tok.strip().lower() in ("yes", "no"))
        if mass < MIN_YES_NO_MASS:
            return None
        try:
            return p_yes_from_logprobs(top)
        except ParseFailure:
            return None


def _maybe_billed(exc: BaseException) -> bool:
    """Whether a request that raised may still have been run by the provider (no answer, no status)."""
    if isinstance(getattr(exc, "status_code", None), int):
        return False  # the server answered with an error: nothing was generated
    return _unreachable(exc) is None  # refused, unresolved, no route: the request never arrived


#: OS errors of a connect that reached no server (nothing was sent): refused, no route, no network
_UNREACHABLE_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL})


def _unreachable(exc: BaseException) -> str | None:
    """Why the endpoint could not be connected to at all, or None for any other failure.

    A refused connection, a host name that does not resolve or no route to the host fails at once and
    will fail the same way for every call; a timeout or a connection dropped mid-answer may not. The
    transports wrap the OS error differently (httpx: ``ConnectError`` with the ``OSError`` as context;
    aiohttp: ``ClientConnectorError`` inside a *timeout* error), so the whole chain is searched."""
    chain = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        chain.append(e)
        todo += [e.__cause__, e.__context__]
    for e in chain:
        if isinstance(e, socket.gaierror):
            return f"host name not resolved: {e.strerror or e}"
        if isinstance(e, OSError) and e.errno in _UNREACHABLE_ERRNOS:
            return "connection refused" if e.errno == errno.ECONNREFUSED else (e.strerror or str(e)).lower()
    for e in chain:  # aiohttp's connector errors whose OS error is not in the chain
        if type(e).__module__.startswith("aiohttp") and type(e).__name__.startswith("ClientConnector"):
            return f"cannot connect: {e}"
    return None


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(exc, "message", "") or exc)


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    if loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    if not loop.is_running() and not loop.is_closed():
        loop.close()
