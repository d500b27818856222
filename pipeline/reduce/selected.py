"""The learned selection's row of a report: what a ``grid=selected`` run chose, attached to its units.

A ``grid=selected`` sweep is the selector of ``pipeline.select`` applied (the paper's open question,
instance-aware layer selection); the reduce reads it as any other run and, here, lines its per-instance
outcome up with every other run of the same model and task given to the same reduce.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import PipelineError
from pipeline.reduce.results import UnitResults


def attach_selections(units: list[UnitResults]) -> None:
    """Sets ``selected`` on every unit that a ``grid=selected`` run of the same model and task covers.

    A ``grid=selected`` sweep (``pipeline.select``, issue 11) writes per instance vanilla rows and at
    most one config row, the selected one, at its granularity. Per instance the learned selection's
    correctness is that row's, or vanilla's where the selector kept vanilla. It is attached by
    instance id to the selected run's own units and to every other unit of the same (model, task,
    n_layers), e.g. the full or SourceLast/TargetFirst sweep of the same instances given to the
    same reduce. On those, ``selected_upper`` is the per-instance upper bound of the gap closed
    (``pipeline.reduce.summary``): vanilla or some config of that run, at any granularity the selected run
    covers, is correct.

    Raises:
        PipelineError: two ``grid=selected`` runs of one (model, task), or an instance with two
            selected config rows.
    """
    runs: dict[tuple[str, str, str, int], list[UnitResults]] = {}
    for unit in units:
        if unit.run.meta.get("grid") == "selected":
            runs.setdefault((str(unit.run.path), unit.model, unit.task, unit.n_layers), []).append(unit)
    outcomes: dict[tuple[str, str, int], tuple[str, dict[str, float]]] = {}
    for (path, model, task, n_layers), members in runs.items():
        if (model, task, n_layers) in outcomes:
            raise PipelineError(
                f"runs {outcomes[(model, task, n_layers)][0]} and {path} are both grid=selected runs of "
                f"{model} on {task}; give the reduce one selected run per model and task"
            )
        chosen: dict[str, float] = {}
        for unit in members:
            has_row = unit.grid.present.any(axis=(1, 2))
            right = (unit.grid.correct & unit.grid.present).any(axis=(1, 2))
            for k in np.flatnonzero(has_row):
                key = str(unit.instance_ids[k])
                if key in chosen:
                    raise PipelineError(f"run {path}: instance {key} has more than one selected config row")
                chosen[key] = float(right[k])
        for unit in members:
            for k, key in enumerate(map(str, unit.instance_ids)):
                chosen.setdefault(key, float(unit.vanilla.correct[k]))
        outcomes[(model, task, n_layers)] = (path, chosen, {u.granularity for u in members})
    upper: dict[tuple[str, str, str], dict[str, bool]] = {}
    for unit in units:
        found = outcomes.get((unit.model, unit.task, unit.n_layers))
        if found is None or unit.run.meta.get("grid") == "selected" or unit.granularity not in found[2]:
            continue
        right = upper.setdefault((str(unit.run.path), unit.model, unit.task), {})
        any_config = (unit.grid.correct & unit.grid.present).any(axis=(1, 2)) | unit.vanilla.correct
        for key, value in zip(map(str, unit.instance_ids), any_config, strict=True):
            right[key] = right.get(key, False) or bool(value)
    for unit in units:
        found = outcomes.get((unit.model, unit.task, unit.n_layers))
        if found is None:
            continue
        unit.selected_run, chosen, _ = found
        unit.selected = np.array([chosen.get(str(i), np.nan) for i in unit.instance_ids], np.float64)
        right = upper.get((str(unit.run.path), unit.model, unit.task))
        if right is not None:
            unit.selected_upper = np.array([right.get(str(i), False) for i in unit.instance_ids], bool)
