"""The Judge protocol and its frozen result records."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from negclean.data.records import Instance, Passage
from negclean.judge.meter import SpendMeter


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


#: ``on_call(part, result)``: a streaming judge hands over each call's verdicts as the call finishes. What it
#: returns is ignored (the cascade's callback returns the store write's Future; write errors surface at flush)
OnCall = Callable[[JudgeTask, TaskResult], object]


@runtime_checkable
class BackendStats(Protocol):
    """A judge's own counters (requests, retries, failed calls, ...), shown per stage in the run's stats."""

    def as_dict(self) -> Mapping[str, Any]: ...


@runtime_checkable
class Judge(Protocol):
    """Anything that judges candidates.

    ``fingerprint`` identifies every setting that can change a verdict (backend, model, prompt
    template hash, parameters): the judgment store keys verdicts by it, so two judges with the same
    fingerprint must give interchangeable verdicts. ``listwise`` judges see all candidates of an
    instance in one call; the cascade sends them whole tasks. ``keys_by_id`` judges decide by query and
    document ids (qrels), so their verdicts are stored per id rather than per text.

    The parts a backend may leave out are declared too, so that callers use them directly; subclass
    ``JudgeBase`` to get their defaults:

    - ``streams``: ``judge`` calls ``on_call`` as each call finishes (else the cascade stores the results
      when ``judge`` returns, and never passes ``on_call``);
    - ``meters_budget``: ``judge`` takes ``budget`` (a ``SpendMeter``: the cascade's ``StageMeter``) and holds each
      call's worst case right before sending it (else the cascade holds a whole chunk's worst case first,
      and never passes ``budget``);
    - ``stats``: the judge's own counters, or None;
    - ``close()``: release what the judge holds (HTTP clients, a model, a child process).
    """

    judge_id: str
    fingerprint: str
    listwise: bool
    keys_by_id: bool
    streams: bool
    meters_budget: bool

    @property
    def stats(self) -> BackendStats | None:
        """The judge's own counters, or None; read-only here, so a backend may declare its own counters' type."""
        ...

    def judge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: SpendMeter | None = None
    ) -> list[TaskResult]:
        """Return one TaskResult per task, in order. Must not raise for bad model output.

        A judge with ``streams`` calls ``on_call(part, result)`` as each call finishes, with the part of a task
        (a JudgeTask of the candidates that call covered) and its verdicts, and the cascade stores them at once,
        so a crash loses only the calls in flight rather than the whole batch."""
        ...

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        """(input, output) tokens a call for this task would use; (0, 0) for model-free judges."""
        ...

    def close(self) -> None:
        """Release what the judge holds; a closed judge may not be used again."""
        ...


class JudgeBase:
    """The defaults of the Judge protocol's optional parts: subclass it and set ``judge_id`` and
    ``fingerprint`` and write ``judge`` (every shipped backend does; so may a plugin's).

    Defaults: pointwise, keyed by text, no streaming, no own budget metering, no counters, nothing to
    close, no tokens (a model-free judge)."""

    judge_id: str
    fingerprint: str
    listwise: bool = False
    keys_by_id: bool = False
    streams: bool = False
    meters_budget: bool = False
    stats: BackendStats | None = None

    def judge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: SpendMeter | None = None
    ) -> list[TaskResult]:
        raise NotImplementedError(f"{type(self).__name__} must define judge(tasks)")

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        return (0, 0)

    def close(self) -> None:
        return None


def check_results(judge_id: str, tasks: Sequence[JudgeTask], results: Sequence[TaskResult]) -> None:
    """Raise RuntimeError unless a judge returned one result per task and one verdict per candidate."""
    if len(results) != len(tasks):
        raise RuntimeError(f"judge {judge_id} returned {len(results)} results for {len(tasks)} tasks")
    for task, result in zip(tasks, results):
        if len(result.verdicts) != len(task.candidates):
            raise RuntimeError(
                f"judge {judge_id} returned {len(result.verdicts)} verdicts for {len(task.candidates)} candidates"
            )


def undecided(
    task: JudgeTask,
    judge_id: str,
    reason: str,
    *,
    raw: str | None = None,
    tokens_in: int = 0,
    tokens_out: int = 0,
    call_id: str | None = None,
) -> TaskResult:
    """A TaskResult where every candidate is undecided for the same reason."""
    verdicts = tuple(Verdict(Label.UNDECIDED, None, judge_id, reason=reason, call_id=call_id) for _ in task.candidates)
    return TaskResult(verdicts, raw=raw, tokens_in=tokens_in, tokens_out=tokens_out, call_id=call_id)


def threshold_verdicts(scores: Sequence[float], *, threshold: float, judge_id: str, what: str) -> tuple[Verdict, ...]:
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
