"""`negclean holes --beir DIR --run FILE --model MODEL`: judge the unjudged top-k documents of several systems,
write filled qrels with provenance, and report how the systems score and rank under both qrels.

A command of its own rather than `negclean eval --fill-holes`: the pool is the union of every system's top k
(one system's top k is a biased pool), and eval scores one model at a time.
"""

from __future__ import annotations

from pathlib import Path

import typer

from negclean.cli.console import emit_json, guarded
from negclean.local_models import torch_threads


def holes_command(
    beir: Path = typer.Option(..., "--beir", help="BEIR folder: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv"),
    output_dir: Path = typer.Option(
        ...,
        "--output-dir",
        "-o",
        help="write qrels.filled.tsv, holes.provenance.jsonl, holes.json, holes.md (and judgments.sqlite) here",
    ),
    run: list[str] | None = typer.Option(None, "--run", help="repeatable: a TREC run file, NAME=PATH or PATH"),
    model: list[str] | None = typer.Option(
        None,
        "--model",
        help="repeatable: NAME=MODEL or MODEL, evaluated on the split: bm25, all-MiniLM-L6-v2 or a model folder",
    ),
    split: str = typer.Option("test", "--split"),
    qrels: Path | None = typer.Option(None, "--qrels", help="the qrels to fill (default: the split's)"),
    cascade: str = typer.Option("screen", "--cascade", "-c", help="preset name or YAML file with 'stages'"),
    depth: int = typer.Option(10, "--depth", help="pool depth: each system's top k"),
    store: Path | None = typer.Option(None, "--store", help="judgment store (default OUTPUT_DIR/judgments.sqlite)"),
    min_grade: int = typer.Option(
        1, "--min-grade", help="qrels grade that makes a judged document a positive shown to the judges (2 for TREC DL)"
    ),
    relevant_grade: int = typer.Option(1, "--relevant-grade", help="grade of an added relevant judgment"),
    max_positives: int = typer.Option(5, "--max-positives", help="positives shown per query (highest grade first)"),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
):
    """Fill the holes of a split's qrels with a cascade and compare systems under the original and filled qrels."""
    with guarded(as_json=as_json):
        from negclean.evaluate.retrieval import load_beir_split  # lazy: pulls numpy, pydantic, yaml
        from negclean.holes.files import write_holes
        from negclean.holes.fill import STORE_FILE, fill_holes
        from negclean.holes.report import holes_report
        from negclean.holes.systems import collect_runs
        from negclean.judge.qrels import read_qrels

        with torch_threads(threads):
            data = load_beir_split(beir, split=split)
            original = read_qrels(qrels) if qrels else data.qrels
            runs = collect_runs(data, run_files=run or (), models=model or (), output_dir=output_dir)
            filled = fill_holes(
                data,
                runs,
                cascade=cascade,
                depth=depth,
                qrels=original,
                store=store or Path(output_dir) / STORE_FILE,
                progress=not as_json,
                relevant_grade=relevant_grade,
                min_grade=min_grade,
                max_positives=max_positives,
            )
        output_dir.mkdir(parents=True, exist_ok=True)
        report = holes_report(runs, original=original, filled=filled.qrels)
        inputs = {
            "beir": str(beir),
            "split": split,
            "qrels": str(qrels) if qrels else data.qrels_path,
            "cascade": cascade,
            "depth": depth,
            "systems": list(runs),
            "runs": list(run or ()),
            "models": list(model or ()),
            "store": str(store or Path(output_dir) / STORE_FILE),
        }
        files = write_holes(output_dir, filled, report, inputs=inputs)
    if as_json:
        emit_json(
            {
                "inputs": inputs,
                "fill": filled.summary(),
                "report": report.as_dict(),
                "files": [str(p) for p in (files.qrels, files.provenance, files.report_json, files.report_md)],
            }
        )
        return
    typer.echo(files.report_md.read_text(encoding="utf-8"))
    typer.echo(f"wrote {files.qrels}, {files.provenance}, {files.report_json}, {files.report_md}")


COMMANDS = {"holes": holes_command}
