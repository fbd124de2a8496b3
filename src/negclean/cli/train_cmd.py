"""`negclean train retriever|reranker INPUT -o MODEL_DIR`: fine-tune on an instance file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from negclean.cli.console import emit_json, guarded
from negclean.errors import ConfigError

train_app = typer.Typer(
    no_args_is_help=True,
    help="Fine-tune a retriever (bi-encoder) or reranker (cross-encoder) "
    "on an instance file with the sentence-transformers trainers.",
)

# options both commands take (declared once; typer reads them per command)
_INPUT = typer.Argument(..., help="instances file (JSONL, JSONL.gz or Parquet; any supported format)")
_OUTPUT = typer.Option(..., "--output", "-o", help="folder for the trained model (replaced when training succeeds)")
_MODEL = typer.Option(None, "--model", "-m", help="base model (default all-MiniLM-L6-v2, offline)")
_EPOCHS = typer.Option(None, "--epochs", help="default 1")
_LR = typer.Option(None, "--lr", help="learning rate (default 2e-5)")
_WARMUP = typer.Option(None, "--warmup-ratio", help="default 0.1")
_HARD_NEGATIVES = typer.Option(None, "--hard-negatives", "-k", help="per query (default 7)")
_QUERY_PREFIX = typer.Option(None, "--query-prefix", help='e.g. "query: "')
_PASSAGE_PREFIX = typer.Option(None, "--passage-prefix", help='e.g. "passage: "')
_NO_TITLE = typer.Option(False, "--no-title", help="passages without their title")
_SEED = typer.Option(None, "--seed", help="default 42")
_MAX_STEPS = typer.Option(None, "--max-steps", help="stop after N steps (trials)")
_THREADS = typer.Option(None, "--threads", help="torch CPU threads")
_DEVICE = typer.Option(None, "--device", help="cpu, cuda, mps (default: best available)")
_CONFIG = typer.Option(None, "--config", help="YAML with training options (flags override)")
_FORMAT = typer.Option(None, "--format", "-f", help="input format (default: detected)")
_JSON = typer.Option(False, "--json", help="print the result as JSON")


def _options(config: Path | None, flags: dict[str, Any], *, kind: str):
    """TrainConfig from an optional YAML file, overridden by the flags that were given."""
    from negclean.train.config import TrainConfig  # lazy: pulls numpy, pydantic, yaml

    data: dict[str, Any] = {}
    if config is not None:
        from negclean.configfile import read_yaml

        loaded = read_yaml(config, missing="no such training options file") or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config}: expected a mapping of training options")
        data.update(loaded.get("train", loaded))
    data.update({k: v for k, v in flags.items() if v is not None})
    data["kind"] = kind
    return TrainConfig.from_options(data, source=str(config) if config else "options")


def _run(
    kind: str, input: Path, output: Path, config: Path | None, fmt: str | None, as_json: bool, flags: dict[str, Any]
) -> None:
    with guarded(as_json=as_json):
        cfg = _options(config, flags, kind=kind)
        from negclean.train import train  # lazy: pulls numpy, pydantic, yaml (`negclean --help` loads this module)

        result = train(str(input), output_dir=output, config=cfg, fmt=fmt, show_progress=not as_json)
    if as_json:
        emit_json(result.as_dict())
        return
    g = result.groups
    typer.echo(
        f"trained {kind} {cfg.model} on {g['instances']} instances ({g['multi_positive']} with several "
        f"positives, rotating; {g['resampled']} with fewer than {cfg.hard_negatives} negatives, "
        f"{g['filled_from_pool']} without any): {result.steps} steps in {result.seconds:.0f}s, "
        f"mean loss {result.train_loss:.4f}"
    )
    typer.echo(f"saved -> {result.output_dir}")


def _common_flags(
    model,
    epochs,
    batch_size,
    lr,
    warmup_ratio,
    hard_negatives,
    max_seq_length,
    query_prefix,
    passage_prefix,
    no_title,
    seed,
    max_steps,
    threads,
    device,
) -> dict[str, Any]:
    return {
        "model": model,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": lr,
        "warmup_ratio": warmup_ratio,
        "hard_negatives": hard_negatives,
        "max_seq_length": max_seq_length,
        "query_prefix": query_prefix,
        "passage_prefix": passage_prefix,
        "include_title": False if no_title else None,
        "seed": seed,
        "max_steps": max_steps,
        "threads": threads,
        "device": device,
    }


@train_app.command()
def retriever(
    input: Path = _INPUT,
    output: Path = _OUTPUT,
    model: str | None = _MODEL,
    epochs: int | None = _EPOCHS,
    batch_size: int | None = typer.Option(None, "--batch-size", help="queries per batch (default 32)"),
    lr: float | None = _LR,
    warmup_ratio: float | None = _WARMUP,
    hard_negatives: int | None = _HARD_NEGATIVES,
    max_seq_length: int | None = typer.Option(None, "--max-seq-length", help="token limit (default: model's)"),
    query_prefix: str | None = _QUERY_PREFIX,
    passage_prefix: str | None = _PASSAGE_PREFIX,
    no_title: bool = _NO_TITLE,
    scale: float | None = typer.Option(None, "--scale", help="InfoNCE scale = 1/temperature (default 20)"),
    seed: int | None = _SEED,
    max_steps: int | None = _MAX_STEPS,
    threads: int | None = _THREADS,
    device: str | None = _DEVICE,
    config: Path | None = _CONFIG,
    fmt: str | None = _FORMAT,
    as_json: bool = _JSON,
):
    """Bi-encoder with InfoNCE: each query's hard negatives plus in-batch negatives; positives rotate by epoch."""
    flags = _common_flags(
        model,
        epochs,
        batch_size,
        lr,
        warmup_ratio,
        hard_negatives,
        max_seq_length,
        query_prefix,
        passage_prefix,
        no_title,
        seed,
        max_steps,
        threads,
        device,
    )
    flags["scale"] = scale
    _run("retriever", input, output, config, fmt, as_json, flags)


@train_app.command()
def reranker(
    input: Path = _INPUT,
    output: Path = _OUTPUT,
    model: str | None = _MODEL,
    loss: str | None = typer.Option(None, "--loss", help="bce (binary, default), listnet or lambda (listwise)"),
    epochs: int | None = _EPOCHS,
    batch_size: int | None = typer.Option(None, "--batch-size", help="rows per batch: pairs (bce) or queries"),
    lr: float | None = _LR,
    warmup_ratio: float | None = _WARMUP,
    hard_negatives: int | None = _HARD_NEGATIVES,
    max_seq_length: int | None = typer.Option(None, "--max-seq-length", help="token limit of query + passage"),
    query_prefix: str | None = _QUERY_PREFIX,
    passage_prefix: str | None = _PASSAGE_PREFIX,
    no_title: bool = _NO_TITLE,
    seed: int | None = _SEED,
    max_steps: int | None = _MAX_STEPS,
    threads: int | None = _THREADS,
    device: str | None = _DEVICE,
    config: Path | None = _CONFIG,
    fmt: str | None = _FORMAT,
    as_json: bool = _JSON,
):
    """Cross-encoder: binary (query, passage, label) rows or listwise rows; positives rotate by epoch."""
    flags = _common_flags(
        model,
        epochs,
        batch_size,
        lr,
        warmup_ratio,
        hard_negatives,
        max_seq_length,
        query_prefix,
        passage_prefix,
        no_title,
        seed,
        max_steps,
        threads,
        device,
    )
    flags["reranker_loss"] = loss
    _run("reranker", input, output, config, fmt, as_json, flags)


COMMANDS = {"train": train_app}
