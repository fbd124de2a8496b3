"""Pieces both trainers share: reading the data, seeding, trainer arguments, the result record, saving."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from negclean.data.io import read_instances
from negclean.data.paths import refuse_replacing_folder
from negclean.data.records import Instance
from negclean.errors import InputError
from negclean.local_models import SUMMARY_FILE as SUMMARY_FILE  # re-exported: these three were defined here
from negclean.local_models import read_summary as read_summary
from negclean.local_models import torch_threads as torch_threads
from negclean.train.config import TrainConfig

Data = str | os.PathLike[str] | Iterable[Instance]


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What a training run did; also written to ``<output_dir>/negclean_train.json``.

    Args:
        output_dir: the saved model (loadable with SentenceTransformer / CrossEncoder).
        kind: retriever or reranker.
        data: the training file (or "<instances>" for records passed in memory).
        data_hash: content hash of the instances trained on.
        steps: optimizer steps taken.
        train_loss: mean training loss over the run (the trainer's figure).
        loss_history: (step, loss) as logged every ``logging_steps``.
        epochs_served: the epoch blocks the batch sampler served, in order.
        groups: counts from building the training groups (``GroupStats``).
        rows: training rows per epoch.
        forced_conflicts: rows put into a batch despite an in-batch duplicate (retriever).
        seconds: wall time of the training itself.
        config: the TrainConfig used, as JSON.
    """

    output_dir: str
    kind: str
    data: str
    data_hash: str
    steps: int
    train_loss: float
    loss_history: tuple[tuple[int, float], ...]
    epochs_served: tuple[int, ...]
    groups: Mapping[str, Any]
    rows: int
    forced_conflicts: int
    seconds: float
    config: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["loss_history"] = [list(x) for x in self.loss_history]
        out["epochs_served"] = list(self.epochs_served)
        out["groups"] = dict(self.groups)
        out["config"] = dict(self.config)
        out["config_hash"] = TrainConfig.model_validate(self.config).params_hash() if self.config else None
        return out


def read_data(
    data: Data, *, fmt: str | None = None, output_dir: str | Path | None = None
) -> tuple[list[Instance], str]:
    """All instances (training needs them in memory anyway) and a description of where they came from.
    ``output_dir``: the model folder the run will replace; ConfigError when it holds the data file."""
    if isinstance(data, (str, os.PathLike)):
        if output_dir is not None:
            refuse_replacing_folder(data, output_dir, label="--output")

        instances = list(read_instances(data, fmt=fmt, on_error="fail"))
        source = str(data)
    else:
        instances = list(data)
        source = "<instances>"
    if not instances:
        raise InputError("no training instances: the input is empty", path=source)
    return instances, source


def instances_hash(instances: Iterable[Instance]) -> str:
    """Content hash of what training sees: query ids and texts, positives and negatives in order."""
    digest = hashlib.sha256()
    for inst in instances:
        digest.update(f"{inst.query_id}\x1f{inst.query}\x1f{inst.subset}\x1e".encode())
        for role, passages in (("+", inst.positives), ("-", inst.negatives)):
            for p in passages:
                digest.update(f"{role}{p.docid}\x1f{p.key}\x1e".encode())
    return digest.hexdigest()[:24]


def seed_everything(seed: int) -> None:
    """Python, numpy and torch RNGs (transformers.set_seed covers all three)."""
    from transformers import set_seed

    set_seed(seed)


def trainer_arguments(
    args_cls, *, config: TrainConfig, scratch: str, batch_sampler: Callable, show_progress: bool
) -> Any:
    """Training arguments of the sentence-transformers trainers, the same for both kinds of model."""
    import torch
    import transformers

    # transformers 5 takes the warmup ratio as a float warmup_steps (warmup_ratio is deprecated there)
    major = int(transformers.__version__.split(".")[0])
    warmup = {"warmup_steps": float(config.warmup_ratio)} if major >= 5 else {"warmup_ratio": config.warmup_ratio}
    return args_cls(
        output_dir=scratch,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        **warmup,
        weight_decay=config.weight_decay,
        seed=config.seed,
        data_seed=config.seed,
        batch_sampler=batch_sampler,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        logging_steps=config.logging_steps,
        disable_tqdm=not show_progress,
        use_cpu=config.device == "cpu",
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def quiet(trainer, *, show_progress: bool) -> None:
    """Without progress, the trainer must not print its loss logs either (stdout may carry --json)."""
    if not show_progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)


class SamplerFactory:
    """Builds the epoch-block batch sampler for the trainer and keeps it, so the run can report on it."""

    def __init__(self, *, epochs: int, keys=None):
        self.epochs = epochs
        self.keys = keys
        self.sampler = None

    def __call__(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        from negclean.train.sampler import EpochBlockBatchSampler

        self.sampler = EpochBlockBatchSampler(
            dataset, batch_size, drop_last, valid_label_columns, generator, seed, epochs=self.epochs, keys=self.keys
        )
        return self.sampler


def loss_history(log_history: list[dict]) -> tuple[tuple[int, float], ...]:
    return tuple((int(row["step"]), float(row["loss"])) for row in log_history if "loss" in row and "step" in row)


def save_atomically(model, output_dir: str | Path, summary: dict) -> None:
    """Save the model and its summary into a fresh folder, then move it into place: a model folder is
    complete or absent, never half-written (the experiment runner relies on this to resume)."""
    out = Path(output_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(str(tmp))
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


# the end of the message when a model to train cannot be loaded
OFFLINE_HINT = "Give a local directory or a name that is available offline (e.g. all-MiniLM-L6-v2)"
