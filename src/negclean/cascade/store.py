"""The judgment store: every verdict any judge ever gave, keyed so that no pair is paid for twice.

Key: (judge fingerprint, query hash, positives hash, candidate passage hash). The same pair in a
rerun, a resumed run or another dataset finds its verdict here. The fingerprint covers the content of
the files a judge reads (``JudgeConfig.content_identity``); judges that decide by ids (qrels) are keyed
by query id and docid instead of texts (``task_keys``). SQLite in WAL mode, so several
processes can share one store; a task's verdicts and its raw output commit in one transaction, so
a crash leaves either all of a call or none of it.

Opening is safe when several processes create or open one store at the same moment (the WAL switch is
skipped when the file is in WAL mode already, and it and the schema creation are retried with backoff
while another process holds the lock). Writes made from an event loop (``put_later``) go through one
writer thread, so a lock held by another process never stalls calls in flight; ``flush`` waits for them
and raises the first write error in the caller's thread. SQLite errors a user can act on (not a
database, another schema, read-only, disk full) become ``StoreError`` naming the file.
"""

from __future__ import annotations

import os
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from functools import lru_cache, partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from negclean.errors import StoreError
from negclean.judge.base import Grade, JudgeTask, Label, TaskResult, Verdict

_T = TypeVar("_T")
#: a job for the writer thread: (function, its arguments, the Future that gets its result); None stops it
_Job = tuple[Callable[..., Any], tuple[Any, ...], "Future[Any]"] | None

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    fingerprint   TEXT NOT NULL,
    query_key     TEXT NOT NULL,
    positives_key TEXT NOT NULL,
    passage_key   TEXT NOT NULL,
    judge_id      TEXT NOT NULL,
    label         TEXT NOT NULL,
    grade         TEXT,
    confidence    REAL,
    reason        TEXT NOT NULL DEFAULT '',
    call_id       TEXT,
    created       REAL NOT NULL,
    PRIMARY KEY (fingerprint, query_key, positives_key, passage_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calls (
    call_id     TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    raw         TEXT,
    tokens_in   INTEGER NOT NULL DEFAULT 0,
    tokens_out  INTEGER NOT NULL DEFAULT 0,
    created     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS judges (
    fingerprint TEXT PRIMARY KEY,
    judge_id    TEXT NOT NULL,
    config      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS human_labels (
    annotator     TEXT NOT NULL,
    query_key     TEXT NOT NULL,
    positives_key TEXT NOT NULL,
    passage_key   TEXT NOT NULL,
    label         TEXT NOT NULL,
    created       REAL NOT NULL,
    PRIMARY KEY (annotator, query_key, positives_key, passage_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spend (
    scope     TEXT NOT NULL,
    ref       TEXT,
    reserved  REAL NOT NULL,
    cost      REAL,
    created   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_scope ON spend (scope, ref);
"""
#: the 16 bytes every SQLite 3 database file starts with
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: how long opening keeps retrying while other processes hold the lock (seconds)
OPEN_PATIENCE = 60.0

Key = tuple[str, str, str]  # (query_key, positives_key, passage_key)


def task_keys(task: JudgeTask, *, by_id: bool = False) -> list[Key]:
    """The store keys of a task's candidates.

    By content (default): (query text hash, positives hash, passage text hash), so that a verdict serves the
    same pair in any dataset. ``by_id`` for judges that decide by ids (qrels): the query id and each passage's
    docid take the place of the text hashes (``id:`` + id, which no text hash looks like; a missing id falls
    back to the text), so that identical texts under different ids get verdicts of their own.
    """
    inst = task.instance
    pk = inst.positives_key
    if by_id:
        qk = f"id:{inst.query_id}" if inst.query_id else inst.query_key
        passages = (inst.negatives[i] for i in task.candidates)
        return [(qk, pk, f"id:{p.docid}" if p.docid else p.key) for p in passages]
    qk = inst.query_key
    return [(qk, pk, inst.negatives[i].key) for i in task.candidates]


def _verdict(
    judge_id: str, label: str, grade: str | None, confidence: float | None, reason: str, call_id: str | None
) -> Verdict:
    """A Verdict from the columns ``judge_id, label, grade, confidence, reason, call_id`` of a verdicts row."""
    return Verdict(Label(label), confidence, judge_id, Grade(grade) if grade else None, reason, call_id)


def store_error(exc: sqlite3.Error, path: str, doing: str) -> StoreError | None:
    """The StoreError a user can act on for an SQLite error, or None when it is not one of those."""
    text = str(exc).lower()
    if "database or disk is full" in text:
        return StoreError(
            f"judgment store {path}: the disk is full (SQLite: {exc}) while {doing}. Everything "
            "committed before is kept: free some space (or move the store with --store) and rerun "
            "to resume"
        )
    if "readonly" in text or "read-only" in text:
        return StoreError(
            f"judgment store {path} cannot be written (SQLite: {exc}) while {doing}: make the file "
            "and its folder writable (SQLite also writes -wal and -shm files beside it), or give "
            "--store a writable path"
        )
    if "file is not a database" in text or "malformed" in text:
        return StoreError(
            f"{path} is not an SQLite database (SQLite: {exc}): give --store a new file or an "
            "existing negclean judgment store"
        )
    if "unable to open database file" in text or "disk i/o error" in text:
        return StoreError(
            f"judgment store {path} cannot be opened or written (SQLite: {exc}) while {doing}: "
            "check that its folder exists and is writable and that the disk is healthy"
        )
    if "locked" in text or "busy" in text:
        return StoreError(
            f"judgment store {path} stayed locked by another process for over {OPEN_PATIENCE:g} s "
            f"while {doing}: wait for it to finish, or give this run its own --store"
        )
    return None


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


@lru_cache(maxsize=1)
def _expected_columns() -> dict[str, frozenset[str]]:
    """Columns of every table of the schema (read from a scratch database, so it follows _SCHEMA)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(_SCHEMA)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: frozenset(r[1] for r in conn.execute(f"PRAGMA table_info({t})")) for t in tables}
    finally:
        conn.close()


class JudgmentStore:
    """SQLite-backed verdict store. Thread-safe within a process; safe across processes (WAL)."""

    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Job] | None = None
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None  # first failed background write (sticky)
        self._error_raised = False
        self._conn = self._connect()
        try:
            self._retry(self._prepare, "opening it")
        except BaseException:
            self._conn.close()
            raise

    # ---- opening
    def _connect(self) -> sqlite3.Connection:
        if self.path == ":memory:":
            return sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        file = Path(self.path)
        if file.is_dir():
            raise StoreError(
                f"judgment store {file} is a directory, not a database file: give --store a file "
                f"path (e.g. {file / 'judgments.sqlite'})"
            )
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder of judgment store {file} ({exc.strerror}): give --store "
                "a path in a writable folder"
            ) from None
        if file.is_file():
            try:
                with open(file, "rb") as fh:
                    head = fh.read(len(_SQLITE_MAGIC))
            except OSError as exc:
                raise StoreError(f"cannot read judgment store {file} ({exc.strerror}): check its permissions") from None
            if head and head != _SQLITE_MAGIC[: len(head)] or 0 < len(head) < len(_SQLITE_MAGIC):
                raise StoreError(
                    f"{file} is not an SQLite database: give --store a new file or an existing negclean judgment store"
                )
            if not os.access(file, os.W_OK):
                raise StoreError(f"judgment store {file} is read-only: make it writable or give --store another path")
        try:
            return sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise store_error(exc, self.path, "opening it") or exc from None

    def _prepare(self) -> None:
        """Pragmas, WAL switch and schema; run again (by ``_retry``) while another process holds the lock."""
        conn = self._conn
        conn.execute("PRAGMA busy_timeout=60000")
        if self.path != ":memory:":
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":  # switching needs an exclusive lock: skip it when another did it
                conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._check_schema()
        conn.executescript(_SCHEMA)

    def _check_schema(self) -> None:
        """Refuse a database made by something else, or a store whose tables lack columns this version needs."""
        existing = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not existing:
            return
        expected = _expected_columns()
        if "verdicts" not in existing:
            raise StoreError(
                f"{self.path} is an SQLite database but not a negclean judgment store (its tables: "
                f"{', '.join(sorted(existing)[:8])}): give --store a new file or a judgment store"
            )
        for table, columns in expected.items():
            if table not in existing:
                continue
            have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
            missing = sorted(columns - have)
            if missing:
                raise StoreError(
                    f"{self.path}: table '{table}' lacks column(s) {', '.join(missing)}: it was made "
                    "by another program or another version of negclean. Give --store a new file"
                )

    def _retry(self, action: Callable[[], Any], doing: str) -> Any:
        """Run ``action``, retrying with jittered backoff while another process holds the lock."""
        deadline = time.monotonic() + OPEN_PATIENCE
        delay = 0.005
        while True:
            try:
                with self._lock:
                    return action()
            except sqlite3.Error as exc:
                if _locked(exc) and time.monotonic() < deadline:
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.5)
                    continue
                raise store_error(exc, self.path, doing) or exc from None

    def close(self) -> None:
        """Flush background writes (raising the first error not yet raised), then close."""
        try:
            self.flush()
        finally:
            self._stop_writer()
            with self._lock:
                self._conn.close()

    def __enter__(self) -> JudgmentStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # an error is on its way already: a write error here must not replace it
            self.close()
        except Exception:  # noqa: BLE001 - the first error wins; this one is in the log
            import logging

            logging.getLogger(__name__).warning(
                "judgment store %s: a background write failed too", self.path, exc_info=True
            )

    # ---- the writer thread
    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on the store's writer thread (in submission order); its Future holds the result.

        Never blocks on the database: callers on an event loop use this (or ``put_later``)."""
        if self._error is not None:
            raise self._error
        future: Future[Any] = Future()
        with self._lock:
            if self._queue is None or self._writer is None:
                self._queue = queue.SimpleQueue()
                self._writer = threading.Thread(
                    target=self._write_loop, args=(self._queue,), name="negclean-store-writer", daemon=True
                )
                self._writer.start()
            self._queue.put((fn, args, future))
        return future

    def put_later(self, fingerprint: str, task: JudgeTask, result: TaskResult, *, by_id: bool = False) -> Future[Any]:
        """``put`` on the writer thread; raises at once if an earlier background write failed."""
        return self.submit(partial(self.put, by_id=by_id), fingerprint, task, result)

    def flush(self) -> None:
        """Wait until every background write is done; raise the first write error (once)."""
        if self._writer is not None:
            self._wait_idle()
        if self._error is not None and not self._error_raised:
            self._error_raised = True
            raise self._error

    def _wait_idle(self) -> None:
        done: Future[Any] = Future()
        if self._queue is not None:
            self._queue.put((lambda: None, (), done))
            done.exception()

    def _write_loop(self, jobs: queue.SimpleQueue[_Job]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, args, future = job
            if self._error is not None:  # the store is broken (disk full...): later writes are refused
                future.set_exception(self._error)
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread by flush/put_later
                self._error = exc
                future.set_exception(exc)

    def _stop_writer(self) -> None:
        with self._lock:
            writer, jobs = self._writer, self._queue
            self._writer = self._queue = None
        if writer is not None and jobs is not None:
            jobs.put(None)
            writer.join(30)

    def register_judge(self, fingerprint: str, judge_id: str, config_json: str) -> None:
        self._transaction(
            lambda: self._conn.execute(
                "INSERT OR IGNORE INTO judges VALUES (?,?,?)", (fingerprint, judge_id, config_json)
            ),
            "registering a judge",
        )

    def get(self, fingerprint: str, keys: Sequence[Key]) -> dict[Key, Verdict]:
        """Stored verdicts of one judge for these keys (missing keys are absent from the result)."""
        found: dict[Key, Verdict] = {}
        groups: dict[tuple[str, str], list[str]] = {}  # one indexed lookup per (query, positives)
        for qk, pk, ck in dict.fromkeys(keys):
            groups.setdefault((qk, pk), []).append(ck)
        with self._lock:
            for (qk, pk), passages in groups.items():
                for start in range(0, len(passages), 500):
                    part = passages[start : start + 500]
                    rows = self._conn.execute(
                        "SELECT passage_key, judge_id, label, grade, confidence, reason, call_id FROM verdicts "
                        "WHERE fingerprint=? AND query_key=? AND positives_key=? "
                        f"AND passage_key IN ({','.join('?' * len(part))})",
                        [fingerprint, qk, pk, *part],
                    ).fetchall()
                    for ck, *verdict in rows:
                        found[(qk, pk, ck)] = _verdict(*verdict)
        return found

    def put(self, fingerprint: str, task: JudgeTask, result: TaskResult, *, by_id: bool = False) -> int:
        """Store a task's verdicts and raw output in one transaction; returns the number stored.

        Retryable verdicts (failed calls) are not stored. An existing verdict is kept (first wins),
        so two processes judging the same pair cannot leave two different answers.
        """
        now = time.time()
        rows = [
            (
                fingerprint,
                *key,
                v.judge_id,
                v.label.value,
                v.grade.value if v.grade else None,
                v.confidence,
                v.reason,
                v.call_id,
                now,
            )
            for key, v in zip(task_keys(task, by_id=by_id), result.verdicts)
            if not v.retryable
        ]

        def write() -> None:
            if result.call_id is not None and (result.raw is not None or result.tokens_in or result.tokens_out):
                self._conn.execute(
                    "INSERT OR IGNORE INTO calls VALUES (?,?,?,?,?,?)",
                    (result.call_id, fingerprint, result.raw, result.tokens_in, result.tokens_out, now),
                )
            self._conn.executemany("INSERT OR IGNORE INTO verdicts VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)

        self._transaction(write, "storing verdicts")
        return len(rows)

    def _transaction(self, write: Callable[[], _T], doing: str) -> _T:
        """Run ``write`` in one IMMEDIATE transaction; an SQLite error a user can act on becomes StoreError.

        A failed ROLLBACK (SQLite may have rolled back already, e.g. on a full disk) never hides the error."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                out = write()
                self._conn.execute("COMMIT")
                return out
            except BaseException as exc:
                if self._conn.in_transaction:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if isinstance(exc, sqlite3.Error):
                    raise store_error(exc, self.path, doing) or exc from None
                raise

    # ---- spend ledger (cascade.budget): one row per reservation, settled to the actual cost
    def spent(self, scope: str) -> float:
        """What a scope has spent: settled costs plus unsettled reservations (calls whose cost is unknown)."""
        self.flush()
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(SUM(COALESCE(cost, reserved)), 0) FROM spend WHERE scope=?", (scope,)
            ).fetchone()
        return float(row[0])

    def reserve_spend(
        self, scope: str, amount: float, ref: str | None = None, *, cap: float | None = None
    ) -> int | None:
        """Record a reservation; returns its row id (for ``settle_spend``), or None when ``cap`` is given and the
        scope's ledger (settled costs + open reservations, every process's) plus ``amount`` would pass it. Check and
        insert are one IMMEDIATE transaction, so processes sharing a scope can never reserve past the cap together."""

        def write() -> int | None:
            if cap is not None:
                (total,) = self._conn.execute(
                    "SELECT COALESCE(SUM(COALESCE(cost, reserved)), 0) FROM spend WHERE scope=?", (scope,)
                ).fetchone()
                if float(total) + amount > cap + 1e-12:
                    return None
            return self._conn.execute(
                "INSERT INTO spend (scope, ref, reserved, cost, created) VALUES (?,?,?,NULL,?)",
                (scope, ref, amount, time.time()),
            ).lastrowid

        return self._transaction(write, "recording a reservation")

    def settle_spend(
        self, row: int | None, cost: float, *, scope: str | None = None, ref: str | None = None
    ) -> float | None:
        """Set a reservation's actual cost, by row id or by (scope, ref) for a reservation an earlier process
        made; returns the amount it held before (None when no unsettled reservation matched)."""

        def write() -> float | None:
            where, args = ("rowid=?", (row,)) if row is not None else ("scope=? AND ref=?", (scope, ref))
            found = self._conn.execute(
                f"SELECT rowid, reserved FROM spend WHERE {where} AND cost IS NULL", args
            ).fetchone()
            if found is None:
                return None
            self._conn.execute("UPDATE spend SET cost=? WHERE rowid=?", (cost, found[0]))
            return float(found[1])

        return self._transaction(write, "settling a reservation")

    def raw_output(self, call_id: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT raw FROM calls WHERE call_id=?", (call_id,)).fetchone()
        return row[0] if row else None

    def call_tokens(self, call_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """(tokens_in, tokens_out) of each stored call among ``call_ids`` (absent ids are left out)."""
        unique = list(dict.fromkeys(c for c in call_ids if c))
        out: dict[str, tuple[int, int]] = {}
        with self._lock:
            for start in range(0, len(unique), 500):
                part = unique[start : start + 500]
                rows = self._conn.execute(
                    f"SELECT call_id, tokens_in, tokens_out FROM calls WHERE call_id IN ({','.join('?' * len(part))})",
                    part,
                ).fetchall()
                out.update({cid: (int(a), int(b)) for cid, a, b in rows})
        return out

    def verdicts_of(self, fingerprint: str) -> dict[Key, Verdict]:
        """Every stored verdict of one judge, by key (judge distillation, benchmarks)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT query_key, positives_key, passage_key, judge_id, label, grade, confidence, reason, call_id "
                "FROM verdicts WHERE fingerprint=?",
                (fingerprint,),
            ).fetchall()
        return {(qk, pk, ck): _verdict(*verdict) for qk, pk, ck, *verdict in rows}

    def judges(self) -> list[tuple[str, str, str]]:
        """(fingerprint, judge_id, config JSON) of every judge registered in this store."""
        with self._lock:
            return [tuple(r) for r in self._conn.execute("SELECT fingerprint, judge_id, config FROM judges")]

    def count(self, fingerprint: str | None = None) -> int:
        with self._lock:
            if fingerprint is None:
                return int(self._conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])
            return int(
                self._conn.execute("SELECT COUNT(*) FROM verdicts WHERE fingerprint=?", (fingerprint,)).fetchone()[0]
            )

    def integrity_ok(self) -> bool:
        with self._lock:
            return bool(self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    # Human labels (annotation app, judge benchmarks)
    def put_human_label(self, annotator: str, key: Key, label: str) -> None:
        self._transaction(
            lambda: self._conn.execute(
                "INSERT OR REPLACE INTO human_labels VALUES (?,?,?,?,?,?)", (annotator, *key, label, time.time())
            ),
            "storing a label",
        )

    def human_labels(self, annotator: str | None = None) -> Iterable[tuple[str, Key, str]]:
        with self._lock:
            q = "SELECT annotator, query_key, positives_key, passage_key, label FROM human_labels"
            rows = (
                self._conn.execute(q + " WHERE annotator=?", (annotator,)) if annotator else self._conn.execute(q)
            ).fetchall()
        return [(a, (qk, pk, ck), lab) for a, qk, pk, ck, lab in rows]
