"""Shared by the reliability tests: seeded synthetic instances, cascade/pipeline files for the `openai` backend
against the loopback server, reading run folders, mapping server requests to the judge's call ids."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORDS = (
    "river bridge engine garden planet violin copper harbor winter castle forest signal marble desert "
    "rocket island candle ladder meadow pepper saddle tunnel walnut zebra anchor basket cobalt dragon "
    "falcon glacier hammer jungle kettle lantern magnet nectar oyster pillow quartz ribbon"
).split()


def make_instances(n: int, negatives: int, *, seed: int) -> list[dict]:
    """Tevatron rows with unique passage texts; about a third of the negatives share most of the query's
    words, so the overlap oracle finds false negatives (better and worse) among them."""
    rng = random.Random(seed)
    rows = []
    for q in range(n):
        topic = rng.sample(WORDS, 4)
        query = "how does the " + " ".join(topic) + " work"
        pos = {"docid": f"q{q}-pos", "title": "", "text": f"The {' '.join(topic[:3])} explained, item {q}."}
        negs = []
        for k in range(negatives):
            if rng.random() < 0.35:
                words = topic[:] if rng.random() < 0.5 else topic[:3]
            else:
                words = rng.sample([w for w in WORDS if w not in topic], 4) + topic[:1]
            rng.shuffle(words)
            negs.append({"docid": f"q{q}-n{k}", "title": "", "text": f"Passage {q}.{k} about " + " ".join(words) + "."})
        rows.append({"query_id": f"q{q}", "query": query, "positive_passages": [pos], "negative_passages": negs})
    return rows


def write_jsonl(path: Path, rows: list[dict], *, bad_line_at: int | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    if bad_line_at is not None:
        lines.insert(bad_line_at, '{"query_id": "broken", "query": ')  # an unreadable line, for the reject file
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def openai_stage(base_url: str, *, mode: str = "pointwise", **judge) -> dict:
    options = {
        "backend": "openai",
        "model": "test-model",
        "mode": mode,
        "base_url": base_url,
        "concurrency": 4,
        "max_retries": 2,
        "backoff_base": 0.01,
        "max_backoff": 0.05,
        "timeout": 5.0,
    }
    options.update(judge)
    return {"name": "llm", "judge": options}


def cascade_dict(base_url: str, *, mode: str = "pointwise", chunk_size: int = 64, **judge) -> dict:
    return {
        "stages": [openai_stage(base_url, mode=mode, **judge)],
        "max_false_negatives": None,
        "chunk_size": chunk_size,
    }


def write_pipeline(
    path: Path,
    *,
    input_path: Path,
    output_dir: Path,
    cascade: dict,
    store: Path | None = None,
    operation: str = "relabel",
) -> Path:
    data = {
        "input": str(input_path),
        "output_dir": str(output_dir),
        "on_error": "skip",
        "cascade": cascade,
        "fix": {"operation": operation},
    }
    if store is not None:
        data["store"] = str(store)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


def cli_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "negclean.cli.main", *map(str, args)]


def run_cli(*args: object, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), capture_output=True, text=True, env=env or cli_env(), timeout=timeout)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def verdict_map(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """(query_id, docid) -> the final verdict of that candidate in a verdicts.jsonl."""
    return {(r["query_id"], c["docid"]): c for r in rows for c in r["candidates"]}


def integrity(store: Path) -> str:
    with sqlite3.connect(store) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def stored_call_ids(store: Path) -> set[str]:
    """Call ids with at least one verdict in the store (what a rerun will not ask again)."""
    with sqlite3.connect(store) as conn:
        return {row[0] for row in conn.execute("SELECT DISTINCT call_id FROM verdicts WHERE call_id IS NOT NULL")}


def request_call_ids(records, fingerprint: str) -> list[str]:
    """The judge's call id of each request the server saw (the same messages give the same id)."""
    from negclean.judge.openai_chat import call_id

    return [call_id(fingerprint, r.body["messages"]) if r.body else "" for r in records]


def faults_by_call(records, fingerprint: str) -> dict[str, list[str]]:
    """Call id -> the fault each of its attempts met, in arrival order."""
    out: dict[str, list[str]] = defaultdict(list)
    for record, cid in zip(records, request_call_ids(records, fingerprint)):  # records are in arrival order
        out[cid].append(record.fault)
    return dict(out)
