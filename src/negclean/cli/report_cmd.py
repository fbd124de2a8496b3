"""`negclean report RUN_DIR`: the run's self-contained HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from negclean.cli.console import emit_json, guarded
from negclean.cli.options import one_of
from negclean.errors import ConfigError

if TYPE_CHECKING:
    from negclean.report.collect import ScoreSource

_SCORES: tuple[ScoreSource, ...] = ("auto", "data", "minilm", "rank", "none")


def report(
    run_dir: Path = typer.Argument(..., help="a run folder (summary.json and verdicts.jsonl)"),
    output: Path | None = typer.Option(None, "--output", "-o", help="HTML file (default RUN_DIR/report.html)"),
    input: Path | None = typer.Option(None, "--input", "-i", help="the judged file, if it moved since the run"),
    store: Path | None = typer.Option(None, "--store", help="judgment store with human labels, if not the run's"),
    scores: str = typer.Option(
        "auto",
        "--scores",
        help="score plots from: auto (data, else MiniLM if cheap, else rank), data, minilm, rank, none",
    ),
    examples: int = typer.Option(60, "--examples", help="instances to include for browsing"),
    seed: int = typer.Option(0, "--seed", help="which instances are included, reproducibly"),
    extra: list[Path] = typer.Option(
        [],
        "--extra",
        help="another JSON result file to show as tables (repeatable); "
        "experiment.json and bench_judges.json in RUN_DIR are "
        "shown anyway",
    ),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output on stdout"),
):
    """Write one self-contained HTML file: funnel, false-negative rates, score plots, cost, examples."""
    with guarded(as_json=as_json):
        source = one_of(scores, _SCORES, option="--scores")
        if examples < 0:
            raise ConfigError("--examples must be 0 or more")
        from negclean.report.build import build_report  # lazy: pulls numpy and yaml

        result = build_report(
            run_dir,
            output=output,
            input_path=input,
            store_path=store,
            scores=source,
            max_examples=examples,
            seed=seed,
            extra=extra,
        )
    if as_json:
        emit_json(result.as_dict())
    else:
        typer.echo(
            f"wrote {result.path} ({result.path.stat().st_size / 1024:.0f} KiB; {result.examples} examples; "
            f"scores: {result.score_source}; sections: {', '.join(result.sections)})"
        )


COMMANDS = {"report": report}
