"""The openai-batch backend against the loopback Files + Batches server (negclean.testing.batch_server):
request files, splitting under the limits, missing and failed rows resubmitted (and only those), failed and
expired batches, a restart in the middle (a killed process, a crash between upload and creation, a run that
stopped waiting), the cascade and the store, and batch pricing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("aiohttp")

from negclean.cascade.pricing import price_for
from negclean.cascade.stages import CascadeConfig
from negclean.data.records import Instance, Passage
from negclean.errors import BackendError
from negclean.judge.base import Grade, JudgeTask, Label
from negclean.judge.config import OpenAIBatchJudgeConfig, OpenAIJudgeConfig, build_judge
from negclean.judge.openai_batch import JobState, OpenAIBatchJudge, plan_files, write_requests
from negclean.pipeline import run_judge
from negclean.testing.batch_server import BatchFaultPlan, BatchTestServer
from negclean.testing.openai_server import OpenAITestServer
from negclean.testing.responders import TableResponder

REPO = Path(__file__).resolve().parents[1]
NEGATIVES = (
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany.",
    "France's capital, Paris, lies on the Seine.",
    "Cheese is made from milk.",
)
TABLE = {NEGATIVES[0]: "better", NEGATIVES[2]: "worse"}
EXPECTED = [
    (Label.RELEVANT, Grade.BETTER),
    (Label.NOT_RELEVANT, None),
    (Label.RELEVANT, Grade.WORSE),
    (Label.NOT_RELEVANT, None),
]


def make_tasks(n: int) -> list[JudgeTask]:
    tasks = []
    for i in range(n):
        inst = Instance(
            f"q{i}",
            f"what is the capital of france (variant {i})",
            (Passage("p", "The capital of France is Paris."),),
            tuple(Passage(f"q{i}-n{k}", t) for k, t in enumerate(NEGATIVES)),
        )
        tasks.append(JudgeTask(inst, tuple(range(len(NEGATIVES)))))
    return tasks


def make_judge(srv: BatchTestServer, state_dir: Path, **overrides) -> OpenAIBatchJudge:
    options = dict(
        model="gpt-4o-mini",
        base_url=srv.base_url,
        state_dir=str(state_dir),
        poll_interval=0.01,
        max_poll_interval=0.05,
        max_candidates=2,
    )
    options.update(overrides)
    return build_judge(OpenAIBatchJudgeConfig(**options))


def labels(result):
    return [(v.label, v.grade) for v in result.verdicts]


def submitted_ids(srv: BatchTestServer) -> list[list[str]]:
    return [b.custom_ids for b in srv.batch_list()]


def test_clean_run_one_batch_and_request_file_shape(tmp_path):
    with BatchTestServer(responder=TableResponder(TABLE)) as srv:
        judge = make_judge(srv, tmp_path)
        results = judge.judge(make_tasks(5))
        [batch] = srv.batch_list()
        [upload] = srv.uploads()
    assert all(labels(r) == EXPECTED for r in results)
    assert batch.status == "completed" and len(batch.custom_ids) == 10  # 5 tasks x 2 calls of 2 candidates
    lines = [json.loads(line) for line in upload.data.splitlines()]
    assert {tuple(sorted(row)) for row in lines} == {("body", "custom_id", "method", "url")}
    assert all(r["method"] == "POST" and r["url"] == "/v1/chat/completions" for r in lines)
    assert all(r["body"]["model"] == "gpt-4o-mini" and r["body"]["max_tokens"] == 4096 for r in lines)
    # every verdict points at its raw output by the call id that is also the batch custom_id
    assert {v.call_id for r in results for v in r.verdicts} <= {r["custom_id"] for r in lines}
    assert all(r.tokens_in > 0 and r.tokens_out > 0 for r in results)
    assert judge.stats.rounds == 1 and judge.stats.gave_up == 0


def test_same_fingerprint_as_the_online_backend():
    common = dict(model="gpt-4o-mini", mode="listwise", temperature=0.1, max_candidates=20)
    batch = OpenAIBatchJudgeConfig(**common, poll_interval=1, state_dir="/elsewhere")
    assert batch.fingerprint() == OpenAIJudgeConfig(**common, concurrency=3).fingerprint()
    assert batch.judge_id() == "openai-batch:gpt-4o-mini/listwise"
    assert batch.fingerprint() != OpenAIBatchJudgeConfig(**{**common, "temperature": 0.0}).fingerprint()


def test_plan_files_respects_both_limits():
    assert plan_files([10] * 7, max_requests=3, max_bytes=1000) == [(0, 3), (3, 6), (6, 7)]
    assert plan_files([40, 40, 40, 10], max_requests=50, max_bytes=100) == [(0, 2), (2, 4)]
    assert plan_files([], max_requests=3, max_bytes=100) == []
    with pytest.raises(ValueError, match="lower max_candidates"):
        plan_files([10, 200], max_requests=3, max_bytes=100)


def test_jobs_split_into_files_under_the_limits(tmp_path):
    with BatchTestServer(responder=TableResponder(TABLE)) as srv:
        judge = make_judge(srv, tmp_path, max_requests_per_file=7, max_bytes_per_file=12_000)
        results = judge.judge(make_tasks(12))
        uploads = srv.uploads()
    assert all(labels(r) == EXPECTED for r in results)
    assert len(uploads) >= 4
    assert all(len(u.data.splitlines()) <= 7 and len(u.data) <= 12_000 for u in uploads)
    assert sum(len(u.data.splitlines()) for u in uploads) == 24


def test_missing_and_failed_rows_are_resubmitted_and_only_they(tmp_path):
    # fault draws hash the custom ids, which change with the prompts: enough rows that every kind of fault
    # occurs whatever the ids (P(no 400 among the first round's rows) < 1e-4)
    plan = BatchFaultPlan(seed=3, missing=0.2, failed=0.1, rate_limited=0.05, bad_request=0.08)
    with BatchTestServer(responder=TableResponder(TABLE), faults=plan) as srv:
        judge = make_judge(srv, tmp_path)
        results = judge.judge(make_tasks(60))
        batches = srv.batch_list()
    first = batches[0]
    assert first.faults["missing"] and first.faults["failed"] and first.faults["bad_request"]
    # round 2 holds exactly the rows that round 1 lost or failed (not the 400s, which would fail again)
    round1 = Counter(first.faults)
    assert len(batches[1].custom_ids) == round1["missing"] + round1["failed"] + round1["rate_limited"]
    assert not set(batches[1].custom_ids) & set(srv.submissions) - set(first.custom_ids)
    resubmitted = {cid for b in batches[1:] for cid in b.custom_ids}
    assert all(srv.submissions[cid] == 1 for cid in set(first.custom_ids) - resubmitted)
    gave_up = {v.call_id for r in results for v in r.verdicts if v.label is Label.UNDECIDED}
    assert judge.stats.gave_up == len(gave_up) >= sum(b.faults["bad_request"] for b in batches)
    for r in results:
        for v, want in zip(r.verdicts, EXPECTED):
            if v.label is Label.UNDECIDED:  # a 400 (never resubmitted), or faulted in all three rounds
                assert v.retryable  # not stored: a rerun asks again
                assert "HTTP 400" in v.reason or srv.submissions[v.call_id] == 3, v.reason
            else:
                assert (v.label, v.grade) == want


def test_failed_and_expired_batches(tmp_path):
    plan = BatchFaultPlan(batches=("fail_validation", "expire"), expire_share=0.5)
    with BatchTestServer(responder=TableResponder(TABLE), faults=plan) as srv:
        results = make_judge(srv, tmp_path).judge(make_tasks(6))
        batches = srv.batch_list()
    assert [b.status for b in batches] == ["failed", "expired", "completed"]
    assert len(batches[1].custom_ids) == 12 and len(batches[2].custom_ids) == 6  # the expired half, again
    assert all(labels(r) == EXPECTED for r in results)


def test_every_batch_failing_is_a_backend_error(tmp_path):
    plan = BatchFaultPlan(batches=("fail_validation",) * 3)
    with BatchTestServer(responder=TableResponder(TABLE), faults=plan) as srv:
        with pytest.raises(BackendError, match="failed validation"):
            make_judge(srv, tmp_path, max_rounds=3).judge(make_tasks(2))


def test_wrong_key_is_a_backend_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NEGCLEAN_TEST_BATCH_KEY", "sk-wrong-key-0000")
    with BatchTestServer(require_key="sk-right") as srv:
        with pytest.raises(BackendError, match="rejected the API key"):
            make_judge(srv, tmp_path, api_key_env="NEGCLEAN_TEST_BATCH_KEY").judge(make_tasks(1))


def test_stopped_waiting_then_resumed_without_resubmitting(tmp_path):
    with BatchTestServer(responder=TableResponder(TABLE), polls_per_status=10_000) as srv:
        first = make_judge(srv, tmp_path, max_wait=0.3).judge(make_tasks(3))
        assert all(
            v.label is Label.UNDECIDED and v.retryable and "rerun to collect" in v.reason
            for r in first
            for v in r.verdicts
        )
        assert len(srv.batch_list()) == 1 and len(srv.uploads()) == 1
        srv.polls_per_status = 1
        judge = make_judge(srv, tmp_path)  # a new judge: all it knows comes from the state file
        second = judge.judge(make_tasks(3))
        assert len(srv.batch_list()) == 1 and len(srv.uploads()) == 1
    assert judge.stats.jobs_resumed == 1
    assert all(labels(r) == EXPECTED for r in second)


def test_restart_after_the_process_was_killed_mid_poll(tmp_path):
    state = tmp_path / "state"
    with BatchTestServer(responder=TableResponder(TABLE), polls_per_status=10_000) as srv:
        child = textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(REPO / "tests")!r})
            from test_openai_batch import make_tasks
            from negclean.judge.config import OpenAIBatchJudgeConfig, build_judge
            judge = build_judge(OpenAIBatchJudgeConfig(model="gpt-4o-mini", base_url={srv.base_url!r},
                                state_dir={str(state)!r}, poll_interval=0.01, max_poll_interval=0.05,
                                max_candidates=2, max_requests_per_file=3))
            judge.judge(make_tasks(4))
        """)
        proc = subprocess.Popen([sys.executable, "-c", child], env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        try:
            deadline = time.monotonic() + 60
            while not (
                len(srv.batch_list()) == 3
                and srv.batch_list()[-1].status == "validating"
                and srv.batch_list()[-1].polls > 2
            ):
                assert proc.poll() is None, "the child ended before it was killed"
                assert time.monotonic() < deadline, "the child did not submit its batches"
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        [job_file] = state.glob("*.json")
        assert all(e["batch"] for e in json.loads(job_file.read_text())["rounds"][0]["files"])
        srv.polls_per_status = 1
        judge = make_judge(srv, state, max_requests_per_file=3)
        results = judge.judge(make_tasks(4))
        assert len(srv.batch_list()) == 3 and len(srv.uploads()) == 3  # nothing submitted twice
    assert all(labels(r) == EXPECTED for r in results)
    assert judge.stats.jobs_resumed == 1 and judge.stats.batches == 0


def test_crash_between_upload_and_batch_creation_adopts_the_orphan(tmp_path, monkeypatch):
    real_save = JobState.save
    saves = []

    def crash_after_creation(self):
        if any(e.get("batch") for r in self.rounds for e in r["files"]):
            raise KeyboardInterrupt("simulated crash before the batch id was written")
        saves.append(1)
        real_save(self)

    with BatchTestServer(responder=TableResponder(TABLE)) as srv:
        monkeypatch.setattr(JobState, "save", crash_after_creation)
        with pytest.raises(KeyboardInterrupt):
            make_judge(srv, tmp_path).judge(make_tasks(2))
        monkeypatch.setattr(JobState, "save", real_save)
        assert len(srv.batch_list()) == 1
        results = make_judge(srv, tmp_path).judge(make_tasks(2))
        assert len(srv.batch_list()) == 1 and len(srv.uploads()) == 1  # found by its metadata, not resubmitted
    assert all(labels(r) == EXPECTED for r in results)


def test_write_requests_is_a_batch_input_file(tmp_path):
    cfg = OpenAIBatchJudgeConfig(model="m", mode="pointwise")
    tasks = make_tasks(2) + make_tasks(1)  # the repeated task's calls are written once
    n = write_requests(tmp_path / "requests.jsonl", tasks, cfg)
    rows = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert n == len(rows) == 8 and len({r["custom_id"] for r in rows}) == 8
    assert all(r["body"]["max_tokens"] == 1 and r["body"]["logprobs"] is True for r in rows)


def test_batch_price_is_half_the_online_price():
    online, batch = price_for("openai", "gpt-4o-mini"), price_for("openai-batch", "gpt-4o-mini-2024-07-18")
    assert batch.cost(10**6, 10**6) == pytest.approx(online.cost(10**6, 10**6) / 2)
    custom = {"my-model": {"input": 1.0, "output": 4.0}}
    assert price_for("openai-batch", "my-model", custom).cost(10**6, 10**6) == pytest.approx(2.5)


def _cascade(stage_judge: dict, **extra) -> CascadeConfig:
    return CascadeConfig.model_validate(
        {
            "stages": [{"name": "llm", "judge": stage_judge}],
            "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}},
            **extra,
        }
    )


def test_cascade_through_batches_costs_half_and_shares_the_store(tmp_path, examples_dir):
    data = str(examples_dir / "msmarco_hn_scored.jsonl")
    store = str(tmp_path / "store.sqlite")
    with BatchTestServer() as bsrv:
        batch_judge = {
            "backend": "openai-batch",
            "model": "gpt-4o-mini",
            "base_url": bsrv.base_url,
            "state_dir": str(tmp_path / "state"),
            "poll_interval": 0.01,
            "max_poll_interval": 0.05,
        }
        summary = run_judge(
            input_path=data,
            cascade=_cascade(batch_judge, chunk_size=1000),
            output_dir=tmp_path / "batch",
            store_path=store,
        )
        assert len(bsrv.batch_list()) == 1  # the whole file is one job
        again = run_judge(
            input_path=data, cascade=_cascade(batch_judge), output_dir=tmp_path / "again", store_path=store
        )
        assert len(bsrv.batch_list()) == 1 and again["cascade"]["stages"][0]["judged"] == 0
    with OpenAITestServer() as osrv:
        online = {"backend": "openai", "model": "gpt-4o-mini", "base_url": osrv.base_url}
        shared = run_judge(input_path=data, cascade=_cascade(online), output_dir=tmp_path / "shared", store_path=store)
        assert osrv.requests.count == 0  # batch verdicts serve the online judge: same fingerprint
        paid = run_judge(input_path=data, cascade=_cascade(online), output_dir=tmp_path / "online")
    b, o = summary["cascade"]["stages"][0], paid["cascade"]["stages"][0]
    assert (b["tokens_in"], b["tokens_out"]) == (o["tokens_in"], o["tokens_out"])
    assert b["cost"] == pytest.approx(o["cost"] / 2, rel=1e-3)
    assert shared["cascade"]["stages"][0]["from_store"] == b["candidates"]
    rows = lambda d: [json.loads(x)["false_negatives"] for x in (tmp_path / d / "verdicts.jsonl").open()]  # noqa: E731
    assert rows("batch") == rows("online") == rows("shared")
