"""What a Ray cluster can hold, and saying so: pool sizing, device checks, stalled workers.

A worker actor asks for ``cluster.cpus_per_worker`` CPUs and, on a cluster with GPUs, one GPU. An
actor that no node can hold stays pending forever, and Ray says nothing; so the driver sizes the
pool by what the live nodes can hold (each node separately: two half-free nodes do not make one
free one), refuses a pool no node can hold, refuses ``model.device=cuda`` on a cluster without
GPUs before any actor starts, and, while running, names the workers that wait (for resources, or
for a restart after their node died) instead of waiting with them.

Actor states come from the GCS through ``ray._private.state`` (the public ``ray.util.state``
needs the dashboard, which the sweep's own local cluster does not run). Ray is imported through
``pipeline.sweep.rayenv``, which sets the private local cluster's environment before Ray reads it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from pipeline.sweep.config import ClusterSpec
from pipeline.errors import PipelineError
from pipeline.models import ModelSpec
from pipeline.sweep.rayenv import ray

log = logging.getLogger("pipeline.sweep")

WAITING = ("DEPENDENCIES_UNREADY", "PENDING_CREATION", "RESTARTING")


def live_nodes() -> list[tuple[str, dict[str, float]]]:
    """(address, total resources) of every live node, by address."""
    return sorted((n["NodeManagerAddress"], n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive"))


def _describe(nodes: list[tuple[str, dict[str, float]]]) -> str:
    return ", ".join(f"{ip} CPU {r.get('CPU', 0):g} GPU {r.get('GPU', 0):g}" for ip, r in nodes) or "none"


def has_gpus() -> bool:
    """Whether some live node has a GPU resource."""
    return any(r.get("GPU", 0) >= 1 for _, r in live_nodes())


def pool_size(cluster: ClusterSpec, gpus: bool) -> int:
    """How many workers to start: ``cluster.num_workers``, or all that fit, never more than fit.

    A worker of a run on CUDA (``gpus``) holds one GPU (one worker per GPU by default); a CPU run's
    worker holds ``cpus_per_worker`` CPUs.

    Raises:
        PipelineError: no live node can hold a single worker.
    """
    nodes = live_nodes()
    fits = [
        min(int(r.get("CPU", 0) // cluster.cpus_per_worker), int(r.get("GPU", 0)) if gpus else 1 << 30) for _, r in nodes
    ]
    fit = sum(fits)
    asks = f"{cluster.cpus_per_worker} CPU" + (" and 1 GPU" if gpus else "")
    if fit == 0:
        raise PipelineError(
            f"no node of the Ray cluster can hold a worker, which asks for {asks} (live nodes: {_describe(nodes)}); "
            "lower cluster.cpus_per_worker or add nodes"
        )
    if cluster.num_workers is None:
        return fit
    if cluster.num_workers > fit:
        log.warning(
            "[sweep] cluster.num_workers=%d, but the live nodes hold %d workers of %s each (%s): starting %d",
            cluster.num_workers, fit, asks, _describe(nodes), fit,
        )  # fmt: skip
        return fit
    return cluster.num_workers


def check_device(model: ModelSpec) -> None:
    """Refuses ``model.device=cuda`` on a cluster with no GPU resource, before any actor starts."""
    if model.device != "cuda":
        return
    if not ray.cluster_resources().get("GPU", 0):
        raise PipelineError(
            f"model.device=cuda, but the Ray cluster has no GPU resource (live nodes: {_describe(live_nodes())}); "
            "use model.device=auto or cpu, or run on nodes with GPUs"
        )


def waiting_workers(workers: Sequence) -> list | None:
    """The workers that are not running (pending for resources or restarting); None when Ray's
    actor table cannot be read (a private API): the caller must not take that as "none wait"."""
    from ray._private import state

    try:
        table = state.actors()
    except Exception:  # noqa: BLE001  (a private API)
        return None
    return [w for w in workers if (table.get(w._actor_id.hex()) or {}).get("State") in WAITING]


def stall_message(waiting: Sequence, seconds: float, what: str) -> str:
    """One line: which workers wait, in which state, and what the live nodes have."""
    from ray._private import state

    try:
        table = state.actors()
    except Exception:  # noqa: BLE001
        table = {}
    states = sorted({(table.get(w._actor_id.hex()) or {}).get("State", "unknown") for w in waiting})
    free = ray.available_resources()
    return (
        f"the sweep stopped: {len(waiting)} worker(s) waited more than {seconds:g} s {what} "
        f"({', '.join(states)}: no live node has the resources they ask for; live nodes: {_describe(live_nodes())}; "
        f"free now: CPU {free.get('CPU', 0):g} GPU {free.get('GPU', 0):g}); the shards done so far are kept and a "
        "re-run resumes (add capacity, lower cluster.num_workers, or raise cluster.stall_timeout_s)"
    )


def cause(err: BaseException) -> str:
    """The innermost error line of a Ray task/actor failure (``Type: message``), module path dropped."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    found = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b.*?:", line)]
    line = found[-1] if found else (lines[0] if lines else type(err).__name__)
    return re.sub(r"^(?:[a-z_]\w*\.)+(?=[A-Z])", "", line)
