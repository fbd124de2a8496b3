"""SIGKILL `negclean run` at random points (seeded) while it judges and while it writes; resume; compare.

A child process runs the CLI against the loopback server started here (with a service time, so kills land
mid-run); the test kills it when the server has seen a drawn number of requests (mid-judging), when it
has seen all it will get (then after a random pause: finishing the last chunks, writing, renaming), or
at a random moment of a long model-free run (mid-write). After every kill: the judgment store passes
`PRAGMA integrity_check`, no output is half-written under its final name. After the resume: verdicts.jsonl,
the fixed file and the reject file are byte-identical to an uninterrupted run's, and no stored verdict was
asked for again. Requests across kills and resumes are accounted for exactly: every request beyond one
clean run's is a call the killed process had sent but not stored (in flight, or answered but not yet
committed); their number per kill must stay within twice the judge's concurrency (the requests in flight, plus
answers that arrived but were not yet committed).

Run with -s to see the numbers (kills, requests, calls paid twice).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("aiohttp")

from negclean.cascade.stages import CascadeConfig
from negclean.testing.openai_server import OpenAITestServer
from reliability.common import (
    cascade_dict,
    integrity,
    make_instances,
    request_call_ids,
    run_cli,
    stored_call_ids,
    write_jsonl,
    write_pipeline,
)
from reliability.crash import Kill, account, check_after_kill, settle, start, wait_then_kill

CONCURRENCY = 4
CHUNK = 5  # instances per cascade chunk
SLOW_SEEDS = [s for s in range(12) if s != 2]


class Job:
    """A judging job against the module's server, and the files and request count of its clean run."""

    def __init__(self, srv: OpenAITestServer, root: Path):
        self.srv = srv
        self.root = root
        self.input = write_jsonl(root / "train.jsonl", make_instances(20, 6, seed=5), bad_line_at=7)
        self.cascade = cascade_dict(srv.base_url, chunk_size=CHUNK, concurrency=CONCURRENCY)
        self.fingerprint = CascadeConfig.model_validate(self.cascade).stages[0].judge.fingerprint()
        self.outputs = ("verdicts.jsonl", f"fixed.{self.input.name}", "rejects.jsonl")
        ref = root / "reference"
        before = srv.requests.count
        proc = start(["run", self.pipeline(ref), "--json"], root / "reference.log")
        wait_then_kill(proc, lambda: srv.requests.count - before >= 120, kill=False)
        last_request = time.monotonic()
        wait_then_kill(proc, lambda: (ref / "verdicts.jsonl").exists(), kill=False)
        #: from the last request to the rename of verdicts.jsonl: the last chunk's verdicts, the writes
        self.tail_s = time.monotonic() - last_request
        assert proc.wait(timeout=300) == 0, (root / "reference.log").read_text()
        self.requests = srv.requests.count - before
        assert self.requests == 120  # one call per candidate; the bad line is rejected
        self.reference = {name: (ref / name).read_bytes() for name in self.outputs}
        assert json.loads((ref / "summary.json").read_text())["reconciled"] is True

    def pipeline(self, out: Path, store: Path | None = None) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        return write_pipeline(
            out / "pipe.yaml", input_path=self.input, output_dir=out, cascade=self.cascade, store=store
        )


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    with OpenAITestServer(usage="approx", delay=0.02) as srv:
        yield Job(srv, tmp_path_factory.mktemp("crash"))


def kill_and_resume(job: Job, seed: int, tmp_path: Path) -> list[Kill]:
    """Kill the job 1-3 times at seeded points, then let it finish; check everything; return the kills."""
    rng = random.Random(seed)
    srv, out = job.srv, tmp_path / f"seed{seed}"
    pipe, store, log = job.pipeline(out), out / "judgments.sqlite", out / "child.log"
    start_count = srv.requests.count
    kills: list[Kill] = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        stored_before = stored_call_ids(store) if store.exists() else set()
        remaining = job.requests - len(stored_before)
        first = srv.requests.count
        trigger = "judging" if remaining > 1 and rng.random() < 0.7 else "writing"
        proc = start(["run", pipe, "--json"], log)
        if trigger == "judging":  # when the server has seen a drawn number of this child's requests
            goal = rng.randint(1, remaining - 1)
            killed, at = wait_then_kill(proc, lambda first=first, goal=goal: srv.requests.count - first >= goal)
        else:  # after its last request, at a random point of the time the clean run took to rename its outputs
            goal = remaining
            killed, at = wait_then_kill(
                proc,
                lambda first=first, goal=goal: (
                    srv.requests.count - first >= goal and bool(list(out.glob(".verdicts.jsonl.*.tmp")))
                ),
                delay=rng.uniform(0.0, job.tail_s),
            )
        settle(srv)  # the requests the child left in flight are logged before they are counted
        new_ids = set(request_call_ids(srv.requests.records[first:], job.fingerprint))
        assert not new_ids & stored_before, "a stored verdict was asked for again"
        kill = account(Kill(trigger, killed), srv, first, at, store, job.fingerprint)
        kill.temp_files = check_after_kill(out, store, job.reference)
        kills.append(kill)
        if not killed:
            break
    stored_before = stored_call_ids(store) if store.exists() else set()
    first = srv.requests.count
    proc = run_cli("run", pipe, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not set(request_call_ids(srv.requests.records[first:], job.fingerprint)) & stored_before
    for name, want in job.reference.items():
        assert (out / name).read_bytes() == want, f"{name} differs from the uninterrupted run's"
    assert integrity(store) == "ok"
    assert json.loads(proc.stdout)["reconciled"] is True
    # exact accounting: beyond one clean run, the only requests are the calls each kill lost
    extra = srv.requests.count - start_count - job.requests
    assert extra == sum(k.lost for k in kills), (extra, kills)
    for k in kills:
        assert k.lost <= 2 * CONCURRENCY, f"one kill lost {k.lost} calls, more than the calls in flight can be: {k}"
    print(
        f"seed {seed}: "
        + "; ".join(
            f"{k.trigger} kill={k.killed} requests={k.requests} in_flight={k.in_flight} "
            f"lost={k.lost} (answered before the kill: {k.lost_answered}) "
            f"temp_left={len(k.temp_files)}"
            for k in kills
        )
    )
    return kills


def test_kill_mid_judging_then_resume(job, tmp_path):
    kills = kill_and_resume(job, 2, tmp_path)  # seed 2 draws one kill, mid-judging
    assert kills[0].killed


@pytest.mark.slow
def test_many_kills_then_resume(job, tmp_path):
    kills = [k for seed in SLOW_SEEDS for k in kill_and_resume(job, seed, tmp_path)]
    done = [k for k in kills if k.killed]
    assert len(done) >= 10
    assert sum(bool(k.temp_files) for k in done if k.trigger == "writing") >= 1  # some landed before the renames
    assert any(k.trigger == "judging" for k in done) and any(k.trigger == "writing" for k in done)
    print(
        f"{len(done)} kills over {len(SLOW_SEEDS)} seeds; calls paid twice: {sum(k.lost_answered for k in done)} "
        f"answered + {sum(k.lost - k.lost_answered for k in done)} in flight; most in one kill: "
        f"{max(k.lost for k in done)}; kills that left temp files: {sum(bool(k.temp_files) for k in done)}"
    )


def test_two_processes_share_one_store(job, tmp_path):
    store = tmp_path / "shared.sqlite"
    first = job.srv.requests.count
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [start(["run", job.pipeline(o, store=store), "--json"], o.parent / f"{o.name}.log") for o in outs]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert integrity(store) == "ok"
    for o in outs:
        for name, want in job.reference.items():
            assert (o / name).read_bytes() == want, name
    assert len(stored_call_ids(store)) == job.requests
    made = job.srv.requests.count - first
    assert job.requests <= made <= 2 * job.requests  # no coordination between them: pairs judged by both are paid twice
    print(f"two processes, one store: {made} requests for {job.requests} calls")


# -- mid-write: a long model-free run, killed at a random moment while its outputs are open -----------------


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """600 instances through the duplicate judge: no requests, so the run is reading, judging and writing;
    the clean run gives the reference files and how long the outputs stay open."""
    root = tmp_path_factory.mktemp("write")
    rows = make_instances(600, 6, seed=9)
    for r in rows[::20]:  # some duplicates of the positive, so that the fix changes something
        r["negative_passages"][0]["text"] = r["positive_passages"][0]["text"]
    path = write_jsonl(root / "big.jsonl", rows, bad_line_at=300)
    cascade = {"stages": [{"name": "dup", "judge": {"backend": "duplicate"}}], "chunk_size": 64}
    ref = root / "reference"
    pipe = write_pipeline(root / "pipe.yaml", input_path=path, output_dir=ref, cascade=cascade)
    proc = start(["run", pipe, "--json"], root / "ref.log")
    t0 = time.monotonic()
    wait_then_kill(proc, lambda: bool(list(ref.glob(".verdicts.jsonl.*.tmp"))), kill=False)
    opened = time.monotonic()
    wait_then_kill(proc, lambda: (ref / "verdicts.jsonl").exists(), kill=False)
    renamed = time.monotonic()
    assert proc.wait(timeout=300) == 0
    names = ("verdicts.jsonl", f"fixed.{path.name}", "rejects.jsonl")
    return {
        "input": path,
        "cascade": cascade,
        "reference": {n: (ref / n).read_bytes() for n in names},
        "open_s": renamed - opened,
        "startup_s": opened - t0,
        "root": root,
    }


@pytest.mark.parametrize("seed", [0] + [pytest.param(s, marks=pytest.mark.slow) for s in range(1, 6)])
def test_kill_mid_write_leaves_no_partial_output(big, tmp_path, seed):
    rng = random.Random(100 + seed)
    out = tmp_path / "run"
    keep_old = seed % 2 == 1  # a complete earlier run is in the folder: the kill must not damage it
    if keep_old:
        out.mkdir()
        for name, data in big["reference"].items():
            (out / name).write_bytes(data)
    pipe = write_pipeline(tmp_path / "pipe.yaml", input_path=big["input"], output_dir=out, cascade=big["cascade"])
    proc = start(["run", pipe, "--json"], tmp_path / "child.log")
    delay = rng.uniform(0.0, big["open_s"])
    killed, _ = wait_then_kill(proc, lambda: bool(list(out.glob(".verdicts.jsonl.*.tmp"))), delay=delay)
    left = check_after_kill(out, out / "judgments.sqlite", big["reference"])
    if keep_old:
        for name in ("verdicts.jsonl", f"fixed.{big['input'].name}"):
            assert (out / name).read_bytes() == big["reference"][name]
    print(
        f"mid-write seed {seed}: killed={killed} after {delay:.2f}s of {big['open_s']:.2f}s with outputs open; "
        f"temp files left: {left}; outputs present: {sorted(p.name for p in out.iterdir() if p.suffix != '.tmp')}"
    )
    proc = run_cli("run", pipe, "--json")
    assert proc.returncode == 0, proc.stderr
    for name, want in big["reference"].items():
        assert (out / name).read_bytes() == want, name
    assert integrity(out / "judgments.sqlite") == "ok"
    shutil.rmtree(out)
