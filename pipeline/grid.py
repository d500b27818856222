"""Which (source layer, target layer) pairs a run covers.

``full`` is the paper's N x N sweep (Sec. 3); ``source_last`` (i = N-1, all j) and ``target_first``
(all i, j = 0) are the rows of its Table 4; ``coarse`` is the single pair of its Table 2 used on the
unseen sets; ``pairs`` is an explicit list. Vanilla rows always come along (the engine adds them).
Layers count from 0 here and in the data (the paper counts from 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.errors import PipelineError

GRID_KINDS = ("full", "source_last", "target_first", "coarse", "pairs")

# Paper Table 2: the coarse-grained setting per task (granularity, source, target).
COARSE = {
    "xnli": ("attn", "last", "first"),
    "xquad": ("ffn", "first", "first"),
    "globalopinionqa": ("ffn", "first", "first"),
}


@dataclass(frozen=True)
class GridSpec:
    """A grid kind and, for ``kind=pairs``, its explicit (source, target) pairs."""

    kind: str = "full"
    pairs: tuple[tuple[int, int], ...] = ()

    def __post_init__(self):
        if self.kind not in GRID_KINDS:
            raise PipelineError(f"unknown grid '{self.kind}'; valid: {', '.join(GRID_KINDS)}")
        if self.kind == "pairs" and not self.pairs:
            raise PipelineError("grid=pairs needs grid.pairs=[[i,j],...] with at least one pair")


def coarse_setting(task: str) -> tuple[str, str, str]:
    """(granularity, source, target) of Table 2 for a task; 'first'/'last' name layers."""
    if task not in COARSE:
        raise PipelineError(f"grid=coarse has no Table 2 setting for task '{task}'; defined for: {', '.join(COARSE)}")
    return COARSE[task]


def grid_pairs(spec: GridSpec, n_layers: int, task: str) -> list[tuple[int, int]]:
    """The (source, target) pairs of a grid for an N-layer model, source-major order."""
    last = n_layers - 1
    if spec.kind == "full":
        return [(i, j) for i in range(n_layers) for j in range(n_layers)]
    if spec.kind == "source_last":
        return [(last, j) for j in range(n_layers)]
    if spec.kind == "target_first":
        return [(i, 0) for i in range(n_layers)]
    if spec.kind == "coarse":
        _, source, target = coarse_setting(task)
        pick = {"first": 0, "last": last}
        return [(pick[source], pick[target])]
    pairs = [(int(i), int(j)) for i, j in spec.pairs]
    for i, j in pairs:
        if not (0 <= i <= last and 0 <= j <= last):
            raise PipelineError(f"grid.pairs: ({i}, {j}) out of range; the model has layers 0..{last}")
    if len(set(pairs)) != len(pairs):
        raise PipelineError("grid.pairs lists a pair twice")
    return pairs


def grid_granularities(spec: GridSpec, requested: Sequence[str], task: str) -> tuple[str, ...]:
    """``coarse`` fixes the granularity to Table 2's; other grids keep the requested ones."""
    if spec.kind == "coarse":
        return (coarse_setting(task)[0],)
    return tuple(requested)
