"""The ``openai-batch`` judge backend: OpenAI's (or Azure OpenAI's) Batch API, at half the online price.

One ``judge(tasks)`` call is one *job*: its chat requests (built exactly as the ``openai`` backend builds them,
so the verdicts and the fingerprint are the same) are written as Batch JSONL -- the file ``vllm run-batch``
also reads (``write_requests``) -- split into files under the API's limits (50,000 requests, 200 MB),
uploaded, and submitted as batches. The judge polls them with backoff, downloads output and error files,
and matches rows by ``custom_id`` (the call id that also keys raw outputs in the judgment store). Rows that
came back in neither file, failed (5xx, 429) or expired are resubmitted in a new round, up to ``max_rounds``
submissions per request; what is still missing becomes an undecided verdict that the store does not keep.

Resuming: a job's batch ids are written to ``state_dir/<job key>.json`` before anything else happens with
them (the key hashes the fingerprint, the endpoint and the sorted request ids). A run that restarts with
the same requests finds the file and polls the batches it already paid for instead of submitting again;
a batch created just before a crash, before its id was written, is found again by its metadata. Use a
large ``chunk_size`` in the cascade with this backend: each chunk is one job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from negclean.data.atomic import atomic_write
from negclean.errors import BackendError, require
from negclean.judge.base import JudgeBase, JudgeTask, OnCall, TaskResult
from negclean.judge.config import OpenAIBatchJudgeConfig
from negclean.judge.listwise import Call, CallOutput, assemble, chunk_calls
from negclean.judge.meter import Reservation, SpendMeter
from negclean.judge.openai_chat import OpenAIJudge, call_id
from negclean.judge.openai_retry import safe_url
from negclean.judge.tokens import count_message_tokens

log = logging.getLogger(__name__)

ENV_STATE_DIR = "NEGCLEAN_BATCH_DIR"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
#: error-file statuses worth a resubmission (the rest, e.g. 400, fail the same way again)
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass
class BatchStats:
    """Counters over every job of one judge."""

    jobs: int = 0
    jobs_resumed: int = 0
    rounds: int = 0
    files: int = 0
    batches: int = 0
    requests_submitted: int = 0
    succeeded: int = 0
    missing: int = 0
    failed_rows: int = 0
    expired_rows: int = 0
    failed_batches: int = 0
    gave_up: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    polls: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def default_state_dir() -> Path:
    base = os.environ.get(ENV_STATE_DIR)
    return Path(base).expanduser() if base else Path.home() / ".cache" / "negclean" / "batches"


def request_line(custom_id: str, url: str, body: Mapping[str, Any]) -> bytes:
    """One line of a Batch input file."""
    row = {"custom_id": custom_id, "method": "POST", "url": url, "body": body}
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def plan_files(sizes: Sequence[int], *, max_requests: int, max_bytes: int) -> list[tuple[int, int]]:
    """Cut consecutive requests of the given byte sizes into files of at most ``max_requests`` requests and
    ``max_bytes`` bytes: [start, stop) index ranges, in order. A single request over ``max_bytes`` is a ValueError."""
    ranges: list[tuple[int, int]] = []
    start, size = 0, 0
    for i, n in enumerate(sizes):
        if n > max_bytes:
            raise ValueError(
                f"one request is {n} bytes, more than a batch file may hold ({max_bytes}); lower max_candidates"
            )
        if i > start and (i - start >= max_requests or size + n > max_bytes):
            ranges.append((start, i))
            start, size = i, 0
        size += n
    if len(sizes) > start:
        ranges.append((start, len(sizes)))
    return ranges


def write_requests(path: str | Path, tasks: Sequence[JudgeTask], config: OpenAIBatchJudgeConfig) -> int:
    """Write the Batch JSONL of ``tasks`` (for ``vllm run-batch`` or a manual upload); returns the line count.

    Calls with identical messages are written once (a batch may not repeat a ``custom_id``).
    """
    judge = OpenAIBatchJudge(config)
    lines = judge.request_lines(judge.requests_of(tasks)[0])
    Path(path).write_bytes(b"".join(lines))
    return len(lines)


class OpenAIBatchJudge(JudgeBase):
    """Judge through the Batch API (see the module docstring).

    Attributes:
        stats: ``BatchStats`` over every job this judge ran.
    """

    meters_budget = True  # each batch file's worst case is held before it is submitted
    stats: BatchStats

    def __init__(self, config: OpenAIBatchJudgeConfig) -> None:
        self.config = config
        self.judge_id = config.judge_id()
        self.fingerprint = config.fingerprint()
        self.listwise = config.mode == "listwise"
        self.template = config.prompt_names()[0]
        self.stats = BatchStats()
        # request bodies, answer parsing, key handling and error messages are the online backend's
        self._online = OpenAIJudge(config.online())
        self._client: Any = None
        azure = config.azure_api_version is not None
        self.endpoint = "/chat/completions" if azure else "/v1/chat/completions"

    # ---- Judge protocol
    def judge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: SpendMeter | None = None
    ) -> list[TaskResult]:
        """Judge a batch as one job. ``budget``, when given, holds what each batch file can cost (every
        request's input plus ``max_tokens``) before the file is uploaded; a file that does not fit is not
        submitted, and its requests come back undecided and retryable."""
        tasks = list(tasks)
        if not tasks:
            return []
        requests, calls, ids = self.requests_of(tasks)
        outputs = self.run(requests, budget=budget)
        return assemble(
            tasks,
            calls,
            [outputs[i] for i in ids],
            template=self.template,
            judge_id=self.judge_id,
            call_ids=ids,
            yes_threshold=self.config.yes_threshold,
        )

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        return self._online.estimate_tokens(task)

    def close(self) -> None:
        self._online.close()
        if self._client is not None:
            self._client.close()
            self._client = None

    # ---- requests
    def requests_of(
        self, tasks: Sequence[JudgeTask]
    ) -> tuple[dict[str, tuple[dict[str, Any], ...]], list[Call], list[str]]:
        """(distinct requests by custom id, the calls, each call's id)."""
        calls = chunk_calls(
            tasks,
            template=self.template,
            max_candidates=self.config.max_candidates,
            include_titles=self.config.include_titles,
        )
        ids = [call_id(self.fingerprint, c.messages) for c in calls]
        requests: dict[str, tuple[dict[str, Any], ...]] = {}
        for c, cid in zip(calls, ids):
            requests.setdefault(cid, c.messages)
        return requests, calls, ids

    def request_lines(self, requests: Mapping[str, Sequence[dict[str, Any]]]) -> list[bytes]:
        return [request_line(cid, self.endpoint, self._online._request(messages)) for cid, messages in requests.items()]

    def job_key(self, ids: Sequence[str]) -> str:
        blob = json.dumps(
            {"fingerprint": self.fingerprint, "endpoint": safe_url(self._online._endpoint()), "ids": sorted(ids)},
            separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    # ---- one job
    def run(
        self, requests: Mapping[str, Sequence[dict[str, Any]]], *, budget: SpendMeter | None = None
    ) -> dict[str, CallOutput]:
        """Submit (or resume), wait, collect and resubmit until every request has an answer or gives up."""
        cfg = self.config
        holds: dict[str, Reservation] = {}  # budget reservations of the files this process submitted
        settled: set[str] = set()
        state_dir = Path(cfg.state_dir).expanduser() if cfg.state_dir else default_state_dir()
        job = JobState.open(
            state_dir,
            self.job_key(list(requests)),
            fingerprint=self.fingerprint,
            endpoint=safe_url(self._online._endpoint()),
            requests=len(requests),
        )
        deadline = time.monotonic() + cfg.max_wait
        collected: dict[str, _Collected] = {}
        with job.locked():
            job.reload()
            self.stats.jobs += 1
            self.stats.jobs_resumed += bool(job.rounds)
            while True:
                if job.rounds and not job.rounds[-1]["submitted"]:
                    self._submit(job, requests, budget=budget, holds=holds)
                running = self._collect(job, collected, deadline)
                if budget is not None:
                    self._settle(job, collected, budget, holds, settled)
                results, failures = self._merge(job, collected)
                if running:
                    reason = (
                        f"batch {running[0][0]} still {running[0][1]} after max_wait ({cfg.max_wait:g} s); "
                        "it keeps running: rerun to collect it"
                    )
                    for cid in requests:
                        if cid not in results:
                            failures[cid] = _Failure(reason, final=True)
                    break
                pending = [cid for cid in requests if cid not in results and not failures.get(cid, _F).final]
                if not pending or len(job.rounds) >= cfg.max_rounds or (budget is not None and budget.refused):
                    break
                if job.rounds:
                    self.stats.missing += sum(cid not in failures for cid in pending)
                self._plan(job, requests, pending)
        self._check_all_failed(job, results)
        outputs: dict[str, CallOutput] = {}
        for cid in requests:
            if cid in results:
                outputs[cid] = results[cid]
                continue
            failure = failures.get(cid) or _Failure(
                f"not submitted: {budget.refused}"
                if budget is not None and budget.refused
                else "in neither the output nor the error file of its batch"
            )
            self.stats.gave_up += 1
            outputs[cid] = CallOutput(
                None, None, error=f"batch request got no answer after {len(job.rounds)} submission(s): {failure.reason}"
            )
        return outputs

    def _check_all_failed(self, job: JobState, results: Mapping[str, CallOutput]) -> None:
        if not results and job.rounds and job.errors and all(e["batch"] for r in job.rounds for e in r["files"]):
            raise BackendError(
                f"every batch of job {job.key} failed ({job.errors[-1]}); nothing was judged. "
                "Check the model name and your account's batch limits; the job's state is in "
                f"{job.path}"
            )

    def _plan(self, job: JobState, requests: Mapping[str, Sequence[dict[str, Any]]], pending: Sequence[str]) -> None:
        """Start a round: the files it will upload (their request ids), saved before anything is sent."""
        cfg = self.config
        sizes = [len(line) for line in self.request_lines({cid: requests[cid] for cid in pending})]
        try:
            ranges = plan_files(sizes, max_requests=cfg.max_requests_per_file, max_bytes=cfg.max_bytes_per_file)
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        job.rounds.append(
            {"submitted": False, "files": [{"file": None, "batch": None, "ids": list(pending[a:b])} for a, b in ranges]}
        )
        job.save()
        self.stats.rounds += 1

    def _submit(
        self,
        job: JobState,
        requests: Mapping[str, Sequence[dict[str, Any]]],
        *,
        budget: SpendMeter | None = None,
        holds: dict[str, Reservation] | None = None,
    ) -> None:
        """Upload and create what the last round lacks; every id is saved as soon as the API returns it.

        With a budget, a file's worst case is reserved (and the reservation committed) before it is uploaded;
        the first file that does not fit is dropped from the round with every later one."""
        cfg = self.config
        rnd = job.rounds[-1]
        client = self._api()
        number = len(job.rounds)
        for i, entry in enumerate(rnd["files"]):
            if entry["batch"] is not None:
                continue
            lines = self.request_lines({cid: requests[cid] for cid in entry["ids"]})
            if entry["file"] is None and budget is not None:
                ref = f"batch:{job.key}:r{number}:{i + 1}"
                held = budget.reserve(
                    sum(count_message_tokens(requests[cid], cfg.model) for cid in entry["ids"]),
                    self._max_tokens() * len(entry["ids"]),
                    what=f"batch file {i + 1} of round {number} ({len(entry['ids'])} requests)",
                    ref=ref,
                )
                if held is not None and held.recorded is not None:
                    held.recorded.result()
                    if not budget.confirmed(held):  # another process of this run took the room
                        held = None
                if held is None:
                    del rnd["files"][i:]  # never uploaded: their requests stay unjudged (retryable)
                    break
                entry["budget_ref"] = ref
                if holds is not None:
                    holds[ref] = held
                job.save()
            if entry["file"] is None:
                name = f"negclean-{job.key[:12]}-r{number}-{i + 1}.jsonl"
                uploaded = self._call(
                    lambda name=name, lines=lines: client.files.create(
                        file=(name, b"".join(lines), "application/jsonl"), purpose="batch"
                    )
                )
                entry["file"] = uploaded.id
                job.save()
                self.stats.files += 1
            else:
                entry["batch"] = self._find_orphan(job.key, entry["file"])
                if entry["batch"] is not None:
                    job.save()
                    continue
            batch = self._call(
                lambda entry=entry: client.batches.create(
                    input_file_id=entry["file"],
                    endpoint=self.endpoint,
                    completion_window=cfg.completion_window,
                    metadata={"negclean_job": job.key, "round": str(number)},
                )
            )
            entry["batch"] = batch.id
            job.save()
            self.stats.batches += 1
            self.stats.requests_submitted += len(lines)
            log.info("%s: submitted batch %s (%d requests, round %d)", self.judge_id, batch.id, len(lines), number)
        if not rnd["files"]:  # the budget let no file go: the round never happened
            job.rounds.pop()
        else:
            rnd["submitted"] = True
        job.save()

    def _max_tokens(self) -> int:
        return 1 if self.template == "pointwise" else self.config.max_tokens

    def _settle(
        self,
        job: JobState,
        collected: Mapping[str, _Collected],
        budget: SpendMeter,
        holds: dict[str, Reservation],
        settled: set[str],
    ) -> None:
        """Settle each finished batch's reservation to what its answers used (failed rows are not billed)."""
        for rnd in job.rounds:
            for entry in rnd["files"]:
                ref, got = entry.get("budget_ref"), collected.get(entry["batch"] or "")
                if ref is None or got is None or ref in settled:
                    continue
                settled.add(ref)
                tokens_in = sum(o.tokens_in for o in got.outputs.values())
                tokens_out = sum(o.tokens_out for o in got.outputs.values())
                if ref in holds:
                    budget.settle(holds.pop(ref), tokens_in, tokens_out)
                else:  # submitted by an earlier process: its reservation is in the store's ledger
                    budget.settle_earlier(ref, tokens_in, tokens_out)

    def _find_orphan(self, key: str, file_id: str) -> str | None:
        """A batch created for this file before its id could be saved (a crash in between)."""
        client = self._api()
        try:
            for batch in self._call(lambda: client.batches.list(limit=100)):
                meta = getattr(batch, "metadata", None) or {}
                if batch.input_file_id == file_id and meta.get("negclean_job") == key:
                    return str(batch.id)
        except BackendError:
            raise
        except Exception:  # listing is a convenience; without it the file is submitted again
            log.debug("listing batches failed", exc_info=True)
        return None

    def _collect(self, job: JobState, collected: dict[str, _Collected], deadline: float) -> list[tuple[str, str]]:
        """Wait for the job's batches and read the files of those that finished; returns (id, status) of
        the ones still running at the deadline."""
        todo = [e["batch"] for r in job.rounds for e in r["files"] if e["batch"] and e["batch"] not in collected]
        finished, running = self._wait(todo, deadline)
        for batch_id in todo:
            batch = finished.get(batch_id)
            if batch is None:
                continue
            got = _Collected(batch.status)
            if batch.status == "failed":
                self.stats.failed_batches += 1
                errors = getattr(getattr(batch, "errors", None), "data", None) or []
                message = "; ".join(f"{getattr(e, 'code', '')}: {getattr(e, 'message', '')}" for e in errors)
                got.error = f"batch {batch_id} failed: {self._online._redact(message) or 'no reason given'}"
            for row in self._download(batch.output_file_id):
                out = self._row_output(row)
                if isinstance(out, CallOutput):
                    got.outputs[row["custom_id"]] = out
                else:
                    got.failures[row["custom_id"]] = out
            for row in self._download(batch.error_file_id):
                got.failures.setdefault(row["custom_id"], self._row_failure(row))
            collected[batch_id] = got
        return running

    def _merge(
        self, job: JobState, collected: Mapping[str, _Collected]
    ) -> tuple[dict[str, CallOutput], dict[str, _Failure]]:
        """Answers and failures over every round, in order (an answer in any round wins)."""
        results: dict[str, CallOutput] = {}
        failures: dict[str, _Failure] = {}
        job.errors = []
        for rnd in job.rounds:
            for entry in rnd["files"]:
                got = collected.get(entry["batch"] or "")
                if got is None:
                    continue
                if got.error:
                    job.errors.append(got.error)
                    for cid in entry["ids"]:
                        if cid not in results:
                            failures[cid] = _Failure(got.error, final=False)
                results.update(got.outputs)
                for cid, failure in got.failures.items():
                    if cid not in results:
                        failures[cid] = failure
                for cid in got.outputs:
                    failures.pop(cid, None)
        return results, failures

    def _wait(self, batch_ids: Sequence[str], deadline: float) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Poll until each batch is terminal or the deadline passes: (terminal batches, (id, status) of the rest)."""
        client = self._api()
        done: dict[str, Any] = {}
        status: dict[str, str] = {b: "unknown" for b in batch_ids}
        interval = self.config.poll_interval
        while True:
            for batch_id in batch_ids:
                if batch_id in done:
                    continue
                self.stats.polls += 1
                try:
                    batch = self._call(
                        lambda batch_id=batch_id: client.batches.retrieve(batch_id), gone=self._not_visible(batch_id)
                    )
                except BackendError:
                    raise
                except Exception as exc:  # the batch lives on the server: a failed poll is retried
                    log.warning("%s: polling %s failed (%s); retrying", self.judge_id, batch_id, exc)
                    continue
                status[batch_id] = batch.status
                if batch.status in TERMINAL:
                    done[batch_id] = batch
            if len(done) == len(batch_ids) or time.monotonic() >= deadline:
                return done, [(b, status[b]) for b in batch_ids if b not in done]
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 1.5, self.config.max_poll_interval)

    def _download(self, file_id: str | None) -> Iterator[dict[str, Any]]:
        if not file_id:
            return
        client = self._api()
        data = self._call(lambda: client.files.content(file_id), gone=lambda: None)
        if data is None:
            # result files are deleted after a while (30 days at OpenAI): their requests count as missing
            log.warning("%s: result file %s is gone; its requests will be submitted again", self.judge_id, file_id)
            return
        data = data.content
        for n, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                log.warning(
                    "%s: line %d of result file %s is not JSON; its request counts as missing",
                    self.judge_id,
                    n,
                    file_id,
                )
                continue
            if isinstance(row, dict) and isinstance(row.get("custom_id"), str):
                yield row

    def _row_output(self, row: dict[str, Any]) -> CallOutput | _Failure:
        response = row.get("response") or {}
        status = response.get("status_code")
        if status != 200:
            return self._row_failure(row)
        messages = ()  # only used to count tokens when the answer has no usage
        try:
            out = self._online._output(response.get("body"), messages)
        except ValueError as exc:
            self.stats.failed_rows += 1
            return _Failure(f"unusable answer: {self._online._redact(str(exc))}", final=False)
        self.stats.succeeded += 1
        self.stats.tokens_in += out.tokens_in
        self.stats.tokens_out += out.tokens_out
        return out

    def _row_failure(self, row: dict[str, Any]) -> _Failure:
        error = row.get("error") or {}
        if error:
            code = error.get("code") or "error"
            if code == "batch_expired":
                self.stats.expired_rows += 1
            else:
                self.stats.failed_rows += 1
            return _Failure(self._online._redact(f"{code}: {error.get('message') or ''}".strip()), final=False)
        response = row.get("response") or {}
        status = response.get("status_code")
        body = response.get("body") or {}
        inner = body.get("error") if isinstance(body, dict) else None
        message = inner.get("message") if isinstance(inner, dict) else str(body)[:200]
        self.stats.failed_rows += 1
        retry = status in RETRY_STATUS
        return _Failure(
            f"HTTP {status}{'' if retry else ' (not retried)'}: {self._online._redact(str(message))[:300]}",
            final=not retry,
        )

    # ---- client
    def _api(self) -> Any:
        if self._client is None:
            openai = require("openai", extra="openai", purpose="The 'openai-batch' judge backend")
            cfg = self.config
            common = {"api_key": self._online._api_key(), "max_retries": 4, "timeout": cfg.timeout}
            if cfg.azure_api_version:
                endpoint = self._online._endpoint()
                if not endpoint:
                    raise BackendError(
                        "Azure OpenAI needs its endpoint: set base_url in the judge config or the "
                        "AZURE_OPENAI_ENDPOINT variable."
                    )
                self._client = openai.AzureOpenAI(azure_endpoint=endpoint, api_version=cfg.azure_api_version, **common)
            else:
                self._client = openai.OpenAI(base_url=cfg.base_url, **common)
        return self._client

    def _call(self, fn: Any, *, gone: Any = None) -> Any:
        """Run one API call. HTTP 404 returns ``gone()`` when given; other configuration errors (401/403/404)
        become BackendError."""
        openai = require("openai", extra="openai", purpose="The 'openai-batch' judge backend")
        try:
            return fn()
        except openai.APIStatusError as exc:
            if exc.status_code == 404 and gone is not None:
                return gone()
            if exc.status_code in (401, 403, 404):
                raise self._online._config_error(exc, str(self._api().base_url)) from None
            raise

    def _not_visible(self, batch_id: str) -> Any:
        def fail() -> None:
            raise BackendError(
                f"batch {batch_id} is not visible with this key (another project or organization?). "
                f"Use the key that submitted it, or delete the job state in "
                f"{self.config.state_dir or default_state_dir()} to submit again (and pay again)"
            )

        return fail


@dataclass(frozen=True)
class _Failure:
    reason: str
    final: bool = False  # True: do not resubmit in this run


_F = _Failure("", final=False)


@dataclass
class _Collected:
    """What one finished batch gave: answers and failures by custom id."""

    status: str
    outputs: dict[str, CallOutput] = field(default_factory=dict)
    failures: dict[str, _Failure] = field(default_factory=dict)
    error: str | None = None


@dataclass
class JobState:
    """What a job submitted, saved as JSON after every change (the file is the job's memory across restarts)."""

    path: Path
    key: str
    data: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, root: Path, key: str, *, fingerprint: str, endpoint: str, requests: int) -> JobState:
        root.mkdir(parents=True, exist_ok=True)
        job = cls(root / f"{key}.json", key)
        job.data = {
            "version": 1,
            "key": key,
            "fingerprint": fingerprint,
            "endpoint": endpoint,
            "requests": requests,
            "created": time.time(),
            "rounds": [],
        }
        job.reload()
        return job

    @property
    def rounds(self) -> list[dict[str, Any]]:
        rounds: list[dict[str, Any]] = self.data["rounds"]  # written by open() and reload() as a list of objects
        return rounds

    def reload(self) -> None:
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text())
            except ValueError:
                log.warning("batch job state %s is unreadable; starting the job afresh", self.path)
                return
            if loaded.get("key") == self.key and isinstance(loaded.get("rounds"), list):
                self.data = loaded

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=1))

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock: two processes never submit the same job twice (POSIX)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        with open(self.path.with_suffix(".lock"), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
