"""`negclean train retriever|reranker INPUT -o MODEL_DIR`: fine-tune on an instance file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

train_app = typer.Typer(no_args_is_help=True, help="Fine-tune a retriever (bi-encoder) or reranker (cross-encoder) "
                        "on an instance file with the sentence-transformers trainers.")

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


def _options(config: Optional[Path], flags: dict[str, Any], *, kind: str):
    """TrainConfig from an optional YAML file, overridden by the flags that were given."""
    from negclean.errors import ConfigError
    from negclean.train.config import TrainConfig

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


def _run(kind: str, input: Path, output: Path, config: Optional[Path], fmt: Optional[str], as_json: bool,
         flags: dict[str, Any]) -> None:
    from negclean.cli.console import emit_json, guarded

    with guarded(as_json=as_json):
        cfg = _options(config, flags, kind=kind)
        from negclean.train import train

        result = train(str(input), output_dir=output, config=cfg, fmt=fmt, show_progress=not as_json)
    if as_json:
        emit_json(result.as_dict())
        return
    g = result.groups
    typer.echo(f"trained {kind} {cfg.model} on {g['instances']} instances ({g['multi_positive']} with several "
               f"positives, rotating; {g['resampled']} with fewer than {cfg.hard_negatives} negatives, "
               f"{g['filled_from_pool']} without any): {result.steps} steps in {result.seconds:.0f}s, "
               f"mean loss {result.train_loss:.4f}")
    typer.echo(f"saved -> {result.output_dir}")


def _common_flags(model, epochs, batch_size, lr, warmup_ratio, hard_negatives, max_seq_length, query_prefix,
                  passage_prefix, no_title, seed, max_steps, threads, device) -> dict[str, Any]:
    return {"model": model, "epochs": epochs, "batch_size": batch_size, "learning_rate": lr,
            "warmup_ratio": warmup_ratio, "hard_negatives": hard_negatives, "max_seq_length": max_seq_length,
            "query_prefix": query_prefix, "passage_prefix": passage_prefix,
            "include_title": False if no_title else None, "seed": seed, "max_steps": max_steps, "threads": threads,
            "device": device}


@train_app.command()
def retriever(
    input: Path = _INPUT,
    output: Path = _OUTPUT,
    model: Optional[str] = _MODEL,
    epochs: Optional[int] = _EPOCHS,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="queries per batch (default 32)"),
    lr: Optional[float] = _LR,
    warmup_ratio: Optional[float] = _WARMUP,
    hard_negatives: Optional[int] = _HARD_NEGATIVES,
    max_seq_length: Optional[int] = typer.Option(None, "--max-seq-length", help="token limit (default: model's)"),
    query_prefix: Optional[str] = _QUERY_PREFIX,
    passage_prefix: Optional[str] = _PASSAGE_PREFIX,
    no_title: bool = _NO_TITLE,
    scale: Optional[float] = typer.Option(None, "--scale", help="InfoNCE scale = 1/temperature (default 20)"),
    seed: Optional[int] = _SEED,
    max_steps: Optional[int] = _MAX_STEPS,
    threads: Optional[int] = _THREADS,
    device: Optional[str] = _DEVICE,
    config: Optional[Path] = _CONFIG,
    fmt: Optional[str] = _FORMAT,
    as_json: bool = _JSON,
):
    """Bi-encoder with InfoNCE: each query's hard negatives plus in-batch negatives; positives rotate by epoch."""
    flags = _common_flags(model, epochs, batch_size, lr, warmup_ratio, hard_negatives, max_seq_length, query_prefix,
                          passage_prefix, no_title, seed, max_steps, threads, device)
    flags["scale"] = scale
    _run("retriever", input, output, config, fmt, as_json, flags)


@train_app.command()
def reranker(
    input: Path = _INPUT,
    output: Path = _OUTPUT,
    model: Optional[str] = _MODEL,
    loss: Optional[str] = typer.Option(None, "--loss", help="bce (binary, default), listnet or lambda (listwise)"),
    epochs: Optional[int] = _EPOCHS,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="rows per batch: pairs (bce) or queries"),
    lr: Optional[float] = _LR,
    warmup_ratio: Optional[float] = _WARMUP,
    hard_negatives: Optional[int] = _HARD_NEGATIVES,
    max_seq_length: Optional[int] = typer.Option(None, "--max-seq-length", help="token limit of query + passage"),
    query_prefix: Optional[str] = _QUERY_PREFIX,
    passage_prefix: Optional[str] = _PASSAGE_PREFIX,
    no_title: bool = _NO_TITLE,
    seed: Optional[int] = _SEED,
    max_steps: Optional[int] = _MAX_STEPS,
    threads: Optional[int] = _THREADS,
    device: Optional[str] = _DEVICE,
    config: Optional[Path] = _CONFIG,
    fmt: Optional[str] = _FORMAT,
    as_json: bool = _JSON,
):
    """Cross-encoder: binary (query, passage, label) rows or listwise rows; positives rotate by epoch."""
    flags = _common_flags(model, epochs, batch_size, lr, warmup_ratio, hard_negatives, max_seq_length, query_prefix,
                          passage_prefix, no_title, seed, max_steps, threads, device)
    flags["reranker_loss"] = loss
    _run("reranker", input, output, config, fmt, as_json, flags)


COMMANDS = {"train": train_app}
