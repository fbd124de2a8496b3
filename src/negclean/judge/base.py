"""The Judge protocol and its frozen result records."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from negclean.data.records import Instance, Passage


class Label(str, enum.Enum):
    """A judge's decision on one candidate."""

    RELEVANT = "relevant"
    NOT_RELEVANT = "not_relevant"
    UNDECIDED = "undecided"


class Grade(str, enum.Enum):
    """For relevant candidates, how they compare with the labeled positive (listwise RLHN judges).

    ``better`` means relevant and at least as good as the positive (RLHN's false-negative list);
    ``worse`` means relevant but less good. Judges that cannot compare give ``better`` for a relevant
    candidate (pointwise, duplicate, qrels) so that the default false-negative rule treats them alike.
    """

    BETTER = "better"
    WORSE = "worse"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One judge's verdict on one candidate.

    Args:
        label: relevant / not_relevant / undecided (unparsable output is always undecided).
        confidence: estimated probability that the candidate is relevant, in [0, 1], where the
            backend can give one (log-probs, calibrated scores); None otherwise.
        judge_id: readable id of the judge (backend/model/prompt), see ``Judge.judge_id``.
        grade: better/worse for relevant candidates, None otherwise.
        reason: why a verdict is undecided, or a short rationale.
        call_id: reference to the raw model output in the judgment store (None for model-free judges).
        retryable: the verdict is undecided because a call failed (transport, rate limit) rather than
            because the model answered badly; the store does not keep it, so a rerun asks again.
    """

    label: Label
    confidence: float | None
    judge_id: str
    grade: Grade | None = None
    reason: str = ""
    call_id: str | None = None
    retryable: bool = False

    @property
    def is_false_negative(self) -> bool:
        """RLHN's rule: relevant and at least as good as the positive."""
        return self.label is Label.RELEVANT and self.grade is Grade.BETTER

    @property
    def flagged(self) -> bool:
        """Relevant at any grade: what RLHN's stage 1 passes on to stage 2."""
        return self.label is Label.RELEVANT


@dataclass(frozen=True, slots=True)
class JudgeTask:
    """Judge these negatives (indices into ``instance.negatives``) of one instance."""

    instance: Instance
    candidates: tuple[int, ...]

    @property
    def passages(self) -> tuple[Passage, ...]:
        return tuple(self.instance.negatives[i] for i in self.candidates)


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A judge's answer to one task: one verdict per candidate, in the task's order.

    ``raw`` is the model's raw output (None for model-free judges); the store keeps it and the
    verdicts point to it through ``call_id``. Token counts are those of the call(s) made for the task.
    """

    verdicts: tuple[Verdict, ...]
    raw: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    call_id: str | None = None


@runtime_checkable
class Judge(Protocol):
    """Anything that judges candidates.

    ``fingerprint`` identifies every setting that can change a verdict (backend, model, prompt
    template hash, parameters): the judgment store keys verdicts by it, so two judges with the same
    fingerprint must give interchangeable verdicts. ``listwise`` judges see all candidates of an
    instance in one call; the cascade sends them whole tasks.
    """

    judge_id: str
    fingerprint: str
    listwise: bool

    def judge(self, tasks: Sequence[JudgeTask]) -> list[TaskResult]:
        """Return one TaskResult per task, in order. Must not raise for bad model output.

        A judge that makes slow or paid calls may also accept ``on_call=callback`` (keyword): it then
        calls ``callback(part, result)`` as each call finishes, with the part of a task (a JudgeTask of
        the candidates that call covered) and its verdicts, and the cascade stores them at once, so a
        crash loses only the calls in flight rather than the whole batch."""
        ...

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        """(input, output) tokens a call for this task would use; (0, 0) for model-free judges."""
        ...


def accepts_keyword(judge: object, keyword: str) -> bool:
    """Whether ``judge.judge`` accepts the keyword argument ``keyword`` (the protocol's optional ``on_call``,
    ``budget``)."""
    import inspect

    try:
        return keyword in inspect.signature(judge.judge).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return False


def check_results(judge_id: str, tasks: Sequence[JudgeTask], results: Sequence[TaskResult]) -> None:
    """Raise RuntimeError unless a judge returned one result per task and one verdict per candidate."""
    if len(results) != len(tasks):
        raise RuntimeError(f"judge {judge_id} returned {len(results)} results for {len(tasks)} tasks")
    for task, result in zip(tasks, results):
        if len(result.verdicts) != len(task.candidates):
            raise RuntimeError(f"judge {judge_id} returned {len(result.verdicts)} verdicts "
                               f"for {len(task.candidates)} candidates")


def undecided(task: JudgeTask, judge_id: str, reason: str, *, raw: str | None = None,
              tokens_in: int = 0, tokens_out: int = 0, call_id: str | None = None) -> TaskResult:
    """A TaskResult where every candidate is undecided for the same reason."""
    verdicts = tuple(
        Verdict(Label.UNDECIDED, None, judge_id, reason=reason, call_id=call_id) for _ in task.candidates
    )
    return TaskResult(verdicts, raw=raw, tokens_in=tokens_in, tokens_out=tokens_out, call_id=call_id)


def threshold_verdicts(scores: Sequence[float], *, threshold: float, judge_id: str,
                       what: str) -> tuple[Verdict, ...]:
    """One verdict per score: at or above ``threshold`` relevant/better, below it not_relevant; the score is the
    confidence and the reason names it (``what``, e.g. "P(false negative)") and the threshold."""
    out = []
    for s in scores:
        reason = f"{what}={s:.4f} threshold={threshold:.4f}"
        if s >= threshold:
            out.append(Verdict(Label.RELEVANT, s, judge_id, grade=Grade.BETTER, reason=reason))
        else:
            out.append(Verdict(Label.NOT_RELEVANT, s, judge_id, reason=reason))
    return tuple(out)
