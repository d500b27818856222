"""Ray worker actors: one per GPU (or per CPU slot), model resident, shards pulled from a queue.

Following Ray's batch-inference guide: the model is loaded once in the actor's ``__init__`` (from
the spec, not shipped bytes) and work runs under ``torch.inference_mode()``. Worker death is
survived within the run: actors restart (``max_restarts``) and the shard they held is retried
(``max_task_retries``); both are set explicitly because Ray's defaults are 0. A shard's file is
written atomically by the worker, so a retried shard never leaves a half file or a duplicate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import ray
import torch

from pipeline.config import ClusterSpec
from pipeline.runner import RunPlan, ShardDone, ShardRunner
from pipeline.shards import Shard

LOOPBACK = "127.0.0.1"


def connect(cluster: ClusterSpec) -> None:
    """Joins RAY_ADDRESS (``ray job submit``) or starts a local Ray on loopback; once per process."""
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"])
        return
    ray.init(num_gpus=cluster.num_gpus, include_dashboard=False, _node_ip_address=LOOPBACK)


@ray.remote
class ShardWorker:
    """A Ray actor holding one resident :class:`ShardRunner`."""

    def __init__(self, plan: RunPlan, threads: int):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        torch.set_num_threads(threads)
        self.runner = ShardRunner(plan)

    def gpu_ids(self) -> list:
        """The GPUs Ray assigned to this actor (used by the pinning test)."""
        return ray.get_gpu_ids()

    def run(self, shard: Shard) -> ShardDone:
        return self.runner.run(shard)


def start_workers(plan: RunPlan, cluster: ClusterSpec) -> list:
    """One actor per GPU when the cluster has GPUs (num_gpus=1 each), else per CPU slot."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    if cluster.num_workers is not None:
        count = cluster.num_workers
    else:
        count = gpus if gpus else max(1, cpus // cluster.cpus_per_worker)
    options = dict(
        num_cpus=cluster.cpus_per_worker,
        num_gpus=1 if gpus else 0,
        max_restarts=cluster.max_restarts,
        max_task_retries=cluster.max_task_retries,
    )
    return [ShardWorker.options(**options).remote(plan, cluster.cpus_per_worker) for _ in range(count)]


def run_on_ray(
    workers: Sequence, shards: Sequence[Shard], on_done: Callable[[ShardDone], None], in_flight: int = 2
) -> None:
    """Keeps every worker fed with up to ``in_flight`` shards until all are done."""
    queue = list(shards)
    running: dict = {}
    load = {id(w): 0 for w in workers}

    def feed():
        for worker in sorted(workers, key=lambda w: load[id(w)]):
            while queue and load[id(worker)] < in_flight:
                running[worker.run.remote(queue.pop(0))] = worker
                load[id(worker)] += 1

    feed()
    while running:
        ready, _ = ray.wait(list(running), num_returns=1)
        worker = running.pop(ready[0])
        load[id(worker)] -= 1
        on_done(ray.get(ready[0]))
        feed()
