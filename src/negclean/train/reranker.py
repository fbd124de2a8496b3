"""Fine-tune a sentence-transformers CrossEncoder (reranker) on instances.

Losses: ``bce`` (binary cross-entropy; each query gives one (query, positive, 1) row and k
(query, negative, 0) rows per epoch) or a listwise loss, ``listnet`` or ``lambda`` (one row per query:
the positive and k negatives with labels 1, 0, ..., 0). The positive rotates across epochs as for the
retriever. A bi-encoder checkpoint (e.g. the packaged MiniLM) gets a fresh one-logit classification head.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from negclean.embed import load_model
from negclean.errors import ConfigError, require
from negclean.train.common import (
    OFFLINE_HINT,
    Data,
    SamplerFactory,
    Timer,
    TrainResult,
    instances_hash,
    loss_history,
    quiet,
    read_data,
    save_atomically,
    seed_everything,
    torch_threads,
    trainer_arguments,
)
from negclean.train.config import TrainConfig
from negclean.train.groups import Group, build_groups


def reranker_columns(groups: list[Group], *, loss: str) -> dict[str, list]:
    """Dataset columns for a cross-encoder loss: pairs with a label (bce) or lists with labels."""
    if loss == "bce":
        query: list[str] = []
        passage: list[str] = []
        label: list[float] = []
        for g in groups:
            for text, y in ((g.positive, 1.0), *((n, 0.0) for n in g.negatives)):
                query.append(g.query)
                passage.append(text)
                label.append(y)
        return {"query": query, "passage": passage, "label": label}
    return {
        "query": [g.query for g in groups],
        "docs": [[g.positive, *g.negatives] for g in groups],
        "labels": [[1.0] + [0.0] * len(g.negatives) for g in groups],
    }


def load_cross_encoder(name: str, *, max_seq_length: int | None = None, device: str | None = None):
    return load_model(
        "CrossEncoder",
        name,
        extra="train",
        purpose="Training a reranker",
        what=f"model '{name}' as a cross-encoder",
        hint=OFFLINE_HINT,
        num_labels=1,
        max_length=max_seq_length,
        device=device,
    )


def _loss(model, name: str):
    from sentence_transformers.cross_encoder import losses

    if name == "bce":
        return losses.BinaryCrossEntropyLoss(model)
    if name == "listnet":
        return losses.ListNetLoss(model)
    return losses.LambdaLoss(model)


def train_reranker(
    data: Data,
    *,
    output_dir: str | Path,
    config: TrainConfig | None = None,
    fmt: str | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Fine-tune ``config.model`` as a cross-encoder on ``data`` and save it to ``output_dir``.

    Args: as ``train_retriever``; ``config.reranker_loss`` picks the loss, ``config.batch_size`` counts
    rows (pairs for bce, queries for the listwise losses).
    """
    config = config or TrainConfig(kind="reranker")
    require("datasets", extra="train", purpose="Training")
    from datasets import Dataset
    from sentence_transformers import CrossEncoderTrainer, CrossEncoderTrainingArguments

    if config.hard_negatives < 1:
        raise ConfigError("a reranker needs negatives to learn from: set hard_negatives to 1 or more")
    instances, source = read_data(data, fmt=fmt, output_dir=output_dir)
    per_epoch, stats = build_groups(
        instances,
        epochs=config.epochs,
        hard_negatives=config.hard_negatives,
        seed=config.seed,
        include_title=config.include_title,
        query_prefix=config.query_prefix,
        passage_prefix=config.passage_prefix,
    )
    if stats.instances < 1:
        raise ConfigError(f"{source}: no instance with a positive to train on")
    seed_everything(config.seed)
    model = load_cross_encoder(config.model, max_seq_length=config.max_seq_length, device=config.device)
    columns = reranker_columns([g for block in per_epoch for g in block], loss=config.reranker_loss)
    dataset = Dataset.from_dict(columns)
    factory = SamplerFactory(epochs=config.epochs)
    with (
        tempfile.TemporaryDirectory(prefix="negclean-train-") as scratch,
        torch_threads(config.threads),
        Timer() as timer,
    ):
        args = trainer_arguments(
            CrossEncoderTrainingArguments,
            config=config,
            scratch=scratch,
            batch_sampler=factory,
            show_progress=show_progress,
        )
        trainer = CrossEncoderTrainer(
            model=model, args=args, train_dataset=dataset, loss=_loss(model, config.reranker_loss)
        )
        quiet(trainer, show_progress=show_progress)
        output = trainer.train()
    sampler = factory.sampler
    result = TrainResult(
        output_dir=str(output_dir),
        kind="reranker",
        data=source,
        data_hash=instances_hash(instances),
        steps=int(trainer.state.global_step),
        train_loss=float(output.training_loss),
        loss_history=loss_history(trainer.state.log_history),
        epochs_served=tuple(sampler.served) if sampler else (),
        groups=stats.as_dict(),
        rows=len(dataset) // config.epochs,
        forced_conflicts=0,
        seconds=round(timer.seconds, 3),
        config=config.model_copy(update={"kind": "reranker"}).model_dump(mode="json"),
    )
    save_atomically(model, output_dir, result.as_dict())
    return result


__all__ = ["load_cross_encoder", "reranker_columns", "train_reranker"]
