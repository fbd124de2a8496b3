"""Set aside candidates that may carry a prompt injection before an LLM judge sees them.

``InjectionGuard`` wraps a built judge: a candidate whose passage (or title, when the judge is shown
titles) fires a rule of ``negclean.judge.injection``, or whose instance has a positive that does, is
not sent; it gets an ``undecided`` verdict whose reason names the rules. Everything else goes to the
inner judge unchanged, with the same keyword arguments (``on_call`` included), so verdicts, store
keys and fingerprints are those of the inner judge.

Set-aside verdicts are never handed to ``on_call``, so the judgment store does not keep them: a rerun
checks again, and a rerun with the guard off sends them. Verdicts already in the store (from a run with
the guard off) are reused as every stored verdict is: the guard decides what is sent, not what was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from negclean.judge.base import BackendStats, Judge, JudgeTask, Label, OnCall, TaskResult, Verdict, check_results
from negclean.judge.injection import rule_names, scan_passage
from negclean.judge.meter import SpendMeter

#: the reason of every set-aside verdict starts so (reports count them by it)
SET_ASIDE = "set aside: possible prompt injection"


def set_aside_reason(rules: Sequence[str], *, in_positive: bool = False) -> str:
    return f"{SET_ASIDE} ({', '.join(rules)})" + (" in a positive" if in_positive else "")


def rules_in_reason(reason: str) -> tuple[str, ...]:
    """The rule names of a set-aside reason; () for any other reason."""
    if not reason.startswith(SET_ASIDE + " ("):
        return ()
    inner = reason[len(SET_ASIDE) + 2 :].split(")", 1)[0]
    return tuple(r.strip() for r in inner.split(",") if r.strip())


class InjectionGuard:
    """A judge that sends only candidates with no sign of prompt injection to ``inner``.

    Args:
        inner: the judge that makes the calls (any ``Judge``).
        include_titles: scan titles too (set it as the inner judge shows titles to the model).
    """

    def __init__(self, inner: Judge, *, include_titles: bool = False):
        self.inner = inner
        self.include_titles = include_titles
        self._inner_streams = inner.streams

    # -- what the cascade reads from a judge: the inner judge's ---------------------------------------
    @property
    def judge_id(self) -> str:
        return self.inner.judge_id

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @property
    def listwise(self) -> bool:
        return self.inner.listwise

    @property
    def keys_by_id(self) -> bool:
        return self.inner.keys_by_id

    @property
    def streams(self) -> bool:
        return True  # set-aside verdicts are never handed over; the inner judge's results are, as they come

    @property
    def meters_budget(self) -> bool:
        return self.inner.meters_budget

    @property
    def stats(self) -> BackendStats | None:
        return self.inner.stats

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # anything else a backend offers (config, model, ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        """Tokens of the call for what would be sent: set-aside candidates cost nothing."""
        sent, _ = self.split(task)
        return (0, 0) if sent is None else self.inner.estimate_tokens(sent)

    # -- judging --------------------------------------------------------------------------------------
    def split(self, task: JudgeTask) -> tuple[JudgeTask | None, dict[int, Verdict]]:
        """(the part of ``task`` to send, or None; set-aside verdicts by candidate index)."""
        inst = task.instance
        aside: dict[int, Verdict] = {}
        pos_rules = rule_names(f for p in inst.positives for f in scan_passage(p, include_title=self.include_titles))
        for c in task.candidates:
            rules = pos_rules or rule_names(scan_passage(inst.negatives[c], include_title=self.include_titles))
            if rules:
                aside[c] = Verdict(
                    Label.UNDECIDED,
                    None,
                    self.inner.judge_id,
                    reason=set_aside_reason(rules, in_positive=bool(pos_rules)),
                )
        if not aside:
            return task, aside
        kept = tuple(c for c in task.candidates if c not in aside)
        return (JudgeTask(inst, kept) if kept else None), aside

    def judge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: SpendMeter | None = None
    ) -> list[TaskResult]:
        """The inner judge's results for what is sent, set-aside verdicts for the rest, task by task.

        ``on_call`` reaches the inner judge only if it streams (else the guard hands over its results when it
        returns), ``budget`` only when given (the cascade gives it to judges that meter their own budget)."""
        plans = [self.split(t) for t in tasks]
        sent = [part for part, _ in plans if part is not None]
        results: list[TaskResult] = []
        if sent:
            pass_on = on_call if self._inner_streams else None
            if budget is not None:
                results = self.inner.judge(sent, on_call=pass_on, budget=budget)
            elif pass_on is not None:
                results = self.inner.judge(sent, on_call=pass_on)
            else:
                results = self.inner.judge(sent)
            check_results(self.judge_id, sent, results)
            for sent_part, result in zip(sent, results):
                if on_call is not None and not self._inner_streams:
                    on_call(sent_part, result)  # as the cascade stores a judge's results that come all at once
        out: list[TaskResult] = []
        answered = iter(results)
        for task, (part, aside) in zip(tasks, plans):
            r = next(answered) if part is not None else None
            if r is not None and not aside:  # nothing set aside: ``part`` is the whole task
                out.append(r)
                continue
            by_candidate = dict(aside)
            if part is not None and r is not None:
                by_candidate.update(zip(part.candidates, r.verdicts))
            verdicts = tuple(by_candidate[c] for c in task.candidates)
            out.append(
                TaskResult(verdicts)
                if r is None
                else TaskResult(verdicts, raw=r.raw, tokens_in=r.tokens_in, tokens_out=r.tokens_out, call_id=r.call_id)
            )
        return out


def guarded(judge: Any, *, enabled: bool, include_titles: bool = False) -> Any:
    """``judge`` behind an ``InjectionGuard`` when ``enabled`` (and not already guarded), else ``judge``."""
    if not enabled or isinstance(judge, InjectionGuard):
        return judge
    return InjectionGuard(judge, include_titles=include_titles)
