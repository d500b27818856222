"""Scoring a selector on a sweep's own rows, without generating anything (issue 11, item 4).

``python -m pipeline.select evaluate selector=DIR run=DIR`` simulates the selection exactly: the
run (held-out instances, swept with ``features=true`` and at least the selector's candidates)
already holds every candidate's correctness, so the selected config's row is looked up, not
re-generated. The table sets the learned selection beside

* Vanilla; Coarse (paper Table 2: one config per task); the best single candidate on the training
  instances (a non-adaptive baseline chosen without the evaluated instances);
* Entropy-based selection (paper Appendix F: lowest ``entropy_mean`` of (0, 0) and (N-1, 0), per
  granularity, as ``pipeline.reduce`` computes it);
* the SourceLast / TargetFirst upper bounds (Eq. 4-5, Table 4, per granularity) and the
  *selection ceiling*: the share of instances for which vanilla or some candidate is correct,
  the best any rule choosing among them can do;
* gap closed = (learned - vanilla) / (ceiling - vanilla) with a bootstrap interval over instances.

Scopes: every language, every High/Mid/Low group (the mean of its languages, as in Table 3; the
bootstrap resamples within languages), and All (micro average), one table per task.
"""

from __future__ import annotations

import numpy as np

from pipeline.reduce import metrics
from pipeline.sweep.plan import COARSE
from pipeline.select.data import SelectionTable
from pipeline.select.fit import ceiling_of, log_loss, selected_correct
from pipeline.selector.fitted import Selector

ENTROPY_CANDIDATES = ((0, 0), (-1, 0))  # Appendix F: (first, first) and (last, first)


def evaluate(selector: Selector, table: SelectionTable, n_boot: int = 1000, seed: int = 0) -> dict:
    """The selection report of ``table`` (one entry per task), as plain JSON-ready data."""
    choice, p = selector.choose(table.features)
    learned = selected_correct(choice, table.correct, table.vanilla)
    ceiling = ceiling_of(table)
    per_task = {}
    for task in sorted(set(table.task)):
        rows = np.flatnonzero(table.task == task)
        per_task[task] = _task_report(selector, table, task, rows, learned, ceiling, choice, n_boot, seed)
    chosen = {}
    for k in choice[choice >= 0]:
        name = _name(table.candidates[k])
        chosen[name] = chosen.get(name, 0) + 1
    return {
        "model": table.model,
        "n_layers": table.n_layers,
        "runs": table.runs,
        "n_instances": table.n_instances,
        "learner": selector.learner,
        "margin": selector.margin,
        "log_loss": log_loss(p, np.column_stack([table.vanilla.astype(float), table.correct])),
        "chosen": dict(sorted(chosen.items(), key=lambda kv: -kv[1])),
        "tasks": per_task,
    }


def _name(candidate) -> str:
    g, i, j = candidate
    return f"{g} ({i}, {j})"


def _task_report(selector, table, task, rows, learned, ceiling, choice, n_boot, seed) -> dict:
    n_layers = table.n_layers
    langs = sorted(set(table.lang[rows]))
    methods: dict[str, dict] = {}
    lang_rows = {lang: rows[table.lang[rows] == lang] for lang in langs}

    def per_instance(name: str, values: np.ndarray) -> None:
        """A method known per instance: language means, group means of languages, micro All."""
        methods[name] = {lang: float(values[r].mean()) for lang, r in lang_rows.items()}
        methods[name]["All"] = float(values[rows].mean())

    per_instance("Vanilla", table.vanilla.astype(float))
    if task in COARSE:  # an Attn-level row: attn_released (grid=coarse's default) if run, else attn
        level, source, target = COARSE[task]
        pick = {"first": 0, "last": n_layers - 1}
        for g in ("attn_released", "attn") if level == "attn" else (level,):
            values = _config_column(table, task, g, pick[source], pick[target])
            if values is not None:
                per_instance(f"Coarse (Table 2: {g} ({pick[source]}, {pick[target]}))", values)
                break
    if selector.best_fixed is not None and tuple(selector.best_fixed) in table.candidates:
        column = table.correct[:, table.candidates.index(tuple(selector.best_fixed))]
        if not np.isnan(column[rows]).any():
            per_instance(f"Best fixed candidate from training: {_name(selector.best_fixed)}", column)
    for (unit_task, g), (unit, pos) in sorted(table.units.items()):
        if unit_task != task:
            continue
        pairs = metrics.resolve_layers(ENTROPY_CANDIDATES, n_layers)
        if all(unit.grid.present[:, s, t].any() for s, t in pairs):
            methods[f"Entropy-based (Appendix F, {g})"] = _unit_method(
                lang_rows, rows, pos, unit,
                lambda mask, u=unit: metrics.entropy_selection(u.grid, u.vanilla, mask, pairs).accuracy,
            )  # fmt: skip
    per_instance("Learned selection", learned)
    for (unit_task, g), (unit, pos) in sorted(table.units.items()):
        if unit_task != task:
            continue
        bounds = lambda mask, u=unit: metrics.upper_bounds(u.grid, mask)  # noqa: E731
        for name, field in (("SourceLast", "source_last"), ("TargetFirst", "target_first")):
            methods[f"{name} UB ({g})"] = _unit_method(
                lang_rows, rows, pos, unit, lambda m, b=bounds, f=field: getattr(b(m), f)
            )
    per_instance("Selection ceiling (vanilla or a candidate)", ceiling.astype(float))
    per_instance("Transplanted (share of instances)", (choice >= 0).astype(float))
    groups = {g: [x for x in members if x in lang_rows] for g, members in table.groups.get(task, {}).items()}
    groups = {g: members for g, members in groups.items() if members}
    for values in methods.values():
        for g, members in groups.items():
            values[f"{g} avg"] = metrics.group_mean([values.get(x) for x in members])
    gap = {lang: _gap(learned, table.vanilla, ceiling, r, None, n_boot, seed) for lang, r in lang_rows.items()}
    for g, members in groups.items():
        r = np.concatenate([lang_rows[x] for x in members])
        gap[f"{g} avg"] = _gap(learned, table.vanilla, ceiling, r, table.lang[r], n_boot, seed)
    gap["All"] = _gap(learned, table.vanilla, ceiling, rows, None, n_boot, seed)
    scopes = [*langs, *(f"{g} avg" for g in groups), "All"]
    counts = {lang: len(r) for lang, r in lang_rows.items()} | {"All": len(rows)}
    return {"scopes": scopes, "n_instances": counts, "methods": methods, "gap_closed": gap}


def _config_column(table: SelectionTable, task: str, g: str, i: int, j: int) -> np.ndarray | None:
    """[n] correctness of config (g, i, j) from the run's rows; None unless every instance has it."""
    if (task, g) not in table.units:
        return None
    unit, pos = table.units[(task, g)]
    rows = np.flatnonzero(table.task == task)
    if (pos[rows] < 0).any() or not unit.grid.present[pos[rows], i, j].all():
        return None
    values = np.zeros(table.n_instances)
    values[rows] = unit.grid.correct[pos[rows], i, j]
    return values


def _unit_method(lang_rows, rows, pos, unit, compute) -> dict:
    """A method computed on a unit's own arrays (entropy selection, upper bounds) per scope."""

    def mask_of(r):
        mask = np.zeros(unit.n_instances, bool)
        mask[pos[r][pos[r] >= 0]] = True
        return mask

    values = {lang: _finite(compute(mask_of(r))) for lang, r in lang_rows.items()}
    values["All"] = _finite(compute(mask_of(rows)))
    return values


def _finite(value) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _gap(learned, vanilla, ceiling, rows, strata, n_boot, seed) -> dict:
    codes = None if strata is None else np.unique(strata, return_inverse=True)[1]
    result = metrics.gap_closed(learned[rows], vanilla[rows], ceiling[rows], codes, n_boot=n_boot, seed=seed)
    return {"value": _finite(result.value), "low": _finite(result.low), "high": _finite(result.high), "n": result.n}


def markdown(report: dict) -> str:
    """The report as Markdown: one methods x scopes table per task (accuracies in %)."""
    lines = [
        f"# Learned selection: {report['model']} ({report['n_layers']} layers)", "",
        f"Runs: {', '.join(f'`{r}`' for r in report['runs'])}; {report['n_instances']} instances; "
        f"learner `{report['learner']}`, margin {report['margin']:.3f}.", "",
        "Gap closed = (learned - vanilla) / (ceiling - vanilla), the ceiling being the share of instances "
        "for which vanilla or some candidate is correct; [95% bootstrap interval over instances].", "",
    ]  # fmt: skip
    for task, entry in report["tasks"].items():
        scopes = entry["scopes"]
        lines += [f"## {task}", "", "| method | " + " | ".join(scopes) + " |", "|---|" + "---|" * len(scopes)]
        lines.append("| instances | " + " | ".join(str(entry["n_instances"].get(s, "")) for s in scopes) + " |")
        for name, values in entry["methods"].items():
            lines.append(f"| {name} | " + " | ".join(_pct(values.get(s)) for s in scopes) + " |")
        gaps = " | ".join(_gap_text(entry["gap_closed"].get(s)) for s in scopes)
        lines.append(f"| Gap closed [95% CI] | {gaps} |")
        lines.append("")
    if report["chosen"]:
        top = ", ".join(f"{name}: {count}" for name, count in list(report["chosen"].items())[:10])
        lines += [f"Most chosen candidates (instances): {top}.", ""]
    return "\n".join(lines)


def _pct(value) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def _gap_text(gap: dict | None) -> str:
    if not gap or gap["value"] is None:
        return "n/a"
    interval = "" if gap["low"] is None else f" [{100 * gap['low']:.1f}, {100 * gap['high']:.1f}]"
    return f"{100 * gap['value']:.1f}{interval}"
