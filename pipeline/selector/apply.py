"""The sweep side of selection: ``grid=selected`` as a per-instance plan (issue 11, items 1 and 3).

``grid=selected grid.selector=DIR`` is one more plan (``pipeline.sweep.plan``): per shard the
worker computes the instances' features (``pipeline.selector.features``, two forwards per
instance; always: they are what the choice was made from, and what the resume recounts a shard's
rows from), the selector chooses per instance (a candidate config or vanilla), and the runner
runs vanilla plus the chosen config: two generations per instance instead of N x N + 1.
Instances that chose the same config run together through the ordinary engine, so rows are
exactly what a sweep of that config writes: a vanilla row per instance at every granularity of
the selector's candidates, and one config row at the chosen (granularity, source layer, target
layer) where the selector transplants.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelectedPlan:
    """``grid=selected``: per instance, vanilla plus the config a fitted selector chooses.

    The driver loads the selector once (:meth:`load`, checking its layer count against the
    model); workers receive the :meth:`portable` plan (the directory only: the fitted model is too
    large to travel as an actor argument without Ray's object-store warning) and load it again
    (:meth:`resolved`). A shard's row count follows from its features (written before its rows),
    so the resume recounts it from the feature file.
    """

    selector_dir: str
    granularities: tuple[str, ...]
    fingerprint: str = ""  # the selector's content hash at the driver: every worker checks it
    selector: object | None = field(default=None, compare=False)
    features = True  # the choice is made from them; the driver writes them beside the shard
    counts_from_features = True
    pairs: tuple[tuple[int, int], ...] = ()  # no fixed grid

    @classmethod
    def load(cls, path: str | None, n_layers: int, model_name: str) -> SelectedPlan:
        from pipeline.selector.fitted import load

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
        from pipeline.selector.artefact import fingerprint

        return cls(str(Path(path).resolve()), tuple(selector.granularities), fingerprint(path), selector)

    def resolved(self) -> SelectedPlan:
        """On a worker: the selector loaded again, refused unless its content is what the driver saw."""
        from pipeline.selector.fitted import load

        if self.selector is not None:
            return self
        return replace(self, selector=load(self.selector_dir, expected=self.fingerprint))

    def portable(self) -> SelectedPlan:
        return replace(self, selector=None)

    def run_hash(self, config_hash: str) -> str:
        """The sweep's config hash combined with the selector's content hash."""
        return hashlib.sha256(f"{config_hash}:{self.fingerprint}".encode()).hexdigest()[:16]

    def _choice(self, features: pa.Table):
        choice, _ = self.selector.choose(features)
        return choice

    def configs(self, n_instances: int, features: pa.Table) -> list:
        candidates = self.selector.candidates
        first = candidates[0][0]
        return [((first,), ()) if k < 0 else ((candidates[k][0],), ((candidates[k][1], candidates[k][2]),))
                for k in map(int, self._choice(features))]  # fmt: skip

    def expected_rows(self, n_instances: int, features: pa.Table) -> int:
        return n_instances * len(self.granularities) + int((self._choice(features) >= 0).sum())

    def configs_per_instance(self) -> int:
        return 2
