"""The vllm judge backend: request building and output parsing without vLLM, the whole judge over a stand-in
``vllm`` module, and the real engine where vLLM and a GPU are present (skipped otherwise, with the reason)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import sys
import types
from types import SimpleNamespace

import pytest

from negclean.data.records import Instance, Passage
from negclean.errors import MissingDependency
from negclean.judge.base import Grade, JudgeTask, Label
from negclean.judge.config import VLLMJudgeConfig, build_judge
from negclean.judge.listwise import chunk_calls
from negclean.judge.vllm_offline import (
    build_request,
    call_output,
    engine_kwargs,
    p_yes_from_token_logprobs,
    verdict_regex,
)
from negclean.testing.responders import Reply, TableResponder

NEGATIVES = (
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany.",
    "France's capital, Paris, lies on the Seine.",
    "Cheese is made from milk.",
)
TABLE = {NEGATIVES[0]: "better", NEGATIVES[2]: "worse"}


def make_task(qid: str = "q1") -> JudgeTask:
    inst = Instance(
        qid,
        "what is the capital of france",
        (Passage("p", "The capital of France is Paris."),),
        tuple(Passage(f"{qid}-n{i}", t) for i, t in enumerate(NEGATIVES)),
    )
    return JudgeTask(inst, tuple(range(len(NEGATIVES))))


def test_verdict_regex_accepts_the_format_and_only_numbers_in_range():
    brief = re.compile(verdict_regex(12, reasoning=False))
    assert brief.fullmatch('<verdict>{"better": [1, 12], "worse": []}</verdict>')
    assert brief.fullmatch('<verdict>{"better": [], "worse": [10, 2, 3]}</verdict>')
    assert not brief.fullmatch('<verdict>{"better": [13], "worse": []}</verdict>')
    assert not brief.fullmatch('<verdict>{"better": [0], "worse": []}</verdict>')
    assert not brief.fullmatch('<verdict>{"better": [1], "worse": []}</verdict> and more')
    full = re.compile(verdict_regex(3, reasoning=True))
    assert full.fullmatch(
        '<reasoning>\nDocument 1 answers it.\n</reasoning>\n<verdict>{"better": [1], "worse": [3]}</verdict>'
    )
    assert not full.fullmatch(
        '<reasoning><verdict>{"better": [2], "worse": []}</verdict></reasoning>\n'
        '<verdict>{"better": [1], "worse": []}</verdict>'
    )
    # what the responders (and negclean's own prompt) produce fits the constraint
    reply = TableResponder(TABLE)(
        {"messages": [{"role": "system", "content": "<reasoning>"}, {"role": "user", "content": _listwise_user()}]}
    )
    assert re.fullmatch(verdict_regex(4, reasoning=True), reply.content)


def _listwise_user() -> str:
    from negclean.judge.prompts import render

    task = make_task()
    return render("listwise", query=task.instance.query, positives=task.instance.positives, candidates=task.passages)[1]


def test_requests_carry_the_constraint_and_sampling():
    task = make_task()
    cfg = VLLMJudgeConfig(model="Qwen/Qwen2.5-7B-Instruct", max_candidates=3, temperature=0.1, max_tokens=2048)
    calls = chunk_calls([task], template="listwise", max_candidates=3, include_titles=False)
    reqs = [build_request(c, template="listwise", config=cfg) for c in calls]
    assert [r.structured[0] for r in reqs] == ["regex", "regex"]
    assert reqs[0].structured[1] == verdict_regex(3, reasoning=True)
    assert reqs[1].structured[1] == verdict_regex(1, reasoning=True)  # the last call has one candidate
    assert reqs[0].sampling == {"temperature": 0.1, "seed": 0, "max_tokens": 2048}
    assert reqs[0].messages == calls[0].messages
    pw = VLLMJudgeConfig(model="m", mode="pointwise")
    [req] = [
        build_request(c, template="pointwise", config=pw)
        for c in chunk_calls(
            [JudgeTask(task.instance, (0,))], template="pointwise", max_candidates=1, include_titles=False
        )
    ]
    assert req.structured == ("choice", ["yes", "no"]) and req.sampling["logprobs"] == 5
    loose = VLLMJudgeConfig(model="m", structured_output=False)
    assert build_request(calls[0], template="listwise", config=loose).structured is None
    assert loose.fingerprint() != cfg.fingerprint()  # constrained and free output are different judges
    kwargs = engine_kwargs(cfg)
    assert kwargs["enable_prefix_caching"] is True and kwargs["model"] == "Qwen/Qwen2.5-7B-Instruct"


def _logprob(token: str, p: float) -> SimpleNamespace:
    return SimpleNamespace(decoded_token=token, logprob=math.log(p), rank=1)


def test_outputs_are_parsed_from_request_outputs():
    out = SimpleNamespace(
        prompt_token_ids=[1] * 120,
        outputs=[
            SimpleNamespace(
                text='<verdict>{"better": [2], "worse": []}</verdict>',
                token_ids=[5] * 14,
                finish_reason="stop",
                logprobs=None,
            )
        ],
    )
    parsed = call_output(out, template="listwise_brief")
    assert (parsed.text, parsed.finish_reason, parsed.tokens_in, parsed.tokens_out) == (
        out.outputs[0].text,
        "stop",
        120,
        14,
    )
    first = {11: _logprob("yes", 0.6), 12: _logprob("no", 0.3), 13: _logprob("Yes", 0.05)}
    assert p_yes_from_token_logprobs(first) == pytest.approx(0.65 / 0.95)
    assert p_yes_from_token_logprobs({1: _logprob("It", 0.9), 2: _logprob("yes", 0.05)}) is None  # off format
    pw = SimpleNamespace(
        prompt_token_ids=[1, 2],
        outputs=[SimpleNamespace(text="yes", token_ids=[11], finish_reason="stop", logprobs=[first])],
    )
    assert call_output(pw, template="pointwise").p_yes == pytest.approx(0.65 / 0.95)
    aborted = SimpleNamespace(
        prompt_token_ids=[], outputs=[SimpleNamespace(text="", token_ids=[], finish_reason="abort", logprobs=None)]
    )
    assert call_output(aborted, template="listwise").error


class _FakeLLM:
    """Stands in for ``vllm.LLM``: answers chat conversations with a responder, as RequestOutputs."""

    instances: list[_FakeLLM] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[tuple[list, list]] = []
        _FakeLLM.instances.append(self)

    def chat(self, messages, sampling_params=None, use_tqdm=True):
        self.calls.append((messages, sampling_params))
        responder = TableResponder(TABLE)
        outs = []
        for conv, sp in zip(messages, sampling_params):
            reply = responder({"messages": conv})
            reply = reply if isinstance(reply, Reply) else Reply(reply)
            pattern = sp.structured_outputs.regex
            assert re.fullmatch(pattern, reply.content), "the constraint must admit the model's valid answers"
            outs.append(
                SimpleNamespace(
                    prompt_token_ids=[0] * 50,
                    outputs=[
                        SimpleNamespace(text=reply.content, token_ids=[0] * 9, finish_reason="stop", logprobs=None)
                    ],
                )
            )
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    sp_mod = types.ModuleType("vllm.sampling_params")

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class StructuredOutputsParams:
        def __init__(self, json=None, regex=None, choice=None, grammar=None):
            self.regex, self.choice = regex, choice

    vllm.LLM, vllm.SamplingParams, vllm.sampling_params = _FakeLLM, SamplingParams, sp_mod
    sp_mod.StructuredOutputsParams = StructuredOutputsParams
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sp_mod)
    _FakeLLM.instances.clear()
    return vllm


def test_judge_over_a_stand_in_engine(fake_vllm):
    judge = build_judge(VLLMJudgeConfig(model="some/model", max_candidates=3, batch_size=2))
    results = judge.judge([make_task("a"), make_task("b")])
    assert [[(v.label, v.grade) for v in r.verdicts] for r in results] == [
        [
            (Label.RELEVANT, Grade.BETTER),
            (Label.NOT_RELEVANT, None),
            (Label.RELEVANT, Grade.WORSE),
            (Label.NOT_RELEVANT, None),
        ]
    ] * 2
    [llm] = _FakeLLM.instances  # loaded once, used for every batch
    assert llm.kwargs["enable_prefix_caching"] is True
    assert [len(m) for m, _ in llm.calls] == [2, 2]  # 4 calls in batches of 2
    assert results[0].tokens_in == 100 and results[0].call_id


def test_missing_vllm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(MissingDependency, match=r"negclean\[vllm\]"):
        build_judge(VLLMJudgeConfig(model="m")).judge([make_task()])


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("NEGCLEAN_VLLM_MODEL"),
    reason="set NEGCLEAN_VLLM_MODEL to a local model path or cached Hugging Face name to run the real vLLM engine",
)
@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vllm is not installed: it needs a CUDA GPU machine (pip install 'negclean[vllm]')",
)
def test_real_vllm_engine_gives_parseable_verdicts():
    judge = build_judge(
        VLLMJudgeConfig(
            model=os.environ["NEGCLEAN_VLLM_MODEL"], max_tokens=512, gpu_memory_utilization=0.5, max_model_len=4096
        )
    )
    [result] = judge.judge([make_task()])
    assert len(result.verdicts) == len(NEGATIVES)
    # structured output: never a format failure (a duplicate number across lists is the only way left)
    assert all(v.label is not Label.UNDECIDED or "both" in v.reason for v in result.verdicts)
    assert result.tokens_in > 0 and json.dumps(result.raw)
