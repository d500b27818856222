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
    one thin line per language and a thick line for all instances."""
    n = entry["n_layers"]
    layers = np.arange(n)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    colours = plt.get_cmap("tab20")
    for ax, key, title in ((axes[0], "source_gain", "per source layer (mean over targets)"),
                           (axes[1], "target_gain", "per target layer (mean over sources)")):  # fmt: skip
        for k, (lang, m) in enumerate(entry["by_lang"].items()):
            ax.plot(layers, _curve(m[key]), lw=1, alpha=0.8, color=colours(k % 20), label=lang)
        ax.plot(layers, _curve(entry["overall"][key]), lw=2.8, color="black", label="all")
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(f"Gain over vanilla {title}")
        ax.set_xlabel(LAYER_AXIS)
        _layer_ticks(ax, n, "x")
    axes[0].set_ylabel("accuracy − vanilla")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, ncol=1 + len(entry["by_lang"]) // 16)
    fig.suptitle(f"Layer-wise gains · {entry['label']}")
    return _save(fig, path)


def upper_bound_curves(entries: list[dict], path: Path) -> Path:
    """Instance-aware upper bounds (Eq. 4-5, Fig. 4) of several runs in one figure: source-wise
    UB(i) and target-wise UB(j), with each run's vanilla accuracy as a dashed line."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    colours = plt.get_cmap("tab10")
    for k, entry in enumerate(entries):
        overall, colour = entry["overall"], colours(k % 10)
        layers = np.arange(entry["n_layers"])
        for ax, key in ((axes[0], "source_upper_bound"), (axes[1], "target_upper_bound")):
            ax.plot(layers, _curve(overall[key]), marker="o", ms=3, color=colour, label=entry["label"])
            ax.axhline(overall["vanilla_accuracy"], color=colour, ls="--", lw=1)
    n_max = max(e["n_layers"] for e in entries)
    axes[0].set_title("Source-wise upper bound UB(i): some target j correct")
    axes[1].set_title("Target-wise upper bound UB(j): some source i correct")
    for ax in axes:
        ax.set_xlabel(LAYER_AXIS)
        _layer_ticks(ax, n_max, "x")
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("share of instances (dashed: vanilla accuracy)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 2), fontsize=8, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("Instance-aware upper bounds over layers (Eq. 4–5)")
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
