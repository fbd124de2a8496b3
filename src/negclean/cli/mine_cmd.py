"""`negclean mine SOURCE -o OUT`: mine hard negatives from a BEIR folder or re-mine an instance file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from negclean.cli.console import emit_json, guarded


@contextmanager
def _progress(enabled: bool) -> Iterator:
    """A progress callback ``(stage, done, total)`` drawing one rich bar per stage."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def mine_command(
    source: Path = typer.Argument(
        ...,
        help="a BEIR folder (corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv) "
        "or an instance file whose negatives are re-mined",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="instances to write (.jsonl, .jsonl.gz or .parquet)"),
    split: str = typer.Option("train", "--split", help="BEIR qrels split"),
    corpus: Path | None = typer.Option(
        None,
        "--corpus",
        help="instance input: corpus.jsonl[.gz] to mine from (default: the passages of the input file)",
    ),
    fmt: str | None = typer.Option(None, "--format", "-f", help="instance input format (default: detected)"),
    out_fmt: str | None = typer.Option(
        None,
        "--to",
        help="output format: tevatron, flagembedding, st, parquet (default: tevatron for BEIR, else the input's)",
    ),
    retriever: str = typer.Option("dense", "--retriever", "-r", help="dense, bm25 or hybrid (RRF of both)"),
    model: str = typer.Option("all-MiniLM-L6-v2", "--model", "-m", help="sentence-transformers model name or path"),
    query_prefix: str = typer.Option("", "--query-prefix", help="prepended to queries, e.g. 'query: '"),
    passage_prefix: str = typer.Option("", "--passage-prefix", help="prepended to passages, e.g. 'passage: '"),
    no_title: bool = typer.Option(False, "--no-title", help="embed/index the text without its title"),
    index: str = typer.Option("flat", "--index", help="flat (exact), hnsw or ivf (approximate, large corpora)"),
    hnsw_m: int = typer.Option(32, "--hnsw-m"),
    ef_search: int = typer.Option(128, "--ef-search"),
    ivf_nlist: int | None = typer.Option(None, "--ivf-nlist"),
    nprobe: int = typer.Option(16, "--nprobe"),
    rrf_k: int = typer.Option(60, "--rrf-k", help="hybrid: RRF constant"),
    hybrid_depth: int | None = typer.Option(None, "--hybrid-depth", help="hybrid: depth of each list (default 2*END)"),
    rank_range: str = typer.Option(
        "10:100",
        "--range",
        help="START:END: skip the first START ranks, keep ranks up to END (ranks before filtering, positives included)",
    ),
    num_negatives: int = typer.Option(15, "--num-negatives", "-n"),
    ratio: float = typer.Option(
        0.95, "--ratio", help="drop candidates scoring above RATIO x the lowest positive (sign-safe)"
    ),
    no_ratio: bool = typer.Option(False, "--no-ratio", help="turn the ratio filter off"),
    margin: float | None = typer.Option(None, "--margin", help="drop candidates above (lowest positive - MARGIN)"),
    max_score: float | None = typer.Option(None, "--max-score", help="drop candidates scoring above this"),
    min_score: float | None = typer.Option(None, "--min-score", help="drop candidates scoring below this"),
    sampling: str = typer.Option("top", "--sampling", help="top, random or simans"),
    simans_a: float = typer.Option(20.0, "--simans-a", help="SimANS: p ~ exp(-a (s_neg - s_pos - b)^2)"),
    simans_b: float = typer.Option(0.0, "--simans-b"),
    seed: int = typer.Option(42, "--seed"),
    no_dedup: bool = typer.Option(False, "--no-dedup", help="keep candidates that repeat a positive's text"),
    near_threshold: float | None = typer.Option(
        0.9, "--near-threshold", help="word-3-gram Jaccard counted as a near duplicate"
    ),
    on_shortfall: str = typer.Option("keep", "--on-shortfall", help="keep or drop queries with fewer negatives"),
    min_grade: int = typer.Option(1, "--min-grade", help="qrels grade at or above which a document is positive"),
    exclude_grade: int = typer.Option(
        1, "--exclude-grade", help="qrels grade at or above which a document is never a negative"
    ),
    max_queries: int | None = typer.Option(None, "--max-queries", help="mine only the first N queries"),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="embedding cache (default ~/.cache/negclean/embeddings)"
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="do not read or write cached embeddings"),
    batch_size: int = typer.Option(64, "--batch-size"),
    query_chunk: int = typer.Option(4096, "--query-chunk", help="queries searched at once (bounds memory)"),
    device: str | None = typer.Option(None, "--device"),
    summary_path: Path | None = typer.Option(None, "--summary", help="also write the summary as JSON here"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON instead of text"),
):
    """Mine hard negatives: retrieve, keep a rank window, drop positives, duplicates and candidates too close to
    the positive, sample, write instances with scores and ranks; print what each filter removed and any shortfall."""
    with guarded(as_json=as_json):
        from negclean.mine.config import MineConfig  # lazy: pulls numpy, pydantic, yaml
        from negclean.mine.mine import mine

        options = dict(
            split=split,
            fmt=fmt,
            corpus=str(corpus) if corpus else None,
            retriever=retriever,
            model=model,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            include_title=not no_title,
            index=index,
            hnsw_m=hnsw_m,
            ef_search=ef_search,
            ivf_nlist=ivf_nlist,
            nprobe=nprobe,
            rrf_k=rrf_k,
            hybrid_depth=hybrid_depth,
            rank_range=rank_range,
            num_negatives=num_negatives,
            ratio=None if no_ratio else ratio,
            margin=margin,
            max_score=max_score,
            min_score=min_score,
            sampling=sampling,
            simans_a=simans_a,
            simans_b=simans_b,
            seed=seed,
            exclude_duplicates=not no_dedup,
            near_threshold=near_threshold,
            on_shortfall=on_shortfall,
            min_grade=min_grade,
            exclude_grade=exclude_grade,
            max_queries=max_queries,
            cache_dir=str(cache_dir) if cache_dir else None,
            use_cache=not no_cache,
            batch_size=batch_size,
            query_chunk=query_chunk,
            device=device,
        )
        options["beir" if source.is_dir() else "input"] = str(source)
        config = MineConfig.from_options(options, source="negclean mine")
        with _progress(not as_json) as update:
            summary = mine(config, output=output, out_fmt=out_fmt, on_progress=update)
        if summary_path is not None:
            import json

            summary_path.parent.mkdir(parents=True, exist_ok=True)
            summary_path.write_text(json.dumps(summary.as_dict(), indent=2, default=str))
    if as_json:
        emit_json(summary.as_dict())
    else:
        typer.echo("\n".join(summary.lines()))


COMMANDS = {"mine": mine_command}
