"""``python -m pipeline.sweep``: the XTransplant grid of a task on a model, as Parquet shards.

    python -m pipeline.sweep model=qwen2 task=xquad granularity=ffn
    ray job submit --working-dir . -- python -m pipeline.sweep model=qwen2 task=xquad
    python -m pipeline.sweep -m model=tiny granularity=attn,ffn,block

Flow: Hydra config -> typed :class:`SweepConfig` -> task instances -> shards -> worker actors
(model resident) -> each shard's Arrow table back to this driver -> one atomic Parquet file per
shard under ``out_dir/shards/`` + ``run.json``, in the run's store (``pipeline.sweep.store``: a local
folder or a URI). Only the driver writes, and it counts a shard done only once the file reads back
from the store with the rows the shard must hold, so a row computed on any node of a cluster
lands in the one store the driver names. Re-running the same command resumes: only shards
without a complete file are computed.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline import __version__
from pipeline.cli import CONF_DIR, config_errors, run_app
from pipeline.config import SweepConfig, sweep_config
from pipeline.errors import PipelineError, exit_on_user_error
from pipeline.sweep.plan import InstancePlan, make_plan
from pipeline.transplant.decoding import check_checkpoint
from pipeline.models import check_context, describe_model
from pipeline.transplant.layouts import unavailable
from pipeline.sweep.progress import Progress
from pipeline.sweep.rows import RunTags
from pipeline.sweep.runner import RunPlan, ShardDone, ShardResult, ShardRunner
from pipeline.sweep.shards import (
    RUN_FILE,
    features_rel,
    Shard,
    check_out_dir,
    check_shard_set,
    guard_out_dir,
    locked_out_dir,
    pending,
    plan_shards,
    read_run,
    shard_problem,
    shard_rel,
)
from pipeline.sweep.store import Store, redact
from pipeline.tasks import load_task

log = logging.getLogger("pipeline.sweep")


def _slug(value) -> str:
    return "+".join(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else str(value)


OmegaConf.register_new_resolver("xt_slug", _slug, replace=True)


def run(cfg: SweepConfig) -> Path | str:
    """Runs (or resumes) a sweep; returns its out_dir (a Path, or the URI of a remote store). Testable without Hydra.

    Every check that can refuse the run (task, model, grid, out_dir) happens before anything is
    written; then the out_dir is created and locked for the whole run (a second identical sweep
    waits, then finds the shards done).
    """
    store = Store.open(cfg.out_dir)
    check_out_dir(store)
    task = load_task(cfg.task)
    instances = task.instances()
    if not instances:
        raise PipelineError(f"task '{cfg.task.get('name')}' yields no instances for this split/langs")
    facts = describe_model(cfg.model)
    if facts.path is not None:  # an unsupported generation setting is refused before anything is written
        check_checkpoint(facts.path, facts.hub_revision, cfg.engine.decoding)
    n_layers = facts.n_layers
    task_name = str(cfg.task["name"])
    grid = make_plan(cfg.grid, cfg.granularities, task_name, n_layers, cfg.model.name, cfg.features)
    granularities, pairs = grid.granularities, grid.pairs
    for granularity in granularities:  # a hybrid family's layers may lack a module (pipeline.transplant.layouts)
        if facts.missing and granularity in facts.missing:
            raise PipelineError(unavailable(facts.model_type, granularity, facts.missing[granularity], n_layers))
    engine = cfg.engine
    if task.max_new_tokens:
        engine = replace(engine, max_new_tokens=task.max_new_tokens)
    pool_size, gpus = _preflight(cfg)  # the cluster can hold the workers and has the device asked for
    cfg = replace(cfg, model=cfg.model.for_run(gpus))  # one device kind and one dtype for every worker
    check_context(cfg.model, facts, instances, engine.max_new_tokens)  # every prompt fits, before anything runs
    config_hash = grid.run_hash(cfg.config_hash(instances, facts.revision))  # grid=selected: the selector's too
    identity = cfg.result_identity(instances, facts.revision)  # in run.json: a refusal can name what differs
    shards = plan_shards(instances, cfg.shard_size)
    if not cfg.overwrite:  # refused now, not after waiting for another sweep's lock
        guard_out_dir(store, config_hash, cfg.shard_size, False, identity)
        check_shard_set(store, shards)
    with locked_out_dir(store) as renew_lock:
        # under the lock: another sweep may have written here while this one waited, and
        # overwrite=true moves a previous run aside only while this sweep holds the out_dir
        guard_out_dir(store, config_hash, cfg.shard_size, cfg.overwrite, identity)
        check_shard_set(store, shards)
        todo = pending(store, shards, lambda shard: _expected_on_disk(store, grid, shard))
        previous = read_run(store)
        meta = {
            "model": cfg.model.name,
            "model_path": cfg.model.path,
            "model_revision": facts.revision,
            "task": task_name,
            "granularities": list(granularities),
            "n_layers": n_layers,
            "n_instances": len(instances),
            "groups": {k: list(v) for k, v in task.groups.items()},
            "grid": cfg.grid.kind,
            "selector": cfg.grid.selector,
            "features": grid.features,
            "pairs": [list(p) for p in pairs],
            "max_new_tokens": engine.max_new_tokens,
            "config": _jsonable(cfg),
            "config_hash": config_hash,
            "result_identity": identity,
            "shard_size": cfg.shard_size,
            "n_shards": len(shards),
            "package_version": __version__,
            "started": (previous or {}).get("started") or _now(),
            "resumed": [*(previous or {}).get("resumed", []), _now()] if previous else [],
            "finished": (previous or {}).get("finished") if not todo else None,
        }
        store.write_json(RUN_FILE, meta)
        log.info(
            "[sweep] %s: %d instances x (%d granularities x %d pairs + vanilla) on %s (%d layers); "
            "%d/%d shards already done; out_dir %s",
            task_name, len(instances), len(granularities), len(pairs), cfg.model.name, n_layers,
            len(shards) - len(todo), len(shards), store.describe(),
        )  # fmt: skip
        plan = RunPlan(
            model=cfg.model, task=cfg.task, grid=grid.portable(), engine=engine,
            tags=RunTags(cfg.model.name, task_name, n_layers, config_hash), debug=cfg.debug,
        )
        configs_per_shard = cfg.shard_size * grid.configs_per_instance()
        progress = Progress(len(shards), len(shards) - len(todo), configs_per_shard)
        by_index = {shard.index: shard for shard in todo}
        computed_on = dict((previous or {}).get("computed_on") or {})  # shard -> node that computed it

        def commit(result: ShardResult) -> None:
            shard = by_index[result.index]
            write_shard(store, shard, result, grid.expected_rows(len(shard.instances), result.features))
            computed_on[shard.name] = result.node
            renew_lock()
            progress.update(ShardDone(result.index, result.table.num_rows, result.configs, result.seconds))

        def started(described: list[dict]) -> None:
            for k, worker in enumerate(described):
                log.info("[sweep] worker %d on node %s: %s", k, worker["node"], worker["device"])
            meta["workers"] = described
            store.write_json(RUN_FILE, meta)

        _execute(cfg, plan, todo, commit, started, pool_size)
        if todo or not meta["finished"]:
            meta.update(finished=_now(), computed_on=computed_on)
            store.write_json(RUN_FILE, meta)
    log.info("[sweep] done: %d shards in %s", len(shards), store.describe())
    return store.local_path if store.is_local else store.uri


def _expected_on_disk(store: Store, grid: InstancePlan, shard: Shard) -> int | None:
    """The rows a finished file of ``shard`` holds; None when its feature file, which the count
    follows from (``grid=selected``), is missing."""
    features = None
    if grid.counts_from_features:
        if not store.is_file(features_rel(shard.name)):
            return None
        features = store.read_table(features_rel(shard.name))
    return grid.expected_rows(len(shard.instances), features)


def write_shard(store: Store, shard: Shard, result: ShardResult, expected_rows: int) -> None:
    """Writes a computed shard into the store (features first), then reads it back.

    The shard counts as done only if its file now reads from the store with ``expected_rows``
    rows and the row schema (the same check a resume makes), so no shard is ever reported done
    that the store does not hold.

    Raises:
        PipelineError: the store does not hold the shard just written.
    """
    rel = shard_rel(shard)
    if result.table.num_rows != expected_rows:
        raise PipelineError(
            f"shard {shard.name} came back from its worker with {result.table.num_rows} rows, "
            f"not the {expected_rows} it must hold; nothing was written for it (a re-run recomputes it)"
        )
    if result.features is not None:
        store.write_table(features_rel(shard.name), result.features)
    store.write_table(rel, result.table)
    problem = shard_problem(store, rel, expected_rows)
    if problem is not None:
        raise PipelineError(f"{store.describe(rel)} was written but {problem}; the run stops (a re-run recomputes it)")


def _preflight(cfg: SweepConfig) -> tuple[int | None, bool]:
    """(pool size, whether the run has GPUs), before anything is written.

    In-process: no pool, and the driver's own CUDA. On Ray: joins or starts the cluster, refuses
    ``model.device=cuda`` without GPUs and a pool no node can hold; a run on CUDA asks one GPU per
    worker, a CPU run none.
    """
    if cfg.cluster.kind == "inprocess":
        import torch

        if cfg.model.device == "cuda" and not torch.cuda.is_available():
            raise PipelineError("model.device=cuda but no CUDA device is visible to this process")
        return None, torch.cuda.is_available()
    from pipeline.sweep import workers  # first: it sets the local cluster's environment before Ray is imported
    from pipeline.sweep import capacity

    workers.connect(cfg.cluster)
    capacity.check_device(cfg.model)
    gpus = capacity.has_gpus()
    return capacity.pool_size(cfg.cluster, gpus and cfg.model.device != "cpu"), gpus


def _execute(cfg: SweepConfig, plan: RunPlan, todo, on_done, on_started, pool_size: int | None) -> None:
    """Runs the pending shards in-process or on a pool of Ray worker actors; ``on_done`` gets each
    result, ``on_started`` where each worker runs (node, device and dtype) once they are up."""
    if not todo:
        return
    if cfg.cluster.kind == "inprocess":
        runner = ShardRunner(plan)
        on_started([{"node": socket.gethostname(), "device": runner.device, "gpus": []}])
        for shard in todo:
            on_done(runner.run(shard))
        return
    from pipeline.sweep import workers

    with workers.worker_pool(plan, cfg.cluster, pool_size, plan.model.device == "cuda") as pool:
        on_started(workers.wait_ready(pool, cfg.cluster.stall_timeout_s))
        workers.run_on_ray(pool, todo, on_done, cfg.cluster.stall_timeout_s, shard_timeout_s=cfg.cluster.shard_timeout_s)


def _jsonable(cfg: SweepConfig) -> dict:
    from dataclasses import asdict

    data = asdict(cfg)
    data["out_dir"] = redact(cfg.out_dir)  # run.json never holds a credential of the store's URI
    return data


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
@exit_on_user_error
def _hydra_main(cfg: DictConfig) -> None:
    with config_errors():
        typed = sweep_config(cfg)
    run(typed)


@exit_on_user_error
def main() -> None:
    started = time.perf_counter()
    try:
        run_app(_hydra_main, None, config_name="config")
    finally:
        if "pipeline.sweep.workers" in sys.modules:  # a run used Ray: stop the local cluster it started
            sys.modules["pipeline.sweep.workers"].shutdown()
    log.info("[sweep] wall time %.1fs", time.perf_counter() - started)


if __name__ == "__main__":
    main()
