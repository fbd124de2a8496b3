"""Prompt economy: tokens per judged candidate for each prompt template, counted on real instances.

Input tokens are counted exactly on the rendered prompts, with OpenAI's o200k encoding (GPT-4o family,
``negclean.judge.tokens``) and, where given, with the local model's own tokenizer and chat template
(including what prefix reuse saves: tokens evaluated when the calls of one query run in a row).
Output tokens are measured, not assumed: pointwise verdict-only answers are one token; listwise outputs
come from stored calls of a real run (``outputs``); reasoning outputs from the RLHN reference responses
(GPT-4o-mini and GPT-4o, o200k), per candidate shown.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from negclean.data.records import Instance
from negclean.judge.base import JudgeTask
from negclean.judge.listwise import chunk_calls
from negclean.judge.llamacpp_engine import common_prefix
from negclean.judge.tokens import count_message_tokens, count_tokens

TEMPLATES = ("pointwise", "listwise_brief", "listwise")


@dataclass(frozen=True, slots=True)
class PromptCost:
    """Tokens per judged candidate of one template under one tokenizer."""

    template: str
    tokenizer: str
    calls: int
    candidates: int
    input_per_candidate: float
    evaluated_per_candidate: float | None  # local model with prefix reuse; None for hosted counting
    output_per_candidate: float | None
    output_source: str

    @property
    def total_per_candidate(self) -> float | None:
        if self.output_per_candidate is None:
            return None
        return self.input_per_candidate + self.output_per_candidate

    def as_dict(self) -> dict:
        d = asdict(self)
        d["total_per_candidate"] = self.total_per_candidate
        return d


def _calls(instances: Sequence[Instance], template: str, max_candidates: int):
    tasks = [JudgeTask(i, tuple(range(len(i.negatives)))) for i in instances if i.negatives]
    return chunk_calls(tasks, template=template, max_candidates=max_candidates, include_titles=False)


def input_tokens(
    instances: Sequence[Instance],
    *,
    template: str,
    max_candidates: int = 25,
    encode: Callable[[Sequence[dict]], list[int]] | None = None,
) -> tuple[int, int, int, int]:
    """(calls, candidates, input tokens, tokens evaluated with prefix reuse) of a template over instances.

    Without ``encode`` tokens are o200k counts of the chat messages (no reuse figure: evaluated = input).
    With ``encode`` (the local model's messages -> token ids) the reuse figure keeps, with the calls run in
    order, the longest common prefix with the previous call (at least one token is evaluated): llama-cpp-python's
    own reuse rule, a lower bound for the judge, which reuses only up to where the candidates begin.
    """

    calls = _calls(instances, template, max_candidates)
    cands = sum(len(c.positions) for c in calls)
    if encode is None:
        total = sum(count_message_tokens(c.messages, "gpt-4o") for c in calls)
        return len(calls), cands, total, total
    total = evaluated = 0
    previous: list[int] = []
    for c in calls:
        toks = encode(c.messages)
        total += len(toks)
        evaluated += len(toks) - min(common_prefix(previous, toks), max(0, len(toks) - 1))
        previous = toks
    return len(calls), cands, total, evaluated


def reference_reasoning_output(folder: str | Path) -> dict[str, float]:
    """o200k output tokens per candidate of the RLHN reference responses (listwise, with reasoning)."""

    out = {}
    for name, model in (("stage_1.gpt-4o-mini.jsonl", "gpt-4o-mini"), ("stage_2.gpt-4o.jsonl", "gpt-4o")):
        tokens = cands = 0
        with (Path(folder) / name).open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                tokens += count_tokens(row["response"], model)
                cands += len(row["negative_passages"])
        out[model] = tokens / max(1, cands)
    return out


def stored_output_per_candidate(store, fingerprint: str) -> tuple[float, int] | None:
    """Mean generated tokens per candidate over a judge's stored calls: (per candidate, calls)."""
    verdicts = store.verdicts_of(fingerprint)
    per_call: dict[str, int] = {}
    for v in verdicts.values():
        if v.call_id:
            per_call[v.call_id] = per_call.get(v.call_id, 0) + 1
    tokens = store.call_tokens(per_call)
    if not tokens:
        return None
    out = sum(b for _, b in tokens.values())
    cands = sum(per_call[c] for c in tokens)
    return out / max(1, cands), len(tokens)


def prompt_costs(
    instances: Sequence[Instance],
    *,
    max_candidates: int = 25,
    local_encode=None,
    local_name: str = "",
    outputs: dict[str, tuple[float, str]] | None = None,
) -> list[PromptCost]:
    """PromptCost per template and tokenizer; ``outputs`` maps template -> (output tokens per candidate, source)."""
    outputs = dict(outputs or {})
    outputs.setdefault("pointwise", (1.0, "one answer token (verdict only; P(yes) read from logits needs 0)"))
    rows = []
    tokenizers = [("o200k", None)] + ([(local_name or "local", local_encode)] if local_encode else [])
    for template in TEMPLATES:
        out, src = outputs.get(template, (None, "not measured"))
        for tok_name, enc in tokenizers:
            calls, cands, total, evaluated = input_tokens(
                instances, template=template, max_candidates=max_candidates, encode=enc
            )
            rows.append(
                PromptCost(
                    template,
                    tok_name,
                    calls,
                    cands,
                    total / max(1, cands),
                    evaluated / max(1, cands) if enc else None,
                    out,
                    src,
                )
            )
    return rows
