"""Training retrievers (bi-encoders, InfoNCE with hard + in-batch negatives) and rerankers (cross-encoders)
with the sentence-transformers trainers. Heavy libraries load only when a trainer runs.

    from negclean.train import TrainConfig, train
    result = train("fixed.jsonl", output_dir="models/relabel", config=TrainConfig(epochs=1, seed=13))
"""

from __future__ import annotations

from pathlib import Path

from negclean.train.config import TrainConfig
from negclean.train.reranker import train_reranker
from negclean.train.retriever import train_retriever

__all__ = ["TrainConfig", "train", "train_reranker", "train_retriever"]


def train(
    data,
    *,
    output_dir: str | Path,
    config: TrainConfig | None = None,
    fmt: str | None = None,
    show_progress: bool = True,
):
    """Train the kind of model ``config.kind`` names; returns a ``TrainResult``."""
    config = config or TrainConfig()
    fn = train_retriever if config.kind == "retriever" else train_reranker
    return fn(data, output_dir=output_dir, config=config, fmt=fmt, show_progress=show_progress)
