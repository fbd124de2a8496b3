"""`negclean experiment EXPERIMENT.yaml`: judge -> fix variants -> train each -> evaluate -> compare."""

from __future__ import annotations

from pathlib import Path

import typer

from negclean.cli.console import emit_json, guarded


def experiment_command(
    experiment: Path = typer.Argument(..., help="experiment YAML (see examples/scifact-experiment.yaml)"),
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="override output_dir"),
    seed: int | None = typer.Option(None, "--seed", help="override the training seed"),
    threads: int | None = typer.Option(None, "--threads", help="override torch CPU threads"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (progress goes to stderr)"),
):
    """The RLHN core table: the same model trained on default / remove / hn_remove / relabel data, compared."""
    with guarded(as_json=as_json):
        from negclean.experiment import load_experiment, run_experiment  # lazy: pulls numpy, pydantic, yaml

        overrides: dict = {}
        if output_dir is not None:
            overrides["output_dir"] = str(output_dir.resolve())
        if seed is not None:
            overrides["seed"] = seed
        if threads is not None:
            overrides["threads"] = threads
        cfg = load_experiment(experiment, overrides=overrides)
        result = run_experiment(cfg, log=_log, show_progress=not as_json)
    if as_json:
        emit_json(result.as_dict())
        return
    for name, path in result.files.items():
        if name.endswith(".md"):
            typer.echo(Path(path).read_text(encoding="utf-8"))
    typer.echo(f"results -> {Path(result.output_dir) / 'results.md'} ({result.seconds:.0f}s)")


def _log(message: str) -> None:
    import sys
    import time

    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


COMMANDS = {"experiment": experiment_command}
