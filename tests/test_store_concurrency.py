"""N processes on one judgment store: opening a NEW store at the same moment and writing to it concurrently
(directly and through the writer thread) gives no error and keeps every verdict exactly once."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import traceback

import pytest

from negclean.cascade.store import JudgmentStore
from negclean.data.records import Instance, Passage
from negclean.judge.base import JudgeTask, Label, TaskResult, Verdict

PROCESSES = 4
ROUNDS = 20
PER_PROCESS = 6  # instances each process writes per round (3 negatives each); instance 0 is shared by all


def instance(q: int) -> Instance:
    negs = tuple(Passage(f"q{q}-n{k}", f"negative {k} of query {q}") for k in range(3))
    return Instance(f"q{q}", f"query {q}", (Passage(f"q{q}-p", f"positive of {q}"),), negs)


def result(task: JudgeTask, who: int) -> TaskResult:
    return TaskResult(
        tuple(Verdict(Label.NOT_RELEVANT, None, f"judge-{who}", call_id=f"c{who}") for _ in task.candidates),
        raw="no",
        call_id=f"call-{who}-{task.instance.query_id}",
    )


def worker(who: int, paths: list[str], barrier, errors) -> None:
    try:
        for path in paths:
            barrier.wait(30)  # every process opens the same new store at the same moment
            with JudgmentStore(path) as store:
                store.register_judge("fp", "judge", "{}")
                ids = [0] + [1 + who * PER_PROCESS + i for i in range(PER_PROCESS)]
                for n, q in enumerate(ids):
                    task = JudgeTask(instance(q), (0, 1, 2))
                    if n % 2:
                        store.put_later("fp", task, result(task, who))  # as the event loop writes
                    else:
                        store.put("fp", task, result(task, who))
                store.flush()
    except BaseException:  # noqa: BLE001 - reported to the test
        errors.put(f"process {who}: {traceback.format_exc()}")


def test_processes_open_and_write_one_new_store(tmp_path):
    ctx = mp.get_context("fork")
    barrier, errors = ctx.Barrier(PROCESSES), ctx.Queue()
    paths = [str(tmp_path / f"round{r}" / "judgments.sqlite") for r in range(ROUNDS)]
    procs = [ctx.Process(target=worker, args=(w, paths, barrier, errors)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not found, "\n".join(found)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    expected = 3 * (1 + PROCESSES * PER_PROCESS)  # every distinct pair once; the shared instance's pairs once
    for path in paths:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            rows = conn.execute("SELECT query_key, positives_key, passage_key FROM verdicts").fetchall()
        assert len(rows) == len(set(rows)) == expected, path


def test_a_write_error_reaches_the_caller(tmp_path):
    """A failed background write is raised by flush (once) and by every later put_later, never lost."""
    store = JudgmentStore(tmp_path / "s.sqlite")
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count={pages}")  # the next page it needs makes the disk 'full'
    task = JudgeTask(instance(1), (0, 1, 2))
    big = TaskResult(result(task, 0).verdicts, raw="x" * 200_000, call_id="big")
    store.put_later("fp", task, big)
    from negclean.errors import StoreError

    with pytest.raises(StoreError, match="disk is full"):
        store.flush()
    with pytest.raises(StoreError, match="disk is full"):
        store.put_later("fp", task, big)
    store.close()  # already raised once: closing does not raise it again
