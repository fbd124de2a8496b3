"""Shared by every LLM backend: chunking candidates into calls, building messages, turning parsed
output into verdicts. Backends only transport messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from negclean.judge.base import Grade, JudgeTask, Label, TaskResult, Verdict, undecided
from negclean.judge.parse import ListwiseVerdict, ParseFailure, parse_listwise
from negclean.judge.prompts import render


@dataclass(frozen=True, slots=True)
class Call:
    """One model call: messages for some candidates of one task."""

    task_index: int
    positions: tuple[int, ...]  # positions within task.candidates covered by this call
    messages: tuple[dict[str, Any], ...]


def chunk_calls(tasks: Sequence[JudgeTask], *, template: str, max_candidates: int, include_titles: bool) -> list[Call]:
    """Split each task into calls of at most ``max_candidates`` candidates (one for pointwise templates)."""
    per_call = 1 if template == "pointwise" else max_candidates
    calls = []
    for ti, task in enumerate(tasks):
        passages = task.passages
        for start in range(0, len(passages), per_call):
            positions = tuple(range(start, min(start + per_call, len(passages))))
            system, user = render(
                template,
                query=task.instance.query,
                positives=task.instance.positives,
                candidates=[passages[i] for i in positions],
                include_titles=include_titles,
            )
            calls.append(
                Call(ti, positions, ({"role": "system", "content": system}, {"role": "user", "content": user}))
            )
    return calls


def listwise_verdicts(
    parsed: ListwiseVerdict | ParseFailure, n: int, judge_id: str, call_id: str | None
) -> list[Verdict]:
    """Verdicts for the n candidates of one listwise call."""
    if isinstance(parsed, ParseFailure):
        return [Verdict(Label.UNDECIDED, None, judge_id, reason=str(parsed), call_id=call_id) for _ in range(n)]
    out = []
    for number in range(1, n + 1):
        if number in parsed.better:
            out.append(Verdict(Label.RELEVANT, None, judge_id, grade=Grade.BETTER, call_id=call_id))
        elif number in parsed.worse:
            out.append(Verdict(Label.RELEVANT, None, judge_id, grade=Grade.WORSE, call_id=call_id))
        else:
            out.append(Verdict(Label.NOT_RELEVANT, None, judge_id, call_id=call_id))
    return out


def pointwise_verdict(
    p_yes: float | None,
    answer_yes: bool | None,
    *,
    threshold: float,
    judge_id: str,
    call_id: str | None,
    failure: str = "",
) -> Verdict:
    """Verdict of a yes/no call: from P(yes) when log-probs exist, else from the answer word."""
    if p_yes is not None:
        relevant = p_yes >= threshold
    elif answer_yes is not None:
        relevant = answer_yes
    else:
        return Verdict(Label.UNDECIDED, None, judge_id, reason=failure or "no answer", call_id=call_id)
    if relevant:
        return Verdict(Label.RELEVANT, p_yes, judge_id, grade=Grade.BETTER, call_id=call_id)
    return Verdict(Label.NOT_RELEVANT, p_yes, judge_id, call_id=call_id)


@dataclass
class CallOutput:
    """What a transport returns for one Call."""

    text: str | None
    finish_reason: str | None
    tokens_in: int = 0
    tokens_out: int = 0
    p_yes: float | None = None
    error: str | None = None  # transport failure after retries -> undecided


def call_verdicts(
    call: Call, out: CallOutput, *, template: str, judge_id: str, call_id: str | None, yes_threshold: float = 0.5
) -> list[Verdict]:
    """Verdicts for the candidates one call covers, from its output."""
    from negclean.judge.parse import parse_yes_no

    if out.error is not None:
        return [
            Verdict(Label.UNDECIDED, None, judge_id, reason=out.error, call_id=call_id, retryable=True)
            for _ in call.positions
        ]
    if template == "pointwise":
        answer, failure = None, ""
        try:
            answer = parse_yes_no(out.text or "", finish_reason=out.finish_reason)
        except ParseFailure as exc:
            failure = str(exc)
        return [
            pointwise_verdict(
                out.p_yes, answer, threshold=yes_threshold, judge_id=judge_id, call_id=call_id, failure=failure
            )
        ]
    try:
        parsed: ListwiseVerdict | ParseFailure = parse_listwise(
            out.text or "", len(call.positions), finish_reason=out.finish_reason
        )
    except ParseFailure as exc:
        parsed = exc
    return listwise_verdicts(parsed, len(call.positions), judge_id, call_id)


def call_result(
    tasks: Sequence[JudgeTask],
    call: Call,
    out: CallOutput,
    *,
    template: str,
    judge_id: str,
    call_id: str | None,
    yes_threshold: float = 0.5,
) -> tuple[JudgeTask, TaskResult]:
    """The part of a task that one call covers, with its verdicts: what a judge hands over (to be stored)
    as soon as that call is done, so that a crash loses at most the calls still in flight."""
    task = tasks[call.task_index]
    part = JudgeTask(task.instance, tuple(task.candidates[p] for p in call.positions))
    verdicts = call_verdicts(
        call, out, template=template, judge_id=judge_id, call_id=call_id, yes_threshold=yes_threshold
    )
    return part, TaskResult(
        tuple(verdicts), raw=out.text, tokens_in=out.tokens_in, tokens_out=out.tokens_out, call_id=call_id
    )


def assemble(
    tasks: Sequence[JudgeTask],
    calls: Sequence[Call],
    outputs: Sequence[CallOutput],
    *,
    template: str,
    judge_id: str,
    call_ids: Sequence[str | None],
    yes_threshold: float = 0.5,
) -> list[TaskResult]:
    """Combine per-call outputs into one TaskResult per task (raw outputs joined per task)."""
    verdicts: list[list[Verdict | None]] = [[None] * len(t.candidates) for t in tasks]
    raws: list[list[str]] = [[] for _ in tasks]
    tokens = [[0, 0] for _ in tasks]
    first_call: list[str | None] = [None] * len(tasks)
    for call, out, cid in zip(calls, outputs, call_ids):
        ti = call.task_index
        tokens[ti][0] += out.tokens_in
        tokens[ti][1] += out.tokens_out
        first_call[ti] = first_call[ti] or cid
        if out.text is not None:
            raws[ti].append(out.text)
        vs = call_verdicts(call, out, template=template, judge_id=judge_id, call_id=cid, yes_threshold=yes_threshold)
        for pos, v in zip(call.positions, vs):
            verdicts[ti][pos] = v
    results = []
    for ti, task in enumerate(tasks):
        covered = [v for v in verdicts[ti] if v is not None]
        if len(covered) < len(verdicts[ti]):
            results.append(undecided(task, judge_id, "internal: candidate not covered by any call"))
            continue
        results.append(
            TaskResult(
                tuple(covered),
                raw="\n\n=====\n\n".join(raws[ti]) or None,
                tokens_in=tokens[ti][0],
                tokens_out=tokens[ti][1],
                call_id=first_call[ti],
            )
        )
    return results
