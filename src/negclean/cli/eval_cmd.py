"""`negclean eval MODEL --beir DIR`: nDCG@10 / Recall@100 of a retriever or reranker on one split."""

from __future__ import annotations

from pathlib import Path

import typer

from negclean.cli.console import emit_json, guarded
from negclean.local_models import torch_threads


def eval_command(
    model: str = typer.Argument(..., help="model folder (from `negclean train`) or name (all-MiniLM-L6-v2)"),
    beir: Path = typer.Option(..., "--beir", help="BEIR folder: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv"),
    split: str = typer.Option("test", "--split"),
    kind: str | None = typer.Option(None, "--kind", help="retriever or reranker (default: as trained, else retriever)"),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", "-o", help="write run.trec, per_query.tsv and metrics.json here"
    ),
    measure: list[str] | None = typer.Option(None, "--measure", help="repeatable; default nDCG@10 and R@100"),
    depth: int = typer.Option(100, "--depth", help="documents retrieved per query"),
    first_stage: str = typer.Option("bm25", "--first-stage", help="reranker: bm25, a TREC run file or a bi-encoder"),
    top_k: int = typer.Option(100, "--top-k", help="reranker: documents re-ranked per query"),
    query_prefix: str | None = typer.Option(None, "--query-prefix", help="default: as trained, else none"),
    passage_prefix: str | None = typer.Option(None, "--passage-prefix", help="default: as trained, else none"),
    no_title: bool = typer.Option(False, "--no-title", help="index passages without their title"),
    max_seq_length: int | None = typer.Option(None, "--max-seq-length", help="token limit (default: model's)"),
    batch_size: int = typer.Option(64, "--batch-size"),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="embedding cache folder"),
    no_cache: bool = typer.Option(False, "--no-cache", help="do not read or write cached corpus embeddings"),
    keep_identical_ids: bool = typer.Option(
        False, "--keep-identical-ids", help="keep a retrieved document whose id equals the query id"
    ),
    name: str | None = typer.Option(None, "--name", help="system name (run tag); default the model folder's"),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads"),
    device: str | None = typer.Option(None, "--device"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
):
    """Evaluate a retriever (full retrieval over the corpus) or a reranker (re-ranking a first stage)."""
    with guarded(as_json=as_json):
        from negclean.evaluate.measures import DEFAULT_MEASURES  # lazy: pulls numpy, pydantic, yaml
        from negclean.evaluate.runner import evaluate

        with torch_threads(threads):
            result = evaluate(
                model=model,
                beir=beir,
                split=split,
                kind=kind,  # type: ignore[arg-type]
                output_dir=output_dir,
                measures=measure or DEFAULT_MEASURES,
                depth=depth,
                first_stage=first_stage,
                top_k=top_k,
                query_prefix=query_prefix,
                passage_prefix=passage_prefix,
                include_title=False if no_title else None,
                max_seq_length=max_seq_length,
                batch_size=batch_size,
                cache_dir=str(cache_dir) if cache_dir else None,
                use_cache=not no_cache,
                ignore_identical_ids=not keep_identical_ids,
                device=device,
                name=name,
                show_progress=not as_json,
            )
    if as_json:
        emit_json(result.as_dict())
        return
    scores = "  ".join(f"{m} {v:.4f}" for m, v in result.scores.items())
    typer.echo(f"{result.name} ({result.kind}) on {result.beir} [{result.split}], {result.queries} queries: {scores}")
    if result.run_path:
        typer.echo(f"run -> {result.run_path}; per query -> {result.per_query_path}")


COMMANDS = {"eval": eval_command}
