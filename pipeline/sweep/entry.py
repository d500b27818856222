"""``python -m pipeline.sweep``: the XTransplant grid of a task on a model, as Parquet shards.

    python -m pipeline.sweep model=qwen2 task=xquad granularity=ffn
    ray job submit --working-dir . -- python -m pipeline.sweep model=qwen2 task=xquad
    python -m pipeline.sweep -m model=tiny granularity=attn,ffn,block

Flow: Hydra config -> typed :class:`SweepConfig` -> task instances -> shards -> worker actors
(model resident) -> each shard's Arrow table back to this driver -> one atomic Parquet file per
shard under ``out_dir/shards/`` + ``run.json``, in the run's store (``pipeline.store``: a local
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
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline import __version__
from pipeline.cli import CONF_DIR, config_errors, run_app
from pipeline.sweep.config import SweepConfig, sweep_config
from pipeline.errors import PipelineError, exit_on_user_error
from pipeline.sweep.plan import InstancePlan, make_plan
from pipeline.transplant.decoding import check_checkpoint
from pipeline.instances import Instance
from pipeline.models import ModelFacts, check_context, describe_model
from pipeline.models.layouts import unavailable
from pipeline.sweep.outdir import check_out_dir, guard_out_dir, locked_out_dir
from pipeline.sweep.progress import Progress
from pipeline.sweep.rows import RunTags
from pipeline.sweep.runner import RunPlan, ShardDone, ShardResult, ShardRunner
from pipeline.sweep.shards import Shard, check_shard_set, pending, plan_shards, shard_problem, shard_rel
from pipeline.rundir import RUN_FILE, features_rel, read_run
from pipeline.store import Store, redact
from pipeline.tasks import load_task
from pipeline.tasks.base import Task
from pipeline.transplant.engine import EngineOptions

log = logging.getLogger("pipeline.sweep")


def _slug(value) -> str:
    return "+".join(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else str(value)


OmegaConf.register_new_resolver("xt_slug", _slug, replace=True)


@dataclass(frozen=True)
class _Prepared:
    """A sweep checked and planned: everything :func:`run` needs once it holds the out_dir."""

    cfg: SweepConfig  # model resolved to one device kind and dtype (ModelSpec.for_run)
    store: Store
    task: Task
    instances: list[Instance]
    facts: ModelFacts
    grid: InstancePlan
    engine: EngineOptions  # the task's own max_new_tokens applied
    pool_size: int | None
    config_hash: str
    identity: dict
    shards: list[Shard]


def run(cfg: SweepConfig) -> Path | str:
    """Runs (or resumes) a sweep; returns its out_dir (a Path, or the URI of a remote store). Testable without Hydra.

    Every check that can refuse the run (task, model, grid, out_dir) happens before anything is
    written (:func:`_prepare`); then the out_dir is created and locked for the whole run (a second
    identical sweep waits, then finds the shards done).
    """
    prep = _prepare(cfg)
    store, shards = prep.store, prep.shards
    if not cfg.overwrite:  # refused now, not after waiting for another sweep's lock
        guard_out_dir(store, prep.config_hash, cfg.shard_size, False, prep.identity)
        check_shard_set(store, shards)
    with locked_out_dir(store) as renew_lock:
        # under the lock: another sweep may have written here while this one waited, and
        # overwrite=true moves a previous run aside only while this sweep holds the out_dir
        guard_out_dir(store, prep.config_hash, cfg.shard_size, cfg.overwrite, prep.identity)
        check_shard_set(store, shards)
        todo = pending(store, shards, lambda shard: _expected_on_disk(store, prep.grid, shard))
        previous = read_run(store) or {}
        meta = _run_meta(prep, previous, finished=previous.get("finished") if not todo else None)
        store.write_json(RUN_FILE, meta)
        log.info(
            "[sweep] %s: %d instances x (%d granularities x %d pairs + vanilla) on %s (%d layers); "
            "%d/%d shards already done; out_dir %s",
            meta["task"], len(prep.instances), len(prep.grid.granularities), len(prep.grid.pairs),
            prep.cfg.model.name, prep.facts.n_layers, len(shards) - len(todo), len(shards), store.describe(),
        )  # fmt: skip
        recorder = _Recorder(prep, meta, todo, dict(previous.get("computed_on") or {}), renew_lock)
        _execute(prep, todo, recorder.commit, recorder.started)
        if todo or not meta["finished"]:
            meta.update(finished=_now(), computed_on=recorder.computed_on)
            store.write_json(RUN_FILE, meta)
    log.info("[sweep] done: %d shards in %s", len(shards), store.describe())
    return store.local_path if store.is_local else store.uri


def _prepare(cfg: SweepConfig) -> _Prepared:
    """Checks the task, model, grid, cluster and out_dir, and plans the run; writes nothing."""
    store = Store.open(cfg.out_dir)
    check_out_dir(store)
    task = load_task(cfg.task)
    instances = task.instances()
    if not instances:
        raise PipelineError(f"task '{cfg.task.get('name')}' yields no instances for this split/langs")
    facts = describe_model(cfg.model)
    if facts.path is not None:  # an unsupported generation setting is refused before anything is written
        check_checkpoint(facts.path, facts.hub_revision, cfg.engine.decoding)
    grid = make_plan(cfg.grid, cfg.granularities, str(cfg.task["name"]), facts.n_layers, cfg.model.name, cfg.features)
    for granularity in grid.granularities:  # a hybrid family's layers may lack a module (pipeline.models.layouts)
        if facts.missing and granularity in facts.missing:
            raise PipelineError(unavailable(facts.model_type, granularity, facts.missing[granularity], facts.n_layers))
    engine = replace(cfg.engine, max_new_tokens=task.max_new_tokens) if task.max_new_tokens else cfg.engine
    pool_size, gpus = _preflight(cfg)  # the cluster can hold the workers and has the device asked for
    cfg = replace(cfg, model=cfg.model.for_run(gpus))  # one device kind and one dtype for every worker
    check_context(cfg.model, facts, instances, engine.max_new_tokens)  # every prompt fits, before anything runs
    return _Prepared(
        cfg=cfg, store=store, task=task, instances=instances, facts=facts, grid=grid, engine=engine,
        pool_size=pool_size,
        config_hash=grid.run_hash(cfg.config_hash(instances, facts.revision)),  # grid=selected: the selector's too
        identity=cfg.result_identity(instances, facts.revision),  # in run.json: a refusal can name what differs
        shards=plan_shards(instances, cfg.shard_size),
    )  # fmt: skip


def _run_meta(prep: _Prepared, previous: dict, finished: str | None) -> dict:
    """The run's ``run.json``: what ran, on what, and when (``previous``: the file a resume found)."""
    cfg = prep.cfg
    return {
        "model": cfg.model.name,
        "model_path": cfg.model.path,
        "model_revision": prep.facts.revision,
        "task": str(cfg.task["name"]),
        "granularities": list(prep.grid.granularities),
        "n_layers": prep.facts.n_layers,
        "n_instances": len(prep.instances),
        "groups": {k: list(v) for k, v in prep.task.groups.items()},
        "grid": cfg.grid.kind,
        "selector": cfg.grid.selector,
        "features": prep.grid.features,
        "pairs": [list(p) for p in prep.grid.pairs],
        "max_new_tokens": prep.engine.max_new_tokens,
        "config": _jsonable(cfg),
        "config_hash": prep.config_hash,
        "result_identity": prep.identity,
        "shard_size": cfg.shard_size,
        "n_shards": len(prep.shards),
        "package_version": __version__,
        "started": previous.get("started") or _now(),
        "resumed": [*previous.get("resumed", []), _now()] if previous else [],
        "finished": finished,
    }


class _Recorder:
    """Takes each computed shard into the store and keeps ``run.json`` and the progress line current."""

    def __init__(self, prep: _Prepared, meta: dict, todo: list[Shard], computed_on: dict, renew_lock):
        self.prep, self.meta, self.renew_lock = prep, meta, renew_lock
        self.by_index = {shard.index: shard for shard in todo}
        self.computed_on = computed_on  # shard -> node that computed it
        n = len(prep.shards)
        self.progress = Progress(n, n - len(todo), prep.cfg.shard_size * prep.grid.configs_per_instance())

    def commit(self, result: ShardResult) -> None:
        shard = self.by_index[result.index]
        expected = self.prep.grid.expected_rows(len(shard.instances), result.features)
        write_shard(self.prep.store, shard, result, expected)
        self.computed_on[shard.name] = result.node
        self.renew_lock()
        self.progress.update(ShardDone(result.index, result.table.num_rows, result.configs, result.seconds))

    def started(self, described: list[dict]) -> None:
        for k, worker in enumerate(described):
            log.info("[sweep] worker %d on node %s: %s", k, worker["node"], worker["device"])
        self.meta["workers"] = described
        self.prep.store.write_json(RUN_FILE, self.meta)


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
    from pipeline.sweep import capacity, workers  # here: an in-process run never imports Ray

    workers.connect(cfg.cluster)
    capacity.check_device(cfg.model)
    gpus = capacity.has_gpus()
    return capacity.pool_size(cfg.cluster, gpus and cfg.model.device != "cpu"), gpus


def _execute(prep: _Prepared, todo, on_done, on_started) -> None:
    """Runs the pending shards in-process or on a pool of Ray worker actors; ``on_done`` gets each
    result, ``on_started`` where each worker runs (node, device and dtype) once they are up."""
    if not todo:
        return
    cfg, pool_size = prep.cfg, prep.pool_size
    plan = RunPlan(
        model=cfg.model, task=cfg.task, grid=prep.grid.portable(), engine=prep.engine,
        tags=RunTags(cfg.model.name, str(cfg.task["name"]), prep.facts.n_layers, prep.config_hash), debug=cfg.debug,
    )
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
