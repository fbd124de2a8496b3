"""`negclean scale judge|run|mine --engine ray|local`: the pipeline's steps on a Ray cluster (or locally).

Same inputs, outputs and exit codes as `negclean judge`, `negclean run` and `negclean mine`; the Ray
options say where and how wide to run. See docs/scale.md.
"""

from __future__ import annotations

from pathlib import Path

import typer

from negclean.cli.console import count_lines, emit_json, guarded, print_run_summary, progress
from negclean.cli.options import ON_ERROR, cascade_config, one_of
from negclean.errors import ConfigError
from negclean.progress import progress_bar
from negclean.scale.runtime import RayOptions

scale_app = typer.Typer(no_args_is_help=True, help="Judge, run or mine on a Ray cluster (--engine ray) or locally.")

ENGINE_OPT = typer.Option("ray", "--engine", help="ray: shard over a Ray actor pool; local: the one-process engine")
ADDRESS_OPT = typer.Option(
    None, "--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray instance for this run)"
)
WORKERS_OPT = typer.Option(None, "--workers", help="actors in the pool (default: as many as the CPUs allow)")
NUM_CPUS_OPT = typer.Option(None, "--num-cpus", help="CPUs of a local Ray instance (default: all)")
CPUS_OPT = typer.Option(1.0, "--cpus-per-worker", help="CPUs each actor reserves (also its threads)")
GPUS_OPT = typer.Option(0.0, "--gpus-per-worker", help="GPUs each actor reserves (vllm judges, GPU embedding)")
SHARD_OPT = typer.Option(
    1000, "--shard-size", help="instances (or queries) per shard: the unit of work and of resuming"
)
JSON_OPT = typer.Option(False, "--json", help="print a machine-readable JSON result instead of tables")


def _ray_options(
    address: str | None, workers: int | None, num_cpus: int | None, cpus: float, gpus: float, shard_size: int
) -> RayOptions:
    return RayOptions(
        address=address,
        workers=workers,
        num_cpus=num_cpus,
        cpus_per_worker=cpus,
        gpus_per_worker=gpus,
        shard_size=shard_size,
    )


def _check_engine(engine: str) -> None:
    if engine not in ("ray", "local"):
        raise ConfigError(f"--engine {engine!r}: choose ray or local")


@scale_app.command("judge")
def scale_judge(
    input: Path = typer.Argument(..., help="instances file (JSONL, JSONL.gz or Parquet)"),
    cascade: str = typer.Option("offline", "--cascade", "-c", help="preset name or YAML file with 'stages'"),
    output_dir: Path = typer.Option(Path("runs/latest"), "--output-dir", "-o"),
    store: Path | None = typer.Option(None, "--store", help="judgment store (default OUTPUT_DIR/judgments.sqlite)"),
    fmt: str | None = typer.Option(None, "--format", "-f", help="input format (default: detected)"),
    on_error: str = typer.Option("skip", "--on-error", help="fail or skip unreadable lines"),
    max_cost: float | None = typer.Option(None, "--max-cost", help="USD; stop cleanly before spending more"),
    dry_run: bool = typer.Option(False, "--dry-run", help="call no LLM; estimate tokens and cost"),
    engine: str = ENGINE_OPT,
    address: str | None = ADDRESS_OPT,
    workers: int | None = WORKERS_OPT,
    num_cpus: int | None = NUM_CPUS_OPT,
    cpus_per_worker: float = CPUS_OPT,
    gpus_per_worker: float = GPUS_OPT,
    shard_size: int = SHARD_OPT,
    as_json: bool = JSON_OPT,
):
    """`negclean judge` on Ray: verdicts.jsonl, rejects.jsonl and summary.json as the local engine writes them."""
    with guarded(as_json=as_json):
        _check_engine(engine)
        cfg = cascade_config(cascade, max_cost)
        checked = one_of(on_error, ON_ERROR, option="--on-error")
        with progress(count_lines(str(input)), "judging", enabled=not as_json) as advance:
            if engine == "local":
                from negclean.pipeline import run_judge  # lazy: pulls pydantic and yaml

                summary = run_judge(
                    input_path=str(input),
                    cascade=cfg,
                    output_dir=output_dir,
                    store_path=str(store) if store else None,
                    fmt=fmt,
                    on_error=checked,
                    dry_run=dry_run,
                    on_progress=advance,
                )
            else:
                from negclean.scale.ray_judge import run_judge_ray  # lazy: pulls numpy, pydantic, yaml

                summary = run_judge_ray(
                    input_path=str(input),
                    cascade=cfg,
                    output_dir=output_dir,
                    store_path=str(store) if store else None,
                    fmt=fmt,
                    on_error=checked,
                    dry_run=dry_run,
                    on_progress=advance,
                    ray_options=_ray_options(address, workers, num_cpus, cpus_per_worker, gpus_per_worker, shard_size),
                )
    emit_json(summary) if as_json else print_run_summary(summary)


@scale_app.command("run")
def scale_run(
    pipeline: Path = typer.Argument(..., help="pipeline YAML: input, cascade, fix (and optionally mine)"),
    input: Path | None = typer.Option(None, "--input", "-i", help="override the pipeline's input"),
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="override output_dir"),
    max_cost: float | None = typer.Option(None, "--max-cost"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    engine: str = ENGINE_OPT,
    address: str | None = ADDRESS_OPT,
    workers: int | None = WORKERS_OPT,
    num_cpus: int | None = NUM_CPUS_OPT,
    cpus_per_worker: float = CPUS_OPT,
    gpus_per_worker: float = GPUS_OPT,
    shard_size: int = SHARD_OPT,
    as_json: bool = JSON_OPT,
):
    """`negclean run` on Ray: mine (if configured), judge and fix, sharded."""
    from negclean.pipeline import load_pipeline, run_pipeline  # lazy: pulls numpy, pydantic, yaml

    with guarded(as_json=as_json):
        _check_engine(engine)
        overrides = {k: str(v) for k, v in (("input", input), ("output_dir", output_dir)) if v is not None}
        cfg = load_pipeline(pipeline, overrides=overrides)
        if max_cost is not None:
            cfg = cfg.model_copy(update={"cascade": cfg.cascade.model_copy(update={"max_cost": max_cost})})
        if engine == "local":
            summary = run_pipeline(cfg, dry_run=dry_run, progress=None if as_json else progress_bar)
        else:
            from negclean.scale.ray_judge import run_pipeline_ray  # lazy: pulls numpy, pydantic, yaml

            summary = run_pipeline_ray(
                cfg,
                dry_run=dry_run,
                ray_options=_ray_options(address, workers, num_cpus, cpus_per_worker, gpus_per_worker, shard_size),
            )
    emit_json(summary) if as_json else print_run_summary(summary)


@scale_app.command("mine")
def scale_mine(
    source: Path = typer.Argument(..., help="a BEIR folder, or an instance file whose negatives are re-mined"),
    output: Path = typer.Option(..., "--output", "-o", help="instances to write (.jsonl, .jsonl.gz or .parquet)"),
    retriever: str = typer.Option("dense", "--retriever", "-r", help="dense, bm25 or hybrid"),
    model: str = typer.Option("all-MiniLM-L6-v2", "--model", "-m"),
    rank_range: str = typer.Option("10:100", "--range", help="START:END: keep ranks START+1..END"),
    num_negatives: int = typer.Option(15, "--num-negatives", "-n"),
    split: str = typer.Option("train", "--split"),
    corpus: Path | None = typer.Option(None, "--corpus", help="instance input: corpus to mine from"),
    out_fmt: str | None = typer.Option(
        None, "--to", help="output format (default: tevatron for BEIR, else the input's)"
    ),
    options: list[str] = typer.Option(
        [],
        "--set",
        help="any other mining option as KEY=VALUE (YAML value), e.g. "
        "--set sampling=simans --set index=hnsw; see `negclean mine --help`",
    ),
    work_dir: Path | None = typer.Option(
        None,
        "--work-dir",
        help="shards and shared caches (default: next to the output); must be on storage every node sees",
    ),
    engine: str = ENGINE_OPT,
    address: str | None = ADDRESS_OPT,
    workers: int | None = WORKERS_OPT,
    num_cpus: int | None = NUM_CPUS_OPT,
    cpus_per_worker: float = CPUS_OPT,
    gpus_per_worker: float = GPUS_OPT,
    shard_size: int = SHARD_OPT,
    as_json: bool = JSON_OPT,
):
    """`negclean mine` on Ray: corpus embedding and query shards on actor pools; the same output file."""
    with guarded(as_json=as_json):
        import yaml  # lazy: with mine.config below, pulls yaml, numpy and pydantic

        from negclean.mine.config import MineConfig

        _check_engine(engine)
        opts = dict(
            retriever=retriever,
            model=model,
            rank_range=rank_range,
            num_negatives=num_negatives,
            split=split,
            corpus=str(corpus) if corpus else None,
        )
        for item in options:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set sampling=simans")
            opts[key.strip().replace("-", "_")] = yaml.safe_load(value)
        opts["beir" if source.is_dir() else "input"] = str(source)
        config = MineConfig.from_options(opts, source="negclean scale mine")
        if engine == "local":
            from negclean.mine.mine import mine  # lazy: pulls numpy, pydantic, yaml

            summary = mine(config, output=output, out_fmt=out_fmt)
        else:
            from negclean.scale.ray_mine import mine_ray  # lazy: pulls numpy, pydantic, yaml

            summary = mine_ray(
                config,
                output=output,
                out_fmt=out_fmt,
                work_dir=work_dir,
                ray_options=_ray_options(address, workers, num_cpus, cpus_per_worker, gpus_per_worker, shard_size),
            )
    if as_json:
        emit_json(summary.as_dict())
    else:
        typer.echo("\n".join(summary.lines()))


COMMANDS = {"scale": scale_app}
