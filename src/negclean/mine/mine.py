"""`negclean mine`: hard negatives for every query of a BEIR folder or an instance file.

    from negclean.mine import mine
    summary = mine(beir="data/scifact", split="train", output="mined.jsonl", rank_range="10:100")
    print("\\n".join(summary.lines()))

Flow: read the source -> build the retriever over the corpus (embeddings cached on disk) -> per chunk of
queries: retrieve the top END, keep ranks START+1..END, drop labeled positives, documents judged relevant
in the qrels and duplicates of a positive (or of the query), apply positive-aware score filters, sample,
write -> summary. Every instance records the mining parameters in ``meta['negclean_mine']``; each negative
carries its retriever score and its rank before filtering.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from negclean.data.io import open_writer, read_instances
from negclean.data.paths import refuse_overwrite
from negclean.data.records import Instance, Passage
from negclean.errors import InputError
from negclean.mine.beir import BeirFolder, Corpus, read_corpus, read_queries
from negclean.mine.config import MineConfig
from negclean.mine.dedup import DuplicateFinder
from negclean.mine.retrievers import Retrieved, Retriever, build_retriever
from negclean.mine.select import OUTSIDE, query_rng, select_chunk, window_columns
from negclean.mine.summary import MineStats, MineSummary

Progress = Callable[[str, int, int], None]
log = logging.getLogger("negclean.mine")


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """One query to mine: corpus positions of its positives and of documents never to use as negatives."""

    query_id: str
    text: str
    positives: tuple[int, ...]
    excluded: frozenset[int] = frozenset()
    base: Instance | None = None  # the instance being re-mined (keeps subset, meta, positive passages)


@dataclass
class Source:
    corpus: Corpus
    queries: Iterable[QuerySpec]
    total: int
    like: Any  # what the output format follows: a format name or the input reader
    stats: MineStats


def refuse_overwriting_sources(config: MineConfig, output: str | Path) -> None:
    """ConfigError (exit 2) when ``output`` is one of the files mining reads (input, corpus, BEIR files)."""

    sources = [Path(s) for s in (config.input, config.corpus) if s]
    if config.beir is not None and Path(config.beir).is_dir():
        sources += [p for p in Path(config.beir).rglob("*") if p.is_file()]
    for src in sources:
        refuse_overwrite(src, {"--output": output})


def mine(
    config: MineConfig | None = None,
    *,
    output: str | Path,
    out_fmt: str | None = None,
    embedder=None,
    on_progress: Progress | None = None,
    **options: Any,
) -> MineSummary:
    """Mine hard negatives and write them as instances; returns the run's summary.

    Args:
        config: a MineConfig; or give its fields as keyword ``options`` (``rank_range="10:100"`` or
            ``range="10:100"`` both work).
        output: file to write (JSON Lines, ``.gz``, or ``.parquet``); written atomically.
        out_fmt: output format (default: tevatron for a BEIR source, the input's format otherwise).
        embedder: a loaded embedder to use instead of loading ``config.model`` (tests, benchmarks).
        on_progress: ``callback(stage, done, total)``.
    """
    if config is None:
        config = MineConfig.from_options(options)
    elif options:
        config = MineConfig.from_options({**config.model_dump(), **options})
    refuse_overwriting_sources(config, output)
    t0 = time.perf_counter()
    stats = MineStats(config.num_negatives)
    source = beir_source(config, stats) if config.beir is not None else instance_source(config, stats)
    t_load = time.perf_counter()
    retriever = build_retriever(source.corpus, config, embedder=embedder, on_progress=on_progress)
    t_index = time.perf_counter()

    with open_writer(output, fmt=out_fmt, like=None if out_fmt else source.like) as writer:
        fmt = writer.format
        mine_queries(
            source.queries,
            source.corpus,
            retriever,
            config,
            writer.write,
            stats,
            total=source.total,
            on_progress=on_progress,
        )
    t_end = time.perf_counter()
    # "retriever": loading the model, embedding (or loading cached embeddings) and building the index
    summary = stats.freeze(
        output=str(output),
        fmt=fmt,
        params=config.params(),
        params_hash=config.params_hash(),
        retriever=retriever.describe(),
        score_name=retriever.score_name,
        filter_score_name=retriever.filter_score_name,
        seconds={"read": t_load - t0, "retriever": t_index - t_load, "mine": t_end - t_index, "total": t_end - t0},
    )
    if summary.shortfall.queries_short:  # never silent, also for callers that do not print the summary
        log.warning(next(line for line in summary.lines() if line.startswith("SHORTFALL")))
    return summary


def mine_from_options(options: dict[str, Any], *, output: str) -> dict[str, Any]:
    """Entry point for pipelines (`negclean run` with a ``mine:`` section): options -> summary dict."""
    opts = dict(options)
    out_fmt = opts.pop("format", None) or opts.pop("out_fmt", None)
    return mine(MineConfig.from_options(opts, source="pipeline 'mine'"), output=output, out_fmt=out_fmt).as_dict()


# ----------------------------------------------------------------------------- sources


def beir_source(cfg: MineConfig, stats: MineStats) -> Source:
    folder = BeirFolder.locate(cfg.beir, split=cfg.split)  # type: ignore[arg-type]
    corpus = read_corpus(folder.corpus)
    queries = read_queries(folder.queries)
    qrels = folder.read_qrels()
    specs: list[QuerySpec] = []
    for qid, judged in qrels.items():
        stats.queries_total += 1
        text = queries.get(qid)
        if text is None:
            stats.skipped["query_not_in_queries_file"] += 1
            continue
        wanted = [d for d, g in judged.items() if g >= cfg.min_grade]
        if not wanted:
            stats.skipped["no_positive"] += 1
            continue
        positions = [corpus.position(d) for d in wanted]
        found = tuple(p for p in positions if p is not None)
        stats.positives_missing += len(positions) - len(found)
        if not found:
            stats.skipped["positives_not_in_corpus"] += 1
            continue
        excluded = frozenset(
            p for d, g in judged.items() if g >= cfg.exclude_grade for p in (corpus.position(d),) if p is not None
        ) - set(found)
        if cfg.max_queries is not None and len(specs) >= cfg.max_queries:
            stats.skipped["beyond_max_queries"] += 1
            continue
        specs.append(QuerySpec(qid, text, found, excluded))
    return Source(corpus, specs, len(specs), "tevatron", stats)


def instance_source(cfg: MineConfig, stats: MineStats) -> Source:
    """Re-mine an instance file: the corpus is ``cfg.corpus`` plus any positive it lacks, or else the
    pool of every passage in the file (by docid; the first text of a docid wins)."""

    reader = read_instances(cfg.input, fmt=cfg.fmt, on_error="fail")  # type: ignore[arg-type]
    base = read_corpus(cfg.corpus) if cfg.corpus else None
    ids, titles, texts = (list(base.ids), list(base.titles), list(base.texts)) if base else ([], [], [])
    known = {d: i for i, d in enumerate(ids)}
    for inst in reader:
        for p in inst.positives if base else (*inst.positives, *inst.negatives):
            if p.docid not in known:
                known[p.docid] = len(ids)
                ids.append(p.docid)
                titles.append(p.title)
                texts.append(p.text)
    if not ids:
        raise InputError("no passages to mine from (empty input)", path=str(cfg.input))
    source = f"{cfg.corpus} + positives of {cfg.input}" if base else f"passages of {cfg.input}"
    corpus = Corpus(
        ids, titles, texts, source=source, content_hash=base.content_hash if base and len(ids) == len(base) else None
    )

    def specs() -> Iterator[QuerySpec]:
        mined = 0
        for inst in reader:
            stats.queries_total += 1
            if cfg.max_queries is not None and mined >= cfg.max_queries:
                stats.skipped["beyond_max_queries"] += 1
                continue
            mined += 1
            yield QuerySpec(inst.query_id, inst.query, tuple(known[p.docid] for p in inst.positives), base=inst)

    return Source(corpus, specs(), reader.stats.ok if cfg.max_queries is None else cfg.max_queries, reader, stats)


# ----------------------------------------------------------------------------- the loop


def _chunks(items: Iterable[QuerySpec], size: int) -> Iterator[list[QuerySpec]]:
    chunk: list[QuerySpec] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def mine_queries(
    queries: Iterable[QuerySpec],
    corpus: Corpus,
    retriever: Retriever,
    cfg: MineConfig,
    write: Callable[[Instance], Any],
    stats: MineStats,
    *,
    total: int | None = None,
    on_progress: Progress | None = None,
) -> None:
    """Retrieve, select and write, one chunk of queries at a time (memory: index + one chunk)."""
    start, end = cfg.rank_range
    params = {
        "params": cfg.params(),
        "params_hash": cfg.params_hash(),
        "score": retriever.score_name,
        "filter_score": retriever.filter_score_name,
    }
    finder = DuplicateFinder(corpus, near_threshold=cfg.near_threshold) if cfg.exclude_duplicates else None
    done = 0
    for chunk in _chunks(queries, cfg.query_chunk):
        res = retriever.retrieve(
            [q.text for q in chunk], depth=end, docs=[np.asarray(q.positives, dtype=np.int64) for q in chunk]
        )
        for inst in _mine_chunk(chunk, res, corpus, cfg, stats, params, start, end, finder):
            write(inst)
            stats.queries_written += 1
            stats.negatives_written += len(inst.negatives)
        stats.flush()
        done += len(chunk)
        if on_progress:
            on_progress("mining", done, total or done)


def _pairs(chunk: Sequence[QuerySpec], field: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, corpus positions) of every query's positives or excluded documents."""
    groups = [getattr(q, field) for q in chunk]
    counts = np.fromiter((len(g) for g in groups), dtype=np.int64, count=len(groups))
    docs = np.fromiter((d for g in groups for d in g), dtype=np.int64, count=int(counts.sum()))
    return np.repeat(np.arange(len(groups)), counts), docs


def _mine_chunk(
    chunk: Sequence[QuerySpec],
    res: Retrieved,
    corpus: Corpus,
    cfg: MineConfig,
    stats: MineStats,
    params: dict,
    start: int,
    end: int,
    finder: DuplicateFinder | None,
) -> list[Instance]:
    """Select every query's negatives for one chunk at once (numpy over the chunk; Python per kept negative)."""
    n = len(chunk)
    indices = res.indices
    valid = indices >= 0
    # a (query row, document) pair as one integer: membership of ragged per-query lists without a loop
    stride = len(corpus) + 1
    keys = np.arange(n, dtype=np.int64)[:, None] * stride + indices
    pos_rows, pos_docs = _pairs(chunk, "positives")
    exc_rows, exc_docs = _pairs(chunk, "excluded")
    is_pos = np.isin(keys, pos_rows * stride + pos_docs)
    is_exc = np.isin(keys, exc_rows * stride + exc_docs) if exc_docs.size else np.zeros_like(is_pos)
    win = window_columns(indices.shape[1], start, end)
    w_idx, w_filter = indices[:, win], res.filter_scores[:, win]
    pos_filter = [np.asarray(f, dtype=np.float64) for f in res.doc_filter_scores]
    s_pos = np.array([f.min() if f.size else np.nan for f in pos_filter])
    positives = [_positive_passages(q, corpus) for q in chunk]
    check = None
    if finder is not None:
        dup = finder.for_chunk([(p, q.text, q.positives) for p, q in zip(positives, chunk)])
        check = lambda rows, cols: dup(rows, w_idx[rows, cols])  # noqa: E731
    rngs = None if cfg.sampling == "top" else [query_rng(cfg.seed, q.query_id) for q in chunk]
    sel = select_chunk(
        w_filter,
        valid=valid[:, win],
        exclusions={"positive": is_pos[:, win], "judged_relevant": is_exc[:, win]},
        s_pos=s_pos,
        num_negatives=cfg.num_negatives,
        sampling=cfg.sampling,
        rngs=rngs,
        ratio=cfg.ratio,
        margin=cfg.margin,
        max_score=cfg.max_score,
        min_score=cfg.min_score,
        simans_a=cfg.simans_a,
        simans_b=cfg.simans_b,
        is_duplicate=check,
    )
    # ranks of the positives among all retrieved (1-based; 0: below the retrieval depth)
    hit = indices[pos_rows] == pos_docs[:, None]
    pos_rank = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)
    unlabeled = np.where(valid & ~is_pos & ~is_exc & ~np.isnan(res.filter_scores), res.filter_scores, -np.inf)
    stats.add_chunk(sel, w_filter, pos_filter, unlabeled.max(axis=1, initial=-np.inf))
    stats.positives += int(pos_docs.size)
    stats.positives_outside += int((pos_rank == 0).sum())

    rows, cols = sel.kept()
    docs = w_idx[rows, cols].tolist()
    scores = np.round(res.scores[:, win][rows, cols].astype(np.float64), 6).tolist()
    ranks = (cols + start + 1).tolist()
    extras = {name: col[:, win][rows, cols] for name, col in res.extras.items()}
    bounds = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).tolist()
    ids, texts, titles = corpus.ids, corpus.texts, corpus.titles
    pos_at = np.concatenate([[0], np.cumsum([len(q.positives) for q in chunk])]).tolist()
    pos_rank_list = pos_rank.tolist()
    candidates = (sel.codes != OUTSIDE).sum(axis=1).tolist()
    out: list[Instance] = []
    for i, spec in enumerate(chunk):
        shortfall = int(sel.shortfall[i])
        if shortfall and cfg.on_shortfall == "drop":
            stats.dropped_short += 1
            continue
        a, b = bounds[i], bounds[i + 1]
        if extras:
            negatives = tuple(
                corpus.passage(
                    docs[k],
                    score=scores[k],
                    rank=ranks[k],
                    meta=_extras_meta({name: col[k] for name, col in extras.items()}),
                )
                for k in range(a, b)
            )
        else:
            negatives = tuple(
                Passage(ids[d], texts[d], titles[d], s, r) for d, s, r in zip(docs[a:b], scores[a:b], ranks[a:b])
            )
        pos_out = tuple(
            replace(p, score=round(float(s), 6), rank=r or None)
            for p, s, r in zip(positives[i], res.doc_scores[i], pos_rank_list[pos_at[i] : pos_at[i + 1]])
        )
        meta = dict(spec.base.meta) if spec.base is not None else {}
        meta["negclean_mine"] = {
            **params,
            "candidates": candidates[i],
            "survivors": int(sel.survivors[i]),
            "shortfall": shortfall,
            "positive_score_min": None if np.isnan(s_pos[i]) else float(s_pos[i]),
        }
        if spec.base is not None:
            out.append(spec.base.replace(positives=pos_out, negatives=negatives, meta=meta))
        else:
            out.append(Instance(spec.query_id, spec.text, pos_out, negatives, meta=meta))
    return out


def _positive_passages(spec: QuerySpec, corpus: Corpus) -> Sequence[Passage]:
    if spec.base is not None:
        return spec.base.positives
    return [corpus.passage(int(p)) for p in spec.positives]


def _extras_meta(extras: dict[str, Any]) -> dict[str, Any]:
    """A negative's extra retriever columns (hybrid: component ranks and scores) as JSON values."""
    meta: dict[str, Any] = {}
    for name, value in extras.items():
        value = float(value)
        if np.isnan(value):
            meta[name] = None
        else:
            meta[name] = int(value) if name.endswith("_rank") else round(value, 6)
    return meta
