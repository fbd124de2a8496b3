"""Duplicate judge: a negative that repeats a positive is a free false negative.

It is a screen. A candidate that duplicates a positive (same docid, same normalised text, or a near
copy by word-shingle Jaccard) is relevant/better with confidence 1.0; any other candidate is
``not_relevant`` with confidence None, which means "not flagged", not "judged irrelevant".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from negclean.data.hashing import normalize_text
from negclean.data.records import Passage
from negclean.judge.base import Grade, JudgeBase, JudgeTask, Label, OnCall, TaskResult, Verdict
from negclean.judge.config import DuplicateJudgeConfig

SHINGLE_WORDS = 3


def shingles(normalized: str, *, size: int = SHINGLE_WORDS) -> frozenset[tuple[str, ...]]:
    """Word ``size``-grams of an already normalised text; a shorter text is one shingle of all its words."""
    words = normalized.split()
    if len(words) <= size:
        return frozenset({tuple(words)}) if words else frozenset()
    return frozenset(zip(*(words[i:] for i in range(size))))


def jaccard(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> float:
    """|a ∩ b| / |a ∪ b|; 0.0 when both are empty (two empty texts are not evidence of copying)."""
    if not a or not b:
        return 0.0
    if len(a) > len(b):
        a, b = b, a
    inter = sum(1 for s in a if s in b)
    return inter / (len(a) + len(b) - inter)


@dataclass(frozen=True, slots=True)
class DuplicateMatch:
    """Why a candidate counts as a duplicate of a positive."""

    kind: str  # "docid" | "exact" | "near"
    positive_docid: str
    similarity: float

    def reason(self) -> str:
        if self.kind == "docid":
            return f"same docid as positive {self.positive_docid}"
        if self.kind == "exact":
            return f"exact duplicate (normalised text) of positive {self.positive_docid}"
        return f"near duplicate of positive {self.positive_docid} (Jaccard {self.similarity:.3f})"


class PositiveIndex:
    """The positives of one query, prepared for duplicate checks against many candidates."""

    def __init__(self, positives: Sequence[Passage], *, near_threshold: float | None, include_title: bool = False):
        self.near_threshold = near_threshold
        self.include_title = include_title
        self.by_docid = {p.docid: p.docid for p in positives if p.docid}
        self.by_text: dict[str, str] = {}
        self.shingled: list[tuple[str, frozenset[tuple[str, ...]]]] = []
        for p in positives:
            norm = self._normalized(p)
            if not norm:
                continue
            self.by_text.setdefault(norm, p.docid)
            if near_threshold is not None:
                self.shingled.append((p.docid, shingles(norm)))

    def _normalized(self, p: Passage) -> str:
        text = f"{p.title} {p.text}" if self.include_title and p.title else p.text
        return normalize_text(text)

    def match(self, candidate: Passage) -> DuplicateMatch | None:
        """The first rule that makes ``candidate`` a duplicate of a positive, or None."""
        if candidate.docid and candidate.docid in self.by_docid:
            return DuplicateMatch("docid", candidate.docid, 1.0)
        norm = self._normalized(candidate)
        if not norm:
            return None
        exact = self.by_text.get(norm)
        if exact is not None:
            return DuplicateMatch("exact", exact, 1.0)
        if self.near_threshold is None or not self.shingled:
            return None
        cand = shingles(norm)
        best: DuplicateMatch | None = None
        for docid, pos in self.shingled:
            sim = jaccard(cand, pos)
            if sim >= self.near_threshold and (best is None or sim > best.similarity):
                best = DuplicateMatch("near", docid, sim)
        return best


class DuplicateJudge(JudgeBase):
    """Flags candidates that duplicate one of the instance's positives. Model-free and deterministic."""

    listwise = False

    def __init__(self, config: DuplicateJudgeConfig | None = None):
        self.config = config or DuplicateJudgeConfig()
        self.judge_id = self.config.judge_id()
        self.fingerprint = self.config.fingerprint()

    def judge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: Any = None
    ) -> list[TaskResult]:
        results = []
        for task in tasks:
            index = PositiveIndex(
                task.instance.positives,
                near_threshold=self.config.near_threshold,
                include_title=self.config.include_title,
            )
            verdicts = []
            for passage in task.passages:
                found = index.match(passage)
                if found is None:
                    verdicts.append(
                        Verdict(Label.NOT_RELEVANT, None, self.judge_id, reason="not a duplicate of any positive")
                    )
                else:
                    verdicts.append(
                        Verdict(Label.RELEVANT, 1.0, self.judge_id, grade=Grade.BETTER, reason=found.reason())
                    )
            results.append(TaskResult(tuple(verdicts)))
        return results

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        return (0, 0)
