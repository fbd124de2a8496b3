"""A model-free judge: the share of the query's words found in the candidate, against a threshold."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from negclean.judge.base import JudgeBase, JudgeTask, OnCall, TaskResult, threshold_verdicts
from negclean_testjudge.config import TestJudgeConfig

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


class WordOverlapJudge(JudgeBase):
    def __init__(self, config: TestJudgeConfig) -> None:
        self.config = config
        self.judge_id = config.judge_id()
        self.fingerprint = config.fingerprint()

    def judge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: Any = None
    ) -> list[TaskResult]:
        out = []
        for task in tasks:
            query = words(task.instance.query)
            shares = [len(query & words(p.text)) / max(1, len(query)) for p in task.passages]
            out.append(
                TaskResult(
                    threshold_verdicts(
                        shares, threshold=self.config.min_overlap, judge_id=self.judge_id, what="query word share"
                    )
                )
            )
        return out
