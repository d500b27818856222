"""Figures of the paper, drawn from summary.json entries only (so they can be redrawn from it).

Source x target heatmaps of accuracy and of gain over vanilla (Fig. 3), per-language gain grids,
layer-wise gain curves (Fig. 3), upper-bound curves of several runs in one figure (Fig. 4), and
win/tie/lose bars per granularity (Fig. 2a). Gains use a diverging colour scale centred on zero;
every layer axis says that layers count from 0 (the paper counts from 1).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SOURCE_AXIS = "source layer i (counted from 0)"
TARGET_AXIS = "target layer j (counted from 0)"
LAYER_AXIS = "layer (counted from 0)"
DPI = 110


def _matrix(values) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=np.float64)


def _curve(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _layer_ticks(ax, n: int, axis: str = "both") -> None:
    step = 1 if n <= 16 else 2 if n <= 32 else 4
    ticks = list(range(0, n, step))
    if axis in ("x", "both"):
        ax.set_xticks(ticks)
    if axis in ("y", "both"):
        ax.set_yticks(ticks)


def _symmetric_limit(*matrices: np.ndarray) -> float:
    finite = [np.nanmax(np.abs(m)) for m in matrices if np.isfinite(m).any()]
    return max(max(finite, default=0.0), 1e-3)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def grid_heatmaps(entry: dict, path: Path) -> Path:
    """Accuracy and gain-over-vanilla heatmaps of all (source, target) configs, overall (Fig. 3)."""
    overall = entry["overall"]
    accuracy, gains = _matrix(overall["accuracy_matrix"]), _matrix(overall["gain_matrix"])
    n = entry["n_layers"]
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.4))
    im = axes[0].imshow(accuracy, origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(im, ax=axes[0], label="accuracy")
    axes[0].set_title(f"Accuracy (vanilla = {overall['vanilla_accuracy']:.3f})")
    limit = _symmetric_limit(gains)
    im = axes[1].imshow(gains, origin="lower", cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    fig.colorbar(im, ax=axes[1], label="accuracy − vanilla")
    axes[1].set_title("Gain over vanilla (blue = better, red = worse)")
    for ax in axes:
        ax.set_xlabel(TARGET_AXIS)
        ax.set_ylabel(SOURCE_AXIS)
        _layer_ticks(ax, n)
    fig.suptitle(f"{entry['label']} · all {entry['n_instances']} instances")
    return _save(fig, path)


def language_gain_heatmaps(entry: dict, path: Path) -> Path:
    """One gain-over-vanilla heatmap per language on one shared zero-centred scale."""
    langs = list(entry["by_lang"])
    gains = [_matrix(entry["by_lang"][x]["gain_matrix"]) for x in langs]
    cols = math.ceil(math.sqrt(len(langs)))
    rows = math.ceil(len(langs) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.1 * cols + 1.2, 2.9 * rows + 0.8), squeeze=False, layout="constrained"
    )
    limit = _symmetric_limit(*gains)
    image = None
    for ax, lang, gain in zip(axes.flat, langs, gains, strict=False):
        image = ax.imshow(gain, origin="lower", cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        vanilla = entry["by_lang"][lang]["vanilla_accuracy"]
        ax.set_title(f"{lang} (vanilla {vanilla:.2f})", fontsize=9)
        ticks = range(0, entry["n_layers"], max(1, math.ceil(entry["n_layers"] / 4)))
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(langs) :]:
        ax.axis("off")
    for column in range(cols):
        last_row = (len(langs) - 1 - column) // cols
        axes[last_row, column].set_xlabel("target layer (from 0)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("source layer (from 0)", fontsize=8)
    fig.colorbar(image, ax=axes, label="accuracy − vanilla", shrink=0.8)
    fig.suptitle(f"Gain over vanilla per language · {entry['label']}")
    return _save(fig, path)


def layer_gain_curves(entry: dict, path: Path) -> Path:
    """Layer-wise gains (Fig. 3): mean gain over vanilla per source layer and per target layer,
    one thin line per language and a thick line for all instances.

    A gain is drawn only at a layer whose whole row (column) the run holds, so the curves of a
    partial grid have gaps; the panel titles say how many layers are defined.
    """
    n = entry["n_layers"]
    layers = np.arange(n)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    colours = plt.get_cmap("tab20")
    marker = "o" if entry["grid"]["n_configs"] < entry["grid"]["n_configs_full"] else None  # isolated points show
    for ax, side, title in ((axes[0], "source", "per source layer (mean over all targets)"),
                            (axes[1], "target", "per target layer (mean over all sources)")):  # fmt: skip
        key = f"{side}_gain"
        for k, (lang, m) in enumerate(entry["by_lang"].items()):
            ax.plot(layers, _curve(m[key]), lw=1, alpha=0.8, color=colours(k % 20), label=lang, marker=marker, ms=2)
        ax.plot(layers, _curve(entry["overall"][key]), lw=2.8, color="black", label="all", marker=marker, ms=4)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(f"Gain over vanilla {title}{_coverage(entry, side)}", fontsize=10)
        ax.set_xlabel(LAYER_AXIS)
        _layer_ticks(ax, n, "x")
    axes[0].set_ylabel("accuracy − vanilla")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, ncol=1 + len(entry["by_lang"]) // 16)
    fig.suptitle(f"Layer-wise gains · {entry['label']}")
    return _save(fig, path)


def _coverage(entry: dict, side: str) -> str:
    """'' for a whole grid side, else ' (Eq. k at m of N layers)' for the legend."""
    whole, n = len(entry["grid"][f"whole_{side}_layers"]), entry["n_layers"]
    return "" if whole == n else f" (defined at {whole} of {n} {side} layers)"


def has_upper_bounds(entries: list[dict]) -> bool:
    """Whether some run defines Eq. 4 or Eq. 5 at some layer (i.e. holds a whole row or column)."""
    return any(e["grid"]["whole_source_layers"] or e["grid"]["whole_target_layers"] for e in entries)


def upper_bound_curves(entries: list[dict], path: Path) -> Path:
    """Instance-aware upper bounds (Eq. 4-5, Fig. 4) of several runs in one figure: source-wise
    UB(i) and target-wise UB(j), with each run's vanilla accuracy as a dashed line.

    A point is drawn only where the run holds the whole row (column) the bound is taken over, so a
    partial grid's curve has gaps (the ``upper_bounds`` grid: one point per side, its rows are in
    :func:`grid_lines`), never a bound over one partner beside bounds over N; the legend says
    how many layers each run defines. When no run defines a bound at two layers or more (the
    ``upper_bounds``, ``source_last`` and ``target_first`` grids) there is no curve to draw: the
    figure is then Table 4 as bars (:func:`upper_bound_bars`).
    """
    if max(len(e["grid"][f"whole_{side}_layers"]) for e in entries for side in ("source", "target")) < 2:
        return upper_bound_bars(entries, path)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    colours = plt.get_cmap("tab10")
    for k, entry in enumerate(entries):
        overall, colour = entry["overall"], colours(k % 10)
        layers = np.arange(entry["n_layers"])
        for ax, side in ((axes[0], "source"), (axes[1], "target")):
            label = entry["label"] + _coverage(entry, side)
            ax.plot(layers, _curve(overall[f"{side}_upper_bound"]), marker="o", ms=3, color=colour, label=label)
            ax.axhline(overall["vanilla_accuracy"], color=colour, ls="--", lw=1)
    n_max = max(e["n_layers"] for e in entries)
    axes[0].set_title("Source-wise upper bound UB(i): some target j of all N correct")
    axes[1].set_title("Target-wise upper bound UB(j): some source i of all N correct")
    for ax in axes:
        ax.set_xlabel(LAYER_AXIS)
        _layer_ticks(ax, n_max, "x")
        ax.set_ylim(0, 1.02)
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, labels, loc="upper center", fontsize=7, bbox_to_anchor=(0.5, -0.14))
    axes[0].set_ylabel("share of instances (dashed: vanilla accuracy)")
    fig.suptitle("Instance-aware upper bounds over layers (Eq. 4–5), where the run holds the whole row / column")
    return _save(fig, path)


BOUND_BARS = (
    ("vanilla_accuracy", "vanilla", "#868e96"),
    ("source_last_upper_bound", "SourceLast UB (Eq. 4, i = N−1)", "#1c7ed6"),
    ("target_first_upper_bound", "TargetFirst UB (Eq. 5, j = 0)", "#f08c00"),
    ("oracle_upper_bound", "oracle UB (some config of the run)", "#2b8a3e"),
)


def upper_bound_bars(entries: list[dict], path: Path) -> Path:
    """Table 4 as bars, one group per run: vanilla, SourceLast and TargetFirst upper bounds (absent
    where the run lacks row N-1 / column 0) and the oracle bound over the configs the run has."""
    fig, ax = plt.subplots(figsize=(max(7.0, 1.9 * len(entries) + 2.5), 4.8))
    width = 0.8 / len(BOUND_BARS)
    for k, (key, name, colour) in enumerate(BOUND_BARS):
        values = [_nan(e["overall"][key]) for e in entries]
        x = np.arange(len(entries)) + (k - (len(BOUND_BARS) - 1) / 2) * width
        bars = ax.bar(x, np.nan_to_num(values), width, color=colour, label=name)
        for bar, value in zip(bars, values, strict=True):
            text = "n/a" if np.isnan(value) else f"{value:.0%}"
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, text, ha="center", fontsize=7)
    ax.set_xticks(np.arange(len(entries)), [e["label"] for e in entries], fontsize=8, rotation=10)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of instances")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Instance-aware upper bounds (Table 4): no run holds two whole rows or columns, so no curve over layers")
    return _save(fig, path)


MAX_LINES = 6
"""Whole rows (columns) drawn per panel of :func:`grid_lines`; the last ones when there are more."""


def has_grid_lines(entry: dict) -> bool:
    """A partial grid with some whole row or column: what :func:`grid_lines` draws."""
    grid = entry["grid"]
    return grid["n_configs"] < grid["n_configs_full"] and bool(grid["whole_source_layers"] or grid["whole_target_layers"])


def grid_lines(entry: dict, path: Path) -> Path:
    """What a partial grid holds, as curves: acc(i, j) along each whole row i against the target layer
    (SourceLast: i = N-1) and along each whole column j against the source layer (TargetFirst:
    j = 0), with vanilla dashed and the row's (column's) upper bound dotted, over all instances."""
    overall, n = entry["overall"], entry["n_layers"]
    accuracy = _matrix(overall["accuracy_matrix"])
    grid = entry["grid"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    colours = plt.get_cmap("tab10")
    panels = (
        (axes[0], grid["whole_source_layers"], "source", lambda i: accuracy[i, :], TARGET_AXIS, "SourceLast"),
        (axes[1], grid["whole_target_layers"], "target", lambda j: accuracy[:, j], SOURCE_AXIS, "TargetFirst"),
    )
    for ax, whole, side, values, xlabel, special in panels:
        fixed = "i" if side == "source" else "j"
        special_layer = n - 1 if side == "source" else 0
        for k, layer in enumerate(whole[-MAX_LINES:]):
            colour = colours(k % 10)
            name = f"{special} ({fixed} = {layer})" if layer == special_layer else f"{fixed} = {layer}"
            ax.plot(np.arange(n), values(layer), marker="o", ms=3, color=colour, label=f"acc, {name}")
            ax.axhline(overall[f"{side}_upper_bound"][layer], color=colour, ls=":", lw=1.2, label=f"UB, {name}")
        ax.axhline(overall["vanilla_accuracy"], color="black", ls="--", lw=1, label="vanilla")
        ax.set_xlabel(xlabel)
        _layer_ticks(ax, n, "x")
        ax.set_ylim(0, 1.02)
        if whole:
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, f"no whole {side} row in this grid", ha="center", transform=ax.transAxes)
    axes[0].set_title("Configs of each whole row: source layer fixed")
    axes[1].set_title("Configs of each whole column: target layer fixed")
    axes[0].set_ylabel("accuracy")
    fig.suptitle(
        f"{entry['label']} · grid {entry['grid_name'] or '?'}: {grid['n_configs']} of {grid['n_configs_full']} configs"
    )
    return _save(fig, path)


def win_tie_lose_bars(entries: list[dict], path: Path) -> Path:
    """Win / tie / lose rates of all configs against vanilla, one stacked bar per run and
    granularity (Fig. 2a)."""
    labels = [e["label"] for e in entries]
    rates = np.array([[_nan(e["overall"][k]) for k in ("win_rate", "tie_rate", "lose_rate")] for e in entries])
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.55 * len(entries)))
    left = np.zeros(len(entries))
    for column, (name, colour) in enumerate((("win", "#2b8a3e"), ("tie", "#adb5bd"), ("lose", "#c92a2a"))):
        values = np.nan_to_num(rates[:, column])
        ax.barh(labels, values, left=left, color=colour, label=name)
        for y, (x0, width) in enumerate(zip(left, values, strict=True)):
            if width >= 0.06:
                ax.text(x0 + width / 2, y, f"{width:.0%}", ha="center", va="center", fontsize=8, color="white")
        left += values
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of (source, target) configs vs vanilla accuracy")
    ax.invert_yaxis()
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Win / tie / lose rate of transplant configs against vanilla, per granularity")
    return _save(fig, path)


def _nan(value) -> float:
    return np.nan if value is None else float(value)
