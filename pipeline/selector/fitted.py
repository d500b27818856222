"""A fitted selector as a sweep applies it: its scorer, the margin rule, and loading it back (issue 11).

The rule (per instance): score vanilla and every candidate config with the learned P(correct);
take the best candidate c* if P(c*) > P(vanilla) + margin, else keep vanilla (:func:`decide`).
Fitting it is :mod:`pipeline.select.fit`'s; its files are :mod:`.artefact`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.errors import PipelineError
from pipeline.selector import artefact
from pipeline.selector.learners import FeatureSpec, make_scorer

Candidate = tuple[str, int, int]
"""(granularity, source layer, target layer) of a config a selector may choose."""


@dataclass
class Selector:
    """The saved artefact: scorer (sklearn pipelines inside) + rule + what it applies to."""

    model: str
    n_layers: int
    candidates: list[Candidate]
    spec: FeatureSpec
    scorer: object
    margin: float
    learner: str
    params: dict
    best_fixed: Candidate | None
    training: dict

    @property
    def granularities(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g for g, _, _ in self.candidates))

    def probabilities(self, features: pa.Table) -> np.ndarray:
        """[n, K + 1] P(correct): column 0 vanilla, then the candidates."""
        return self.scorer.predict(self.spec.encode(features))

    def choose(self, features: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(choice [n]: candidate index or -1 for vanilla, probabilities [n, K + 1]).

        One thread: a shard's few instances are quick, and OpenMP threads competing with the
        model's for the same cores are slower by an order of magnitude.
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            p = self.probabilities(features)
        return decide(p, self.margin), p


def decide(p: np.ndarray, margin: float) -> np.ndarray:
    """The rule: best candidate if its P exceeds vanilla's by more than ``margin``, else -1 (vanilla)."""
    best = np.argmax(p[:, 1:], axis=1) if p.shape[1] > 1 else np.zeros(len(p), int)
    lift = p[np.arange(len(p)), best + 1] - p[:, 0]
    return np.where(lift > margin, best, -1)


def load(path: str | Path, expected: str | None = None) -> Selector:
    """Loads a selector directory written by :func:`save`; ``expected``: the fingerprint it must have."""
    meta, estimators = artefact.read(path, expected)
    try:
        spec = FeatureSpec(n_layers=int(meta["n_layers"]), langs=list(meta["langs"]), tasks=list(meta["tasks"]),
                           names=list(meta["features"]))  # fmt: skip
        candidates = [tuple(c) for c in meta["candidates"]]
        scorer = make_scorer(meta["learner"], spec, candidates, dict(meta["params"])).restore(meta["scorer"], estimators)
        best = meta.get("best_fixed")
        return Selector(
            model=meta["model"], n_layers=spec.n_layers, candidates=candidates, spec=spec, scorer=scorer,
            margin=float(meta["margin"]), learner=meta["learner"], params=dict(meta["params"]),
            best_fixed=tuple(best) if best else None, training=dict(meta.get("training") or {}),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as err:
        raise PipelineError(f"selector {path}: {artefact.MARKER} is incomplete ({type(err).__name__}: {err})") from err
