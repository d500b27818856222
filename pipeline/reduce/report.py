"""The human-readable report: Markdown and CSV tables built from summary.json entries.

``report.md`` opens with the exact definition of every metric, then a comparison table with one
row per (run, model, task, granularity) — runs with ``task.prompt=cot`` appear as extra rows —
then, per run, the paper's Table 3 shape (methods x languages with High/Mid/Low group means),
win/tie/lose and upper bounds per language, and the figures. Tables show percentages (accuracy x
100, one decimal); summary.json and the long CSV tables (layers, grid) keep fractions.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from pipeline.reduce.summary import short_model

METRIC_DEFINITIONS = """\
Layers count from 0 (the paper counts from 1). Config (i, j): the source prompt's output of layer i
(at the granularity's module: attn, ffn or block; attn_released moves layer i's input plus its
attention output, as the authors' released code does) replaces layer j's output at the last target
prompt token. Vanilla: no transplant. acc(c, L): share of correct rows of config c among the
instances of language L. "All" is the micro average over all instances; a High/Mid/Low group value
is the mean of its languages' values. Over a partial grid, metrics of single configs or of the
whole grid use the configs present; metrics of one row or column of the N×N grid (UB_src(i),
UB_tgt(j), layer-wise gains; so SourceLast and TargetFirst too) are given only where the run holds
that whole row or column, and are blank elsewhere (docs/reports.md, "Which grids define which metric").

- **Vanilla accuracy**: share of correct vanilla rows.
- **Mean over configs** (Fig. 2b): mean of acc(c) over all configs present.
- **Win / tie / lose** (Fig. 2a): share of configs whose accuracy is above / equal to / below
  vanilla's (compared exactly on counts).
- **Best config**: the config with the highest accuracy on these same instances (picked by an
  oracle, so optimistic).
- **Layer-wise gains** (Fig. 3): source gain(i) = mean over all N targets j of acc(i, j) − vanilla;
  target gain(j) = mean over all N sources i of the same.
- **Upper bounds** (Eq. 4–5, Table 4): UB_src(i) = share of instances for which some target j
  (of all N) makes (i, j) correct; UB_tgt(j) = share for which some source i (of all N) does; oracle = share for which
  some config does (vanilla not included). SourceLast = UB_src(N−1), TargetFirst = UB_tgt(0).
  A missing (instance, config) row counts as not correct.
- **Entropy selection** (Appendix F): per instance, the candidate config with the lowest entropy
  is scored; the candidates and the entropy column are listed per run.
- **Learned selection** (shown when a `grid=selected` run of the same model and task is given;
  docs/selection.md): per instance, the config a learned selector chose (or vanilla) is scored.
  Gap closed = (learned − vanilla) / (upper bound − vanilla), the upper bound being the share of
  instances for which vanilla or some config of this run is correct; 95% bootstrap interval.
- **Perplexity** (Table 1): per row exp(−logprob_sum / n_new_tokens), averaged over rows (vanilla
  rows vs all config rows); rows with no generated token are excluded and counted.
- **Language consistency** (Table 1): share of responses whose fastText language ID equals the
  language the response should be in; an empty response is inconsistent.
"""


def pct(value, signed: bool = False) -> str:
    """Fraction -> percentage string with one decimal ("" when undefined)."""
    if value is None:
        return ""
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def num(value, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([["" if c is None else c for c in row] for row in rows])
    return path


def _config_name(config: dict | None) -> str:
    return "" if config is None else f"({config['source_layer']}, {config['target_layer']})"


def _best_accuracy(m: dict) -> str:
    return pct(m["best_config"]["accuracy"]) if m["best_config"] else ""


COMPARISON_HEADER = [
    "run", "model", "task", "prompt", "granularity", "split", "N", "instances", "grid", "configs",
    "vanilla", "mean config", "best config", "best acc", "win", "tie", "lose", "entropy sel.",
    "SourceLast UB", "TargetFirst UB", "oracle UB", "PPL vanilla", "PPL transplant",
    "lang. cons. vanilla", "lang. cons. transplant",
]  # fmt: skip


def comparison_rows(runs: list[dict]) -> list[list[str]]:
    """One row per run entry: the headline numbers side by side (CoT runs are extra rows)."""
    rows = []
    for e in runs:
        o = e["overall"]
        configs = f"{e['grid']['n_configs']}/{e['grid']['n_configs_full']}"
        rows.append([
            e["slug"], short_model(e["model"]), e["task"], e["prompt"] or "", e["granularity"], e["split"] or "",
            e["n_layers"], e["n_instances"], e["grid_name"] or "", configs, pct(o["vanilla_accuracy"]), pct(o["mean_config_accuracy"]),
            _config_name(o["best_config"]), _best_accuracy(o), pct(o["win_rate"]), pct(o["tie_rate"]),
            pct(o["lose_rate"]), pct(o["entropy_selection_accuracy"]), pct(o["source_last_upper_bound"]),
            pct(o["target_first_upper_bound"]), pct(o["oracle_upper_bound"]), num(o["vanilla_perplexity"]),
            num(o["transplant_perplexity"]), pct(o["vanilla_language_consistency"]),
            pct(o["transplant_language_consistency"]),
        ])  # fmt: skip
    return rows


def _scopes(entry: dict) -> list[tuple[str, dict]]:
    """(column name, M) for every language, then every group, then All."""
    return [
        *entry["by_lang"].items(),
        *((f"{g} avg", m) for g, m in entry["by_group"].items()),
        ("All", entry["overall"]),
    ]


def accuracy_table(entry: dict) -> tuple[list[str], list[list[str]]]:
    """The paper's Table 3 shape: methods x (languages, group means, All), in %."""
    scopes = _scopes(entry)
    methods: list[tuple[str, Callable]] = [
        ("Vanilla", lambda m: m["vanilla_accuracy"]),
        ("Mean over configs", lambda m: m["mean_config_accuracy"]),
    ]
    for k, config in enumerate(entry["overall"]["chosen_configs"]):
        methods.append((f"Config {_config_name(config)}", lambda m, k=k: m["chosen_configs"][k]["accuracy"]))
    best = entry["overall"]["best_config"]
    if best:
        s, t = best["source_layer"], best["target_layer"]
        methods.append((f"Best overall config ({s}, {t})", lambda m: _cell(m["accuracy_matrix"], s, t)))
    methods.append(("Entropy selection", lambda m: m["entropy_selection_accuracy"]))
    if entry["overall"].get("learned_selection_accuracy") is not None:  # a grid=selected run (pipeline.select)
        methods.append(("Learned selection", lambda m: m["learned_selection_accuracy"]))
        methods.append(("Gap closed by learned [95% CI]", _gap_text))
    methods += [
        ("SourceLast UB", lambda m: m["source_last_upper_bound"]),
        ("TargetFirst UB", lambda m: m["target_first_upper_bound"]),
        ("Oracle UB", lambda m: m["oracle_upper_bound"]),
    ]
    header = ["method"] + [name for name, _ in scopes]
    return header, [[name] + [_text(get(m)) for _, m in scopes] for name, get in methods]


def _text(value) -> str:
    return value if isinstance(value, str) else pct(value)


def _gap_text(m: dict) -> str:
    """Gap closed by the learned selection, in %, with its bootstrap interval."""
    gap, ci = m.get("gap_closed"), m.get("gap_closed_ci") or [None, None]
    if gap is None:
        return ""
    return pct(gap) + (f" [{pct(ci[0])}, {pct(ci[1])}]" if ci[0] is not None else "")


def _cell(matrix, s: int, t: int):
    return matrix[s][t] if matrix else None


def by_language_table(entry: dict) -> tuple[list[str], list[list[str]]]:
    """Per language (and group, and All): vanilla, win/tie/lose, best config and upper bounds."""
    header = ["scope", "instances", "vanilla", "mean config", "win", "tie", "lose", "best config", "best acc",
              "SourceLast UB", "TargetFirst UB", "oracle UB", "PPL vanilla", "PPL transplant"]  # fmt: skip
    rows = [
        [name, m["n_instances"], pct(m["vanilla_accuracy"]), pct(m["mean_config_accuracy"]), pct(m["win_rate"]),
         pct(m["tie_rate"]), pct(m["lose_rate"]), _config_name(m["best_config"]), _best_accuracy(m),
         pct(m["source_last_upper_bound"]), pct(m["target_first_upper_bound"]), pct(m["oracle_upper_bound"]),
         num(m["vanilla_perplexity"]), num(m["transplant_perplexity"])]
        for name, m in _scopes(entry)
    ]  # fmt: skip
    return header, rows


LAYER_COLUMNS = [
    f"{side}_{metric}{suffix}"
    for metric in ("gain", "upper_bound")
    for suffix in ("", "_pairs", "_over_present")
    for side in ("source", "target")
]


def layer_rows(entry: dict) -> tuple[list[str], list[list]]:
    """Long table of per-layer values: scope, layer, then per source/target side the gain and upper
    bound (empty unless the row / column is whole), the partners present, and the value over them."""
    header = ["scope", "layer", *LAYER_COLUMNS]
    rows = []
    for name, m in _scopes(entry):
        for layer in range(entry["n_layers"]):
            rows.append([name, layer, *(m[column][layer] for column in LAYER_COLUMNS)])
    return header, rows


def grid_coverage(e: dict) -> str:
    """One sentence: the grid kind, the share of the N×N grid present, where row/column metrics are defined."""
    grid, n = e["grid"], e["n_layers"]
    kind = f"`{e['grid_name']}`" if e["grid_name"] else "of unknown kind (no run.json)"
    text = f"Grid {kind}: {grid['n_configs']} of {n}×{n} = {grid['n_configs_full']} configs ({pct(grid['share_of_full'])}%)."
    if grid["n_configs"] == grid["n_configs_full"] and len(grid["whole_source_layers"]) == n:
        return text + " Every row and column is whole: all per-layer metrics are defined."
    rows, columns = grid["whole_source_layers"], grid["whole_target_layers"]
    return text + (
        f" Source-wise UB (Eq. 4) and source gains are defined for source layers {_layer_list(rows)} (whole rows),"
        f" target-wise UB (Eq. 5) and target gains for target layers {_layer_list(columns)} (whole columns);"
        " elsewhere they are blank (summary.json `*_over_present` gives the same over the partners present,"
        " `*_pairs` how many)."
    )


def _layer_list(layers: list[int]) -> str:
    return ", ".join(map(str, layers)) if layers else "none"


def grid_rows(entry: dict) -> tuple[list[str], list[list]]:
    """Long table of the full N x N grid: scope, source layer, target layer, accuracy, gain."""
    header = ["scope", "source_layer", "target_layer", "accuracy", "gain"]
    rows = []
    for name, m in _scopes(entry):
        for s, (acc_row, gain_row) in enumerate(zip(m["accuracy_matrix"], m["gain_matrix"], strict=True)):
            rows += [
                [name, s, t, a, g] for t, (a, g) in enumerate(zip(acc_row, gain_row, strict=True)) if a is not None
            ]
    return header, rows


def write_tables(summary: dict, out: Path) -> list[Path]:
    """Every CSV table of the report into ``out`` (see docs/reports.md for the list)."""
    written = [write_csv(out / "comparison.csv", COMPARISON_HEADER, comparison_rows(summary["runs"]))]
    for e in summary["runs"]:
        for name, (header, rows) in {
            "accuracy": accuracy_table(e), "by_language": by_language_table(e),
            "layers": layer_rows(e), "grid": grid_rows(e),
        }.items():  # fmt: skip
            written.append(write_csv(out / f"{e['slug']}.{name}.csv", header, rows))
    return written


def write_markdown(summary: dict, figures: dict[str, list[str]], shared_figures: list[str], out: Path) -> Path:
    """``report.md``: definitions, the comparison table, then one section per run."""
    generated = f"Generated {summary['generated_at']} by xtransplant-pipeline {summary['package_version']}."
    parts = ["# XTransplant report", "", generated, ""]
    for partial in summary.get("partial") or []:  # allow_partial=true: said before anything else
        missing = partial["missing_shards"]
        parts += [
            f"**PARTIAL RUN** `{partial['run']}`: {len(missing)} of {partial['n_shards_planned']} planned shards "
            f"missing{' (' + ', '.join(missing[:4]) + (' ...' if len(missing) > 4 else '') + ')' if missing else ''}; "
            f"{partial['n_instances_present']} of {partial['n_instances_planned']} planned instances have rows. "
            "Every number below covers only the rows present.",
            "",
        ]
    parts += ["## Metric definitions", "", METRIC_DEFINITIONS]
    parts += ["## Comparison", "", md_table(COMPARISON_HEADER, comparison_rows(summary["runs"])), ""]
    parts += [f"![{Path(f).stem}]({f})" for f in shared_figures] + [""]
    for e in summary["runs"]:
        parts += _run_section(e, figures.get(e["slug"], []))
    path = out / "report.md"
    path.write_text("\n".join(parts))
    return path


def _run_section(e: dict, figures: list[str]) -> list[str]:
    """One run's section of report.md: provenance, how each metric was taken, tables, figures."""
    grid, sel, ppl, lc = e["grid"], e["entropy_selection"], e["perplexity"], e["language_consistency"]
    missing = f", {grid['n_missing_rows']} (instance, config) rows missing" if grid["n_missing_rows"] else ""
    notes = [
        f"Run `{e['run']}` (config_hash `{e['config_hash']}`): {e['n_instances']} instances{missing}.",
        grid_coverage(e),
    ]
    if grid["n_instances_planned"] is not None and grid["run_finished"] is None:
        notes.append("The sweep had not finished (run.json: finished = null); metrics cover the rows present.")
    if e["groups"]:
        notes.append("Groups: " + "; ".join(f"{g}: {', '.join(x)}" for g, x in e["groups"].items()) + ".")
    candidates = ", ".join(str(tuple(c)) for c in sel["candidates"]) + (
        " and vanilla" if sel["include_vanilla"] else ""
    )
    absent = f"; not in the grid: {sel['missing_candidates']}" if sel["missing_candidates"] else ""
    notes.append(f"Entropy selection ({sel['status']}): lowest `{sel['entropy']}` among {candidates}{absent}.")
    notes.append(
        f"Perplexity: {ppl['vanilla']['n_excluded']} vanilla and {ppl['transplant']['n_excluded']} transplanted "
        "rows generated no token and are excluded."
    )
    how = f"({lc['reason']})" if lc.get("reason") else f"with `{lc.get('model')}`"
    notes.append(f"Language consistency: {lc['status']} {how}.")
    parts = [f"## {e['label']}", "", " ".join(notes), ""]
    header, rows = accuracy_table(e)
    parts += ["### Accuracy (%), Table 3 shape", "", md_table(header, rows), ""]
    header, rows = by_language_table(e)
    parts += ["### Per language", "", md_table(header, rows), ""]
    return parts + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
