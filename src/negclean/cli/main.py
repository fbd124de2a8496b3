"""`negclean` commands. Exit codes: 0 ok, 1 internal error, 2 usage/config, 3 bad input,
4 budget reached (resumable), 5 backend unreachable or misconfigured (docs/cli.md)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import typer

import negclean.cli as cli_package
from negclean.cli.console import emit_json, guarded, print_run_summary
from negclean.cli.inspect_cmd import inspect_run
from negclean.cli.options import ON_ERROR, OPERATIONS, one_of
from negclean.progress import progress_bar

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Find and fix false negatives in retriever/reranker training data.",
)

JSON_OPT = typer.Option(False, "--json", help="print a machine-readable JSON result instead of tables")
FORMAT_OPT = typer.Option(
    None, "--format", "-f", help="input format: tevatron, flagembedding, st, parquet (default: detected from content)"
)
ON_ERROR_OPT = typer.Option(
    "skip", "--on-error", help="fail: stop at the first unreadable line; skip: write it to rejects.jsonl and go on"
)


@app.command()
def judge(
    input: Path = typer.Argument(..., help="instances file (JSONL, JSONL.gz or Parquet)"),
    cascade: str = typer.Option("offline", "--cascade", "-c", help="preset name or YAML file with 'stages'"),
    output_dir: Path = typer.Option(Path("runs/latest"), "--output-dir", "-o"),
    store: Path | None = typer.Option(None, "--store", help="judgment store (default OUTPUT_DIR/judgments.sqlite)"),
    fmt: str | None = FORMAT_OPT,
    on_error: str = ON_ERROR_OPT,
    max_cost: float | None = typer.Option(None, "--max-cost", help="USD; stop cleanly before spending more"),
    dry_run: bool = typer.Option(False, "--dry-run", help="call no LLM; estimate tokens and cost"),
    as_json: bool = JSON_OPT,
):
    """Judge every hard negative through a cascade; write verdicts.jsonl and summary.json."""
    from negclean.api_files import judge_file  # lazy: pulls pydantic and yaml (keeps `negclean --help` fast)

    with guarded(as_json=as_json):
        result = judge_file(
            input,
            cascade,
            output_dir=output_dir,
            store=store,
            fmt=fmt,
            on_error=one_of(on_error, ON_ERROR, option="--on-error"),
            max_cost=max_cost,
            dry_run=dry_run,
            progress=None if as_json else progress_bar,
        )
    summary = result.as_dict()
    emit_json(summary) if as_json else print_run_summary(summary)


@app.command()
def fix(
    input: Path = typer.Argument(..., help="the instances file that was judged"),
    verdicts: Path = typer.Option(..., "--verdicts", "-v", help="verdicts.jsonl from `negclean judge`"),
    output: Path = typer.Option(..., "--output", "-o"),
    operation: str = typer.Option("relabel", "--op", help="none, remove, hn_remove or relabel"),
    fmt: str | None = FORMAT_OPT,
    out_fmt: str | None = typer.Option(None, "--to", help="output format (default: the input's)"),
    on_error: str = ON_ERROR_OPT,
    drop_undecided: bool = typer.Option(False, "--drop-undecided", help="also drop undecided negatives"),
    max_fn: int | None = typer.Option(
        None, "--max-false-negatives", help="re-apply a different per-instance cap than the judge run's"
    ),
    as_json: bool = JSON_OPT,
):
    """Apply a fix operation to the judged file."""
    from negclean.api_files import fix_file  # lazy: pulls pydantic and yaml (keeps `negclean --help` fast)

    with guarded(as_json=as_json):
        result = fix_file(
            input,
            verdicts,
            output=output,
            op=one_of(operation, OPERATIONS, option="--op"),
            fmt=fmt,
            out_fmt=out_fmt,
            on_error=one_of(on_error, ON_ERROR, option="--on-error"),
            drop_undecided=drop_undecided,
            max_false_negatives=max_fn,
        )
    summary = result.as_dict()
    if as_json:
        emit_json(summary)
    else:
        summary["fix"]["output"] = str(output)
        summary["fix"]["operation"] = operation
        print_run_summary(summary)


@app.command()
def convert(
    input: Path = typer.Argument(..., help="instances file (JSONL, JSONL.gz or Parquet)"),
    output: Path = typer.Argument(..., help="the new file: .jsonl, .jsonl.gz (gzip) or .parquet"),
    fmt: str | None = FORMAT_OPT,
    to: str | None = typer.Option(
        None, "--to", help="output format: tevatron, flagembedding, st, parquet (default: the input's)"
    ),
    on_error: str = ON_ERROR_OPT,
    reject_file: Path | None = typer.Option(
        None, "--reject-file", help="where unreadable lines go (default: OUTPUT's name + .rejects.jsonl)"
    ),
    as_json: bool = JSON_OPT,
):
    """Copy instances into another format (or the same one, checked): every line read, written or rejected."""
    from negclean.api_files import convert_file

    with guarded(as_json=as_json):
        report = convert_file(
            input,
            output,
            fmt=fmt,
            to=to,
            on_error=one_of(on_error, ON_ERROR, option="--on-error"),
            rejects=reject_file,
        )
    if as_json:
        emit_json(report.as_dict())
        return
    warned = ", ".join(f"{k} {v}" for k, v in sorted(report.warnings.items())) or "none"
    where = f" (in {report.rejects})" if report.rejected else ""
    typer.echo(
        f"{input} ({report.format}): {report.records_read} read, {report.written} written to {output} "
        f"({report.to}), {report.rejected} rejected{where}; warnings: {warned}"
    )


@app.command()
def run(
    pipeline: Path = typer.Argument(..., help="pipeline YAML: input, cascade, fix (and optionally mine)"),
    input: Path | None = typer.Option(None, "--input", "-i", help="override the pipeline's input"),
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="override output_dir"),
    max_cost: float | None = typer.Option(None, "--max-cost"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    as_json: bool = JSON_OPT,
):
    """Run a whole pipeline: read -> (mine) -> judge cascade -> fix -> write."""
    from negclean.api_files import run as run_file  # lazy: pulls pydantic and yaml

    with guarded(as_json=as_json):
        result = run_file(
            pipeline,
            input=input,
            output_dir=output_dir,
            max_cost=max_cost,
            dry_run=dry_run,
            progress=None if as_json else progress_bar,
        )
    summary = result.as_dict()
    emit_json(summary) if as_json else print_run_summary(summary)


@app.command()
def inspect(
    run_dir: Path = typer.Argument(..., help="a run folder (with verdicts.jsonl and summary.json)"),
    query_id: str | None = typer.Option(None, "--query", "-q", help="query id to show"),
    flagged: bool = typer.Option(False, "--flagged", help="show the first instance with false negatives"),
    index: int = typer.Option(0, "--index", "-n", help="show the N-th instance (0-based)"),
    as_json: bool = JSON_OPT,
):
    """Show one judged instance: query, positives, and each negative with every stage's verdict."""
    with guarded(as_json=as_json):
        inspect_run(run_dir, query_id=query_id, flagged=flagged, index=index, as_json=as_json)


@app.command()
def presets():
    """List the shipped cascades."""
    from negclean.presets import names  # lazy: pulls pydantic and yaml

    for n in names():
        typer.echo(n)


def _register_optional() -> None:
    """Commands defined in their own modules: every ``negclean/cli/*_cmd.py`` with a ``COMMANDS`` mapping
    of name -> function (a command) or typer.Typer (a group, e.g. `train retriever`). Those modules
    must import nothing heavy at module level, so that `negclean --help` stays fast."""
    for info in sorted(pkgutil.iter_modules(cli_package.__path__), key=lambda m: m.name):
        if not info.name.endswith("_cmd"):
            continue
        module = importlib.import_module(f"negclean.cli.{info.name}")
        for name, obj in getattr(module, "COMMANDS", {}).items():
            if isinstance(obj, typer.Typer):
                app.add_typer(obj, name=name)
            else:
                app.command(name=name)(obj)


_register_optional()


if __name__ == "__main__":
    app()
