"""Token counting and estimates; Retry-After parsing and backoff of the openai backend."""

from __future__ import annotations

import random
import sys
from email.utils import formatdate

import pytest

from negclean.data.records import Instance, Passage
from negclean.judge import tokens
from negclean.judge.base import JudgeTask
from negclean.judge.tokens import count_message_tokens, count_tokens, estimate_tokens, output_estimate


def make_task(n: int) -> JudgeTask:
    inst = Instance(
        "q",
        "what is a false negative",
        (Passage("p", "A relevant passage labeled negative."),),
        tuple(Passage(f"n{i}", f"negative passage number {i}") for i in range(n)),
    )
    return JudgeTask(inst, tuple(range(n)))


def test_count_tokens_with_o200k():
    pytest.importorskip("bpe_openai")
    assert count_tokens("hello world") == 2
    assert count_tokens("") == 0
    assert count_tokens("hello world", "some-local-model") == 2  # unknown model: o200k_base
    assert count_tokens("a <|endoftext|> b") > 3  # special-token text is counted, not rejected


def test_count_tokens_without_bpe_openai(monkeypatch):
    monkeypatch.setitem(sys.modules, "bpe_openai", None)  # import fails
    tokens._encoder.cache_clear()
    try:
        assert count_tokens("x" * 40) == 10
    finally:
        tokens._encoder.cache_clear()


def test_message_overhead():
    messages = [{"role": "system", "content": "hello world"}, {"role": "user", "content": "hello world"}]
    assert count_message_tokens(messages) == 2 * count_tokens("hello world") + 2 * 3 + 3


def test_output_estimates():
    assert output_estimate("pointwise", 1) == 1
    assert output_estimate("listwise_brief", 25) == 8 + 75
    assert output_estimate("listwise", 25) == 1000


def test_estimate_tokens_per_call_and_cap():
    task = make_task(30)  # 25 + 5 candidates: two calls
    tin, tout = estimate_tokens(task, template="listwise", max_candidates=25, include_titles=False)
    assert tout == 40 * 25 + 40 * 5
    one_in, _ = estimate_tokens(make_task(5), template="listwise", max_candidates=25, include_titles=False)
    assert tin > 2 * one_in * 0.9  # the second call repeats instructions, question and positive
    _, capped = estimate_tokens(task, template="listwise", max_candidates=25, include_titles=False, max_tokens=300)
    assert capped == 300 + 200
    pin, pout = estimate_tokens(task, template="pointwise", max_candidates=25, include_titles=False)
    assert pout == 30 and pin > tin  # pointwise repeats the shared part 30 times


def test_parse_retry_after():
    from negclean.judge.openai_chat import parse_retry_after

    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": formatdate(1_000_030, usegmt=True)}, now=1_000_000) == 30.0
    assert parse_retry_after({"retry-after": formatdate(999_000, usegmt=True)}, now=1_000_000) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_grows_with_jitter_and_cap():
    from negclean.judge.openai_chat import backoff_delay

    rng = random.Random(0)
    waits = [[backoff_delay(a, base=0.5, cap=10, retry_after=None, rng=rng) for _ in range(200)] for a in range(6)]
    for a, ws in enumerate(waits):
        step = min(10, 0.5 * 2**a)
        assert step / 2 <= min(ws) and max(ws) <= step
        assert max(ws) - min(ws) > step / 4  # jittered
    ra = [backoff_delay(0, base=0.5, cap=10, retry_after=3.0, rng=rng) for _ in range(100)]
    assert all(3.0 <= w <= 3.3 for w in ra)
    assert backoff_delay(0, base=0.5, cap=10, retry_after=120.0, rng=rng) == 10
