"""Qrels judge: verdicts from known relevance labels (an oracle for benchmarks and tests).

Reads TREC or BEIR qrels, plain or gzipped (``negclean.data.qrels.read_qrels``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from negclean.data.qrels import Qrels, read_qrels
from negclean.judge.base import Grade, JudgeBase, JudgeTask, Label, OnCall, TaskResult, Verdict
from negclean.judge.config import QrelsJudgeConfig

__all__ = ["Qrels", "QrelsJudge", "read_qrels"]  # Qrels, read_qrels: negclean.data.qrels, re-exported


class QrelsJudge(JudgeBase):
    """Relevant when the qrels grade of (query id, docid) is at least ``min_grade``.

    Unjudged pairs are not_relevant (confidence None) or undecided, as the config says. Judged pairs
    get confidence 1.0 (relevant) or 0.0 (judged not relevant).
    """

    listwise = False
    keys_by_id = True  # decides by (query id, docid): the cascade stores its verdicts per id, not per text

    def __init__(self, config: QrelsJudgeConfig):
        self.config = config
        path = Path(config.path)
        self.qrels = read_qrels(path)
        self.judge_id = config.judge_id()
        self.fingerprint = config.fingerprint()  # covers the file's content (QrelsJudgeConfig.content_identity)

    def judge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: Any = None
    ) -> list[TaskResult]:
        return [
            TaskResult(tuple(self._verdict(task.instance.query_id, p.docid) for p in task.passages)) for task in tasks
        ]

    def _verdict(self, query_id: str, docid: str) -> Verdict:
        judged = self.qrels.get(query_id)
        grade = None if judged is None else judged.get(docid)
        if grade is None:
            reason = "query not in qrels" if judged is None else "pair not judged in qrels"
            if self.config.unjudged == "undecided":
                return Verdict(Label.UNDECIDED, None, self.judge_id, reason=reason)
            return Verdict(Label.NOT_RELEVANT, None, self.judge_id, reason=reason)
        if grade >= self.config.min_grade:
            return Verdict(Label.RELEVANT, 1.0, self.judge_id, grade=Grade.BETTER, reason=f"qrels grade {grade}")
        return Verdict(Label.NOT_RELEVANT, 0.0, self.judge_id, reason=f"qrels grade {grade}")

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        return (0, 0)
