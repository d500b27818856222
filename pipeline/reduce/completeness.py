"""Is a run whole? The shards and instances its ``run.json`` planned against those in its store.

A run's rows are only the paper's numbers if every planned instance is in them: a shard lost on
the way (a node's private disk, a crashed copy, an unfinished sweep) takes whole instances, often
a whole language, with it, and every metric would silently cover the rest. So the reduce compares
the run with its plan (``run.json``: ``n_shards``, ``n_instances``) and refuses an incomplete run
with one line naming the missing shards, unless ``allow_partial=true``: then the report says
so at its top and in ``summary.json`` (``partial``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.rundir import SHARD_DIR, shard_name
from pipeline.store import Store

SHOWN = 4
"""Missing shard names spelled out in the one-line message (the rest are counted)."""


@dataclass(frozen=True)
class Completeness:
    """How much of its plan a run holds.

    Attributes:
        run: the run as messages name it.
        missing_shards: planned shard files (relative to the run) absent from the store.
        n_shards_planned: ``run.json`` ``n_shards`` (None when the run has no plan to compare with).
        n_instances_planned: ``run.json`` ``n_instances``.
        n_instances_present: instances with a vanilla row, the fewest over the run's granularities.
        finished: ``run.json`` ``finished`` (None: the sweep has not finished).
    """

    run: str
    missing_shards: list[str]
    n_shards_planned: int | None
    n_instances_planned: int | None
    n_instances_present: int
    finished: str | None

    @property
    def complete(self) -> bool:
        short = self.n_instances_planned is not None and self.n_instances_present < self.n_instances_planned
        return not self.missing_shards and not short

    def line(self) -> str:
        """One sentence naming what is missing."""
        parts = []
        if self.missing_shards:
            names = ", ".join(self.missing_shards[:SHOWN])
            more = f" and {len(self.missing_shards) - SHOWN} more" if len(self.missing_shards) > SHOWN else ""
            parts.append(f"{len(self.missing_shards)} of {self.n_shards_planned} planned shards are missing ({names}{more})")
        if self.n_instances_planned is not None:
            parts.append(f"{self.n_instances_present} of {self.n_instances_planned} planned instances have rows")
        unfinished = "" if self.finished else " (its sweep has not finished)"
        return f"run {self.run} is incomplete{unfinished}: " + "; ".join(parts)

    def as_dict(self) -> dict:
        return {
            "run": self.run,
            "missing_shards": self.missing_shards,
            "n_shards_planned": self.n_shards_planned,
            "n_instances_planned": self.n_instances_planned,
            "n_instances_present": self.n_instances_present,
            "run_finished": self.finished,
        }


def check_run(store: Store, meta: dict, n_instances_present: int) -> Completeness:
    """Compares a run's store with the plan in its ``run.json`` (``meta``; ``{}`` = no plan)."""
    n_shards = meta.get("n_shards")
    missing: list[str] = []
    if isinstance(n_shards, int) and isinstance(meta.get("shard_size"), int):
        present = set(store.files(SHARD_DIR, ".parquet"))  # one listing, not a request per shard
        planned = (f"{SHARD_DIR}/{shard_name(k, n_shards)}" for k in range(n_shards))
        missing = [rel for rel in planned if rel not in present]
    planned = meta.get("n_instances")
    return Completeness(
        run=store.describe(),
        missing_shards=missing,
        n_shards_planned=n_shards if isinstance(n_shards, int) else None,
        n_instances_planned=planned if isinstance(planned, int) else None,
        n_instances_present=n_instances_present,
        finished=meta.get("finished"),
    )
