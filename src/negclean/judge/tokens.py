"""Token counts for cost estimates and for responses that come without ``usage``.

Counting uses OpenAI's BPE encodings from ``bpe-openai`` (offline; ``tiktoken`` downloads its files at
run time). Models the package does not know (gpt-5, local models) are counted with ``o200k_base``,
the GPT-4o family's encoding: for other tokenizers the count is an estimate, usually within ~15%.
Without ``bpe-openai`` installed, counts fall back to ``len(text) / 4``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from negclean.judge.base import JudgeTask

DEFAULT_ENCODING = "o200k_base"

#: Chat formatting overhead per message (role and separators) and for priming the reply, as in
#: OpenAI's published counting recipe for the GPT-4o family.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3

#: Output estimates for listwise calls (tokens), per call of n candidates:
#: - brief (verdict line only): ``8 + 3 * n`` -- the fixed JSON/tag scaffolding plus one number and a
#:   separator per candidate, as if every candidate were listed (an upper bound on the verdict line).
#: - reasoning: ``40 * n`` -- RLHN's reasoning responses were 4,000-6,000 characters for 25 candidates,
#:   i.e. ~1,000-1,500 tokens at ~4 characters per token, 40-60 per candidate; our prompt asks for one
#:   short line per candidate that might be relevant, so we take the low end. Calibrate with the
#:   ``usage`` of a few real calls before trusting a cost estimate for a large run.
BRIEF_FIXED, BRIEF_PER_CANDIDATE = 8, 3
REASONING_PER_CANDIDATE = 40


@lru_cache(maxsize=16)
def _encoder(model: str | None) -> Callable[[str], list[Any]] | None:
    try:
        import bpe_openai
    except ImportError:
        return None
    name = DEFAULT_ENCODING
    if model:
        try:
            name = bpe_openai.encoding_name_for_model(model)
        except Exception:  # unknown model name: KeyError or the package's own error
            name = DEFAULT_ENCODING
    # encode_ordinary: text that happens to contain "<|endoftext|>" is counted, not rejected
    encode: Callable[[str], list[Any]] = bpe_openai.get_encoding(name).encode_ordinary  # bpe_openai is untyped
    return encode


def count_tokens(text: str, model: str | None = None) -> int:
    """Tokens of ``text`` with the encoding of ``model`` (``o200k_base`` when unknown or None)."""
    if not text:
        return 0
    encode = _encoder(model)
    if encode is None:
        return max(1, round(len(text) / 4))
    return len(encode(text))


def count_message_tokens(messages: Sequence[dict[str, Any]], model: str | None = None) -> int:
    """Input tokens of a chat request: message contents plus the chat format's overhead."""
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE + count_tokens(str(message.get("content") or ""), model)
    return total


def output_estimate(template: str, n_candidates: int) -> int:
    """Estimated output tokens of one call over ``n_candidates`` (see the constants above)."""
    if template == "pointwise":
        return 1
    if template == "listwise_brief":
        return BRIEF_FIXED + BRIEF_PER_CANDIDATE * n_candidates
    return REASONING_PER_CANDIDATE * n_candidates


def estimate_tokens(
    task: JudgeTask,
    *,
    template: str,
    max_candidates: int,
    include_titles: bool,
    model: str | None = None,
    max_tokens: int | None = None,
) -> tuple[int, int]:
    """(input, output) tokens of the calls an LLM judge makes for ``task``.

    Input is counted exactly on the rendered messages; output follows ``output_estimate`` per call,
    capped at ``max_tokens`` when given (the model cannot write more).
    """
    from negclean.judge.listwise import chunk_calls

    tokens_in = tokens_out = 0
    for call in chunk_calls([task], template=template, max_candidates=max_candidates, include_titles=include_titles):
        tokens_in += count_message_tokens(call.messages, model)
        out = output_estimate(template, len(call.positions))
        tokens_out += min(out, max_tokens) if max_tokens is not None else out
    return tokens_in, tokens_out
