"""Deterministic "models" for the test server: they read negclean's rendered prompt back and answer it.

``parse_prompt`` recovers the question, ground truths and candidates from a chat request built with
negclean's templates (passages are tag-neutralised there, so the ``<doc>`` blocks are unambiguous).
``TableResponder`` answers from a table (candidate text -> better / worse / not relevant);
``OverlapOracle`` marks candidates sharing most of the question's content words. ``FullLength`` pads
another responder's answers to exactly ``max_tokens`` (the worst case a budget has to hold).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from negclean.judge.prompts import neutralize
from negclean.judge.tokens import count_tokens

_QUESTION = re.compile(r"^Question: (.*?)\n\n", re.DOTALL)
_GROUND_TRUTH = re.compile(r"<ground_truth>\n(.*?)\n</ground_truth>", re.DOTALL)
_NUMBERED_DOC = re.compile(r'<doc id="(\d+)">\n(.*?)\n</doc>', re.DOTALL)
_SINGLE_DOC = re.compile(r"<doc>\n(.*?)\n</doc>", re.DOTALL)
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "the and for are was were what which who whom whose when where why how does did has have "
    "had with from that this these those into about than then them they their there its is of "
    "in on to a an by as at be or it can".split()
)


@dataclass(frozen=True)
class Reply:
    """What a responder answers: content, finish reason, and optionally first-token log-probs.

    ``p_yes`` makes the server report ``yes``/``no`` first-token log-probs with that probability;
    ``top_logprobs`` gives them explicitly as (token, logprob) pairs.
    """

    content: str
    finish_reason: str = "stop"
    p_yes: float | None = None
    top_logprobs: Sequence[tuple[str, float]] | None = None


@dataclass(frozen=True)
class PromptView:
    """The parts of a negclean judge prompt."""

    question: str
    ground_truths: tuple[str, ...]
    candidates: tuple[str, ...]
    listwise: bool
    reasoning: bool


def parse_prompt(body: Mapping) -> PromptView:
    """Recover question, ground truths and candidates from a chat request made from negclean's templates."""
    messages = body.get("messages") or []
    system = next((str(m.get("content") or "") for m in messages if m.get("role") == "system"), "")
    user = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    match = _QUESTION.search(user)
    question = match.group(1) if match else ""
    truths = tuple(_GROUND_TRUTH.findall(user))
    numbered = _NUMBERED_DOC.findall(user)
    if numbered:
        docs = tuple(text for _, text in sorted(numbered, key=lambda nd: int(nd[0])))
        return PromptView(question, truths, docs, listwise=True, reasoning="<reasoning>" in system)
    return PromptView(question, truths, tuple(_SINGLE_DOC.findall(user)), listwise=False, reasoning=False)


def _answer(view: PromptView, grades: Sequence[str | None], notes: Sequence[str], p_yes: Sequence[float]) -> Reply:
    if not view.listwise:
        if not grades:
            return Reply("no", p_yes=0.0)
        return Reply("yes" if grades[0] else "no", p_yes=p_yes[0])
    better = [i + 1 for i, g in enumerate(grades) if g == "better"]
    worse = [i + 1 for i, g in enumerate(grades) if g == "worse"]
    verdict = "<verdict>" + json.dumps({"better": better, "worse": worse}) + "</verdict>"
    if not view.reasoning:
        return Reply(verdict)
    lines = "\n".join(f"Document {i + 1}: {note}" for i, note in enumerate(notes))
    return Reply(f"<reasoning>\n{lines}\n</reasoning>\n{verdict}")


class TableResponder:
    """Answers from a table: candidate text -> ``"better"``, ``"worse"``, True (= better) or False/None.

    Candidates not in the table are not relevant. With titles in the prompt, a candidate matches when
    its text (the block after the title line) is in the table.
    """

    def __init__(self, table: Mapping[str, str | bool | None], *, p_yes: float = 0.9, p_no: float = 0.1) -> None:
        self.table = {neutralize(k).strip(): ("better" if v is True else (v or None)) for k, v in table.items()}
        self.p_yes, self.p_no = p_yes, p_no

    def grade(self, block: str) -> str | None:
        block = block.strip()
        if block in self.table:
            return self.table[block]
        tail = block.split("\n", 1)[-1].strip()
        return self.table.get(tail)

    def __call__(self, body: Mapping) -> Reply:
        view = parse_prompt(body)
        grades = [self.grade(c) for c in view.candidates]
        notes = [f"judged {g or 'not relevant'} by the table." for g in grades]
        return _answer(view, grades, notes, [self.p_yes if g else self.p_no for g in grades])


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in _STOP}


class OverlapOracle:
    """Relevant when a candidate holds at least ``threshold`` of the question's content words.

    Grade: ``better`` when its overlap is at least the best ground truth's, else ``worse``. Pointwise
    P(yes) rises with the overlap (0.5 at the threshold), so it is consistent with the yes/no word.
    """

    def __init__(self, *, threshold: float = 0.6) -> None:
        self.threshold = threshold

    def overlap(self, question: str, text: str) -> float:
        q = content_words(question)
        return len(q & content_words(text)) / len(q) if q else 0.0

    def __call__(self, body: Mapping) -> Reply:
        view = parse_prompt(body)
        truth = max((self.overlap(view.question, t) for t in view.ground_truths), default=0.0)
        grades, notes, probs = [], [], []
        for text in view.candidates:
            ov = self.overlap(view.question, text)
            grade = None if ov < self.threshold else ("better" if ov >= truth else "worse")
            grades.append(grade)
            notes.append(f"shares {ov:.0%} of the question's words; {grade or 'not relevant'}.")
            # linear map with P = 0.5 at the threshold, clipped to [0.02, 0.98]
            scale = (ov - self.threshold) / (2 * max(self.threshold, 1 - self.threshold))
            probs.append(min(0.98, max(0.02, 0.5 + scale)))
        return _answer(view, grades, notes, probs)


class FullLength:
    """Answers as ``inner`` does, padded after the answer with filler words to exactly the request's
    ``max_tokens`` (counted as the server counts them), with ``finish_reason: stop``: every call costs
    its worst case, as a model that writes long answers would."""

    def __init__(self, inner: Callable[[Mapping[str, Any]], Reply | str] | None = None) -> None:
        self.inner = inner if inner is not None else OverlapOracle()

    def __call__(self, body: Mapping) -> Reply:
        reply = self.inner(body)
        if isinstance(reply, str):
            reply = Reply(reply)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if not isinstance(limit, int) or count_tokens(reply.content) >= limit:
            return reply
        pad = limit - count_tokens(reply.content)
        for _ in range(8):  # " ok" is one token; a merge at the seam may need a step or two
            content = reply.content + "\n" + " ok" * pad
            have = count_tokens(content)
            if have == limit or pad <= 0:
                break
            pad += limit - have
        while count_tokens(content) > limit and pad > 0:
            pad -= 1
            content = reply.content + "\n" + " ok" * pad
        return Reply(content, reply.finish_reason, reply.p_yes, reply.top_logprobs)
