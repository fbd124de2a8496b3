"""Connecting to Ray: a running cluster (``address``, or ``RAY_ADDRESS``), else a local instance."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from negclean.errors import ConfigError, MissingDependency

log = logging.getLogger(__name__)


def require_ray() -> Any:
    """``ray`` with Ray Data, or MissingDependency naming the extra."""
    try:
        import ray
        import ray.data  # Ray Data is a separate extra of ray
    except ImportError as exc:
        raise MissingDependency("ray", "ray", "The Ray engine (--engine ray)") from exc
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray.

    Args:
        address: a cluster to join (``ray://host:10001``, ``host:6379`` or ``auto``); default ``RAY_ADDRESS``,
            else a local instance started for this run.
        num_cpus: CPUs of a local instance (default: all of this machine's).
        workers: actors in the pool (default: as many as the cluster's CPUs allow at ``cpus_per_worker``).
        cpus_per_worker / gpus_per_worker: resources each actor reserves.
        shard_size: lines per shard (instances for judging, queries for mining): the unit of work, of
            resuming, and of the memory a worker holds.
        progress: let Ray Data draw its progress bars.
    """

    address: str | None = None
    num_cpus: int | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    shard_size: int = 1000
    progress: bool = False

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ConfigError(f"shard_size must be at least 1, not {self.shard_size}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ConfigError(f"cpus_per_worker must be above 0, not {self.cpus_per_worker}")


def connect(options: RayOptions) -> Any:
    """Initialise Ray once per process (reusing an existing connection) and quiet Ray Data's output."""
    ray = require_ray()
    if not ray.is_initialized():
        address = options.address or os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if address:
            kwargs["address"] = address
        elif options.num_cpus is not None:
            kwargs["num_cpus"] = options.num_cpus
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise ConfigError(
                f"cannot reach the Ray cluster at {address!r} ({exc}); check the address "
                "(ray status on the head node shows it)"
            ) from exc
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = options.progress
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    return ray


#: Settings of the driver that workers must share: where the embedding cache lies. With one cache, a text embedded
#: by the driver or any worker is read back bit for bit by all, so a sharded run gives the local run's verdicts;
#: without it each worker embeds its own texts, in other batches, and a confidence can differ in its last digits.
SHARED_ENV = ("NEGCLEAN_EMBED_CACHE", "NEGCLEAN_CACHE_DIR")


def worker_runtime_env() -> dict[str, Any]:
    """Ray ``runtime_env`` giving workers the driver's cache settings (only those set in the driver)."""
    env = {name: os.environ[name] for name in SHARED_ENV if name in os.environ}
    return {"env_vars": env} if env else {}


def pool_size(ray: Any, options: RayOptions, pending: int) -> int:
    """Actors to start: the requested number, else what the cluster's CPUs (and GPUs) hold, never more than
    there are shards to run."""
    if options.workers is not None:
        size = options.workers
    else:
        resources = ray.cluster_resources()
        size = int(resources.get("CPU", 1) // options.cpus_per_worker)
        if options.gpus_per_worker:
            size = min(size, int(resources.get("GPU", 0) // options.gpus_per_worker))
        if size < 1:
            raise ConfigError(
                "the Ray cluster has too few CPUs/GPUs for one worker at the requested "
                f"cpus_per_worker={options.cpus_per_worker}, gpus_per_worker={options.gpus_per_worker}"
            )
    return max(1, min(size, pending))


def actor_pool(ray: Any, size: int) -> Any:
    """A fixed pool; one shard in flight per actor, so shards spread evenly."""
    return ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1)
