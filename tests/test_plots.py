"""Figures: produced, readable sizes, gains centred on zero, several runs in one upper-bound figure."""

from __future__ import annotations

import json

import matplotlib.image
import pytest
from reduce_rows import example_rows, row, write_example_run, write_shard

from pipeline import plots, reduce


def three_layer_rows() -> list[dict]:
    """Two instances of a 3-layer model: correct exactly when source + target is even."""
    rows = []
    common = {"n_layers": 3, "model": "tiny/qwen", "granularity": "ffn", "config_hash": "q"}
    for iid, lang in (("x0", "a"), ("x1", "b")):
        rows.append(row(iid, lang, correct=True, **common))
        rows += [row(iid, lang, s, t, correct=(s + t) % 2 == 0, **common) for s in range(3) for t in range(3)]
    return rows


@pytest.fixture(scope="module")
def two_run_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    first = write_example_run(root / "llama")
    write_shard(root / "qwen" / "s.parquet", three_layer_rows())
    reduce.main([f"run={first}", f"run={root / 'qwen'}"])
    report = first / "report"
    return report, json.loads((report / "summary.json").read_text())


def test_every_figure_written_and_readable(two_run_report):
    report, summary = two_run_report
    slugs = [e["slug"] for e in summary["runs"]]
    expected = {"upper_bounds.png", "win_tie_lose.png"} | {
        f"{s}.{k}.png" for s in slugs for k in ("grid", "layer_gains", "languages")
    }
    assert set(summary["figures"]) == expected
    for name in expected:
        height, width = matplotlib.image.imread(report / name).shape[:2]
        assert width >= 600 and height >= 250, name
        assert f"]({name})" in (report / "report.md").read_text()


@pytest.fixture
def captured(monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    return figures


def test_gain_heatmaps_centre_on_zero_and_label_layers(two_run_report, captured, tmp_path):
    _, summary = two_run_report
    entry = summary["runs"][0]
    plots.grid_heatmaps(entry, tmp_path / "g.png")
    plots.language_gain_heatmaps(entry, tmp_path / "l.png")
    accuracy_ax, gain_ax = captured[0].axes[:2]
    norm = gain_ax.images[0].norm
    assert norm.vmin == -norm.vmax and norm.vmax >= 0.5  # the largest |gain| of the example is 0.5
    assert gain_ax.images[0].get_cmap().name == "RdBu"
    assert accuracy_ax.images[0].norm.vmin == 0 and accuracy_ax.images[0].norm.vmax == 1
    assert "counted from 0" in gain_ax.get_xlabel() and "counted from 0" in gain_ax.get_ylabel()
    title = captured[0].get_suptitle()
    assert all(part in title for part in ("llama", "xnli", "attn", "split=test"))
    language_norms = {(im.norm.vmin, im.norm.vmax) for ax in captured[1].axes for im in ax.images}
    assert len(language_norms) == 1 and next(iter(language_norms))[0] == -next(iter(language_norms))[1]


def test_upper_bound_curves_one_line_per_run(two_run_report, captured, tmp_path):
    _, summary = two_run_report
    plots.upper_bound_curves(summary["runs"], tmp_path / "ub.png")
    source_ax = captured[0].axes[0]
    curves = [line for line in source_ax.get_lines() if line.get_marker() == "o"]
    assert [c.get_label() for c in curves] == [e["label"] for e in summary["runs"]]
    assert [len(c.get_xdata()) for c in curves] == [2, 3]
    assert list(curves[0].get_ydata()) == summary["runs"][0]["overall"]["source_upper_bound"]


def test_win_tie_lose_bars_stack_to_one(two_run_report, captured, tmp_path):
    _, summary = two_run_report
    plots.win_tie_lose_bars(summary["runs"], tmp_path / "wtl.png")
    widths = {}
    for patch in captured[0].axes[0].patches:
        key = round(patch.get_y(), 3)
        widths[key] = widths.get(key, 0) + patch.get_width()
    assert len(widths) == 2 and all(w == pytest.approx(1.0) for w in widths.values())


def test_figures_can_be_turned_off(tmp_path):
    write_shard(tmp_path / "run" / "s.parquet", example_rows())
    reduce.main([f"run={tmp_path / 'run'}", "report.figures=false"])
    assert not list((tmp_path / "run" / "report").glob("*.png"))
