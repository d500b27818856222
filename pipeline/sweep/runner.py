"""Computes one shard on a resident model: engine -> rows -> the shard's Arrow table.

Used as-is by ``cluster=inprocess`` and wrapped by the Ray worker actor (``workers.py``); the model
and the task's scorer are loaded once in ``__init__``, never per shard or per config. A runner
writes nothing: it returns the shard's rows (and selector features) to the driver, which writes
them into the run's store (``pipeline.sweep``), so where a shard was computed never decides
where its rows land.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa

from pipeline.sweep.config import DebugSpec
from pipeline.instances import Instance
from pipeline.transplant.engine import EngineOptions, Generation, TransplantEngine
from pipeline.models import ModelSpec, load_model
from pipeline.sweep.plan import InstanceConfigs, InstancePlan
from pipeline.sweep.rows import RunTags, shard_table
from pipeline.sweep.shards import Shard
from pipeline.tasks import load_task


@dataclass(frozen=True)
class RunPlan:
    """What every shard of a run shares (picklable: it travels to Ray workers)."""

    model: ModelSpec
    task: dict
    grid: InstancePlan  # which configs each instance runs (pipeline.sweep.plan), in its portable form
    engine: EngineOptions
    tags: RunTags
    debug: DebugSpec


@dataclass(frozen=True)
class ShardResult:
    """A computed shard, as the driver receives it.

    Attributes:
        index: the shard's index.
        table: its rows (``pipeline.schema.ROW_SCHEMA``).
        features: per-instance selector features (``features=true`` or ``grid=selected``), else None.
        configs: configs decoded.
        seconds: compute time on the worker.
        node: the host that computed it.
    """

    index: int
    table: pa.Table
    features: pa.Table | None
    configs: int
    seconds: float
    node: str


@dataclass(frozen=True)
class ShardDone:
    """What the progress line hears about a shard once its file is in the store."""

    index: int
    rows: int
    configs: int
    seconds: float


class ShardRunner:
    """A resident model plus the task's scorer; :meth:`run` computes one shard."""

    def __init__(self, plan: RunPlan):
        self.plan = plan
        self.loaded = load_model(plan.model)
        self.task = load_task(plan.task)
        self.engine = TransplantEngine(self.loaded.model, self.loaded.tokenizer, plan.engine)
        self.grid = plan.grid.resolved()  # grid=selected: the worker loads the selector once
        self.extractor = None
        if self.grid.features:
            from pipeline.selector.features import FeatureExtractor

            self.extractor = FeatureExtractor(self.loaded.model, self.loaded.tokenizer, plan.engine.instance_batch)

    @property
    def device(self) -> str:
        """Where the model runs and in which dtype, e.g. ``cuda:0 bfloat16``."""
        param = next(self.loaded.model.parameters())
        return f"{param.device} {str(param.dtype).removeprefix('torch.')}"

    def run(self, shard: Shard) -> ShardResult:
        start = time.perf_counter()
        plan = self.plan
        generations = []
        features = None
        if self.extractor is not None:  # features first: a selected plan chooses from them
            features = self.extractor.compute(shard.instances, plan.tags.task, plan.tags.model)
        source = run_configs(self.engine, shard.instances, self.grid.configs(len(shard.instances), features))
        for k, gen in enumerate(source):
            generations.append(gen)
            if k == 1:
                self._maybe_crash(shard)
        table = shard_table(generations, shard.instances, self.grid.granularities, self.task, self.loaded.tokenizer,
                            plan.tags)  # fmt: skip
        return ShardResult(shard.index, table, features, len(generations), time.perf_counter() - start, socket.gethostname())

    def _maybe_crash(self, shard: Shard) -> None:
        """Fault injection: the worker process dies mid-shard, once (a marker file remembers), or hangs."""
        debug = self.plan.debug
        if debug.hang_on_shard == shard.index:
            while True:  # a worker stuck for good (a deadlock, a wedged device)
                time.sleep(60)
        if debug.crash_on_shard != shard.index or not debug.crash_marker:
            return
        marker = Path(debug.crash_marker)
        if marker.exists():
            return
        marker.write_text(f"crashed pid {os.getpid()} on shard {shard.index}\n")
        os._exit(17)


def run_configs(engine: TransplantEngine, instances: Sequence[Instance], configs: Sequence[InstanceConfigs]
                ) -> Iterator[Generation]:  # fmt: skip
    """Generations of every instance's configs (``configs[n]``: its granularities and pairs, vanilla added).

    Instances with the same configs run together through the engine (one group for a fixed
    grid, one per chosen config for ``grid=selected``); ``Generation.config.instance`` indexes
    ``instances``, as from :meth:`TransplantEngine.run`.
    """
    members: dict[InstanceConfigs, list[int]] = {}
    for n, entry in enumerate(configs):
        members.setdefault(entry, []).append(n)
    if len(members) == 1:  # a fixed grid: the engine's own order
        (granularities, pairs), index = next(iter(members.items()))
        if index == list(range(len(instances))):
            yield from engine.run(instances, granularities, pairs)
            return
    results: list[Generation] = []
    for (granularities, pairs), index in members.items():
        for gen in engine.run([instances[n] for n in index], granularities, pairs):
            results.append(replace(gen, config=replace(gen.config, instance=index[gen.config.instance])))
    results.sort(key=lambda gen: (gen.config.instance, gen.config.granularity is not None))
    yield from results
