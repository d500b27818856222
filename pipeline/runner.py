"""Runs one shard on a resident model: engine -> rows -> one atomic Parquet file.

Used as-is by ``cluster=inprocess`` and wrapped by the Ray worker actor (``workers.py``); the model
and the task's scorer are loaded once in ``__init__``, never per shard or per config.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.config import DebugSpec
from pipeline.transplant.engine import EngineOptions, TransplantEngine
from pipeline.models import ModelSpec, load_model
from pipeline.rows import RunTags, shard_table
from pipeline.shards import Shard, shard_path, write_atomic
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
    out_dir: Path
    debug: DebugSpec
    features: bool = False  # write per-instance selector features (pipeline.select.features)
    selector: str | None = None  # grid=selected: the selector's directory (each worker loads it; the
    # fitted model is too large to travel as an actor argument without Ray's object-store warning)


@dataclass(frozen=True)
class ShardDone:
    """What the driver hears about a finished shard (never the rows themselves)."""

    index: int
    rows: int
    configs: int
    seconds: float


class ShardRunner:
    """A resident model plus the task's scorer; :meth:`run` processes one shard."""

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

    def run(self, shard: Shard) -> ShardDone:
        start = time.perf_counter()
        plan = self.plan
        generations = []
        if self.selection is not None:  # features first, then the plan's grid or the selection
            source = self.selection.generations(shard)
        else:
            source = self.engine.run(shard.instances, plan.granularities, plan.pairs)
        for k, gen in enumerate(source):
            generations.append(gen)
            if k == 1:
                self._maybe_crash(shard)
        table = shard_table(generations, shard.instances, plan.granularities, self.task, self.loaded.tokenizer, plan.tags)
        write_atomic(table, shard_path(plan.out_dir, shard))
        return ShardDone(shard.index, table.num_rows, len(generations), time.perf_counter() - start)

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
