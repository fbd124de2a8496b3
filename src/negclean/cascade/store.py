"""The judgment store: every verdict any judge ever gave, keyed so that no pair is paid for twice.

Key: (judge fingerprint, query hash, positives hash, candidate passage hash). The same pair in a
rerun, a resumed run or another dataset finds its verdict here. SQLite in WAL mode, so several
processes can share one store; a task's verdicts and its raw output commit in one transaction, so
a crash leaves either all of a call or none of it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

from negclean.judge.base import Grade, JudgeTask, Label, TaskResult, Verdict

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
"""

Key = tuple[str, str, str]  # (query_key, positives_key, passage_key)


def task_keys(task: JudgeTask) -> list[Key]:
    inst = task.instance
    qk, pk = inst.query_key, inst.positives_key
    return [(qk, pk, inst.negatives[i].key) for i in task.candidates]


def _verdict(judge_id: str, label: str, grade: str | None, confidence: float | None, reason: str,
             call_id: str | None) -> Verdict:
    """A Verdict from the columns ``judge_id, label, grade, confidence, reason, call_id`` of a verdicts row."""
    return Verdict(Label(label), confidence, judge_id, Grade(grade) if grade else None, reason, call_id)


class JudgmentStore:
    """SQLite-backed verdict store. Thread-safe within a process; safe across processes (WAL)."""

    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA busy_timeout=60000")
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "JudgmentStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def register_judge(self, fingerprint: str, judge_id: str, config_json: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO judges VALUES (?,?,?)", (fingerprint, judge_id, config_json))

    def get(self, fingerprint: str, keys: Sequence[Key]) -> dict[Key, Verdict]:
        """Stored verdicts of one judge for these keys (missing keys are absent from the result)."""
        found: dict[Key, Verdict] = {}
        groups: dict[tuple[str, str], list[str]] = {}  # one indexed lookup per (query, positives)
        for qk, pk, ck in dict.fromkeys(keys):
            groups.setdefault((qk, pk), []).append(ck)
        with self._lock:
            for (qk, pk), passages in groups.items():
                for start in range(0, len(passages), 500):
                    part = passages[start:start + 500]
                    rows = self._conn.execute(
                        "SELECT passage_key, judge_id, label, grade, confidence, reason, call_id FROM verdicts "
                        "WHERE fingerprint=? AND query_key=? AND positives_key=? "
                        f"AND passage_key IN ({','.join('?' * len(part))})", [fingerprint, qk, pk, *part]).fetchall()
                    for ck, *verdict in rows:
                        found[(qk, pk, ck)] = _verdict(*verdict)
        return found

    def put(self, fingerprint: str, task: JudgeTask, result: TaskResult) -> int:
        """Store a task's verdicts and raw output in one transaction; returns the number stored.

        Retryable verdicts (failed calls) are not stored. An existing verdict is kept (first wins),
        so two processes judging the same pair cannot leave two different answers.
        """
        now = time.time()
        rows = [
            (fingerprint, *key, v.judge_id, v.label.value, v.grade.value if v.grade else None, v.confidence,
             v.reason, v.call_id, now)
            for key, v in zip(task_keys(task), result.verdicts) if not v.retryable
        ]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if result.call_id is not None and (result.raw is not None or result.tokens_in or result.tokens_out):
                    self._conn.execute("INSERT OR IGNORE INTO calls VALUES (?,?,?,?,?,?)",
                                       (result.call_id, fingerprint, result.raw, result.tokens_in,
                                        result.tokens_out, now))
                self._conn.executemany("INSERT OR IGNORE INTO verdicts VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return len(rows)

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
                part = unique[start:start + 500]
                rows = self._conn.execute(
                    f"SELECT call_id, tokens_in, tokens_out FROM calls WHERE call_id IN ({','.join('?' * len(part))})",
                    part).fetchall()
                out.update({cid: (int(a), int(b)) for cid, a, b in rows})
        return out

    def verdicts_of(self, fingerprint: str) -> dict[Key, Verdict]:
        """Every stored verdict of one judge, by key (judge distillation, benchmarks)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT query_key, positives_key, passage_key, judge_id, label, grade, confidence, reason, call_id "
                "FROM verdicts WHERE fingerprint=?", (fingerprint,)).fetchall()
        return {(qk, pk, ck): _verdict(*verdict) for qk, pk, ck, *verdict in rows}

    def judges(self) -> list[tuple[str, str, str]]:
        """(fingerprint, judge_id, config JSON) of every judge registered in this store."""
        with self._lock:
            return [tuple(r) for r in self._conn.execute("SELECT fingerprint, judge_id, config FROM judges")]

    def count(self, fingerprint: str | None = None) -> int:
        with self._lock:
            if fingerprint is None:
                return self._conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
            return self._conn.execute("SELECT COUNT(*) FROM verdicts WHERE fingerprint=?", (fingerprint,)).fetchone()[0]

    def integrity_ok(self) -> bool:
        with self._lock:
            return self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # Human labels (annotation app, judge benchmarks)
    def put_human_label(self, annotator: str, key: Key, label: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO human_labels VALUES (?,?,?,?,?,?)",
                               (annotator, *key, label, time.time()))

    def human_labels(self, annotator: str | None = None) -> Iterable[tuple[str, Key, str]]:
        with self._lock:
            q = "SELECT annotator, query_key, positives_key, passage_key, label FROM human_labels"
            rows = (self._conn.execute(q + " WHERE annotator=?", (annotator,)) if annotator
                    else self._conn.execute(q)).fetchall()
        return [(a, (qk, pk, ck), lab) for a, qk, pk, ck, lab in rows]
