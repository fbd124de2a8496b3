"""`--engine ray` for mining: corpus embedding and query shards on Ray actor pools.

1. The driver reads the source (BEIR folder or instance file) as the local engine does.
2. Corpus embedding: chunks of the corpus go through ``map_batches`` over an actor pool; each actor loads
   the model once and writes one ``.npy`` per chunk (a chunk already written is not recomputed). The chunks
   are those of the local engine (``EMBED_CHUNK`` passages, encoded in one call each), so the vectors are
   the same bit for bit; the driver assembles them into the embedding cache under the local engine's key.
3. The driver builds the retriever once through the caches (ANN index, BM25 index), so workers only load.
4. Query shards (a multiple of ``query_chunk`` queries, so each search sees the same query batches as the
   local engine) go through a second actor pool: each actor builds the retriever from the caches once and
   writes its shard's instances and counts; a finished shard of the same plan is not recomputed.
5. The driver joins the parts into the output and adds up the counts into the usual summary.

With ``use_cache: false`` the caches live in the work folder instead of the user's cache (workers need a
place to share them); on a multi-machine cluster both must be on storage every node sees.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from negclean.data.atomic import atomic_open, atomic_write
from negclean.data.formats._writer import write_format
from negclean.data.io import open_writer
from negclean.embed import load_embedder, model_identity
from negclean.mine.cache import EmbeddingCache, embedding_key
from negclean.mine.config import MineConfig
from negclean.mine.mine import beir_source, instance_source, mine_queries, refuse_overwriting_sources
from negclean.mine.retrievers import build_retriever
from negclean.mine.summary import MineStats
from negclean.scale.assemble import fixed_suffix, join_parts
from negclean.scale.codec import spec_from_dict, spec_to_dict
from negclean.scale.runtime import RayOptions, actor_pool, connect, pool_size, worker_runtime_env
from negclean.scale.shards import plan_key

#: passages per encode call: DenseRetriever embeds (and EmbeddingCache builds) in chunks of this size
EMBED_CHUNK = 4096
Progress = Callable[[str, int, int], None]


class _CachedOnly:
    """An embedder for the driver's retriever build, where every vector must come from the cache."""

    def __init__(self, identity: str):
        self.identity = identity

    def encode(self, texts, **kwargs):  # pragma: no cover - reaching it is a bug
        raise RuntimeError("corpus embeddings were expected in the cache")


class EmbedWorker:
    """Loads the embedding model once; writes ``<start>.npy`` for each chunk of the corpus it is given."""

    def __init__(self, corpus_ref: list, cfg_json: str, out_dir: str):
        import ray

        self.corpus = ray.get(corpus_ref[0])
        self.cfg = MineConfig.model_validate_json(cfg_json)
        self.out = Path(out_dir)
        self.embedder = load_embedder(self.cfg.model, device=self.cfg.device)

    def __call__(self, batch: dict) -> dict:
        for start, stop in zip(batch["start"], batch["stop"]):
            texts = self.corpus.indexed_texts(int(start), int(stop), include_title=self.cfg.include_title)
            vecs = self.embedder.encode(texts, prefix=self.cfg.passage_prefix, batch_size=self.cfg.batch_size)
            with atomic_open(self.out / f"{int(start)}.npy", "wb") as fh:
                np.save(fh, np.asarray(vecs, dtype=np.float32), allow_pickle=False)
        return {"start": batch["start"], "rows": batch["stop"] - batch["start"]}


class MineShardWorker:
    """Builds the retriever once (from the caches the driver prepared); mines one shard of queries per call."""

    def __init__(self, corpus_ref: list, job_json: str):
        import ray

        self.job = json.loads(job_json)
        self.corpus = ray.get(corpus_ref[0])
        self.cfg = MineConfig.model_validate(self.job["config"])
        embedder = None if self.cfg.retriever == "bm25" else load_embedder(self.cfg.model, device=self.cfg.device)
        self.retriever = build_retriever(self.corpus, self.cfg, embedder=embedder)

    def __call__(self, batch: dict) -> dict:
        done = [
            mine_shard(self.job, int(i), json.loads(specs), self.corpus, self.retriever)
            for i, specs in zip(batch["index"], batch["specs"])
        ]
        return {"index": batch["index"], "queries": np.array(done)}


def mine_shard(job: dict, index: int, specs: list[dict], corpus: Any, retriever: Any) -> int:
    """Mine one shard into ``<work>/NNNNN.part<ext>`` with its counts; returns the queries it held."""
    work = Path(job["work_dir"])
    if _done(work, index, job["plan_key"]):
        return len(specs)
    cfg = MineConfig.model_validate(job["config"])
    stats = MineStats(cfg.num_negatives)
    with open_writer(work / f"{index:05d}.part{job['suffix']}", fmt=job["fmt"]) as writer:
        mine_queries([spec_from_dict(s) for s in specs], corpus, retriever, cfg, writer.write, stats)
    if hasattr(stats, "flush"):  # scores gathered but not yet in the sketches
        stats.flush()
    arrays: dict[str, Any] = {  # Any: savez's keyword `allow_pickle` would otherwise claim these values
        f"{g}__{part}": value
        for g, sk in stats.sketches.items()
        for part, value in (
            ("sample", sk.sample[: min(sk.count, sk.capacity)]),
            ("meta", np.array([sk.count, sk.total, sk.lo, sk.hi], dtype=np.float64)),
        )
    }
    np.savez(work / f"{index:05d}.sketch.npz", **arrays)
    counts = {
        k: (dict(v) if isinstance(v, Counter) else v)
        for k, v in vars(stats).items()
        if k not in ("sketches", "num_negatives") and not k.startswith("_")
    }
    atomic_write(work / f"{index:05d}.done.json", json.dumps({"plan_key": job["plan_key"], "counts": counts}))
    return len(specs)


def _done(work: Path, index: int, key: str) -> dict | None:
    try:
        data = json.loads((work / f"{index:05d}.done.json").read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("plan_key") == key and (work / f"{index:05d}.sketch.npz").is_file() else None


def mine_ray(
    config: Any = None,
    *,
    output: str | Path,
    out_fmt: str | None = None,
    ray_options: RayOptions | None = None,
    work_dir: str | Path | None = None,
    on_progress: Progress | None = None,
    **options: Any,
) -> Any:
    """`negclean mine` on Ray; same arguments and output as ``negclean.mine.mine.mine`` (a ``MineSummary``),
    plus ``ray_options`` and ``work_dir`` (shards and, without a cache, embeddings; default
    ``<output folder>/.<output name>.ray``, kept so that a rerun reuses finished shards)."""
    opts = ray_options or RayOptions()
    if config is None:
        config = MineConfig.from_options(options)
    elif options:
        config = MineConfig.from_options({**config.model_dump(), **options})
    output = Path(output)
    refuse_overwriting_sources(config, output)
    work = Path(work_dir) if work_dir else output.parent / f".{output.name}.ray"
    work.mkdir(parents=True, exist_ok=True)
    cfg = (
        config if config.use_cache else config.model_copy(update={"use_cache": True, "cache_dir": str(work / "cache")})
    )
    t0 = time.perf_counter()
    stats = MineStats(cfg.num_negatives)
    source = beir_source(cfg, stats) if cfg.beir is not None else instance_source(cfg, stats)
    specs = [spec_to_dict(s) for s in source.queries]
    fmt = write_format(output, out_fmt, None if out_fmt else source.like)
    t_load = time.perf_counter()
    ray = connect(opts)
    corpus_ref = [ray.put(source.corpus)]
    if cfg.retriever != "bm25":
        _embed_corpus(ray, opts, corpus_ref, source.corpus, cfg, work, on_progress)

    retriever = build_retriever(source.corpus, cfg, embedder=_CachedOnly(model_identity(cfg.model)))
    t_index = time.perf_counter()
    per = -(-opts.shard_size // cfg.query_chunk) * cfg.query_chunk
    shards = [specs[i : i + per] for i in range(0, len(specs), per)]
    key = plan_key(
        cfg.params(),
        source.corpus.content_hash,
        fmt,
        per,
        cfg.query_chunk,
        plan_key([s["query_id"] for s in specs], [s["positives"] for s in specs]),
    )
    job = {
        "config": cfg.model_dump(mode="json"),
        "work_dir": str(work),
        "plan_key": key,
        "fmt": fmt,
        "suffix": fixed_suffix(output),
    }
    pending = [i for i in range(len(shards)) if not _done(work, i, key)]
    done = len(specs) - sum(len(shards[i]) for i in pending)
    if on_progress and done:
        on_progress("mining", done, len(specs))
    if pending:
        ds = ray.data.from_items(
            [{"index": i, "specs": json.dumps(shards[i])} for i in pending], override_num_blocks=len(pending)
        )
        out = ds.map_batches(
            MineShardWorker,
            fn_constructor_kwargs={"corpus_ref": corpus_ref, "job_json": json.dumps(job)},
            batch_size=1,
            compute=actor_pool(ray, pool_size(ray, opts, len(pending))),
            num_cpus=opts.cpus_per_worker,
            num_gpus=opts.gpus_per_worker or None,
            runtime_env=worker_runtime_env(),
        )
        for row in out.iter_rows():
            done += int(row["queries"])
            if on_progress:
                on_progress("mining", done, len(specs))
    for i in range(len(shards)):
        _add_counts(stats, work, i, key)
    join_parts([work / f"{i:05d}.part{fixed_suffix(output)}" for i in range(len(shards))], output, fmt=fmt, like=fmt)
    t_end = time.perf_counter()
    return stats.freeze(
        output=str(output),
        fmt=fmt,
        params=config.params(),
        params_hash=config.params_hash(),
        retriever={
            **retriever.describe(),
            "engine": "ray",
            "shards": len(shards),
            "shards_reused": len(shards) - len(pending),
        },
        score_name=retriever.score_name,
        filter_score_name=retriever.filter_score_name,
        seconds={"read": t_load - t0, "index": t_index - t_load, "mine": t_end - t_index, "total": t_end - t0},
    )


def _embed_corpus(
    ray: Any, opts: RayOptions, corpus_ref: list, corpus: Any, cfg: Any, work: Path, on_progress: Progress | None
) -> None:
    """Fill the embedding cache entry of the corpus (if it is not there yet) with chunks embedded on Ray."""
    n = len(corpus)
    cache = EmbeddingCache(cfg.cache_dir)
    key = embedding_key(
        model_identity=model_identity(cfg.model),
        corpus_hash=corpus.content_hash,
        prefix=cfg.passage_prefix,
        include_title=cfg.include_title,
    )
    if cache.load(key, rows=n) is not None:
        return
    chunk_dir = work / "embed" / key
    chunk_dir.mkdir(parents=True, exist_ok=True)
    chunks = [(s, min(s + EMBED_CHUNK, n)) for s in range(0, n, EMBED_CHUNK)]
    pending = [(a, b) for a, b in chunks if not (chunk_dir / f"{a}.npy").is_file()]
    done = n - sum(b - a for a, b in pending)
    if pending:
        ds = ray.data.from_items([{"start": a, "stop": b} for a, b in pending], override_num_blocks=len(pending))
        out = ds.map_batches(
            EmbedWorker,
            fn_constructor_kwargs={
                "corpus_ref": corpus_ref,
                "cfg_json": cfg.model_dump_json(),
                "out_dir": str(chunk_dir),
            },
            batch_size=1,
            compute=actor_pool(ray, pool_size(ray, opts, len(pending))),
            num_cpus=opts.cpus_per_worker,
            num_gpus=opts.gpus_per_worker or None,
            runtime_env=worker_runtime_env(),
        )
        for row in out.iter_rows():
            done += int(row["rows"])
            if on_progress:
                on_progress("embedding corpus", done, n)

    def load(start: int, stop: int) -> np.ndarray:
        return np.load(chunk_dir / f"{start}.npy", allow_pickle=False)

    cache.build(
        key,
        rows=n,
        encode=load,
        chunk=EMBED_CHUNK,
        describe={
            "model": model_identity(cfg.model),
            "corpus": corpus.source,
            "corpus_hash": corpus.content_hash,
            "prefix": cfg.passage_prefix,
            "include_title": cfg.include_title,
            "engine": "ray",
        },
    )
    for a, _ in chunks:
        (chunk_dir / f"{a}.npy").unlink(missing_ok=True)


def _add_counts(stats: Any, work: Path, index: int, key: str) -> None:
    """Add a finished shard's counts and score samples to the driver's tally."""
    done = _done(work, index, key)
    if done is None:
        raise RuntimeError(f"mining shard {index} has no counts in {work}: did a worker fail?")
    for name, value in done["counts"].items():
        current = getattr(stats, name)
        if isinstance(current, Counter):
            current.update({int(k) if name == "short_by" else k: v for k, v in value.items()})
        else:
            setattr(stats, name, current + value)
    with np.load(work / f"{index:05d}.sketch.npz", allow_pickle=False) as data:
        for group, sketch in stats.sketches.items():
            sample, meta = data[f"{group}__sample"], data[f"{group}__meta"]
            count, total, lo, hi = int(meta[0]), float(meta[1]), float(meta[2]), float(meta[3])
            before = sketch.count
            # exact while every score fits the reservoir (the sample then holds every score, in order); past
            # that, quantiles come from the shards' samples, as the local engine's come from one sample
            sketch.add(sample)
            sketch.count, sketch.total = before + count, sketch.total - _sum(sample) + total
            sketch.lo, sketch.hi = min(sketch.lo, lo), max(sketch.hi, hi)


def _sum(values: np.ndarray) -> float:
    return float(np.asarray(values, dtype=np.float32).sum(dtype=np.float64)) if values.size else 0.0
