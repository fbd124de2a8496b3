"""Cascade configuration: ordered stages, each a judge plus the rule that says what goes on."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from negclean.judge.registry import AnyJudgeConfig


class StageConfig(BaseModel):
    """One stage of the cascade.

    Routing: a candidate this stage judged goes on to the next stage when
    - ``escalate`` says so: ``flagged`` (judged relevant, as RLHN passes stage-1 flags to stage 2),
      ``better`` / ``worse`` (only that grade), ``cleared`` (not relevant: e.g. after a duplicate screen,
      whose flags are certain), ``all`` or ``none``;
    - or its confidence lies in ``uncertain`` = [low, high] (log-prob or score based);
    - or it is undecided (unless ``escalate_undecided`` is false);
    - or it falls in the random ``audit_rate`` sample of what the stage did not escalate: the next
      stage's verdicts on that sample estimate what this stage missed.
    With ``unit: instance`` every candidate this stage saw of an instance goes on when any one does
    (RLHN re-judges the whole list); with ``unit: candidate`` only the escalated ones go.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    judge: AnyJudgeConfig = Field(
        ..., description="the stage's judge: a shipped backend or one a plugin registers (negclean.judge.registry)"
    )
    escalate: Literal["flagged", "better", "worse", "cleared", "all", "none"] = "flagged"
    uncertain: tuple[float, float] | None = None
    escalate_undecided: bool = True
    audit_rate: float = Field(0.0, ge=0.0, le=1.0)
    unit: Literal["instance", "candidate"] = "candidate"
    injection_guard: bool | None = Field(
        None,
        description="LLM stages: set aside candidates that may carry a prompt injection (undecided, not "
        "sent); default: the cascade's injection_guard",
    )

    @model_validator(mode="after")
    def _check_band(self) -> StageConfig:
        if self.uncertain is not None:
            lo, hi = self.uncertain
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"stage '{self.name}': uncertain band must satisfy 0 <= low <= high <= 1")
        return self


class CascadeConfig(BaseModel):
    """Stages in order plus what counts as a false negative and what a run may spend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: list[StageConfig] = Field(..., min_length=1)
    false_negative: Literal["better", "relevant"] = Field(
        "better", description="RLHN counts the final stage's 'better' list; 'relevant' also takes 'worse'"
    )
    max_false_negatives: int | None = Field(7, ge=0, description="instances with more are dropped as ambiguous")
    max_cost: float | None = Field(None, ge=0, description="USD; the run stops cleanly before exceeding it")
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    seed: int = 0
    chunk_size: int = Field(64, ge=1, description="instances judged together (memory and checkpoint unit)")
    injection_guard: bool = Field(
        True,
        description="set aside candidates that may carry a prompt injection "
        "before every LLM stage (a stage's own injection_guard overrides it)",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> CascadeConfig:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        return self
