"""The judgment store across workers: one writer for the main store, one store file per shard.

- The driver is the only process that writes the main store. Before workers start it checkpoints the
  store's write-ahead log into the database file; workers then open the main store read-only and
  *immutable* (no locks, no WAL), which is safe on a local disk and on a shared file system alike,
  because nothing writes it while they run.
- Each shard writes the verdicts it pays for into its own SQLite file next to its outputs
  (``ShardStore``): one writer per file, rollback journal (no shared-memory WAL, so it also works on NFS).
  A shard that stops half-way (budget, crash) keeps what it paid for there, and its rerun reads it back.
- When workers finish -- also after a budget stop or a failure -- the driver merges every shard store
  into the main store in shard order (``merge_into``); "first wins", as in the store itself.

Cost of the design: a pair that occurs in two shards of one run is judged once per shard (the shards cannot
see each other's new verdicts); across runs nothing is paid twice.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote

from negclean.cascade.store import JudgmentStore, Key
from negclean.judge.base import Verdict

log = logging.getLogger(__name__)


def prepare_main(path: str | Path) -> None:
    """Create the main store if needed and fold its write-ahead log into the file, so that readers that
    ignore the log (immutable mode) see every verdict."""
    JudgmentStore(path).close()  # creates the schema
    con = sqlite3.connect(str(path), timeout=60.0)
    try:
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning(
                "%s is in use by another process: verdicts it has not checkpointed yet are invisible to "
                "the workers (they may be judged again)",
                path,
            )
    finally:
        con.close()


class ReadOnlyStore(JudgmentStore):
    """The main store opened read-only and immutable (see the module docstring); ``get`` only."""

    def __init__(self, path: str | Path):  # noqa: D107 - no schema, no pragmas: nothing may write here
        self.path = str(path)
        uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro&immutable=1"
        self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        self._queue = None  # never written: no writer thread
        self._writer = None
        self._error = None
        self._error_raised = False


class ShardStore(JudgmentStore):
    """A shard's store: its own verdicts (written here) over the read-only main store (``base``)."""

    def __init__(self, path: str | Path, *, base: str | Path | None):
        super().__init__(path)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=DELETE")
        self.base = ReadOnlyStore(base) if base is not None and Path(base).is_file() else None

    def get(self, fingerprint: str, keys: list[Key]) -> dict[Key, Verdict]:  # type: ignore[override]
        found = super().get(fingerprint, keys)
        missing = [k for k in keys if k not in found]
        if missing and self.base is not None:
            found.update(self.base.get(fingerprint, missing))
        return found

    def raw_output(self, call_id: str) -> str | None:
        own = super().raw_output(call_id)
        return own if own is not None or self.base is None else self.base.raw_output(call_id)

    def close(self) -> None:
        super().close()
        if self.base is not None:
            self.base.close()


def merge_into(main: str | Path, shard_store: str | Path) -> int:
    """Copy a shard store's verdicts, raw outputs and judges into the main store (existing rows win);
    returns the number of verdicts added."""
    con = sqlite3.connect(str(main), timeout=60.0, isolation_level=None)
    try:
        con.execute("PRAGMA busy_timeout=60000")
        con.execute("ATTACH DATABASE ? AS shard", (str(shard_store),))
        con.execute("BEGIN IMMEDIATE")
        try:
            for table in ("judges", "calls"):
                con.execute(f"INSERT OR IGNORE INTO main.{table} SELECT * FROM shard.{table}")
            before = con.total_changes
            con.execute("INSERT OR IGNORE INTO main.verdicts SELECT * FROM shard.verdicts")
            added = con.total_changes - before
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("DETACH DATABASE shard")
        return added
    finally:
        con.close()
