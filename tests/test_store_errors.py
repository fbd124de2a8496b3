"""A judgment store that cannot be used gives one clear line and exit 6 (StoreError), never a traceback:
a directory, a file that is not SQLite, another program's database, a read-only store, a full disk."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from negclean.cascade.store import JudgmentStore
from negclean.errors import EXIT_STORE, StoreError
from reliability.common import make_instances, run_cli, write_jsonl

CASCADE = {"stages": [{"name": "dup", "judge": {"backend": "duplicate"}}], "max_false_negatives": None}


@pytest.fixture
def job(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", make_instances(300, 6, seed=1))
    cascade = tmp_path / "dup.yaml"
    cascade.write_text(json.dumps(CASCADE))
    return data, cascade


def judge(job, store: Path, out: Path) -> subprocess.CompletedProcess:
    data, cascade = job
    return run_cli("judge", data, "--cascade", cascade, "-o", out, "--store", store)


def assert_clean_failure(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == EXIT_STORE, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    message = proc.stderr.strip()
    assert message.startswith("error:") and message.count("\n") == 0, message
    for word in words:
        assert word in message, message


def test_store_is_a_directory(job, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    assert_clean_failure(judge(job, store, tmp_path / "out"), "is a directory", str(store))


def test_store_is_not_sqlite(job, tmp_path):
    store = tmp_path / "notes.sqlite"
    store.write_text("these are my notes, not a database\n")
    assert_clean_failure(judge(job, store, tmp_path / "out"), "not an SQLite database", str(store))
    assert store.read_text() == "these are my notes, not a database\n"  # left untouched


def test_store_of_another_program(job, tmp_path):
    store = tmp_path / "app.db"
    with sqlite3.connect(store) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    assert_clean_failure(judge(job, store, tmp_path / "out"), "not a negclean judgment store", "users")
    with sqlite3.connect(store) as conn:  # none of our tables was added to it
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["users"]


def test_store_with_other_columns(tmp_path):
    store = tmp_path / "old.sqlite"
    with sqlite3.connect(store) as conn:
        conn.execute("CREATE TABLE verdicts (fingerprint TEXT, label TEXT)")
    with pytest.raises(StoreError, match="lacks column"):
        JudgmentStore(store)


def _tmpfs(path: Path, size: str, *, read_only: bool = False) -> bool:
    """Mount a small tmpfs (root only); False when this machine does not allow it."""
    path.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0
    )


def test_store_read_only(job, tmp_path):
    if os.geteuid() == 0:  # root writes through file permissions: use a read-only file system
        folder = tmp_path / "ro"
        if not _tmpfs(folder, "1m", read_only=True):
            pytest.skip("cannot mount a read-only tmpfs here")
        try:
            assert_clean_failure(judge(job, folder / "judgments.sqlite", tmp_path / "out"), str(folder))
        finally:
            subprocess.run(["umount", str(folder)], check=False)
        return
    store = tmp_path / "ro.sqlite"
    JudgmentStore(store).close()
    store.chmod(0o444)
    assert_clean_failure(judge(job, store, tmp_path / "out"), "read-only", str(store))


def test_full_disk_names_the_real_error(job, tmp_path):
    folder = tmp_path / "small"
    if os.geteuid() != 0 or not _tmpfs(folder, "96k"):
        pytest.skip("needs root to mount a small tmpfs (the library-level test uses PRAGMA max_page_count)")
    try:
        proc = judge(job, folder / "judgments.sqlite", tmp_path / "out")
        assert_clean_failure(proc, "disk is full", "rerun")
        assert "cannot rollback" not in proc.stderr
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_full_disk_in_put_is_not_masked_by_rollback(tmp_path):
    from negclean.data.records import Instance, Passage
    from negclean.judge.base import JudgeTask, Label, TaskResult, Verdict

    store = JudgmentStore(tmp_path / "s.sqlite")
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count={pages}")
    inst = Instance("q", "query", (Passage("p", "pos"),), (Passage("n", "neg"),))
    result = TaskResult((Verdict(Label.NOT_RELEVANT, None, "j"),), raw="x" * 100_000, call_id="c")
    with pytest.raises(StoreError, match="disk is full") as err:
        store.put("fp", JudgeTask(inst, (0,)), result)
    assert "rollback" not in str(err.value)
    store.close()
