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

import inspect
from typing import Any, Sequence

from negclean.judge.base import JudgeTask, Label, TaskResult, Verdict, accepts_keyword, check_results
from negclean.judge.injection import rule_names, scan_passage

#: the reason of every set-aside verdict starts so (reports count them by it)
SET_ASIDE = "set aside: possible prompt injection"


def set_aside_reason(rules: Sequence[str], *, in_positive: bool = False) -> str:
    return f"{SET_ASIDE} ({', '.join(rules)})" + (" in a positive" if in_positive else "")


def rules_in_reason(reason: str) -> tuple[str, ...]:
    """The rule names of a set-aside reason; () for any other reason."""
    if not reason.startswith(SET_ASIDE + " ("):
        return ()
    inner = reason[len(SET_ASIDE) + 2:].split(")", 1)[0]
    return tuple(r.strip() for r in inner.split(",") if r.strip())


class InjectionGuard:
    """A judge that sends only candidates with no sign of prompt injection to ``inner``.

    Args:
        inner: the judge that makes the calls (any ``Judge``).
        include_titles: scan titles too (set it as the inner judge shows titles to the model).
    """

    def __init__(self, inner: Any, *, include_titles: bool = False):
        self.inner = inner
        self.include_titles = include_titles
        self._inner_streams = accepts_keyword(inner, "on_call")
        # The cascade (and code built on it) asks ``inspect.signature(judge.judge)`` which keyword arguments a
        # judge takes: show the inner judge's own, plus ``on_call``, which the guard always accepts.
        self.judge = self._judge
        try:
            sig = inspect.signature(inner.judge)
            params = list(sig.parameters.values())
            if "on_call" not in sig.parameters:
                at = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params))
                params.insert(at, inspect.Parameter("on_call", inspect.Parameter.KEYWORD_ONLY, default=None))
            self.judge = _with_signature(self._judge, sig.replace(parameters=params))
        except (TypeError, ValueError):
            pass

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
    def stats(self) -> Any:
        return getattr(self.inner, "stats", None)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

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
                aside[c] = Verdict(Label.UNDECIDED, None, self.inner.judge_id,
                                   reason=set_aside_reason(rules, in_positive=bool(pos_rules)))
        if not aside:
            return task, aside
        kept = tuple(c for c in task.candidates if c not in aside)
        return (JudgeTask(inst, kept) if kept else None), aside

    def _judge(self, tasks: Sequence[JudgeTask], *, on_call: Any = None, **kwargs: Any) -> list[TaskResult]:
        plans = [self.split(t) for t in tasks]
        sent = [part for part, _ in plans if part is not None]
        results: list[TaskResult] = []
        if sent:
            if on_call is not None and self._inner_streams:
                results = self.inner.judge(sent, on_call=on_call, **kwargs)
            else:
                results = self.inner.judge(sent, **kwargs)
            check_results(self.judge_id, sent, results)
            for part, r in zip(sent, results):
                if on_call is not None and not self._inner_streams:
                    on_call(part, r)  # as the cascade stores a judge's results that come all at once
        out: list[TaskResult] = []
        answered = iter(results)
        for task, (part, aside) in zip(tasks, plans):
            r = next(answered) if part is not None else None
            if not aside:
                out.append(r)
                continue
            by_candidate = dict(aside)
            if r is not None:
                by_candidate.update(zip(part.candidates, r.verdicts))
            verdicts = tuple(by_candidate[c] for c in task.candidates)
            out.append(TaskResult(verdicts) if r is None else
                       TaskResult(verdicts, raw=r.raw, tokens_in=r.tokens_in, tokens_out=r.tokens_out,
                                  call_id=r.call_id))
        return out


def _with_signature(func: Any, sig: inspect.Signature) -> Any:
    def judge(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    judge.__signature__ = sig  # type: ignore[attr-defined]
    judge.__doc__ = func.__doc__
    return judge


def guarded(judge: Any, *, enabled: bool, include_titles: bool = False) -> Any:
    """``judge`` behind an ``InjectionGuard`` when ``enabled`` (and not already guarded), else ``judge``."""
    if not enabled or isinstance(judge, InjectionGuard):
        return judge
    return InjectionGuard(judge, include_titles=include_titles)
