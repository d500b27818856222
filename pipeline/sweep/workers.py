"""Ray worker actors: one per GPU (or per CPU slot), model resident, shards handed out as workers free up.

Following Ray's batch-inference guide: the model is loaded once in the actor's ``__init__`` (from
the spec, not shipped bytes) and work runs under ``torch.inference_mode()``. :func:`run_on_ray`
keeps ``in_flight`` shards queued on each worker, so that it always has its next shard, and
watches for workers that hang or wait without end. Retry semantics are Ray's: a worker process that dies mid-shard is
restarted (``max_restarts``) and the shard it held re-executed on it (``max_task_retries``), both
set explicitly because Ray's defaults are 0; when they are used up the run fails with one line and
a re-run resumes. A worker writes nothing: it returns the shard's Arrow
table (through Ray's object store) and the driver writes it atomically into the run's store, so
a retried shard never leaves a half file or a duplicate, and a shard computed on any node lands
where the driver's ``out_dir`` is. The local cluster a sweep starts is private to the driver
(:mod:`.rayenv`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import torch

from pipeline.sweep.rayenv import PRIVATE_LOCAL_CLUSTER, ray  # first: sets Ray's environment before it is imported
from pipeline.errors import PipelineError, one_line
from pipeline.sweep import capacity
from pipeline.sweep.config import ClusterSpec
from pipeline.sweep.runner import RunPlan, ShardResult, ShardRunner
from pipeline.sweep.shards import Shard

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


_started_here: list[bool] = []  # a local cluster started by connect(), for shutdown()


def connect(cluster: ClusterSpec) -> None:
    """Joins RAY_ADDRESS (``ray job submit``) or starts a private local Ray; once per process.

    The cluster then serves every run of the process (a Hydra multirun shares it) until
    :func:`shutdown`.
    """
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"])
        return
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "disabled" and not cluster.allow_unauthenticated:
        raise PipelineError(
            "RAY_AUTH_MODE=disabled in the environment would start this sweep's local Ray cluster without "
            "authentication; unset it (the sweep then uses a fresh per-run token) or pass "
            "cluster.allow_unauthenticated=true"
        )
    if not PRIVATE_LOCAL_CLUSTER:
        log.warning(
            "[sweep] Ray was imported before pipeline.sweep.workers: the local cluster uses Ray's defaults "
            "(all interfaces); import pipeline.sweep.workers first or set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"
        )
    ray.init(num_gpus=cluster.num_gpus, include_dashboard=False)
    _started_here.append(True)


def shutdown() -> None:
    """Stops the local cluster :func:`connect` started (a joined cluster is left running)."""
    if _started_here and ray.is_initialized():
        ray.shutdown()
    _started_here.clear()


def _die_with_parent() -> None:
    """Asks the kernel to SIGKILL this worker process the moment its parent, the raylet, exits.

    Ray starts the GCS and the raylet of a local cluster with this same parent-death signal, tied
    to the driver; a worker notices its raylet's death only at its next periodic check, long
    enough to finish and write a shard for a driver that was already killed. With the signal a
    killed driver takes its raylet and, at once, its workers with it.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@ray.remote
class ShardWorker:
    """A Ray actor holding one resident :class:`ShardRunner`."""

    def __init__(self, plan: RunPlan, threads: int):
        _die_with_parent()
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        torch.set_num_threads(threads)
        self.runner: ShardRunner | None = None
        self.failure: str | None = None
        try:
            self.runner = ShardRunner(plan)
        except Exception as err:  # noqa: BLE001  kept for describe(): one line at the driver, no restart loop
            self.failure = one_line(f"{type(err).__name__}: {err}" if not isinstance(err, PipelineError) else str(err))

    def gpu_ids(self) -> list:
        """The GPUs Ray assigned to this actor (used by the pinning test)."""
        return ray.get_gpu_ids()

    def describe(self) -> dict:
        """Where this worker runs: its node's address, the model's device and dtype, its GPUs; or
        why it could not load its model (``error``)."""
        node, gpus = ray.util.get_node_ip_address(), ray.get_gpu_ids()
        if self.runner is None:
            return {"node": node, "error": self.failure, "gpus": gpus}
        return {"node": node, "device": self.runner.device, "gpus": gpus}

    def run(self, shard: Shard) -> ShardResult:
        """Computes the shard and returns its rows to the driver (which writes them)."""
        if self.runner is None:
            raise PipelineError(f"this worker could not start: {self.failure}")
        return replace(self.runner.run(shard), node=ray.util.get_node_ip_address())


def start_workers(plan: RunPlan, cluster: ClusterSpec, count: int | None = None, gpus: bool = False) -> list:
    """``count`` worker actors (default: :func:`pipeline.sweep.capacity.pool_size`), one GPU each for
    a run on CUDA (``gpus``), spread over the nodes (Ray's SPREAD strategy: one per node before two on one)."""
    if count is None:
        count = capacity.pool_size(cluster, gpus)
    options = dict(
        num_cpus=cluster.cpus_per_worker,
        num_gpus=1 if gpus else 0,
        max_restarts=cluster.max_restarts,
        max_task_retries=cluster.max_task_retries,
        scheduling_strategy="SPREAD",
    )
    return [ShardWorker.options(**options).remote(plan, cluster.cpus_per_worker) for _ in range(count)]


@contextmanager
def worker_pool(plan: RunPlan, cluster: ClusterSpec, count: int | None = None, gpus: bool = False) -> Iterator[list]:
    """Connects, starts the worker actors, and always ends them when the run ends.

    Every actor is killed when the run finishes or fails, and the command line stops the local
    cluster with :func:`shutdown` before the interpreter exits, so no worker is torn down half-way
    through the interpreter's own exit (where a dying worker can print a crash dump after a good
    run).
    """
    connect(cluster)
    workers: list = []
    try:
        workers = start_workers(plan, cluster, count, gpus)
        yield workers
    finally:
        for worker in workers:
            ray.kill(worker, no_restart=True)


POLL_S = 2.0


def wait_ready(workers: Sequence, stall_timeout_s: float) -> list[dict]:
    """Waits until every worker has loaded its model; returns their :meth:`ShardWorker.describe`.

    A worker whose ``__init__`` fails (a model that does not load, CUDA asked for where there is
    none) ends the run with one line carrying the cause, not Ray's traceback; workers still waiting
    for resources after ``stall_timeout_s`` end it with one line naming what they wait for.

    Raises:
        PipelineError: as above.
    """
    refs = {worker.describe.remote(): k for k, worker in enumerate(workers)}
    described: dict[int, dict] = {}
    deadline = time.monotonic() + stall_timeout_s
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1, timeout=POLL_S)
        for ref in done:
            described[refs.pop(ref)] = info = _get(ref)
            if info.get("error"):
                raise PipelineError(f"a worker on node {info['node']} could not start: {info['error']}")
        if refs and time.monotonic() > deadline:
            raise PipelineError(capacity.stall_message([workers[k] for k in refs.values()], stall_timeout_s, "to start"))
    return [described[k] for k in range(len(workers))]


def run_on_ray(
    workers: Sequence,
    shards: Sequence[Shard],
    on_done: Callable[[ShardResult], None],
    stall_timeout_s: float,
    in_flight: int = 2,
    shard_timeout_s: float | None = None,
) -> None:
    """Runs every shard on the pool, ``in_flight`` shards queued per worker, reporting each as it ends.

    The driver never waits without a limit:

    - when no shard has finished for ``stall_timeout_s`` while some worker is not running (pending
      for resources, or restarting after its node died where no live node can take it), the run
      stops with one line naming those workers and what they wait for; where their state cannot
      be read, it stops all the same, saying so (stall detection never turns itself off);
    - when a worker has been on one shard for longer than ``shard_timeout_s`` (its previous shard
      ended, or the run began, that long ago), it is taken to hang and the run stops with one line
      naming the shard and the worker.

    The shards done so far are in the store either way, and a re-run resumes.

    Raises:
        PipelineError: as above, or a worker that died more often than ``max_restarts`` allows
            (its cause in one line).
    """
    queue = list(shards)
    running: dict = {}  # ref -> (worker index, shard)
    busy_since = {k: time.monotonic() for k in range(len(workers))}  # the start of each worker's current shard
    queued = {k: 0 for k in range(len(workers))}

    def submit(k: int) -> None:
        if queue:
            shard = queue.pop(0)
            running[workers[k].run.remote(shard)] = (k, shard)
            queued[k] += 1

    for k in range(len(workers)):
        for _ in range(in_flight):
            submit(k)
    last = time.monotonic()
    while running:
        done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
        now = time.monotonic()
        if not done:
            _check_progress(workers, running, busy_since, queued, now - last, now, stall_timeout_s, shard_timeout_s)
            continue
        k, shard = running.pop(done[0])
        queued[k] -= 1
        busy_since[k] = now
        on_done(_result(done[0]))
        last = now
        submit(k)


def _result(ref) -> ShardResult:
    """The result of a finished shard; a lost or failed worker as one line."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayActorError as err:  # its node died, or it crashed more than max_restarts allow
        raise PipelineError(
            f"a worker was lost and its shard could not be retried ({capacity.cause(err)}); "
            "the shards done so far are kept, a re-run resumes"
        ) from None
    except ray.exceptions.RayTaskError as err:
        raise PipelineError(f"a worker failed: {capacity.cause(err)}; the shards done so far are kept, a re-run resumes") from None


def _check_progress(workers, running, busy_since, queued, idle_s, now, stall_timeout_s, shard_timeout_s) -> None:
    """Stops a run whose workers hang on a shard or wait without end (see :func:`run_on_ray`)."""
    if shard_timeout_s is not None:
        for ref, (k, shard) in running.items():
            if queued[k] and now - busy_since[k] > shard_timeout_s:
                raise PipelineError(
                    f"a worker has been on shard {shard.name} for more than {shard_timeout_s:g} s "
                    "(cluster.shard_timeout_s) and is taken to hang; the run stops, the shards done so far are kept "
                    "and a re-run resumes (raise cluster.shard_timeout_s if shards take this long)"
                )
    if idle_s <= stall_timeout_s:
        return
    waiting = capacity.waiting_workers(workers)
    if waiting is None:
        raise PipelineError(
            f"no shard finished for {stall_timeout_s:g} s and the workers' state cannot be read from Ray; the run "
            "stops rather than wait without end (the shards done so far are kept, a re-run resumes; raise "
            "cluster.stall_timeout_s if shards take this long)"
        )
    if waiting:
        raise PipelineError(capacity.stall_message(waiting, stall_timeout_s, "for its shard"))


def _get(ref):
    try:
        return ray.get(ref)
    except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as err:
        raise PipelineError(f"a worker failed to start: {capacity.cause(err)}") from None
