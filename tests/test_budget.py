"""--max-cost is a hard, cumulative cap: checked against what the provider bills (the loopback server's own
token log), with a model that always writes its full ``max_tokens``, across resumes."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("openai")
pytest.importorskip("aiohttp")

from negclean.cascade.budget import Budget
from negclean.cascade.pricing import Price
from negclean.cascade.stages import CascadeConfig
from negclean.errors import BudgetExceeded
from negclean.pipeline import run_judge
from negclean.testing.openai_server import OpenAITestServer
from negclean.testing.responders import FullLength
from reliability.common import cascade_dict, make_instances, run_cli, write_jsonl

PRICE = Price(2.0, 40.0)  # USD per million tokens: an answer of MAX_TOKENS costs about ten times its prompt
MAX_TOKENS = 120


@pytest.fixture(scope="module")
def server():
    with OpenAITestServer(responder=FullLength()) as srv:
        yield srv


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("budget") / "train.jsonl", make_instances(16, 4, seed=3))


def cascade(srv: OpenAITestServer, cap: float | None) -> CascadeConfig:
    cfg = cascade_dict(srv.base_url, mode="listwise", max_tokens=MAX_TOKENS, max_candidates=2, chunk_size=4)
    cfg["prices"] = {"test-model": {"input": PRICE.input_per_m, "output": PRICE.output_per_m}}
    cfg["max_cost"] = cap
    return CascadeConfig.model_validate(cfg)


def billed(records) -> float:
    """What the provider would charge for these requests, from the server's own usage log."""
    return sum(PRICE.cost(r.tokens_in, r.tokens_out) for r in records)


def run(srv, data, out, cap):
    """One `negclean judge` run in process: (stopped by the budget?, requests it made, summary)."""
    before = srv.requests.count
    try:
        summary = run_judge(input_path=str(data), cascade=cascade(srv, cap), output_dir=out)
        stopped = False
    except BudgetExceeded as exc:
        summary = json.loads((out / "summary.json").read_text())
        assert "rerun" in str(exc) and "--max-cost" in str(exc), str(exc)
        stopped = True
    return stopped, srv.requests.records[before:], summary


def test_full_length_answers_cost_their_worst_case(server):
    from negclean.judge.tokens import count_tokens

    reply = FullLength()({"messages": [{"role": "user", "content": "Question: x\n\n"}], "max_tokens": 50})
    assert count_tokens(reply.content) == 50 and reply.finish_reason == "stop"


def test_one_run_never_passes_the_cap(server, data, tmp_path):
    cap = 0.02
    stopped, records, summary = run(server, data, tmp_path / "run", cap)
    assert stopped and records, "the cap must stop this run after some calls"
    assert all(r.tokens_out == MAX_TOKENS for r in records)  # every answer at full length
    spent = billed(records)
    assert spent <= cap, f"billed ${spent:.6f} against a cap of ${cap}"
    assert summary["cascade"]["stopped_by_budget"] is True
    assert math.isclose(summary["cascade"]["budget"]["spent"], spent, abs_tol=1e-6)
    assert not (tmp_path / "run" / "verdicts.jsonl").exists()  # stopped: nothing half-written


def test_resumes_share_one_cap(server, data, tmp_path):
    cap = 0.03
    out = tmp_path / "run"
    runs = [run(server, data, out, cap) for _ in range(5)]
    total = sum(billed(records) for _, records, _ in runs)
    assert total <= cap, f"5 runs billed ${total:.6f} in all against one cap of ${cap}"
    assert runs[0][1] and not runs[-1][1], "the first run calls the model; the last resume makes 0 calls"
    assert all(stopped for stopped, _, _ in runs)
    # each resume starts from what the ones before spent, as recorded in the store
    spent = [s["cascade"]["budget"] for _, _, s in runs]
    for prev, cur in zip(spent, spent[1:]):
        assert math.isclose(cur["spent_before"], prev["spent"], abs_tol=1e-6)
    assert math.isclose(spent[-1]["spent"], total, abs_tol=1e-6)


def test_a_cap_that_fits_changes_no_verdict(server, data, tmp_path):
    stopped, _, _ = run(server, data, tmp_path / "free", None)
    assert not stopped
    stopped, records, summary = run(server, data, tmp_path / "capped", 50.0)
    assert not stopped and summary["cascade"]["budget"]["spent"] <= 50.0
    assert records
    assert (tmp_path / "free" / "verdicts.jsonl").read_bytes() == (tmp_path / "capped" / "verdicts.jsonl").read_bytes()


def test_infinite_cap_is_no_cap_and_summary_is_standard_json(server, data, tmp_path):
    yaml_path = tmp_path / "cascade.yaml"
    yaml_path.write_text(json.dumps(cascade(server, None).model_dump(mode="json")))
    out = tmp_path / "run"
    proc = run_cli("judge", data, "--cascade", yaml_path, "-o", out, "--max-cost", "inf", "--json")
    assert proc.returncode == 0, proc.stderr

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    summary = json.loads((out / "summary.json").read_text(), parse_constant=no_constants)
    json.loads(proc.stdout, parse_constant=no_constants)
    assert summary["cascade"]["budget"]["cap"] is None and not summary["cascade"]["stopped_by_budget"]


def test_budget_refuses_once_and_for_all():
    budget = Budget(cap=1.0)
    meter = budget.meter(Price(1e3, 1e4), stage="llm")  # $0.001 per input token, $0.01 per output token
    first = meter.reserve(100, 10)  # worst case: input with its margin, plus every output token
    assert first is not None and math.isclose(first.amount, (110 + 16) * 1e-3 + 10 * 1e-2)
    budget.settle(first, 0.0)
    held = budget.reserve(0.5, what="call")
    assert held is not None
    assert budget.reserve(0.6, what="call") is None and budget.refused
    assert budget.reserve(0.0001, what="a small call") is None  # no call starts after a refusal
    budget.settle(held, 0.25)
    assert math.isclose(budget.spent, 0.25)
    assert Budget(cap=float("inf")).cap is None


def _one_process_run(args):
    """A separate process: one run of the same output folder and store (see the test below)."""
    base_url, data, out, cap = args
    from negclean.testing.openai_server import OpenAITestServer as _  # noqa: F401  (same imports as the parent)

    srv = type("Srv", (), {"base_url": base_url})()
    try:
        run_judge(input_path=str(data), cascade=cascade(srv, cap), output_dir=out)
        return "done"
    except BudgetExceeded:
        return "stopped"


def test_two_processes_of_one_run_share_the_cap(server, data, tmp_path):
    """Two processes started at once on the same output folder (a user who ran the command twice): the ledger check
    and the reservation are one transaction in the shared store, so together they never pass the cap."""
    import multiprocessing

    cap = 0.03
    out = tmp_path / "run"
    before = server.requests.count
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        outcomes = pool.map(_one_process_run, [(server.base_url, data, out, cap)] * 2)
    records = server.requests.records[before:]
    total = billed(records)
    assert records, "the runs called the model"
    assert total <= cap, f"two concurrent processes billed ${total:.6f} against one cap of ${cap} ({outcomes})"
    assert "stopped" in outcomes
