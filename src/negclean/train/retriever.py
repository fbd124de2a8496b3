"""Fine-tune a sentence-transformers bi-encoder on instances with InfoNCE (MultipleNegativesRankingLoss).

Each row is (query, positive, negative_1..k): the loss scores every query against every passage of the
batch, so a query's negatives are its own k hard negatives plus the positives and hard negatives of the
other queries in the batch (in-batch negatives), as in RLHN's training. Positives rotate across epochs
(see ``negclean.train.groups``).
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


def retriever_columns(groups: list[Group], k: int) -> dict[str, list[str]]:
    """Dataset columns: anchor, positive, negative_1..negative_k (no column a trainer takes for a label)."""
    cols: dict[str, list[str]] = {"anchor": [g.query for g in groups], "positive": [g.positive for g in groups]}
    for j in range(k):
        cols[f"negative_{j + 1}"] = [g.negatives[j] for g in groups]
    return cols


def row_keys(groups: list[Group]):
    """Keys the batch sampler uses to keep a batch free of duplicate queries and positives."""
    from negclean.train.sampler import RowKeys

    ids: dict[str, int] = {}

    def key(text: str) -> int:
        return ids.setdefault(text, len(ids))

    return RowKeys(
        query=[key("q\x1f" + g.query) for g in groups],
        positive=[key(g.positive) for g in groups],
        passages=[frozenset(key(t) for t in (g.positive, *g.negatives)) for g in groups],
    )


def load_bi_encoder(name: str, *, max_seq_length: int | None = None, device: str | None = None):
    """A fresh (uncached: training changes it) SentenceTransformer; the packaged MiniLM for its names."""
    model = load_model(
        "SentenceTransformer",
        name,
        extra="train",
        purpose="Training a retriever",
        what=f"model '{name}'",
        hint=OFFLINE_HINT,
        device=device,
    )
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def train_retriever(
    data: Data,
    *,
    output_dir: str | Path,
    config: TrainConfig | None = None,
    fmt: str | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Fine-tune ``config.model`` on ``data`` and save it to ``output_dir``.

    Args:
        data: an instance file (any supported format) or Instance records.
        output_dir: where the trained model goes (replaced atomically when training succeeds).
        config: training options (``kind`` is ignored: this is the retriever trainer).
        fmt: format of the instance file (default: detected).
        show_progress: the trainer's progress bar and loss log.
    """
    config = config or TrainConfig()
    require("datasets", extra="train", purpose="Training")
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

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
    rows = [g for block in per_epoch for g in block]
    if stats.instances < 2:
        raise ConfigError(f"{source}: {stats.instances} usable instance(s); in-batch training needs at least 2")
    seed_everything(config.seed)
    model = load_bi_encoder(config.model, max_seq_length=config.max_seq_length, device=config.device)
    dataset = Dataset.from_dict(retriever_columns(rows, config.hard_negatives))
    factory = SamplerFactory(epochs=config.epochs, keys=row_keys(rows))
    loss = MultipleNegativesRankingLoss(model, scale=config.scale)
    with (
        tempfile.TemporaryDirectory(prefix="negclean-train-") as scratch,
        torch_threads(config.threads),
        Timer() as timer,
    ):
        args = trainer_arguments(
            SentenceTransformerTrainingArguments,
            config=config,
            scratch=scratch,
            batch_sampler=factory,
            show_progress=show_progress,
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
        quiet(trainer, show_progress=show_progress)
        output = trainer.train()
    sampler = factory.sampler
    result = TrainResult(
        output_dir=str(output_dir),
        kind="retriever",
        data=source,
        data_hash=instances_hash(instances),
        steps=int(trainer.state.global_step),
        train_loss=float(output.training_loss),
        loss_history=loss_history(trainer.state.log_history),
        epochs_served=tuple(sampler.served) if sampler else (),
        groups=stats.as_dict(),
        rows=len(per_epoch[0]),
        forced_conflicts=sampler.forced if sampler else 0,
        seconds=round(timer.seconds, 3),
        config=config.model_copy(update={"kind": "retriever"}).model_dump(mode="json"),
    )
    save_atomically(model, output_dir, result.as_dict())
    return result


__all__ = ["load_bi_encoder", "retriever_columns", "train_retriever"]
