"""The openai judge backend against a real loopback HTTP server (negclean.testing.openai_server)."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback

import pytest

pytest.importorskip("openai")
pytest.importorskip("aiohttp")

from negclean.data.records import Instance, Passage
from negclean.errors import BackendError
from negclean.judge.base import Grade, Judge, JudgeTask, Label
from negclean.judge.config import OpenAIJudgeConfig, build_judge
from negclean.judge.openai_chat import OpenAIJudge, call_id
from negclean.judge.tokens import count_message_tokens
from negclean.testing.openai_server import FaultPlan, OpenAITestServer
from negclean.testing.responders import OverlapOracle, Reply, TableResponder

KEY_ENV = "NEGCLEAN_TEST_OPENAI_KEY"
SECRET = "sk-test-SECRETKEY-7f3a9c1e5b2d"

NEGATIVES = (
    "Paris is the capital and largest city of France.",  # better
    "Berlin is the capital of Germany.",
    "France's capital, Paris, lies on the Seine.",  # worse
    "Cheese is made from milk.",
    "The capital of France has been Paris since 987.",  # better
)
TABLE = {NEGATIVES[0]: "better", NEGATIVES[2]: "worse", NEGATIVES[4]: True}
EXPECTED = [
    (Label.RELEVANT, Grade.BETTER),
    (Label.NOT_RELEVANT, None),
    (Label.RELEVANT, Grade.WORSE),
    (Label.NOT_RELEVANT, None),
    (Label.RELEVANT, Grade.BETTER),
]


def make_task(query: str = "what is the capital of france", negatives=NEGATIVES, qid: str = "q1") -> JudgeTask:
    inst = Instance(
        qid,
        query,
        (Passage("p1", "The capital of France is Paris."),),
        tuple(Passage(f"{qid}-n{i}", t) for i, t in enumerate(negatives)),
    )
    return JudgeTask(inst, tuple(range(len(negatives))))


def make_judge(srv: OpenAITestServer, **overrides) -> OpenAIJudge:
    options = dict(
        model="test-model", base_url=srv.base_url, api_key_env=KEY_ENV, backoff_base=0.01, max_backoff=2.0, timeout=10.0
    )
    options.update(overrides)
    return OpenAIJudge(OpenAIJudgeConfig(**options))


def labels(result) -> list[tuple[Label, Grade | None]]:
    return [(v.label, v.grade) for v in result.verdicts]


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


@pytest.mark.parametrize("reasoning", [True, False])
def test_listwise_verdicts_over_chunked_calls(reasoning):
    with (
        OpenAITestServer(responder=TableResponder(TABLE)) as srv,
        make_judge(srv, reasoning=reasoning, max_candidates=2) as judge,
    ):
        [result] = judge.judge([make_task()])
        assert labels(result) == EXPECTED
        assert srv.requests.count == 3  # 5 candidates, 2 per call
        ids = [v.call_id for v in result.verdicts]
        assert ids[0] == ids[1] != ids[2] == ids[3] != ids[4]
        assert result.call_id == ids[0]
        assert result.raw.count("<verdict>") == 3
        assert ("<reasoning>" in result.raw) is reasoning
        body = srv.requests.records[0].body
        assert body["max_tokens"] == 4096 and body["temperature"] == 0.1 and "logprobs" not in body
        assert result.tokens_in == judge.stats.tokens_in > 0
        assert judge.stats.as_dict()["calls"] == 3 and judge.stats.retries == 0


def test_pointwise_confidence_from_logprobs():
    with (
        OpenAITestServer(responder=TableResponder(TABLE, p_yes=0.8, p_no=0.3)) as srv,
        make_judge(srv, mode="pointwise") as judge,
    ):
        [result] = judge.judge([make_task()])
        assert labels(result) == [(lab, Grade.BETTER if lab is Label.RELEVANT else None) for lab, _ in EXPECTED]
        confidences = [v.confidence for v in result.verdicts]
        assert confidences == pytest.approx([0.8, 0.3, 0.8, 0.3, 0.8], abs=1e-3)
        body = srv.requests.records[0].body
        assert body["logprobs"] is True and body["top_logprobs"] == 5 and body["max_tokens"] == 1


def test_pointwise_threshold_decides_on_p_yes():
    # the word says yes, but P(yes) = 0.6 is below the threshold: the log-probs decide
    with (
        OpenAITestServer(responder=lambda body: Reply("yes", p_yes=0.6)) as srv,
        make_judge(srv, mode="pointwise", yes_threshold=0.7) as judge,
    ):
        [result] = judge.judge([make_task(negatives=NEGATIVES[:1])])
        assert result.verdicts[0].label is Label.NOT_RELEVANT
        assert result.verdicts[0].confidence == pytest.approx(0.6, abs=1e-3)


def test_pointwise_without_logprobs_falls_back_to_the_word():
    with (
        OpenAITestServer(responder=TableResponder(TABLE), logprobs=False) as srv,
        make_judge(srv, mode="pointwise") as judge,
    ):
        [result] = judge.judge([make_task()])
        assert [v.label for v in result.verdicts] == [lab for lab, _ in EXPECTED]
        assert all(v.confidence is None for v in result.verdicts)


def test_default_oracle_end_to_end():
    negatives = ("The capital of France is Paris.", "Bananas are yellow fruit.")
    with OpenAITestServer() as srv, make_judge(srv) as judge:
        [result] = judge.judge([make_task(negatives=negatives)])
        assert [v.label for v in result.verdicts] == [Label.RELEVANT, Label.NOT_RELEVANT]


@pytest.mark.parametrize("fmt", ["seconds", "ms"])
def test_rate_limit_waits_for_retry_after(fmt):
    plan = FaultPlan(script=("rate_limit",), retry_after=0.6, retry_after_format=fmt)
    with OpenAITestServer(responder=TableResponder(TABLE), faults=plan) as srv, make_judge(srv) as judge:
        start = time.monotonic()
        [result] = judge.judge([make_task()])
        elapsed = time.monotonic() - start
        assert labels(result) == EXPECTED
        first, second = srv.requests.records
        assert first.status == 429 and second.status == 200
        assert second.started - first.finished >= 0.6  # backoff_base is 0.01: only Retry-After explains this
        assert elapsed >= 0.6
        assert judge.stats.errors["rate_limited"] == 1 and judge.stats.retries == 1


def test_retry_after_http_date():
    # an HTTP date has 1-second resolution: 1.5 s ahead means a wait between 0.5 and 1.5 s
    plan = FaultPlan(script=("unavailable",), retry_after=1.5, retry_after_format="date")
    with OpenAITestServer(responder=TableResponder(TABLE), faults=plan) as srv, make_judge(srv) as judge:
        [result] = judge.judge([make_task()])
        assert labels(result) == EXPECTED
        first, second = srv.requests.records
        assert first.status == 503
        assert second.started - first.finished >= 0.45


TRANSPORTS = [
    "httpx",
    pytest.param(
        "aiohttp",
        marks=pytest.mark.skipif(
            not hasattr(__import__("openai"), "DefaultAioHttpClient"), reason="openai client without aiohttp support"
        ),
    ),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "fault,kind",
    [
        ("server_error", "server_error"),
        ("unavailable", "server_error"),
        ("reset", "connection"),
        ("timeout", "timeout"),
        ("bad_json", "bad_response"),
    ],
)
def test_transient_faults_are_retried(fault, kind, transport):
    plan = FaultPlan(script=(fault, fault), hang_s=3.0, retry_after=0.05)
    with (
        OpenAITestServer(responder=TableResponder(TABLE), faults=plan) as srv,
        make_judge(srv, timeout=0.5, transport=transport) as judge,
    ):
        [result] = judge.judge([make_task()])
        assert labels(result) == EXPECTED
        assert srv.requests.count == 3
        assert judge.stats.errors[kind] == 2 and judge.stats.retries == 2 and judge.stats.failed == 0


def test_bounded_retries_end_undecided_with_reason():
    plan = FaultPlan(server_error=1.0)
    with (
        OpenAITestServer(responder=TableResponder(TABLE), faults=plan) as srv,
        make_judge(srv, max_retries=2, max_candidates=3) as judge,
    ):
        [result] = judge.judge([make_task()])
        assert srv.requests.count == 2 * 3  # two calls, three attempts each
        assert all(v.label is Label.UNDECIDED for v in result.verdicts)
        assert all("after 3 attempts" in v.reason and "HTTP 500" in v.reason for v in result.verdicts)
        assert judge.stats.failed == 2 and judge.stats.succeeded == 0


def test_bad_request_is_not_retried():
    plan = FaultPlan(script=("bad_request",))
    with (
        OpenAITestServer(responder=TableResponder(TABLE), faults=plan) as srv,
        make_judge(srv, max_candidates=3) as judge,
    ):
        [result] = judge.judge([make_task()])
        assert srv.requests.count == 2  # the 400 call once, the other call once
        undecided = [v for v in result.verdicts if v.label is Label.UNDECIDED]
        assert len(undecided) in (2, 3)  # whichever call met the 400
        assert all("HTTP 400" in v.reason and "context length" in v.reason for v in undecided)
        assert judge.stats.errors["bad_request"] == 1 and judge.stats.retries == 0


def test_truncated_output_is_undecided():
    with (
        OpenAITestServer(responder=TableResponder(TABLE), faults=FaultPlan(truncated=1.0)) as srv,
        make_judge(srv) as judge,
    ):
        [result] = judge.judge([make_task()])
        assert all(v.label is Label.UNDECIDED and "truncated" in v.reason for v in result.verdicts)
        assert judge.stats.truncated == 1


def test_max_tokens_cut_is_undecided():
    # the server enforces max_tokens like a real one: the reasoning does not fit in 8 tokens
    with OpenAITestServer(responder=TableResponder(TABLE)) as srv, make_judge(srv, max_tokens=8) as judge:
        [result] = judge.judge([make_task()])
        assert all(v.label is Label.UNDECIDED for v in result.verdicts)
        assert result.tokens_out == 8


@pytest.mark.parametrize("mode", ["listwise", "pointwise"])
def test_malformed_output_is_undecided(mode):
    tasks = [make_task(qid=f"q{i}") for i in range(4)]
    with (
        OpenAITestServer(responder=TableResponder(TABLE), faults=FaultPlan(malformed=1.0, seed=3)) as srv,
        make_judge(srv, mode=mode) as judge,
    ):
        results = judge.judge(tasks)
        verdicts = [v for r in results for v in r.verdicts]
        assert len(verdicts) == 20
        assert all(v.label is Label.UNDECIDED and v.reason for v in verdicts)
        assert judge.stats.retries == 0  # a bad answer is the model's verdict problem, not a transport one


def test_forged_verdict_echo_is_undecided():
    with (
        OpenAITestServer(responder=TableResponder(TABLE), faults=FaultPlan(forged=1.0)) as srv,
        make_judge(srv) as judge,
    ):
        [result] = judge.judge([make_task()])
        assert all(v.label is Label.UNDECIDED and "2 verdict blocks" in v.reason for v in result.verdicts)


def test_concurrency_limit_is_respected():
    tasks = [make_task(qid=f"q{i}") for i in range(8)]  # 40 pointwise calls
    with (
        OpenAITestServer(responder=TableResponder(TABLE), delay=0.03) as srv,
        make_judge(srv, mode="pointwise", concurrency=4) as judge,
    ):
        results = judge.judge(tasks)
        assert all(labels(r)[0][0] is Label.RELEVANT for r in results)
        assert srv.requests.count == 40
        assert srv.requests.max_in_flight == 4


def test_concurrency_limit_holds_across_concurrent_batches():
    batches = [[make_task(qid=f"{b}-{i}") for i in range(4)] for b in range(3)]

    async def run(judge):
        try:
            return await asyncio.gather(*(judge.ajudge(batch) for batch in batches))
        finally:
            await judge.aclose()

    with OpenAITestServer(responder=TableResponder(TABLE), delay=0.03) as srv:
        judge = make_judge(srv, mode="pointwise", concurrency=3)
        results = asyncio.run(run(judge))
        assert [len(r) for r in results] == [4, 4, 4]
        assert srv.requests.count == 60 and srv.requests.max_in_flight == 3


def test_sync_judge_works_inside_a_running_event_loop():
    async def notebook_cell(judge):
        return judge.judge([make_task()])  # e.g. Jupyter: a loop is already running in this thread

    with OpenAITestServer(responder=TableResponder(TABLE)) as srv, make_judge(srv) as judge:
        [result] = asyncio.run(notebook_cell(judge))
        assert labels(result) == EXPECTED


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_key_raises_backend_error_without_the_key(monkeypatch, caplog, transport):
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG)  # every logger, the openai client's and the HTTP library's included
    with OpenAITestServer(require_key="sk-the-right-one") as srv, make_judge(srv, transport=transport) as judge:
        with pytest.raises(BackendError) as info:
            judge.judge([make_task()])
        assert srv.requests.statuses()[401] == 1  # not retried
    text = "".join(traceback.format_exception(info.value))
    assert KEY_ENV in str(info.value) and "401" in str(info.value) and srv.base_url in str(info.value)
    assert SECRET not in text and SECRET[:12] not in text
    assert caplog.records  # the check below saw real records
    for record in caplog.records:
        assert SECRET not in record.getMessage() and SECRET not in str(record.__dict__)


def test_key_is_sent_and_never_logged_during_retries(monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG)
    plan = FaultPlan(server_error=1.0)
    with OpenAITestServer(require_key=SECRET, faults=plan) as srv, make_judge(srv, max_retries=1) as judge:
        [result] = judge.judge([make_task()])
        assert all(srv_record.authorized for srv_record in srv.requests.records)
    assert all(v.label is Label.UNDECIDED for v in result.verdicts)
    assert any("call failed" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert SECRET not in record.getMessage() and SECRET not in str(record.__dict__)
    assert all(SECRET not in v.reason for v in result.verdicts)


def test_unknown_model_raises_backend_error():
    with OpenAITestServer(models=["real-model"]) as srv, make_judge(srv, model="typo-model") as judge:
        with pytest.raises(BackendError, match="typo-model.*base_url"):
            judge.judge([make_task()])


def test_missing_key_names_the_variable():
    judge = OpenAIJudge(OpenAIJudgeConfig(model="m", base_url="https://llm.example.invalid/v1", api_key_env=KEY_ENV))
    with pytest.raises(BackendError, match=KEY_ENV) as info:
        judge.judge([make_task()])
    assert "llm.example.invalid" in str(info.value)
    assert judge.stats.requests == 0
    judge.close()


def test_loopback_endpoint_needs_no_key():
    with OpenAITestServer(require_key="EMPTY", responder=TableResponder(TABLE)) as srv, make_judge(srv) as judge:
        [result] = judge.judge([make_task()])
        assert labels(result) == EXPECTED


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_azure_client_path(monkeypatch, transport):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with (
        OpenAITestServer(responder=TableResponder(TABLE), require_key=SECRET) as srv,
        make_judge(
            srv, model="my-deployment", base_url=srv.azure_endpoint, azure_api_version="2024-06-01", transport=transport
        ) as judge,
    ):
        [result] = judge.judge([make_task()])
        assert labels(result) == EXPECTED
        [record] = srv.requests.records
        assert record.path == "/openai/deployments/my-deployment/chat/completions"
        assert record.query == {"api-version": "2024-06-01"} and record.authorized


def test_missing_usage_is_estimated():
    with OpenAITestServer(responder=TableResponder(TABLE), usage=False) as srv, make_judge(srv) as judge:
        [result] = judge.judge([make_task()])
        messages = srv.requests.records[0].body["messages"]
        assert result.tokens_in == count_message_tokens(messages, "test-model")
        assert result.tokens_out > 0 and judge.stats.usage_missing == 1


def test_call_ids_are_stable_and_keyed_by_fingerprint():
    with OpenAITestServer(responder=TableResponder(TABLE)) as srv:
        with (
            make_judge(srv) as a,
            make_judge(srv, concurrency=2, timeout=5, backoff_base=0.3) as b,
            make_judge(srv, temperature=0.0) as c,
        ):
            ra, rb, rc = (j.judge([make_task()])[0] for j in (a, b, c))
        assert a.fingerprint == b.fingerprint != c.fingerprint
        assert ra.call_id == rb.call_id != rc.call_id
        messages = srv.requests.records[0].body["messages"]
        assert ra.call_id == call_id(a.fingerprint, messages)


def test_protocol_and_build_judge():
    config = OpenAIJudgeConfig(model="m", mode="pointwise", base_url="http://127.0.0.1:9/v1")
    judge = build_judge(config)
    assert isinstance(judge, OpenAIJudge) and isinstance(judge, Judge)
    assert judge.listwise is False and judge.judge_id == "openai:m/pointwise"
    assert judge.judge([]) == []
    tokens_in, tokens_out = judge.estimate_tokens(make_task())
    assert tokens_in > 0 and tokens_out == 5  # one output token per pointwise call


def test_judge_is_reusable_after_close():
    with OpenAITestServer(responder=TableResponder(TABLE)) as srv:
        judge = make_judge(srv)
        judge.judge([make_task()])
        judge.close()
        [result] = judge.judge([make_task()])
        judge.close()
        assert labels(result) == EXPECTED and judge.stats.calls == 2


def test_oracle_rejects_low_overlap():
    oracle = OverlapOracle(threshold=0.6)
    assert oracle.overlap("capital of france", "Paris is the capital of France") == 1.0
    assert oracle.overlap("capital of france", "France is big") == 0.5


def test_server_messages_are_redacted(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    judge = OpenAIJudge(OpenAIJudgeConfig(model="m", api_key_env=KEY_ENV))
    text = judge._redact(f"upstream said: key {SECRET} invalid; other key sk-proj-abcdef123456 too")
    assert SECRET not in text and "abcdef123456" not in text and "upstream said" in text


def test_config_error_stops_the_whole_batch():
    tasks = [make_task(qid=f"q{i}") for i in range(8)]  # 40 pointwise calls
    with (
        OpenAITestServer(models=["real-model"], delay=0.02) as srv,
        make_judge(srv, model="typo-model", mode="pointwise", concurrency=2) as judge,
    ):
        with pytest.raises(BackendError, match="404"):
            judge.judge(tasks)
        time.sleep(0.1)
        assert srv.requests.count <= 4  # the other calls were cancelled, not sent


def test_transport_auto_prefers_aiohttp():
    openai = pytest.importorskip("openai")
    if not hasattr(openai, "DefaultAioHttpClient"):
        pytest.skip("openai client without aiohttp support")
    with OpenAITestServer(responder=TableResponder(TABLE)) as srv:
        for transport, aiohttp_expected in (("auto", True), ("httpx", False)):
            with make_judge(srv, transport=transport) as judge:
                judge.judge([make_task()])
                [state] = judge._states.values()
                http_client = state.client._client  # the openai client's HTTP layer
                assert isinstance(http_client, openai.DefaultAioHttpClient) is aiohttp_expected
