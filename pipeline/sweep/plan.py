"""Which (source layer, target layer) pairs a run covers.

``full`` is the paper's N x N sweep (Sec. 3); ``source_last`` (i = N-1, all j) and ``target_first``
(all i, j = 0) are the rows of its Table 4 and ``upper_bounds`` both at once (2N - 1 pairs, the
SourceLast and TargetFirst upper bounds of one run); ``coarse`` is the single pair and granularity of its
Table 2 per task, used on the unseen sets (Table 3); ``pairs`` is an explicit list; ``selected`` is
one pair per instance, chosen by a learned selector (``pipeline.select``, issue 11). Vanilla rows
always come along (the engine adds them). Layers count from 0 here and in the data (the paper counts from 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from pipeline.errors import PipelineError
from pipeline.models.layouts import check_layers

GRID_KINDS = ("full", "source_last", "target_first", "upper_bounds", "coarse", "pairs", "selected")


class CoarseSetting(NamedTuple):
    """One row of the paper's Table 2: the XTransplant level and the (source, target) layers."""

    level: str  # "attn" (Attn-level) or "ffn" (FFN-level)
    source: str  # "first" or "last" layer
    target: str


# Paper Table 2, for the ID task of each row and its OOD task: multilingual understanding
# (XNLI, XCOPA) attention-level (last layer, first layer); multilingual generation (XQuAD, MKQA)
# and cultural adaptability (GlobalOpinionQA, CulturalBench) FFN-level (first layer, first layer).
COARSE: dict[str, CoarseSetting] = {
    "xnli": CoarseSetting("attn", "last", "first"),
    "xcopa": CoarseSetting("attn", "last", "first"),
    "xquad": CoarseSetting("ffn", "first", "first"),
    "mkqa": CoarseSetting("ffn", "first", "first"),
    "globalopinionqa": CoarseSetting("ffn", "first", "first"),
    "culturalbench": CoarseSetting("ffn", "first", "first"),
}

# How an Attn-level row of Table 2 runs (``grid.attention``): ``attn_released`` (default) as the
# authors' released code transplants (the layer input plus the attention output), ``attn`` as the
# paper's equation writes it (the attention output alone).
COARSE_ATTENTION = ("attn_released", "attn")


@dataclass(frozen=True)
class GridSpec:
    """A grid kind and, for ``kind=pairs``, its explicit (source, target) pairs."""

    kind: str = "full"
    pairs: tuple[tuple[int, int], ...] = ()
    attention: str | None = None  # grid=coarse: granularity of Attn-level rows (None = attn_released)
    selector: str | None = None  # grid=selected: a selector directory (pipeline.select fit)

    def __post_init__(self):
        if self.kind not in GRID_KINDS:
            raise PipelineError(f"unknown grid '{self.kind}'; valid: {', '.join(GRID_KINDS)}")
        if self.kind == "selected" and not self.selector:
            raise PipelineError(
                "grid=selected needs grid.selector=DIR (a directory made by python -m pipeline.select fit)"
            )
        if self.kind != "pairs":
            return
        if not self.pairs:
            raise PipelineError("grid=pairs needs grid.pairs=[[i,j],...] with at least one pair")
        for pair in self.pairs:
            # bool is an int subclass: [[true,1]] must not run as (1, 1); nor [[0.5,1]] as (0, 1)
            if len(pair) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair):
                shown = "[" + ", ".join(repr(x) for x in pair) + "]"
                raise PipelineError(
                    f"grid.pairs: {shown} is not a [source_layer, target_layer] pair of integers, "
                    "e.g. grid.pairs=[[0,1],[3,0]]"
                )


def coarse_setting(task: str, attention: str | None = None) -> tuple[str, str, str]:
    """(granularity, source, target) of Table 2 for a task; 'first'/'last' name layers.

    Args:
        task: the task name (``task.name``).
        attention: the granularity an Attn-level row runs at, one of :data:`COARSE_ATTENTION`;
            None = ``attn_released``. FFN-level rows run at ``ffn`` whatever it says.

    Raises:
        PipelineError: a task without a Table 2 row, or an unknown ``attention``.
    """
    if task not in COARSE:
        raise PipelineError(f"grid=coarse has no Table 2 setting for task '{task}'; defined for: {', '.join(COARSE)}")
    if attention is not None and attention not in COARSE_ATTENTION:
        raise PipelineError(f"grid.attention={attention!r} is not valid; choose one of: {', '.join(COARSE_ATTENTION)}")
    level, source, target = COARSE[task]
    granularity = (attention or COARSE_ATTENTION[0]) if level == "attn" else level
    return granularity, source, target


def grid_pairs(spec: GridSpec, n_layers: int, task: str) -> list[tuple[int, int]]:
    """The (source, target) pairs of a grid for an N-layer model, source-major order."""
    last = n_layers - 1
    if spec.kind == "full":
        return [(i, j) for i in range(n_layers) for j in range(n_layers)]
    if spec.kind == "source_last":
        return [(last, j) for j in range(n_layers)]
    if spec.kind == "target_first":
        return [(i, 0) for i in range(n_layers)]
    if spec.kind == "upper_bounds":  # SourceLast, then TargetFirst without (last, 0) a second time
        return [(last, j) for j in range(n_layers)] + [(i, 0) for i in range(last)]
    if spec.kind == "selected":  # chosen per instance by the selector (pipeline.selector.apply)
        return []
    if spec.kind == "coarse":
        _, source, target = coarse_setting(task)
        pick = {"first": 0, "last": last}
        return [(pick[source], pick[target])]
    pairs = [(i, j) for i, j in spec.pairs]  # integers, checked by GridSpec
    for i, j in pairs:
        check_layers((i, j), n_layers, f"grid.pairs: ({i}, {j})")
    if len(set(pairs)) != len(pairs):
        raise PipelineError("grid.pairs lists a pair twice")
    return pairs


def grid_granularities(spec: GridSpec, requested: Sequence[str], task: str) -> tuple[str, ...]:
    """``coarse`` fixes the granularity to Table 2's (``grid.attention`` for Attn-level rows);
    other grids keep the requested ones.

    Raises:
        PipelineError: ``grid.attention`` set on a grid other than ``coarse``, or invalid.
    """
    if spec.kind == "coarse":
        return (coarse_setting(task, spec.attention)[0],)
    if spec.attention is not None:
        raise PipelineError(f"grid.attention applies to grid=coarse only, not grid={spec.kind}; use granularity=")
    return tuple(requested)


# -- per-instance plans -------------------------------------------------------------------------
# A plan says which configs each instance of a shard runs, as (granularities, pairs) per instance
# (vanilla always comes along), and so how many rows a finished shard holds. Every grid kind is
# one: a fixed grid gives every instance the same entry; ``grid=selected`` (pipeline.selector.apply)
# gives each instance vanilla plus the config its selector chose from the instance's features.
# The sweep, its resume check and the runner only ever talk to a plan.

InstanceConfigs = tuple[tuple[str, ...], tuple[tuple[int, int], ...]]  # (granularities, pairs) of one instance


class InstancePlan(Protocol):
    """What the sweep, the resume check and the runner ask of a plan (every grid kind)."""

    granularities: tuple[str, ...]  # the run's granularities (its vanilla rows are written at each)
    pairs: tuple[tuple[int, int], ...]  # a fixed grid's pairs (empty when chosen per instance)
    features: bool  # workers compute selector features per shard (written beside its rows)
    counts_from_features: bool  # a shard's row count follows from its features

    def resolved(self) -> InstancePlan: ...  # ready to use (loads what the portable form left out)
    def portable(self) -> InstancePlan: ...  # small enough to travel to every worker
    def run_hash(self, config_hash: str) -> str: ...  # the hash that run.json and the resume check use
    def configs(self, n_instances: int, features=None) -> list[InstanceConfigs]: ...
    def expected_rows(self, n_instances: int, features=None) -> int: ...
    def configs_per_instance(self) -> int: ...


@dataclass(frozen=True)
class GridPlan:
    """A fixed grid: every instance runs ``granularities`` x ``pairs`` plus vanilla.

    ``features`` asks the workers to compute selector features as well (``features=true``);
    they do not change which configs run.
    """

    granularities: tuple[str, ...]
    pairs: tuple[tuple[int, int], ...]
    features: bool = False
    counts_from_features = False  # a shard's row count does not depend on its features

    def resolved(self) -> GridPlan:
        return self

    def portable(self) -> GridPlan:
        return self

    def run_hash(self, config_hash: str) -> str:
        return config_hash

    def configs(self, n_instances: int, features=None) -> list[InstanceConfigs]:
        return [(self.granularities, self.pairs)] * n_instances

    def expected_rows(self, n_instances: int, features=None) -> int:
        return n_instances * len(self.granularities) * (1 + len(self.pairs))

    def configs_per_instance(self) -> int:
        return 1 + len(self.granularities) * len(self.pairs)


def make_plan(spec: GridSpec, requested: Sequence[str], task: str, n_layers: int, model_name: str,
              features: bool = False) -> InstancePlan:  # fmt: skip
    """The plan of a sweep's grid: a :class:`GridPlan`, or the selector's plan for ``grid=selected``."""
    if spec.kind == "selected":  # the selector is the one producer of per-instance plans that learns
        from pipeline.selector.apply import SelectedPlan

        return SelectedPlan.load(spec.selector, n_layers, model_name)
    return GridPlan(grid_granularities(spec, requested, task), tuple(grid_pairs(spec, n_layers, task)), features)
