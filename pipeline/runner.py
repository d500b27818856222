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
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa

from pipeline.config import DebugSpec
from pipeline.transplant.engine import EngineOptions, TransplantEngine
from pipeline.models import ModelSpec, load_model
from pipeline.rows import RunTags, shard_table
from pipeline.shards import Shard
from pipeline.tasks import load_task


@dataclass(frozen=True)
class RunPlan:
    """What every shard of a run shares (picklable: it travels to Ray workers)."""

    model: ModelSpec
    task: dict
    granularities: tuple[str, ...]
    pairs: tuple[tuple[int, int], ...]
    engine: EngineOptions
    tags: RunTags
    debug: DebugSpec
    features: bool = False  # compute per-instance selector features (pipeline.select.features)
    selector: str | None = None  # grid=selected: the selector's directory (each worker loads it; the
    # fitted model is too large to travel as an actor argument without Ray's object-store warning)


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
        self.selection = None
        if plan.features or plan.selector is not None:
            from pipeline.select.apply import SelectionStage
            from pipeline.select.fit import load as load_selector

            if plan.selector is not None:
                plan = self.plan = replace(plan, selector=load_selector(plan.selector))
            self.selection = SelectionStage(self.engine, self.loaded.tokenizer, plan, plan.engine.instance_batch)

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
        if self.selection is not None:  # features first, then the plan's grid or the selection
            features, source = self.selection.generations(shard)
        else:
            source = self.engine.run(shard.instances, plan.granularities, plan.pairs)
        for k, gen in enumerate(source):
            generations.append(gen)
            if k == 1:
                self._maybe_crash(shard)
        table = shard_table(generations, shard.instances, plan.granularities, self.task, self.loaded.tokenizer, plan.tags)
        return ShardResult(shard.index, table, features, len(generations), time.perf_counter() - start, socket.gethostname())

    def _maybe_crash(self, shard: Shard) -> None:
        """Fault injection: the worker process dies mid-shard, once (a marker file remembers)."""
        debug = self.plan.debug
        if debug.crash_on_shard != shard.index or not debug.crash_marker:
            return
        marker = Path(debug.crash_marker)
        if marker.exists():
            return
        marker.write_text(f"crashed pid {os.getpid()} on shard {shard.index}\n")
        os._exit(17)
