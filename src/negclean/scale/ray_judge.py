"""`--engine ray` for judging: the local pipeline's judge run, sharded over a Ray actor pool.

The driver cuts the input into shards (``negclean.scale.shards``) and hands them to a Ray Data pipeline --
``from_items(shards).map_batches(JudgeShardWorker, compute=ActorPoolStrategy(...))`` -- whose actors build
every stage's judge once (models load once per worker) and run ``judge_shard`` on one shard at a time. Each
shard writes Parquet verdict rows, a fixed part and a shard store; a shard that finished in an earlier run
of the same plan is not recomputed. The driver then merges the shard stores into the main store (the only
writer of it, see ``negclean.scale.stores``) and joins the parts into the run folder's files, which are
those of the local engine on the same input and configuration.

Budget: ``max_cost`` is split evenly over the shards still to run, so the run never spends more than it;
a shard that reaches its share stops cleanly (exit 4) and the rerun resumes it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from negclean.cascade.stages import CascadeConfig
from negclean.cascade.store import JudgmentStore
from negclean.data.atomic import atomic_open
from negclean.data.paths import refuse_overwrite
from negclean.errors import BackendError, BudgetExceeded, ConfigError, InputError, NegcleanError
from negclean.mine.config import MineConfig
from negclean.scale.assemble import (
    fixed_suffix,
    merge_fix,
    merge_read,
    merge_stats,
    write_fixed,
    write_rejects,
    write_verdicts,
)
from negclean.scale.judge_shard import JudgeJob, build_judges, judge_shard, load_done, reused, shard_path
from negclean.scale.ray_mine import mine_ray
from negclean.scale.runtime import RayOptions, actor_pool, connect, pool_size, worker_runtime_env
from negclean.scale.shards import Shard, detect, file_identity, plan_key, plan_shards
from negclean.scale.stores import merge_into, prepare_main

log = logging.getLogger(__name__)
_ERRORS = {
    "InputError": InputError,
    "BackendError": BackendError,
    "ConfigError": ConfigError,
    "MissingDependency": ConfigError,
    "BudgetExceeded": BudgetExceeded,
}


class JudgeShardWorker:
    """A Ray Data actor: judges built once, then one shard per call."""

    def __init__(self, job_json: str):
        self.job = JudgeJob.from_json(job_json)
        self.judges = build_judges(self.job)

    def __call__(self, batch: dict) -> dict:
        rows = [judge_shard(self.job, Shard.from_json(s), self.judges) for s in batch["shard"]]
        return {"index": [r["index"] for r in rows], "result": [json.dumps(r) for r in rows]}


Executor = Callable[[JudgeJob, list, RayOptions], Iterator[dict]]


def ray_executor(job: JudgeJob, shards: list[Shard], opts: RayOptions) -> Iterator[dict]:
    """Judge shards on a Ray Data actor pool; yields each shard's result as it finishes."""
    ray = connect(opts)
    ds = ray.data.from_items([{"shard": s.to_json()} for s in shards], override_num_blocks=len(shards))
    out = ds.map_batches(
        JudgeShardWorker,
        fn_constructor_kwargs={"job_json": job.to_json()},
        batch_size=1,
        compute=actor_pool(ray, pool_size(ray, opts, len(shards))),
        num_cpus=opts.cpus_per_worker,
        num_gpus=opts.gpus_per_worker or None,
        runtime_env=worker_runtime_env(),
    )
    for row in out.iter_rows():
        yield json.loads(row["result"])


def sequential_executor(job: JudgeJob, shards: list[Shard], opts: RayOptions) -> Iterator[dict]:
    """Judge shards one after another in this process (tests, debugging: the same files, no Ray)."""
    judges = build_judges(job)
    try:
        for s in shards:
            yield judge_shard(job, s, judges)
    finally:
        for judge in judges.values():
            judge.close()


def run_judge_ray(
    *,
    input_path: str,
    cascade: CascadeConfig,
    output_dir: str | Path,
    store_path: str | None = None,
    fmt: str | None = None,
    on_error: str = "skip",
    dry_run: bool = False,
    fix: Any = None,
    ray_options: RayOptions | None = None,
    on_progress: Callable[[int], None] | None = None,
    config_echo: dict | None = None,
    executor: Executor = ray_executor,
) -> dict:
    """`negclean judge` on Ray: same arguments and run folder as ``negclean.pipeline.run_judge``, plus
    ``ray_options``. Returns the summary (with an ``engine`` section). Raises what the local engine raises.
    ``executor`` runs the pending shards (default: a Ray actor pool)."""
    opts = ray_options or RayOptions()
    t0 = time.time()
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store_file = store_path or str(out_dir / "judgments.sqlite")
    fmt, detected_at = detect(input_path, fmt)
    # whole cascade chunks per shard: judges that batch (embedding screens) then see the same batches as in
    # the local engine, and give the same numbers to the last bit
    shard_size = -(-opts.shard_size // cascade.chunk_size) * cascade.chunk_size
    shards = plan_shards(input_path, shard_size=shard_size)
    final = (Path(fix.output) if fix.output else out_dir / f"fixed.{Path(input_path).name}") if fix else None
    refuse_overwrite(
        input_path,
        {
            "the fixed output (fix.output)": final,
            "the store (--store)": store_file,
            "the verdicts file": out_dir / "verdicts.jsonl",
        },
    )
    routing = cascade.model_dump(mode="json", exclude={"max_cost"})  # a new budget keeps finished shards
    judges = [s.judge.fingerprint() for s in cascade.stages]  # a changed qrels file or model redoes the shards
    key = plan_key(
        file_identity(input_path),
        fmt,
        on_error,
        shard_size,
        routing,
        judges,
        fix.model_dump(mode="json") if fix else None,
        fixed_suffix(final) if final else None,
    )
    _clear_stale(out_dir, key, store_file)
    prepare_main(store_file)
    pending = [s for s in shards if dry_run or load_done(out_dir, s.index, key) is None]
    budget = None if cascade.max_cost is None or not pending else cascade.max_cost / len(pending)
    job = JudgeJob(
        input_path=str(input_path),
        fmt=fmt,
        detected_at=detected_at,
        on_error=on_error,
        cascade=cascade.model_dump(mode="json"),
        run_dir=str(out_dir),
        store_path=store_file,
        fix=fix.model_dump(mode="json") if fix else None,
        fixed_suffix=fixed_suffix(final) if final else ".jsonl",
        dry_run=dry_run,
        shard_budget=budget,
        plan_key=key,
    )
    results: dict[int, dict] = {}
    try:
        for s in shards:
            if s not in pending:
                done = load_done(out_dir, s.index, key)
                results[s.index] = {"index": s.index, "status": "skipped", "counts": reused(done["counts"])}  # type: ignore
                if on_progress:
                    on_progress(done["counts"]["read"]["read"])  # type: ignore[index]
        if pending:
            for result in executor(job, pending, opts):
                results[result["index"]] = result
                if on_progress:
                    on_progress(result["instances"])
    finally:
        _merge_stores(out_dir, store_file, [s.index for s in shards])
    ordered = [results[s.index] for s in shards]
    summary: dict[str, Any] = {
        "input": input_path,
        "output_dir": str(out_dir),
        "store": store_file,
        "dry_run": dry_run,
        "config": config_echo or {"cascade": cascade.model_dump(mode="json")},
        "engine": {
            "name": "ray",
            "shards": len(shards),
            "shard_size": shard_size,
            "shards_run": len(pending),
            "shards_reused": len(shards) - len(pending),
            "worker_seconds": round(sum(r["counts"]["seconds"] for r in ordered), 3),
        },
        "read": merge_read([r["counts"]["read"] for r in ordered], fmt),
        "cascade": merge_stats([r["counts"]["cascade"] for r in ordered]).as_dict(),
    }
    _raise_first_error(ordered, out_dir, summary, t0)
    if not dry_run:
        indices = [s.index for s in shards]
        write_verdicts(out_dir, indices)
        write_rejects(out_dir, indices)
        if fix is not None and final is not None:
            write_fixed(out_dir, indices, final, fmt=fix.format, like=fmt)
            counts = merge_fix(r["counts"]["fix"] for r in ordered)
            summary["fix"] = {"operation": fix.operation.value, "output": str(final), **counts.as_dict()}
            read = summary["read"]
            summary["reconciled"] = (
                read["read"] == counts.written + counts.dropped_removed + counts.dropped_ambiguous + read["rejected"]
            )
    summary["seconds"] = round(time.time() - t0, 3)
    _write_summary(out_dir, summary)
    return summary


def _clear_stale(out_dir: Path, key: str, store_file: str) -> None:
    """Forget shard outputs of another plan (other input, configuration or shard size); their paid verdicts
    are kept by merging their stores first."""
    folder = out_dir / "shards"
    plan = folder / "plan.json"
    try:
        old = json.loads(plan.read_text()).get("plan_key")
    except (OSError, ValueError):
        old = None
    if old != key and folder.is_dir():
        parts = sorted(folder.glob("*.store.sqlite"))
        if parts:
            JudgmentStore(store_file).close()  # creates it if needed
        for part in parts:
            merge_into(store_file, part)
        log.info("%s holds shards of another plan; starting them afresh", folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plan.write_text(json.dumps({"plan_key": key}))


def _merge_stores(out_dir: Path, store_file: str, indices: list[int]) -> None:
    """Move every shard's paid verdicts into the main store (shard order; first wins) and drop the copies."""
    for i in indices:
        part = shard_path(out_dir, i, "store.sqlite")
        if part.is_file():
            added = merge_into(store_file, part)
            log.debug("shard %d: %d verdicts into %s", i, added, store_file)
            part.unlink()


def _raise_first_error(ordered: list[dict], out_dir: Path, summary: dict, t0: float) -> None:
    """Errors as the local engine raises them: the first shard's error; a budget stop after the summary."""
    for r in ordered:
        if r["status"] == "error":
            err = r["error"]
            cls = _ERRORS.get(err["type"], NegcleanError)
            raise cls(err["message"])
    stopped = [r for r in ordered if r["status"] == "budget"]
    if stopped:
        summary["stopped"] = (
            f"{len(stopped)} of {len(ordered)} shards reached their share of --max-cost "
            f"({stopped[0]['error']['message']})"
        )
        summary["seconds"] = round(time.time() - t0, 3)
        _write_summary(out_dir, summary)
        raise BudgetExceeded(
            f"{len(stopped)} shard(s) stopped at their share of --max-cost; everything judged "
            "so far is stored: rerun with a higher --max-cost to resume"
        )


def _write_summary(out_dir: Path, summary: dict) -> None:
    with atomic_open(out_dir / "summary.json") as fh:
        json.dump(summary, fh, indent=2, ensure_ascii=False)


def run_pipeline_ray(
    cfg: Any,
    *,
    dry_run: bool = False,
    ray_options: RayOptions | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict:
    """`negclean run` on Ray: the optional mine step (``mine_ray``), then judge + fix (``run_judge_ray``)."""
    out_dir = Path(cfg.output_dir)
    input_path = cfg.input
    mine_summary = None
    if cfg.mine is not None:
        options = dict(cfg.mine)
        out_fmt = options.pop("format", None) or options.pop("out_fmt", None)
        mined = out_dir / "mined.jsonl"
        mine_summary = mine_ray(
            MineConfig.from_options(options, source="pipeline 'mine'"),
            output=mined,
            out_fmt=out_fmt,
            ray_options=ray_options,
        ).as_dict()
        input_path = str(mined)
    if not input_path:
        raise ConfigError("pipeline has no 'input' (and no 'mine' step to make one)")
    summary = run_judge_ray(
        input_path=input_path,
        cascade=cfg.cascade,
        output_dir=out_dir,
        store_path=cfg.store,
        fmt=cfg.format,
        on_error=cfg.on_error,
        dry_run=dry_run,
        fix=None if dry_run else cfg.fix,
        ray_options=ray_options,
        on_progress=on_progress,
        config_echo=cfg.model_dump(mode="json"),
    )
    if mine_summary is not None:
        summary["mine"] = mine_summary
        _write_summary(out_dir, summary)
    return summary
