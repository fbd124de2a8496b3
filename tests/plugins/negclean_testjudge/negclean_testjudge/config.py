"""The options of the ``testjudge`` backend, validated by negclean when a cascade names it."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from negclean.judge.config import JudgeConfigBase


class TestJudgeConfig(JudgeConfigBase):
    """Relevant when enough of the query's words occur in the candidate."""

    __test__ = False  # not a pytest test class, despite its name

    implementation: ClassVar = ("negclean_testjudge.judge", "WordOverlapJudge")
    operational: ClassVar = frozenset({"batch_size"})
    backend: Literal["testjudge"] = "testjudge"
    min_overlap: float = Field(0.5, ge=0.0, le=1.0, description="share of query words a relevant candidate has")
    batch_size: int = Field(16, ge=1, description="tasks per step (no effect on verdicts)")

    def default_id(self) -> str:
        return f"testjudge:{self.min_overlap:g}"
