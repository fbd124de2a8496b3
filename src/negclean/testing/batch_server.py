"""A loopback server with OpenAI's Files and Batches endpoints, with seeded faults, for tests and benchmarks.

It implements the request and response shapes a Batch API client meets::

    POST /v1/files                  multipart: purpose=batch, file=<JSONL>   -> file object
    GET  /v1/files/{id}             file object;  GET /v1/files/{id}/content -> the file's bytes
    POST /v1/batches                {input_file_id, endpoint, completion_window, metadata} -> batch object
    GET  /v1/batches/{id}           batch object; POST /v1/batches/{id}/cancel; GET /v1/batches (list)

A batch moves one status per ``polls_per_status`` reads of it: ``validating`` -> ``in_progress`` ->
``finalizing`` -> ``completed``, or ``failed`` (validation: bad lines, duplicate ``custom_id``, more than
``max_requests`` lines or ``max_bytes`` bytes, or scripted), or ``expired`` (scripted: a share of the
requests finish, the rest come back in the error file as ``batch_expired``). Finished requests are answered
by a responder (see ``negclean.testing.responders``) as chat completions in the output file; failed ones go
to the error file (HTTP 500, 429 or 400 bodies); ``missing`` ones are in neither file, as a client must be
ready for. Files list rows in a shuffled order. Faults are drawn per request from a RNG seeded by the plan's
seed, the ``custom_id`` and how often that id was submitted, so a resubmission meets a fresh draw and the
same plan gives the same faults whatever the arrival order::

    with BatchTestServer(faults=BatchFaultPlan(missing=0.1, failed=0.1)) as srv:
        judge = OpenAIBatchJudge(OpenAIBatchJudgeConfig(model="m", base_url=srv.base_url, poll_interval=0.01))
        ...
        srv.batches, srv.files  # what was submitted
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from negclean.testing.openai_server import _count, _logprobs
from negclean.testing.responders import OverlapOracle, Reply

REQUEST_FAULTS = ("missing", "failed", "rate_limited", "bad_request", "truncated")
BATCH_OUTCOMES = ("ok", "fail_validation", "expire")


@dataclass(frozen=True)
class BatchFaultPlan:
    """Per-request fault probabilities (summing to at most 1) and scripted batch outcomes.

    Args:
        seed: RNG seed.
        missing: the request is in neither the output nor the error file.
        failed: error file, HTTP 500 (a client should resubmit it).
        rate_limited: error file, HTTP 429.
        bad_request: error file, HTTP 400 ``context_length_exceeded`` (resubmitting does not help).
        truncated: output file, half the content with ``finish_reason: "length"``.
        batches: outcome of the n-th created batch (``ok``, ``fail_validation``, ``expire``); later ones are ``ok``.
        expire_share: share of an expiring batch's requests that finish before it expires.
    """

    seed: int = 0
    missing: float = 0.0
    failed: float = 0.0
    rate_limited: float = 0.0
    bad_request: float = 0.0
    truncated: float = 0.0
    batches: Sequence[str] = ()
    expire_share: float = 0.5

    def __post_init__(self) -> None:
        total = sum(getattr(self, name) for name in REQUEST_FAULTS)
        if total > 1.0 + 1e-9 or any(getattr(self, name) < 0 for name in REQUEST_FAULTS):
            raise ValueError(f"fault rates must be >= 0 and sum to at most 1 (sum is {total:.3f})")
        unknown = [b for b in self.batches if b not in BATCH_OUTCOMES]
        if unknown:
            raise ValueError(f"unknown batch outcome(s) {unknown}; use {', '.join(BATCH_OUTCOMES)}")

    def draw(self, rng: random.Random) -> str:
        u = rng.random()
        for name in REQUEST_FAULTS:
            u -= getattr(self, name)
            if u < 0:
                return name
        return "ok"


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def obj(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class BatchRecord:
    """A batch as the server keeps it; ``custom_ids`` are the requests of its input file."""

    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict | None
    outcome: str
    created_at: int
    status: str = "validating"
    polls: int = 0
    custom_ids: list[str] = field(default_factory=list)
    faults: Counter = field(default_factory=Counter)
    errors: list[dict] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    times: dict[str, int] = field(default_factory=dict)

    def obj(self) -> dict[str, Any]:
        t = self.times
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": t.get("in_progress"),
            "expires_at": self.created_at + 86400,
            "finalizing_at": t.get("finalizing"),
            "completed_at": t.get("completed"),
            "failed_at": t.get("failed"),
            "expired_at": t.get("expired"),
            "cancelling_at": t.get("cancelling"),
            "cancelled_at": t.get("cancelled"),
            "request_counts": dict(self.counts),
            "metadata": self.metadata,
        }


class BatchTestServer:
    """Files + Batches endpoints on 127.0.0.1 (random port) in a background thread.

    Args:
        responder: chat request body -> content (str) or ``Reply``; default ``OverlapOracle()``.
        faults: per-request faults and scripted batch outcomes.
        polls_per_status: reads of a batch before it moves to its next status.
        max_requests / max_bytes: validation limits of one input file (the API's: 50,000 and 200 MB).
        require_key: when set, requests must carry ``Authorization: Bearer <key>``, else 401.
    """

    def __init__(
        self,
        *,
        responder: Any = None,
        faults: BatchFaultPlan | None = None,
        polls_per_status: int = 1,
        max_requests: int = 50_000,
        max_bytes: int = 200 * 1000 * 1000,
        require_key: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.responder = responder or OverlapOracle()
        self.faults = faults or BatchFaultPlan()
        self.polls_per_status = polls_per_status
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.require_key = require_key
        self.host = host
        self.port = 0
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, BatchRecord] = {}
        self.submissions: Counter = Counter()  # custom_id -> times submitted in a valid batch
        self.calls: Counter = Counter()  # (method, route) -> count
        self._lock = threading.Lock()
        self._serial = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # ---- what was submitted (for tests)
    def uploads(self) -> list[StoredFile]:
        with self._lock:
            return [f for f in self.files.values() if f.purpose == "batch"]

    def batch_list(self) -> list[BatchRecord]:
        with self._lock:
            return list(self.batches.values())

    # ---- lifecycle
    def start(self) -> BatchTestServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(target=self._serve, name="batch-test-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("batch test server did not start within 15 s")
        if self._startup_error is not None:
            raise RuntimeError(f"batch test server failed to start: {self._startup_error}") from self._startup_error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
        self._thread = None

    def __enter__(self) -> BatchTestServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _serve(self) -> None:
        from aiohttp import web

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{id}", self._file)
        app.router.add_get("/v1/files/{id}/content", self._content)
        app.router.add_post("/v1/batches", self._create)
        app.router.add_get("/v1/batches", self._list)
        app.router.add_get("/v1/batches/{id}", self._retrieve)
        app.router.add_post("/v1/batches/{id}/cancel", self._cancel)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        try:
            _count("warm up")
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        except BaseException as exc:  # reported by start()
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    # ---- handlers
    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._serial += 1
            return f"{prefix}-{self._serial:06d}"

    def _denied(self, request: Any, route: str) -> Any:
        from aiohttp import web

        with self._lock:
            self.calls[(request.method, route)] += 1
        if self.require_key is not None and request.headers.get("Authorization") != f"Bearer {self.require_key}":
            return _error(web, 401, "Incorrect API key provided.", "invalid_api_key")
        return None

    async def _upload(self, request: Any) -> Any:
        from aiohttp import web

        if (denied := self._denied(request, "files")) is not None:
            return denied
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if upload is None or not hasattr(upload, "file"):
            return _error(web, 400, "multipart field 'file' is required", "invalid_request")
        if purpose != "batch":
            return _error(web, 400, f"purpose must be 'batch' here, not {purpose!r}", "invalid_request")
        stored = StoredFile(
            self._next_id("file"), upload.filename or "upload.jsonl", "batch", upload.file.read(), int(time.time())
        )
        with self._lock:
            self.files[stored.id] = stored
        return web.json_response(stored.obj())

    async def _file(self, request: Any) -> Any:
        from aiohttp import web

        if (denied := self._denied(request, "file")) is not None:
            return denied
        stored = self.files.get(request.match_info["id"])
        if stored is None:
            return _error(web, 404, "No such File object", "not_found")
        return web.json_response(stored.obj())

    async def _content(self, request: Any) -> Any:
        from aiohttp import web

        if (denied := self._denied(request, "content")) is not None:
            return denied
        stored = self.files.get(request.match_info["id"])
        if stored is None:
            return _error(web, 404, "No such File object", "not_found")
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _create(self, request: Any) -> Any:
        from aiohttp import web

        if (denied := self._denied(request, "batches")) is not None:
            return denied
        try:
            body = await request.json()
            input_file_id = body["input_file_id"]
            endpoint = body["endpoint"]
        except (ValueError, KeyError, TypeError):
            return _error(web, 400, "body must be JSON with input_file_id and endpoint", "invalid_request")
        if input_file_id not in self.files:
            return _error(web, 400, f"input file {input_file_id} not found", "invalid_request")
        if endpoint not in ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses"):
            return _error(web, 400, f"unsupported endpoint {endpoint}", "invalid_request")
        with self._lock:
            n = len(self.batches)
        outcome = self.faults.batches[n] if n < len(self.faults.batches) else "ok"
        record = BatchRecord(
            self._next_id("batch"),
            input_file_id,
            endpoint,
            body.get("completion_window", "24h"),
            body.get("metadata"),
            outcome,
            int(time.time()),
        )
        with self._lock:
            self.batches[record.id] = record
        return web.json_response(record.obj())

    async def _retrieve(self, request: Any) -> Any:
        from aiohttp import web

        if (denied := self._denied(request, "batch")) is not None:
            return denied
        with self._lock:
            record = self.batches.get(request.match_info["id"])
        if record is None:
            return _error(web, 404, "No such Batch object", "not_found")
        self._advance(record)
        return web.json_response(record.obj())

    async def _list(self, request: Any) -> Any:
        from aiohttp import web

        if (denied := self._denied(request, "list")) is not None:
            return denied
        limit = int(request.query.get("limit", "20"))
        records = list(reversed(self.batch_list()))[:limit]  # newest first, as the API lists them
        data = [r.obj() for r in records]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": False,
            }
        )

    async def _cancel(self, request: Any) -> Any:
        from aiohttp import web

        if (denied := self._denied(request, "cancel")) is not None:
            return denied
        record = self.batches.get(request.match_info["id"])
        if record is None:
            return _error(web, 404, "No such Batch object", "not_found")
        if record.status in ("validating", "in_progress"):
            record.status = "cancelled"
            record.times["cancelled"] = int(time.time())
        return web.json_response(record.obj())

    # ---- the batch's life
    def _advance(self, record: BatchRecord) -> None:
        if record.status in ("completed", "failed", "expired", "cancelled"):
            return
        record.polls += 1
        if record.polls < self.polls_per_status:
            return
        record.polls = 0
        now = int(time.time())
        if record.status == "validating":
            problems = self._validate(record)
            if problems:
                record.status, record.errors = "failed", problems
                record.times["failed"] = now
                return
            for cid in record.custom_ids:
                self.submissions[cid] += 1
            record.status = "in_progress"
            record.counts["total"] = len(record.custom_ids)
            record.times["in_progress"] = now
        elif record.status == "in_progress":
            record.status = "finalizing"
            record.times["finalizing"] = now
        elif record.status == "finalizing":
            self._finish(record)

    def _validate(self, record: BatchRecord) -> list[dict]:
        data = self.files[record.input_file_id].data
        if record.outcome == "fail_validation":
            return [
                {
                    "code": "scripted_failure",
                    "message": "The batch failed validation (scripted).",
                    "param": None,
                    "line": None,
                }
            ]
        if len(data) > self.max_bytes:
            return [
                {
                    "code": "file_too_large",
                    "message": f"The input file is {len(data)} bytes; the limit is {self.max_bytes}.",
                    "param": None,
                    "line": None,
                }
            ]
        ids: list[str] = []
        for lineno, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                cid, method, url, body = row["custom_id"], row["method"], row["url"], row["body"]
            except (ValueError, KeyError, TypeError):
                return [
                    {
                        "code": "invalid_json_line",
                        "message": "This line is not a valid batch request.",
                        "param": None,
                        "line": lineno,
                    }
                ]
            if method != "POST" or url != record.endpoint or not isinstance(body, dict) or "model" not in body:
                return [
                    {
                        "code": "invalid_request",
                        "message": "Requests must POST to the batch's endpoint with a body naming a model.",
                        "param": None,
                        "line": lineno,
                    }
                ]
            ids.append(cid)
        if len(ids) > self.max_requests:
            return [
                {
                    "code": "too_many_requests",
                    "message": f"{len(ids)} requests in one batch; the limit is {self.max_requests}.",
                    "param": None,
                    "line": None,
                }
            ]
        if len(set(ids)) != len(ids):
            dup = next(c for c, k in Counter(ids).items() if k > 1)
            return [
                {
                    "code": "duplicate_custom_id",
                    "message": f"The custom_id {dup!r} appears more than once.",
                    "param": "custom_id",
                    "line": None,
                }
            ]
        record.custom_ids = ids
        return []

    def _finish(self, record: BatchRecord) -> None:
        rows = [json.loads(line) for line in self.files[record.input_file_id].data.splitlines() if line.strip()]
        outputs: list[dict] = []
        errors: list[dict] = []
        expire_after = int(len(rows) * self.faults.expire_share) if record.outcome == "expire" else len(rows)
        for i, row in enumerate(rows):
            cid = row["custom_id"]
            req_id = f"req_{self._next_id('r')}"
            line_id = f"batch_req_{self._next_id('br')}"
            if i >= expire_after:
                record.faults["expired"] += 1
                errors.append(
                    {
                        "id": line_id,
                        "custom_id": cid,
                        "response": None,
                        "error": {
                            "code": "batch_expired",
                            "message": "This request could not be executed before the completion window expired.",
                        },
                    }
                )
                continue
            rng = random.Random(f"{self.faults.seed}:{cid}:{self.submissions[cid]}")
            fault = self.faults.draw(rng)
            record.faults[fault] += 1
            if fault == "missing":
                continue
            if fault in ("failed", "rate_limited", "bad_request"):
                status = {"failed": 500, "rate_limited": 429, "bad_request": 400}[fault]
                message = {
                    500: "The server had an error processing your request.",
                    429: "Rate limit reached.",
                    400: "This model's maximum context length is 128000 tokens.",
                }[status]
                errors.append(
                    {
                        "id": line_id,
                        "custom_id": cid,
                        "error": None,
                        "response": {
                            "status_code": status,
                            "request_id": req_id,
                            "body": {
                                "error": {"message": message, "type": "server_error", "param": None, "code": None}
                            },
                        },
                    }
                )
                continue
            outputs.append(
                {
                    "id": line_id,
                    "custom_id": cid,
                    "error": None,
                    "response": {
                        "status_code": 200,
                        "request_id": req_id,
                        "body": self._completion(row["body"], fault, rng),
                    },
                }
            )
        shuffle = random.Random(f"{self.faults.seed}:{record.id}")
        shuffle.shuffle(outputs)
        shuffle.shuffle(errors)
        now = int(time.time())
        if outputs:
            record.output_file_id = self._store_result(f"{record.id}_output.jsonl", outputs)
        if errors:
            record.error_file_id = self._store_result(f"{record.id}_error.jsonl", errors)
        record.counts = {"total": len(rows), "completed": len(outputs), "failed": len(errors)}
        record.status = "expired" if record.outcome == "expire" else "completed"
        record.times[record.status] = now

    def _store_result(self, name: str, rows: list[dict]) -> str:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        stored = StoredFile(self._next_id("file"), name, "batch_output", data, int(time.time()))
        with self._lock:
            self.files[stored.id] = stored
        return stored.id

    def _completion(self, body: dict, fault: str, rng: random.Random) -> dict:
        reply = self.responder(body)
        if isinstance(reply, str):
            reply = Reply(reply)
        content, finish = reply.content, reply.finish_reason
        if fault == "truncated":
            content, finish = content[: len(content) // 2], "length"
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": finish,
            "logprobs": None,
        }
        if body.get("logprobs"):
            choice["logprobs"] = {"content": _logprobs(content, reply, int(body.get("top_logprobs") or 0))}
        tokens_in = sum(3 + _count(str(m.get("content") or "")) for m in body.get("messages", [])) + 3
        tokens_out = _count(content)
        return {
            "id": f"chatcmpl-{rng.getrandbits(48):012x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [choice],
            "usage": {
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        }


def _error(web: Any, status: int, message: str, code: str) -> Any:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": code}}, status=status)
