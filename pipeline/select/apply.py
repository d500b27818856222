"""The sweep side of selection: features per shard, and ``grid=selected`` (issue 11, items 1 and 3).

``features=true``: before a shard's configs run, the worker computes the instances' features
(``features.FeatureExtractor``, two forwards per instance); the driver writes them atomically to
``out_dir/features/<shard name>``, before the shard's row file, so every finished shard has them.

``grid=selected grid.selector=DIR``: the driver loads the selector once (checking its layer count
against the model before any work) and ships it inside the run plan; per shard the worker
computes the features (always: they are what the choice was made from, and what the
resume recounts a shard's rows from), lets the selector choose per instance (a candidate config or vanilla), and
runs vanilla plus the chosen config: two generations per instance instead of N x N + 1. Instances
that chose the same config are run together through the ordinary engine, so rows are exactly what
a sweep of that config writes. Rows are ordinary: a vanilla row per instance at every granularity
of the selector's candidates, and one config row at the chosen (granularity, source layer, target
layer) where the selector transplants.
"""

from __future__ import annotations

import logging

from collections.abc import Iterator, Sequence
from dataclasses import replace

import pyarrow as pa

from pipeline.transplant.engine import Generation, TransplantEngine
from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.select.features import FeatureExtractor, features_rel
from pipeline.shards import Shard
from pipeline.store import Store

log = logging.getLogger(__name__)


def load_for_sweep(path: str | None, n_layers: int, model_name: str):
    """The selector of a ``grid=selected`` sweep, checked against the model (driver side)."""
    from pipeline.select.fit import load

    if not path:
        raise PipelineError("grid=selected needs grid.selector=DIR (a directory made by python -m pipeline.select fit)")
    selector = load(path)
    if selector.n_layers != n_layers:
        raise PipelineError(
            f"selector {path} was fitted on a model with {selector.n_layers} layers ({selector.model}); "
            f"model {model_name} has {n_layers}: a selector only applies to the model it was fitted on"
        )
    if selector.model != model_name:
        log.warning("[sweep] warning: selector %s was fitted on %s, applied to %s", path, selector.model, model_name)
    return selector


class SelectionStage:
    """Per-shard features and per-instance selection on a worker's resident model and engine."""

    def __init__(self, engine: TransplantEngine, tokenizer, plan, batch: int = 8):
        self.engine = engine
        self.plan = plan  # pipeline.runner.RunPlan: tags, granularities, pairs, selector
        self.extractor = FeatureExtractor(engine.model, tokenizer, batch)

    def generations(self, shard: Shard) -> tuple[pa.Table, Iterator[Generation]]:
        """The shard's features (the driver writes them before its rows), and its generations: the
        plan's grid, or the selection."""
        plan = self.plan
        features = self.extractor.compute(shard.instances, plan.tags.task, plan.tags.model)
        if plan.selector is None:
            return features, self.engine.run(shard.instances, plan.granularities, plan.pairs)
        choice, _ = plan.selector.choose(features)
        return features, run_selected(self.engine, shard.instances, choice, plan.selector.candidates)


def pending_selected(store: Store, shards: Sequence[Shard], selector, n_granularities: int) -> list[Shard]:
    """The shards of a ``grid=selected`` run without a trustworthy file (its resume).

    A finished shard holds one vanilla row per instance and granularity plus one row per instance
    the selector transplants; that count is recomputed from the shard's feature file (written
    first), so a truncated or stale file is caught like :func:`pipeline.shards.pending` catches
    one: renamed aside (``NAME.corrupt-TIME``) and recomputed.
    """
    from pipeline.shards import set_aside, shard_problem, shard_rel

    todo = []
    for shard in shards:
        rel = shard_rel(shard)
        if not store.is_file(rel):
            todo.append(shard)
            continue
        feats = features_rel(shard.name)
        problem = "has no feature file to check it against"
        if store.is_file(feats):
            choice, _ = selector.choose(store.read_table(feats))
            expected = len(shard.instances) * n_granularities + int((choice >= 0).sum())
            problem = shard_problem(store, rel, expected)
        if problem is not None:
            set_aside(store, rel, problem)
            todo.append(shard)
    return todo


def run_selected(
    engine: TransplantEngine, instances: Sequence[Instance], choice, candidates
) -> Iterator[Generation]:
    """Vanilla for every instance plus its chosen candidate (``choice[n]`` index, -1 = none).

    Instances with the same choice run together; ``Generation.config.instance`` indexes
    ``instances``, as from :meth:`TransplantEngine.run`.
    """
    members: dict[int, list[int]] = {}
    for n, k in enumerate(choice):
        members.setdefault(int(k), []).append(n)
    first = candidates[0][0]
    results: list[Generation] = []
    for k, index in sorted(members.items()):
        subset = [instances[n] for n in index]
        if k < 0:
            run = engine.run(subset, (first,), [])
        else:
            g, i, j = candidates[k]
            run = engine.run(subset, (g,), [(i, j)])
        for gen in run:
            results.append(replace(gen, config=replace(gen.config, instance=index[gen.config.instance])))
    results.sort(key=lambda gen: (gen.config.instance, gen.config.granularity is not None))
    yield from results


def selection_hash(config_hash: str, selector_dir: str) -> str:
    """A ``grid=selected`` run's config hash: the sweep's, combined with the selector's content hash."""
    import hashlib

    from pipeline.select.fit import fingerprint

    return hashlib.sha256(f"{config_hash}:{fingerprint(selector_dir)}".encode()).hexdigest()[:16]
