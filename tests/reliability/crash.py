"""Run `negclean` in a child process and SIGKILL it when a condition holds; account for what the kill cost.

The loopback server runs in the test's own process, so the test sees every request the child makes (and
which were still in flight when it died) while the child dies like a real job would: no cleanup, no
atexit, open files and SQLite transactions left as they were.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reliability.common import cli_command, cli_env, integrity, request_call_ids, stored_call_ids


@dataclass
class Kill:
    """One killed child: when it died, what the server had seen by then, what the store kept."""

    trigger: str
    killed: bool  # False when the child finished before the condition held
    requests: int = 0  # requests the killed child made
    in_flight: int = 0  # of them, not answered when the child died
    lost: int = 0  # call ids requested but not in the store after the kill (asked again on resume)
    lost_answered: int = 0  # of them, answered by the server before the kill (paid twice by a real API)
    temp_files: list[str] = field(default_factory=list)  # .*.tmp left behind: the kill landed mid-write


def wait_then_kill(
    proc: subprocess.Popen,
    condition: Callable[[], bool],
    *,
    delay: float = 0.0,
    timeout: float = 180.0,
    kill: bool = True,
) -> tuple[bool, float]:
    """Poll ``condition`` while the child runs; once it holds, wait ``delay`` s and SIGKILL the child
    (``kill=False``: only wait for the condition). Returns (killed, monotonic time of the kill)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not condition():
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError("the kill condition never held")
        time.sleep(0.002)
    if not kill:
        return False, time.monotonic()
    if delay and proc.poll() is None:
        time.sleep(delay)
    at = time.monotonic()
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True, at
    return False, at


def settle(srv, *, quiet: float = 0.1, timeout: float = 10.0) -> None:
    """Wait until the server has logged and finished every request a killed child had sent (the server's
    thread may be slow to get to a request that arrived just before the kill)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = srv.requests.count
        if count != last or srv.requests.in_flight:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.01)


def start(args: list, log: Path, env: dict | None = None) -> subprocess.Popen:
    fh = open(log, "ab")
    try:
        return subprocess.Popen(cli_command(*args), stdout=fh, stderr=subprocess.STDOUT, env=env or cli_env())
    finally:
        fh.close()  # the child holds its own copy


def account(kill: Kill, srv, first_record: int, at: float, store: Path, fingerprint: str) -> Kill:
    """Fill in what the kill cost from the server's log (records from ``first_record`` on) and the store."""
    records = srv.requests.records[first_record:]
    ids = request_call_ids(records, fingerprint)
    stored = stored_call_ids(store) if store.exists() else set()
    kill.requests = len(records)
    kill.in_flight = sum(1 for r in records if not r.finished or r.finished > at)
    lost = {cid for cid in ids if cid not in stored}
    kill.lost = len(lost)
    kill.lost_answered = sum(
        1 for r, cid in zip(records, ids) if cid in lost and r.status == 200 and 0 < r.finished <= at
    )
    return kill


def check_after_kill(out_dir: Path, store: Path, reference: dict[str, bytes]) -> list[str]:
    """What a kill may leave: a store that passes PRAGMA integrity_check; outputs (``reference``: name ->
    bytes of the uninterrupted run's file) absent or complete under their final names, a summary.json that
    parses. The reject file is the exception: the reader appends to it as it reads (negclean.data.io), so
    it may hold a prefix of its lines. Returns the temp files left behind."""
    if store.exists():
        assert integrity(store) == "ok"
    for name, want in reference.items():
        path = out_dir / name
        if not path.exists():
            continue
        got = path.read_bytes()
        if name == "rejects.jsonl":
            assert want.startswith(got), "the reject file holds lines the complete run does not"
        else:
            assert got == want, f"{name} is under its final name but not complete"
    if (out_dir / "summary.json").exists():
        json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    return sorted(p.name for p in out_dir.glob(".*.tmp")) if out_dir.exists() else []
