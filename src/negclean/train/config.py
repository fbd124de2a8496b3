"""Options of a training run: one validated, frozen value shared by the CLI, the experiment runner and tests."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from negclean.configfile import invalid_config


class TrainConfig(BaseModel):
    """How to fine-tune a model on instances.

    The defaults follow RLHN's recipe where it applies at small scale: InfoNCE with one positive and 7
    hard negatives per query plus in-batch negatives, positives rotating across epochs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["retriever", "reranker"] = "retriever"
    model: str = Field("all-MiniLM-L6-v2", description="sentence-transformers model name or local directory")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1, description="queries per batch (retriever), rows per batch (reranker)")
    learning_rate: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    hard_negatives: int = Field(7, ge=0, description="hard negatives per query and epoch")
    max_seq_length: int | None = Field(
        None, ge=8, description="token limit of queries and passages (default: the model's own)"
    )
    query_prefix: str = Field("", description='prepended to every query, e.g. "query: " for E5')
    passage_prefix: str = Field("", description='prepended to every passage, e.g. "passage: "')
    include_title: bool = Field(True, description="passages as 'title text' (BEIR convention) or the text alone")
    scale: float = Field(20.0, gt=0, description="retriever: InfoNCE similarity scale (1 / temperature)")
    reranker_loss: Literal["bce", "listnet", "lambda"] = Field(
        "bce", description="reranker: bce (binary, one row per pair) or a listwise loss (one row per query)"
    )
    seed: int = 42
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (trials, tests)")
    device: str | None = None
    threads: int | None = Field(None, ge=1, description="torch CPU threads (on a busy shared machine 1 can beat 2)")
    logging_steps: int = Field(10, ge=1)

    @classmethod
    def from_options(cls, options: dict[str, Any], *, source: str = "train options") -> TrainConfig:
        """Validate a mapping (YAML, CLI); errors name each bad field."""
        try:
            return cls.model_validate(dict(options))
        except ValidationError as exc:
            raise invalid_config(exc, f"{source}: invalid training options:", root="(options)") from None

    def params_hash(self) -> str:
        """Hash of everything that changes the trained weights (device, threads and logging excluded)."""
        data = self.model_dump(mode="json", exclude={"device", "threads", "logging_steps"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


__all__ = ["TrainConfig"]
