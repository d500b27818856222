"""Sweep runs -> one table a selector learns from or is evaluated on (issue 11, items 2 and 4).

A :class:`SelectionTable` joins, per instance (task, instance id), the features of
``pipeline.selector.features`` with the correctness of vanilla and of every *candidate* config
(granularity, source layer, target layer) read from the run's ordinary rows
(``pipeline.reduce.results.load_run``). Candidates are the paper's Table 4 rows, SourceLast (i = N-1,
every j) and TargetFirst (every i, j = 0): 2N - 1 pairs per granularity present; or the full grid.

Runs may be several (pilot sweeps of several tasks, or one sweep per granularity of the same
instances); they must come from one model with one layer count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.errors import PipelineError
from pipeline.reduce.results import Outcomes, UnitResults, load_run
from pipeline.selector.features import read_features
from pipeline.selector.fitted import Candidate
from pipeline.store import redact

CANDIDATE_SETS = ("sl_tf", "full")


def candidate_pairs(kind: str, n_layers: int) -> list[tuple[int, int]]:
    """``sl_tf``: SourceLast (N-1, j) for every j, then TargetFirst (i, 0) for i < N-1 (2N - 1 pairs);
    ``full``: every (i, j)."""
    if kind not in CANDIDATE_SETS:
        raise PipelineError(f"candidates={kind} is not valid; valid: {', '.join(CANDIDATE_SETS)}")
    last = n_layers - 1
    if kind == "full":
        return [(i, j) for i in range(n_layers) for j in range(n_layers)]
    return [(last, j) for j in range(n_layers)] + [(i, 0) for i in range(last)]


@dataclass
class SelectionTable:
    """Instances x (vanilla, candidates) correctness, with the instances' features.

    Attributes:
        model / n_layers: the one model the rows and features come from.
        keys: [n] "task/instance_id", unique.
        lang / task: [n] per-instance language and task.
        features: the feature rows (``features.FEATURE_SCHEMA``), aligned with ``keys``.
        candidates: the K candidate configs.
        correct: [n, K] 1.0 / 0.0, NaN where the run has no row for (instance, candidate).
        vanilla: [n] vanilla correctness.
        units: (task, granularity) -> (unit, [n] position of each instance in the unit or -1).
        groups: task -> resource groups (High/Mid/Low -> languages) from run.json.
        runs: the run directories read.
    """

    model: str
    n_layers: int
    keys: np.ndarray
    lang: np.ndarray
    task: np.ndarray
    features: pa.Table
    candidates: list[Candidate]
    correct: np.ndarray
    vanilla: np.ndarray
    units: dict[tuple[str, str], tuple[UnitResults, np.ndarray]]
    groups: dict[str, dict[str, list[str]]]
    runs: list[str]

    @property
    def n_instances(self) -> int:
        return len(self.keys)

    def subset(self, rows: np.ndarray) -> SelectionTable:
        """The table restricted to instance positions ``rows`` (a fold)."""
        rows = np.asarray(rows)
        return SelectionTable(
            model=self.model, n_layers=self.n_layers, keys=self.keys[rows], lang=self.lang[rows],
            task=self.task[rows], features=self.features.take(pa.array(rows, pa.int64())),
            candidates=self.candidates, correct=self.correct[rows], vanilla=self.vanilla[rows],
            units={k: (u, pos[rows]) for k, (u, pos) in self.units.items()}, groups=self.groups, runs=self.runs,
        )  # fmt: skip


def load_table(
    runs: Sequence[str | Path],
    candidates: str | Sequence[Candidate] = "sl_tf",
    granularities: Sequence[str] | None = None,
) -> SelectionTable:
    """Reads runs into a :class:`SelectionTable`.

    Args:
        runs: sweep run directories, each with ``features/`` (``features=true``).
        candidates: a candidate set kind (``sl_tf`` | ``full``), applied to every granularity
            present (or in ``granularities``), or an explicit list (a fitted selector's).
        granularities: restrict to these granularities; None = every granularity in the runs.

    Raises:
        PipelineError: a run without feature files, runs of different models or layer counts,
            two runs disagreeing on a row they both hold (runs of one task and granularity are
            merged: e.g. a SourceLast and a TargetFirst sweep), instances with rows but no
            features, or an empty candidate set.
    """
    if not runs:
        raise PipelineError("no run given; usage: python -m pipeline.select fit run=DIR [run=DIR2 ...] out=DIR")
    units: list[UnitResults] = []
    feature_parts: list[pa.Table] = []
    for path in runs:
        loaded = load_run(path)
        feats = read_features(path)
        units += loaded
        feature_parts.append(feats)
    model, n_layers = _one_model(runs, units, feature_parts)
    features = _first_per_key(pa.concat_tables(feature_parts))
    keys = np.array([f"{t}/{i}" for t, i in zip(features["task"].to_pylist(), features["instance_id"].to_pylist())])
    index = {k: n for n, k in enumerate(keys)}
    with_vanilla = np.zeros(len(keys), bool)
    by_place: dict[tuple[str, str], list[UnitResults]] = {}
    for unit in units:
        if granularities is None or unit.granularity in granularities:
            by_place.setdefault((unit.task, unit.granularity), []).append(unit)
    placed: dict[tuple[str, str], tuple[UnitResults, np.ndarray]] = {}
    for where, members in by_place.items():
        unit = members[0] if len(members) == 1 else _merge_units(members)
        positions = np.array([index.get(f"{unit.task}/{i}", -1) for i in unit.instance_ids], np.int64)
        lacking = unit.instance_ids[positions < 0]
        if len(lacking):
            raise PipelineError(
                f"run {unit.run.path}: {len(lacking)} instance(s) have rows but no features "
                f"(e.g. {', '.join(map(str, lacking[:3]))}); re-run the sweep with features=true into a fresh out_dir"
            )
        pos = np.full(len(keys), -1, np.int64)
        pos[positions] = np.arange(len(positions))
        with_vanilla[positions] = True
        placed[where] = (unit, pos)
    if not placed:
        raise PipelineError(
            f"runs {', '.join(map(str, runs))} hold no rows at granularities {list(granularities or [])}"
        )
    keep = np.flatnonzero(with_vanilla)  # features of an interrupted shard without rows are dropped
    return _assemble(model, n_layers, features, keys, keep, placed, candidates, runs, units)


def _assemble(model, n_layers, features, keys, keep, placed, candidates, runs, units) -> SelectionTable:
    features = features.take(pa.array(keep, pa.int64()))
    keys = keys[keep]
    placed = {k: (u, pos[keep]) for k, (u, pos) in placed.items()}
    granularities = sorted({g for _, g in placed}, key=lambda g: _granularity_order(g))
    if isinstance(candidates, str):
        pairs = candidate_pairs(candidates, n_layers)
        wanted = [(g, i, j) for g in granularities for i, j in pairs]
    else:
        wanted = [(str(g), int(i), int(j)) for g, i, j in candidates]
    n = len(keys)
    tasks = np.array(features["task"].to_pylist(), dtype=object)
    correct = np.full((n, len(wanted)), np.nan)
    vanilla = np.zeros(n, bool)
    for (task, g), (unit, pos) in placed.items():
        rows = np.flatnonzero(pos >= 0)
        at = pos[rows]
        vanilla[rows] = unit.vanilla.correct[at]
        for k, (cg, i, j) in enumerate(wanted):
            if cg != g or not (0 <= i < n_layers and 0 <= j < n_layers):
                continue
            present = unit.grid.present[at, i, j]
            correct[rows[present], k] = unit.grid.correct[at[present], i, j]
    observed = ~np.isnan(correct).all(axis=0)
    if isinstance(candidates, str):
        wanted = [c for c, ok in zip(wanted, observed, strict=True) if ok]
        correct = correct[:, observed]
    if not wanted:
        kinds = {u.granularity for u in units}
        raise PipelineError(
            f"empty candidate set: the runs hold no row of any {candidates} candidate "
            f"(granularities {', '.join(sorted(kinds))}, N={n_layers}); sweep with grid=source_last and "
            "grid=target_first (or grid=full), or pass candidates=full"
        )
    groups = {}
    for unit in units:
        groups.setdefault(unit.task, unit.run.groups)
    return SelectionTable(
        model=model, n_layers=n_layers, keys=keys, lang=np.array(features["lang"].to_pylist(), dtype=object),
        task=tasks, features=features, candidates=wanted, correct=correct, vanilla=vanilla, units=placed,
        groups=groups, runs=[redact(r) for r in runs],
    )  # fmt: skip


def _granularity_order(g: str) -> tuple[int, str]:
    order = ("attn", "ffn", "block")
    return (order.index(g) if g in order else len(order), g)


def _one_model(runs, units: list[UnitResults], features: list[pa.Table]) -> tuple[str, int]:
    """The single (model, n_layers) of all rows and features; else one line naming both."""
    found: dict[tuple[str, int], str] = {}
    for unit in units:
        found.setdefault((unit.model, unit.n_layers), f"rows of {unit.run.path}")
    for path, table in zip(runs, features, strict=True):
        for m, n in set(zip(table["model"].to_pylist(), table["n_layers"].to_pylist())):
            found.setdefault((m, int(n)), f"features of {path}")
    if len(found) != 1:
        (a, wa), (b, wb) = list(found.items())[:2]
        raise PipelineError(
            f"runs of different models or layer counts are mixed: {a[0]} with {a[1]} layers ({wa}) and "
            f"{b[0]} with {b[1]} layers ({wb}); a selector learns from one model"
        )
    (model, n_layers), = found
    return model, n_layers


def _first_per_key(table: pa.Table) -> pa.Table:
    """One feature row per (task, instance id): the first (the same model gives the same features)."""
    seen: set[tuple[str, str]] = set()
    keep = []
    for n, key in enumerate(zip(table["task"].to_pylist(), table["instance_id"].to_pylist())):
        if key not in seen:
            seen.add(key)
            keep.append(n)
    return table.take(pa.array(keep, pa.int64()))


def _merge_units(members: list[UnitResults]) -> UnitResults:
    """Units of one (task, granularity) from several runs (e.g. a SourceLast and a TargetFirst sweep),
    as one: the union of their instances and configs. A row present in two runs must agree.
    """
    ids = list(dict.fromkeys(str(i) for u in members for i in u.instance_ids))
    at = {key: k for k, key in enumerate(ids)}
    langs = sorted(set().union(*(u.langs for u in members)))
    n, n_layers = len(ids), members[0].n_layers
    lang = np.zeros(n, np.int64)
    vanilla = Outcomes.allocate((n,), with_consistency=False)
    grid = Outcomes.allocate((n, n_layers, n_layers), with_consistency=False)
    for u in members:
        rows = np.array([at[str(i)] for i in u.instance_ids], np.int64)
        lang[rows] = [langs.index(u.langs[c]) for c in u.lang]
        for merged, part, what in ((vanilla, u.vanilla, "vanilla"), (grid, u.grid, "config")):
            both = merged.present[rows] & part.present
            if np.any(merged.correct[rows][both] != part.correct[both]):
                raise PipelineError(
                    f"runs {', '.join(str(m.run.path) for m in members)} disagree on the correctness of a {what} row "
                    f"of the same instance of {u.task} at {u.granularity}; were they swept with the same settings?"
                )
            new = part.present & ~merged.present[rows]
            for name, target in vars(merged).items():
                if target is None:
                    continue
                block = target[rows]
                block[new] = getattr(part, name)[new]
                target[rows] = block
    return replace(members[0], instance_ids=np.array(ids, dtype=object), lang=lang, langs=langs,
                   vanilla=vanilla, grid=grid)  # fmt: skip
