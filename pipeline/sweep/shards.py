"""Shards of a run: deterministic names, the plan, and the verified resume.

A task's instances are split into shards of ``shard_size`` (:func:`plan_shards`); each shard is one
Parquet file under ``out_dir/shards/`` named with its index and the shard count, so a resume finds
what is done by name and checks each file before it trusts it (:func:`pending`: the Parquet footer
reads and the row count is the plan's; anything else is set aside, never deleted, and computed
again). Shard files of another plan are refused (:func:`check_shard_set`). Whether the out_dir may
be written at all, and its lock, are :mod:`.outdir`'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.rundir import SHARD_DIR, shard_name
from pipeline.schema import ROW_SCHEMA
from pipeline.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """Instances [start, start + len(instances)) of the run's instance list."""

    index: int
    total: int
    instances: tuple[Instance, ...]

    @property
    def name(self) -> str:
        return shard_name(self.index, self.total)


def plan_shards(instances: Sequence[Instance], shard_size: int) -> list[Shard]:
    total = max(1, -(-len(instances) // shard_size))
    return [
        Shard(index=k, total=total, instances=tuple(instances[k * shard_size : (k + 1) * shard_size]))
        for k in range(total)
        if instances[k * shard_size : (k + 1) * shard_size]
    ]


def shard_rel(shard: Shard) -> str:
    """A shard's file inside its run's store: ``shards/<name>``."""
    return f"{SHARD_DIR}/{shard.name}"


def shard_problem(store: Store, rel: str, expected_rows: int) -> str | None:
    """Why the shard file ``rel`` of ``store`` cannot be trusted (None when it can).

    Reads only the Parquet footer: a truncated or foreign file has none, and a complete shard
    holds exactly ``expected_rows`` rows with the columns of ``pipeline.schema.ROW_SCHEMA``.
    """
    try:
        rows, names = store.parquet_footer(rel)
    except (OSError, pa.ArrowException) as err:
        return f"not a readable Parquet file ({' '.join(str(err).split())})"
    if rows != expected_rows:
        return f"holds {rows} rows, the shard must hold {expected_rows}"
    if names != ROW_SCHEMA.names:
        return "its columns are not those of pipeline.schema.ROW_SCHEMA"
    return None


def check_shard_set(store: Store, shards: Sequence[Shard]) -> None:
    """Refuses shard files of another plan in ``out_dir/shards`` (their ``-of-N`` or index differs).

    Mixing plans would duplicate rows (a grown task) or keep stale ones; the reduce refuses such a
    directory later, so the sweep refuses it now, before computing anything.
    """
    planned = {s.name for s in shards}
    found = [rel.split("/", 1)[1] for rel in store.files(SHARD_DIR, ".parquet") if rel.count("/") == 1]
    foreign = sorted(name for name in found if name not in planned)
    if foreign:
        raise PipelineError(
            f"out_dir {store.describe()}: {store.describe(f'{SHARD_DIR}/{foreign[0]}')} is not one of this run's "
            f"{len(shards)} shards ({shards[0].name} ... {shards[-1].name}); use another out_dir or pass "
            "overwrite=true to move it aside"
        )


def set_aside(store: Store, rel: str, problem: str) -> None:
    """Renames an untrusted shard file to ``NAME.corrupt-TIME`` (kept for inspection, never read as rows)."""
    aside = f"{rel}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
    store.move(rel, aside)
    log.warning("[sweep] shard %s %s: moved it to %s and recomputing it", rel, problem, aside.rsplit("/", 1)[-1])


def pending(store: Store, shards: Sequence[Shard], expected_rows: Callable[[Shard], int | None]) -> list[Shard]:
    """Shards without a trustworthy file: the ones a resumed run computes.

    A finished shard holds ``expected_rows(shard)`` rows (the plan's count, :mod:`pipeline.sweep.plan`;
    None: the plan cannot count it, e.g. a ``grid=selected`` shard whose feature file is missing).
    A file that fails :func:`shard_problem` is set aside (:func:`set_aside`) and its shard recomputed.
    """
    todo = []
    for shard in shards:
        rel = shard_rel(shard)
        if not store.is_file(rel):
            todo.append(shard)
            continue
        expected = expected_rows(shard)
        problem = "has no feature file to check it against" if expected is None else shard_problem(store, rel, expected)
        if problem is not None:
            set_aside(store, rel, problem)
            todo.append(shard)
    return todo
