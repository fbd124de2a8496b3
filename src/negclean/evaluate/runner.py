"""`negclean eval`: one model on one split of a BEIR folder; writes the run, per-query scores and metrics.

Output folder: ``run.trec`` (TREC run), ``per_query.tsv`` (query_id and one column per measure) and
``metrics.json`` (the EvalResult without the per-query values, plus what the first stage was).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from negclean.data.atomic import atomic_write
from negclean.errors import ConfigError, InputError
from negclean.evaluate.measures import (
    DEFAULT_MEASURES,
    PerQuery,
    mean_scores,
    per_query,
    read_per_query,
    read_trec_run,
    write_per_query,
    write_trec_run,
)
from negclean.evaluate.retrieval import BeirSplit, bm25_run, dense_run, load_beir_split, rerank_run
from negclean.local_models import read_summary

METRICS_FILE = "metrics.json"
RUN_FILE = "run.trec"
PER_QUERY_FILE = "per_query.tsv"


@dataclass(frozen=True)
class EvalResult:
    """Scores of one model on one split.

    Args:
        name: label of the system (tables, run tag).
        model: model name or folder.
        kind: retriever, reranker, or first_stage (a reranker's first stage scored alone).
        beir, split: the data evaluated on; ``qrels`` the qrels file.
        scores: mean of each measure over ``queries`` evaluated queries.
        per_query: measure -> query id -> value.
        run_path, per_query_path: files written (None without an output folder).
        seconds: wall time.
        details: how the run was made (first stage, depth, embedding cache use, prefixes).
    """

    name: str
    model: str
    kind: str
    beir: str
    split: str
    qrels: str
    scores: Mapping[str, float]
    queries: int
    per_query: Mapping[str, Mapping[str, float]] = field(repr=False)
    run_path: str | None
    per_query_path: str | None
    seconds: float
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self, *, with_per_query: bool = False) -> dict:
        out = {
            k: getattr(self, k)
            for k in (
                "name",
                "model",
                "kind",
                "beir",
                "split",
                "qrels",
                "queries",
                "run_path",
                "per_query_path",
                "seconds",
            )
        }
        out["scores"] = {m: round(v, 6) for m, v in self.scores.items()}
        out["details"] = dict(self.details)
        if with_per_query:
            out["per_query"] = {m: dict(v) for m, v in self.per_query.items()}
        return out


def model_defaults(model: str) -> dict[str, Any]:
    """Prefixes, title use and kind a negclean-trained model was trained with (empty for other models)."""
    summary = read_summary(model) if Path(model).is_dir() else None
    cfg = (summary or {}).get("config") or {}
    return {k: cfg[k] for k in ("query_prefix", "passage_prefix", "include_title", "kind") if k in cfg}


def evaluate(
    *,
    model: str,
    beir: str | Path | BeirSplit,
    split: str = "test",
    kind: Literal["retriever", "reranker"] | None = None,
    output_dir: str | Path | None = None,
    measures: Sequence[str] = DEFAULT_MEASURES,
    depth: int = 100,
    first_stage: str = "bm25",
    top_k: int = 100,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
    include_title: bool | None = None,
    max_seq_length: int | None = None,
    batch_size: int = 64,
    cache_dir: str | None = None,
    use_cache: bool = True,
    ignore_identical_ids: bool = True,
    device: str | None = None,
    name: str | None = None,
    show_progress: bool = False,
) -> EvalResult:
    """Evaluate a retriever (full retrieval over the corpus) or a reranker (re-ranking a first stage).

    Args:
        model: model name or folder; its kind, prefixes and title use default to what negclean trained it
            with (``negclean_train.json``), else retriever, "", "" and True.
        beir: BEIR folder (or an already loaded ``BeirSplit``).
        first_stage: reranker only: ``bm25``, a TREC run file, or a bi-encoder (name or folder).
        top_k: reranker only: documents re-ranked per query.
        depth: documents retrieved per query (at least the largest cutoff of ``measures``).
        max_seq_length: token limit (default the model's own); part of the embedding-cache key.
        ignore_identical_ids: drop a retrieved document whose id equals the query id (BEIR's default).
    """
    t0 = time.perf_counter()
    defaults = model_defaults(model)
    kind = kind or defaults.get("kind", "retriever")
    if kind not in ("retriever", "reranker"):
        raise ConfigError(f"kind must be retriever or reranker, not {kind!r}")
    qp = defaults.get("query_prefix", "") if query_prefix is None else query_prefix
    pp = defaults.get("passage_prefix", "") if passage_prefix is None else passage_prefix
    title = defaults.get("include_title", True) if include_title is None else include_title
    data = beir if isinstance(beir, BeirSplit) else load_beir_split(beir, split=split)
    if not data.queries:
        raise ConfigError(f"{data.root}: no query of qrels/{data.split} has a text in the queries file")
    progress = _progress_printer() if show_progress else None
    common: dict[str, Any] = dict(
        include_title=title, cache_dir=cache_dir, use_cache=use_cache, ignore_identical_ids=ignore_identical_ids
    )
    details: dict[str, Any] = {
        "depth": depth,
        "query_prefix": qp,
        "passage_prefix": pp,
        "include_title": title,
        "max_seq_length": max_seq_length,
        "ignore_identical_ids": ignore_identical_ids,
        "missing_query_texts": data.missing_queries,
    }
    if kind == "retriever":
        run, info = dense_run(
            data,
            model=model,
            depth=depth,
            query_prefix=qp,
            passage_prefix=pp,
            max_seq_length=max_seq_length,
            batch_size=batch_size,
            device=device,
            on_progress=progress,
            **common,
        )
        details.update(info)
    else:
        stage, info = _first_stage(
            data,
            first_stage,
            depth=max(depth, top_k),
            batch_size=batch_size,
            device=device,
            progress=progress,
            **common,
        )
        run = rerank_run(
            data,
            stage,
            model=model,
            top_k=top_k,
            include_title=title,
            query_prefix=qp,
            passage_prefix=pp,
            max_seq_length=max_seq_length,
            batch_size=batch_size,
            device=device,
            show_progress=show_progress,
        )
        details.update({"first_stage": info, "top_k": top_k})
    return _score_and_write(
        run,
        data,
        name=name or Path(str(model)).name,
        model=str(model),
        kind=kind,
        measures=measures,
        output_dir=output_dir,
        details=details,
        t0=t0,
    )


def evaluate_first_stage(
    *,
    first_stage: str,
    beir: str | Path | BeirSplit,
    split: str = "test",
    output_dir: str | Path | None = None,
    measures: Sequence[str] = DEFAULT_MEASURES,
    depth: int = 100,
    include_title: bool = True,
    batch_size: int = 64,
    cache_dir: str | None = None,
    use_cache: bool = True,
    ignore_identical_ids: bool = True,
    device: str | None = None,
    name: str | None = None,
) -> EvalResult:
    """Score a reranker's first stage on its own (``bm25``, a TREC run file or a bi-encoder): the row a
    reranker is compared with."""
    t0 = time.perf_counter()
    data = beir if isinstance(beir, BeirSplit) else load_beir_split(beir, split=split)
    run, info = _first_stage(
        data,
        first_stage,
        depth=depth,
        batch_size=batch_size,
        device=device,
        progress=None,
        include_title=include_title,
        cache_dir=cache_dir,
        use_cache=use_cache,
        ignore_identical_ids=ignore_identical_ids,
    )
    details = {"depth": depth, "first_stage": info, "missing_query_texts": data.missing_queries}
    return _score_and_write(
        run,
        data,
        name=name or Path(first_stage).name,
        model=first_stage,
        kind="first_stage",
        measures=measures,
        output_dir=output_dir,
        details=details,
        t0=t0,
    )


def _score_and_write(
    run: dict,
    data: BeirSplit,
    *,
    name: str,
    model: str,
    kind: str,
    measures: Sequence[str],
    output_dir: str | Path | None,
    details: dict,
    t0: float,
) -> EvalResult:
    scores = per_query(run, data.qrels, measures)
    run_path = per_query_path = None
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        run_path = str(write_trec_run(run, out / RUN_FILE, tag=name))
        per_query_path = str(write_per_query(scores, out / PER_QUERY_FILE))
    result = EvalResult(
        name=name,
        model=model,
        kind=kind,
        beir=data.root,
        split=data.split,
        qrels=data.qrels_path,
        scores=mean_scores(scores),
        queries=len(next(iter(scores.values()))),
        per_query=scores,
        run_path=run_path,
        per_query_path=per_query_path,
        seconds=round(time.perf_counter() - t0, 3),
        details=details,
    )
    if output_dir is not None:
        atomic_write(Path(output_dir) / METRICS_FILE, json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    return result


def _first_stage(
    data: BeirSplit, spec: str, *, depth: int, batch_size: int, device: str | None, progress, **common
) -> tuple[dict, dict]:
    if spec == "bm25":
        return bm25_run(data, depth=depth, **common)
    path = Path(spec)
    if path.is_file():
        return read_trec_run(path), {"first_stage": "run file", "path": str(path)}
    defaults = model_defaults(spec)
    run, info = dense_run(
        data,
        model=spec,
        depth=depth,
        query_prefix=defaults.get("query_prefix", ""),
        passage_prefix=defaults.get("passage_prefix", ""),
        batch_size=batch_size,
        device=device,
        on_progress=progress,
        **common,
    )
    return run, info


def _progress_printer():
    import sys

    last: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        step = max(1, total // 10)
        if done == total or done - last.get(stage, 0) >= step:
            last[stage] = done
            sys.stderr.write(f"{stage}: {done}/{total}\n")

    return report


def load_result(folder: str | Path) -> dict:
    """metrics.json of an evaluation folder."""

    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        raise InputError(f"no {METRICS_FILE} here: is it an output folder of `negclean eval`?", path=str(folder))
    return json.loads(path.read_text(encoding="utf-8"))


def per_query_of(folder: str | Path) -> PerQuery:
    return read_per_query(Path(folder) / PER_QUERY_FILE)


__all__ = ["EvalResult", "evaluate", "evaluate_first_stage", "load_result", "model_defaults", "per_query_of"]
