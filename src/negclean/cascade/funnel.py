"""The typed funnel of one cascade stage in one run: what reached it, what it decided, what it cost.

One record for every caller that reports a run's stages (``negclean.judge``, the file facade, ``negclean holes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from negclean.cascade.runner import StageStats


@dataclass(frozen=True, slots=True)
class StageFunnel:
    """What one stage of the cascade saw and decided in one run.

    Args:
        candidates: candidates that reached the stage; ``from_store`` of them had a stored verdict, ``judged``
            were sent to the judge.
        relevant, not_relevant, undecided: the stage's verdicts; ``escalated``: sent on to the next stage.
        cost: USD spent by the stage (0 for local judges); ``seconds``: its wall time.
    """

    name: str
    judge: str
    candidates: int
    from_store: int
    judged: int
    relevant: int
    not_relevant: int
    undecided: int
    escalated: int
    cost: float
    seconds: float

    @classmethod
    def of(cls, s: StageStats) -> StageFunnel:
        """From the runner's live counters (cost rounded to 1e-6 USD, seconds to ms, as in ``summary.json``)."""
        return cls(
            s.name,
            s.judge_id,
            s.candidates,
            s.from_store,
            s.judged,
            s.relevant,
            s.not_relevant,
            s.undecided,
            s.escalated,
            round(s.cost, 6),
            round(s.seconds, 3),
        )

    @classmethod
    def from_summary(cls, stage: Mapping[str, Any]) -> StageFunnel:
        """From one entry of ``summary.json``'s ``cascade.stages``."""
        return cls(
            stage["name"],
            stage["judge_id"],
            stage["candidates"],
            stage["from_store"],
            stage["judged"],
            stage["relevant"],
            stage["not_relevant"],
            stage["undecided"],
            stage["escalated"],
            stage["cost"],
            stage["seconds"],
        )
