"""`negclean compare SYSTEM...`: a table per measure with paired significance tests, and a plot."""

from __future__ import annotations

from pathlib import Path

import typer

from negclean.cli.console import emit_json, guarded


def compare_command(
    systems: list[str] = typer.Argument(
        ...,
        help="NAME=PATH or PATH; PATH: an output folder of `negclean eval` "
        "or a TREC run file (then give --qrels). The first is the baseline.",
    ),
    qrels: Path | None = typer.Option(None, "--qrels", help="qrels for run files (TREC or BEIR TSV)"),
    filled_qrels: Path | None = typer.Option(
        None,
        "--filled-qrels",
        help="also compare under filled qrels: qrels.filled.tsv or the output folder of `negclean holes`",
    ),
    baseline: str | None = typer.Option(None, "--baseline", help="system name (default: the first)"),
    measure: list[str] | None = typer.Option(None, "--measure", help="repeatable; default nDCG@10 and R@100"),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", "-o", help="write comparison.md, comparison.json and comparison.png"
    ),
    plot: Path | None = typer.Option(None, "--plot", help="PNG file for the plot (default OUTPUT_DIR/comparison.png)"),
    resamples: int = typer.Option(10_000, "--resamples", help="randomisation and bootstrap resamples"),
    seed: int = typer.Option(0, "--seed"),
    alpha: float = typer.Option(0.05, "--alpha", help="significance level marked in the table and plot"),
    as_json: bool = typer.Option(False, "--json", help="print the comparison as JSON"),
):
    """Paired t-test and randomisation test of each system against the baseline, per measure."""
    with guarded(as_json=as_json):
        import json

        from negclean.evaluate.compare import compare  # lazy: pulls numpy, pydantic, yaml
        from negclean.evaluate.measures import DEFAULT_MEASURES
        from negclean.evaluate.systems import parse_system, system_scores

        measures = list(measure or DEFAULT_MEASURES)
        parsed = [parse_system(s, qrels=str(qrels) if qrels else None) for s in systems]
        scores = system_scores(parsed, measures=measures)
        result = compare(scores, baseline=baseline, measures=measures, resamples=resamples, seed=seed)
        filled = None
        if filled_qrels is not None:  # the same systems scored again under the filled qrels
            from negclean.holes.files import filled_qrels_path

            path = str(filled_qrels_path(filled_qrels))
            refilled = [parse_system(s, qrels=path) for s in systems]
            filled = compare(
                system_scores(refilled, measures=measures),
                baseline=baseline,
                measures=measures,
                resamples=resamples,
                seed=seed,
            )
        md = result.markdown(alpha=alpha)
        if filled is not None:
            md = f"## Original qrels\n\n{md}\n\n## Filled qrels ({filled_qrels})\n\n{filled.markdown(alpha=alpha)}"
        doc = {**result.as_dict(), **({"filled": filled.as_dict(), "filled_qrels": path} if filled is not None else {})}
        written = []
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / "comparison.md").write_text(md + "\n", encoding="utf-8")
            (output_dir / "comparison.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
            written += [str(output_dir / "comparison.md"), str(output_dir / "comparison.json")]
            plot = plot or output_dir / "comparison.png"
        if plot is not None:
            from negclean.evaluate.plot import plot_comparison

            written.append(str(plot_comparison(result, plot, alpha=alpha)))
    if as_json:
        emit_json({**doc, "files": written})
        return
    _print_tables(result, alpha=alpha, title="" if filled is None else "original qrels: ")
    if filled is not None:
        _print_tables(filled, alpha=alpha, title="filled qrels: ")
    for path in written:
        typer.echo(f"wrote {path}")


def _print_tables(result, *, alpha: float, title: str = "") -> None:
    from rich.console import Console
    from rich.markup import escape  # run names are data, not markup
    from rich.table import Table

    console = Console()
    for t in result.tables:
        table = Table(title=f"{escape(title)}{t.measure} ({t.queries} queries, baseline {escape(t.baseline)})")
        for col in ("system", "mean", "Δ", "Δ 95% CI", "p t-test", "p random.", "p Holm", "W/L/T"):
            table.add_column(col, justify="left" if col == "system" else "right")
        for r in t.rows:
            if r.delta is None:
                table.add_row(escape(r.name), f"{r.mean:.4f}", "", "", "", "", "", "")
                continue
            mark = "*" if r.p_holm is not None and r.p_holm < alpha else ""
            table.add_row(
                escape(r.name),
                f"{r.mean:.4f}",
                f"{r.delta:+.4f}{mark}",
                f"[{r.delta_ci[0]:+.4f}, {r.delta_ci[1]:+.4f}]",
                f"{r.p_ttest:.4f}",
                f"{r.p_randomisation:.4f}",
                f"{r.p_holm:.4f}",
                f"{r.wins}/{r.losses}/{r.ties}",
            )
        console.print(table)
    console.print(f"* Holm-adjusted randomisation p < {alpha}; {result.resamples} resamples, seed {result.seed}")


COMMANDS = {"compare": compare_command}
