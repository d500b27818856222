"""``python -m pipeline.sweep``: the XTransplant grid of a task on a model, as Parquet shards.

    python -m pipeline.sweep model=qwen2 task=xquad granularity=ffn
    ray job submit --working-dir . -- python -m pipeline.sweep model=qwen2 task=xquad
    python -m pipeline.sweep -m model=tiny granularity=attn,ffn,block

Flow: Hydra config -> typed :class:`SweepConfig` -> task instances -> shards -> worker actors
(model resident) -> one atomic Parquet file per shard under ``out_dir/shards/`` + ``run.json``.
Re-running the same command resumes: only shards without a file are computed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline import __version__
from pipeline.cli import CONF_DIR, check_group_choices, config_errors
from pipeline.config import SweepConfig, sweep_config
from pipeline.errors import PipelineError, exit_on_user_error
from pipeline.grid import grid_granularities, grid_pairs
from pipeline.models import describe_model
from pipeline.progress import Progress
from pipeline.rows import RunTags
from pipeline.runner import RunPlan, ShardDone, ShardRunner
from pipeline.shards import RUN_FILE, guard_out_dir, pending, plan_shards, read_run, write_json_atomic
from pipeline.tasks import load_task

def _slug(value) -> str:
    return "+".join(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else str(value)


OmegaConf.register_new_resolver("xt_slug", _slug, replace=True)


def run(cfg: SweepConfig) -> Path:
    """Runs (or resumes) a sweep; returns its out_dir. Testable without Hydra."""
    task = load_task(cfg.task)
    instances = task.instances()
    if not instances:
        raise PipelineError(f"task '{cfg.task.get('name')}' yields no instances for this split/langs")
    facts = describe_model(cfg.model)
    n_layers = facts.n_layers
    task_name = str(cfg.task["name"])
    granularities = grid_granularities(cfg.grid, cfg.granularities, task_name)
    pairs = tuple(grid_pairs(cfg.grid, n_layers, task_name))
    engine = cfg.engine
    if task.max_new_tokens:
        engine = replace(engine, max_new_tokens=task.max_new_tokens)
    config_hash = cfg.config_hash()
    guard_out_dir(cfg.out_dir, config_hash, cfg.shard_size, cfg.overwrite)

    shards = plan_shards(instances, cfg.shard_size)
    todo = pending(cfg.out_dir, shards)
    previous = read_run(cfg.out_dir)
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
        "pairs": [list(p) for p in pairs],
        "max_new_tokens": engine.max_new_tokens,
        "config": _jsonable(cfg),
        "config_hash": config_hash,
        "shard_size": cfg.shard_size,
        "n_shards": len(shards),
        "package_version": __version__,
        "started": (previous or {}).get("started") or _now(),
        "resumed": [*(previous or {}).get("resumed", []), _now()] if previous else [],
        "finished": None,
    }
    write_json_atomic(meta, cfg.out_dir / RUN_FILE)
    print(
        f"[sweep] {task_name}: {len(instances)} instances x ({len(granularities)} granularities x "
        f"{len(pairs)} pairs + vanilla) on {cfg.model.name} ({n_layers} layers); "
        f"{len(shards) - len(todo)}/{len(shards)} shards already done; out_dir {cfg.out_dir}",
        flush=True,
    )
    plan = RunPlan(
        model=cfg.model, task=cfg.task, granularities=granularities, pairs=pairs, engine=engine,
        tags=RunTags(cfg.model.name, task_name, n_layers, config_hash), out_dir=cfg.out_dir, debug=cfg.debug,
    )
    configs_per_shard = cfg.shard_size * (1 + len(granularities) * len(pairs))
    progress = Progress(len(shards), len(shards) - len(todo), configs_per_shard)
    _execute(cfg, plan, todo, progress.update)
    meta.update(finished=_now())
    write_json_atomic(meta, cfg.out_dir / RUN_FILE)
    print(f"[sweep] done: {len(shards)} shards in {cfg.out_dir}", flush=True)
    return cfg.out_dir


def _execute(cfg: SweepConfig, plan: RunPlan, todo, on_done) -> None:
    """Runs the pending shards in-process or on Ray."""
    if not todo:
        return
    if cfg.cluster.kind == "inprocess":
        runner = ShardRunner(plan)
        for shard in todo:
            on_done(runner.run(shard))
        return
    from pipeline import workers

    workers.connect(cfg.cluster)
    pool = workers.start_workers(plan, cfg.cluster)
    workers.run_on_ray(pool, todo, on_done)


def _jsonable(cfg: SweepConfig) -> dict:
    from dataclasses import asdict

    data = asdict(cfg)
    data["out_dir"] = str(cfg.out_dir)
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
    check_group_choices(sys.argv[1:])
    started = time.perf_counter()
    _hydra_main()
    print(f"[sweep] wall time {time.perf_counter() - started:.1f}s", flush=True)


if __name__ == "__main__":
    main()
