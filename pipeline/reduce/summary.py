"""``summary.json``: the reduce stage's machine-readable contract (documented in docs/reports.md).

One entry of ``runs`` per unit (run directory, model, task, granularity). Each entry holds the
metric set M (``measure``) three times: ``overall`` (micro average over all instances),
``by_lang`` and ``by_group`` (paper Table 3: the mean of the group's language values). The fields
the contract fixes are never renamed: ``vanilla_accuracy``, ``mean_config_accuracy``,
``win_rate``, ``tie_rate``, ``lose_rate``, ``source_upper_bound``, ``target_upper_bound`` and
``oracle_upper_bound``. Undefined values (a layer with no config in a partial grid, a skipped
metric) are ``null``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.reduce import metrics
from pipeline.errors import PipelineError
from pipeline.jsonable import jsonable
from pipeline.reduce.results import UnitResults

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ReportOptions:
    """What the report computes beyond the fixed metrics.

    Attributes:
        entropy: entropy column ranking candidates in Appendix F selection (entropy_mean|entropy_first).
        candidates: (source, target) candidate configs of entropy selection; negative = from the end.
        include_vanilla: whether vanilla competes in entropy selection.
        configs: extra (source, target) configs whose accuracy the tables show beside vanilla.
    """

    entropy: str = "entropy_mean"
    candidates: tuple[tuple[int, int], ...] = ((0, 0), (-1, 0))
    include_vanilla: bool = False
    configs: tuple[tuple[int, int], ...] = ()

    def __post_init__(self):
        if self.entropy not in metrics.ENTROPY_COLUMNS:
            raise PipelineError(f"report.entropy={self.entropy} is not one of {', '.join(metrics.ENTROPY_COLUMNS)}")


def unit_label(unit: UnitResults) -> str:
    """Human title of a unit: model · task (prompt variant) · granularity [· split, when the task has one]."""
    task = unit.task + (f" ({unit.run.variant})" if unit.run.variant else "")
    split = f" · split={unit.run.split}" if unit.run.split else ""
    return f"{short_model(unit.model)} · {task} · {unit.granularity}{split}"


def short_model(model: str) -> str:
    """The model's last path component ("/ckpt/Llama-2-7b-chat-hf" -> "Llama-2-7b-chat-hf")."""
    return model.rstrip("/").rsplit("/", 1)[-1] or model


def measure(unit: UnitResults, mask: np.ndarray, options: ReportOptions) -> dict:
    """The metric set M over the masked instances (see ``pipeline.reduce.metrics`` for each definition)."""
    n = unit.n_layers
    vanilla = metrics.vanilla_accuracy(unit.vanilla, mask)
    accuracy = metrics.accuracy_matrix(unit.grid, mask)
    gains = metrics.gain_matrix(accuracy, vanilla)
    win, tie, lose = metrics.win_tie_lose(unit.grid, unit.vanilla, mask)
    bounds = metrics.upper_bounds(unit.grid, mask)
    layer = metrics.layer_gains(gains)
    best = metrics.best_config(accuracy)
    candidates = metrics.resolve_layers(options.candidates, n)
    selection = None
    if any(unit.grid.present[:, s, t].any() for s, t in candidates):
        selection = metrics.entropy_selection(
            unit.grid, unit.vanilla, mask, candidates, options.entropy, options.include_vanilla
        )
    ppl_vanilla = metrics.perplexity(unit.vanilla, mask)
    ppl_transplant = metrics.perplexity(unit.grid, mask)
    return {
        "n_instances": int(mask.sum()),
        "vanilla_accuracy": vanilla,
        "mean_config_accuracy": metrics.mean_config_accuracy(accuracy),
        "win_rate": win,
        "tie_rate": tie,
        "lose_rate": lose,
        "source_upper_bound": bounds.source.tolist(),
        "target_upper_bound": bounds.target.tolist(),
        "oracle_upper_bound": bounds.oracle,
        "source_upper_bound_pairs": bounds.source_pairs.tolist(),
        "target_upper_bound_pairs": bounds.target_pairs.tolist(),
        "source_upper_bound_over_present": bounds.source_over_present.tolist(),
        "target_upper_bound_over_present": bounds.target_over_present.tolist(),
        "source_last_upper_bound": bounds.source_last,
        "target_first_upper_bound": bounds.target_first,
        "best_config": _config_entry(best),
        "chosen_configs": [
            _config_entry((s, t, float(accuracy[s, t]))) for s, t in metrics.resolve_layers(options.configs, n)
        ],
        "entropy_selection_accuracy": selection.accuracy if selection else None,
        "entropy_selection_chosen": selection.chosen if selection else None,
        "source_gain": layer.source.tolist(),
        "target_gain": layer.target.tolist(),
        "source_gain_pairs": layer.source_pairs.tolist(),
        "target_gain_pairs": layer.target_pairs.tolist(),
        "source_gain_over_present": layer.source_over_present.tolist(),
        "target_gain_over_present": layer.target_over_present.tolist(),
        "vanilla_perplexity": ppl_vanilla.mean,
        "transplant_perplexity": ppl_transplant.mean,
        "vanilla_perplexity_median": ppl_vanilla.median,
        "transplant_perplexity_median": ppl_transplant.median,
        "vanilla_language_consistency": metrics.language_consistency(unit.vanilla, mask),
        "transplant_language_consistency": metrics.language_consistency(unit.grid, mask),
        "accuracy_matrix": accuracy.tolist(),
        "gain_matrix": gains.tolist(),
        **learned_selection(unit, mask),
    }


WHOLE_ROW_KEYS = ("source_upper_bound", "target_upper_bound", "source_gain", "target_gain")
"""Fields of M over one whole row / column of the N x N grid; each has ``*_pairs`` and ``*_over_present`` beside it."""

LEARNED_KEYS = ("learned_selection_accuracy", "learned_selection_n_instances", "gap_closed", "gap_closed_ci")


def learned_selection(unit: UnitResults, mask: np.ndarray, strata: np.ndarray | None = None) -> dict:
    """The learned-selection fields of M (issue 11; ``pipeline.select``), None without a selected run.

    Over the masked instances that the ``grid=selected`` run covers: its accuracy (with ``strata``,
    the mean of the per-language accuracies, as a group value is) and the gap closed =
    (learned - vanilla) / (upper bound - vanilla) with a 95% bootstrap interval over instances,
    the upper bound being the share of instances for which vanilla or some config of this unit's
    run, at a granularity the selected run covers, is correct (``selected.attach_selections``).
    No gap on the selected run's own units: their configs are only the selected ones.
    """
    empty = dict.fromkeys(LEARNED_KEYS)
    if unit.selected is None:
        return empty
    covered = mask & ~np.isnan(unit.selected)
    if not covered.any():
        return {**empty, "learned_selection_n_instances": 0}
    selected, vanilla = unit.selected[covered], unit.vanilla.correct[covered]
    codes = None if strata is None else np.unique(strata[covered], return_inverse=True)[1]
    groups = [selected] if codes is None else [selected[codes == c] for c in np.unique(codes)]
    result = {
        "learned_selection_accuracy": float(np.mean([g.mean() for g in groups])),
        "learned_selection_n_instances": int(covered.sum()),
        "gap_closed": None,
        "gap_closed_ci": None,
    }
    if unit.selected_upper is not None:
        gap = metrics.gap_closed(selected, vanilla, unit.selected_upper[covered], codes)
        result.update(gap_closed=gap.value, gap_closed_ci=[gap.low, gap.high])
    return result


def _config_entry(best: tuple[int, int, float] | None) -> dict | None:
    if best is None:
        return None
    return {"source_layer": best[0], "target_layer": best[1], "accuracy": best[2]}


def group_measure(per_lang: list[dict]) -> dict:
    """M of a High/Mid/Low group: every numeric field is the mean of its languages' values
    (entry by entry for per-layer lists and matrices); counts are summed; the best config is
    re-chosen on the group's mean accuracy matrix.
    """
    group: dict = {}
    for key in per_lang[0]:
        values = [m[key] for m in per_lang]
        if key in LEARNED_KEYS:
            continue  # recomputed from the group's instances (summarize_unit)
        if key == "n_instances":
            group[key] = sum(values)
        elif key.endswith("_pairs"):  # a row of the group is whole only if it is whole in every language
            group[key] = np.min(np.array(values), axis=0).tolist()
        elif key == "chosen_configs":
            group[key] = [
                {**entry, "accuracy": metrics.group_mean([v[k]["accuracy"] for v in values])}
                for k, entry in enumerate(values[0])
            ]
        elif key != "best_config":
            group[key] = metrics.group_mean(values)
    n = len(group["accuracy_matrix"])
    for key in WHOLE_ROW_KEYS:  # Eq. 4-5 and Fig. 3 only where the group holds the whole row / column
        group[key] = [v if p == n else None for v, p in zip(group[key], group[f"{key}_pairs"], strict=True)]
    for key, index in (("source_last_upper_bound", -1), ("target_first_upper_bound", 0)):
        group[key] = group[key.replace("_last", "").replace("_first", "")][index]
    matrix = np.array(group["accuracy_matrix"], dtype=np.float64)
    group["best_config"] = _config_entry(metrics.best_config(matrix))
    return group


def summarize_unit(unit: UnitResults, options: ReportOptions, slug: str, consistency_status: dict) -> dict:
    """One ``runs`` entry of summary.json."""
    everyone = np.ones(unit.n_instances, bool)
    by_lang = {lang: measure(unit, unit.lang_mask(lang), options) for lang in unit.langs}
    groups = {g: [x for x in langs if x in by_lang] for g, langs in unit.run.groups.items()}
    by_group = {g: group_measure([by_lang[x] for x in langs]) for g, langs in groups.items() if langs}
    for g, m in by_group.items():
        m.update(learned_selection(unit, np.isin(unit.lang, [unit.langs.index(x) for x in groups[g]]), unit.lang))
    configs = unit.grid.present.any(axis=0)  # [N, N]
    whole = unit.grid.present.all(axis=0) if unit.n_instances else np.zeros_like(configs)  # rows for every instance
    candidates = metrics.resolve_layers(options.candidates, unit.n_layers)
    missing = [[s, t] for s, t in candidates if not configs[s, t]]
    ppl_v, ppl_t = metrics.perplexity(unit.vanilla, everyone), metrics.perplexity(unit.grid, everyone)
    return {
        "model": unit.model,
        "task": unit.task,
        "granularity": unit.granularity,
        "n_layers": unit.n_layers,
        "n_instances": unit.n_instances,
        "label": unit_label(unit),
        "slug": slug,
        "run": str(unit.run.path),
        "prompt": unit.run.prompt,
        "split": unit.run.split,
        "config_hash": unit.config_hash,
        "grid_name": unit.run.meta.get("grid"),
        "languages": unit.langs,
        "groups": groups,
        "grid": {
            "n_configs": int(configs.sum()),
            "n_configs_full": unit.n_layers**2,
            "share_of_full": float(configs.sum() / unit.n_layers**2),
            "n_configs_planned": len(unit.run.meta["pairs"]) if "pairs" in unit.run.meta else None,
            "n_instances_planned": unit.run.meta.get("n_instances"),
            "run_finished": unit.run.meta.get("finished"),
            "n_missing_rows": None if unit.run.meta.get("grid") == "selected"  # one config per instance by design
            else int(configs.sum() * unit.n_instances - unit.grid.present.sum()),
            "source_layers": np.flatnonzero(configs.any(axis=1)).tolist(),
            "target_layers": np.flatnonzero(configs.any(axis=0)).tolist(),
            "whole_source_layers": np.flatnonzero(whole.all(axis=1)).tolist(),  # Eq. 4 defined there
            "whole_target_layers": np.flatnonzero(whole.all(axis=0)).tolist(),  # Eq. 5 defined there
        },
        "entropy_selection": {
            "entropy": options.entropy,
            "candidates": [list(c) for c in candidates],
            "include_vanilla": options.include_vanilla,
            "missing_candidates": missing,
            "status": "skipped" if len(missing) == len(candidates) else "computed",
            "reason": "none of the candidate configs is in the grid" if len(missing) == len(candidates) else None,
        },
        "perplexity": {"vanilla": vars(ppl_v), "transplant": vars(ppl_t)},
        "learned_selection": None if unit.selected_run is None else {
            "run": unit.selected_run,
            "upper_bound": "vanilla or some config of this run, at the selected run's granularities, is correct",
        },
        "language_consistency": consistency_status,
        "overall": measure(unit, everyone, options),
        "by_lang": by_lang,
        "by_group": by_group,
    }


def clean(value):
    """JSON-safe copy for ``summary.json``: NaN/inf -> None, numpy scalars -> Python, floats rounded to 6 decimals."""
    return jsonable(value, digits=6)
