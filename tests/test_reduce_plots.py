"""Figures: produced, readable sizes, gains centred on zero, several runs in one upper-bound figure."""

from __future__ import annotations

import csv
import json
import math

import matplotlib.image
import pytest
from reduce_rows import example_rows, row, write_example_run, write_run_json, write_shard

from pipeline import reduce
from pipeline.reduce import plots


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


def upper_bounds_rows(n: int = 4) -> list[dict]:
    """grid=upper_bounds of an n-layer model (SourceLast row + TargetFirst column, 2n - 1 configs) for
    four instances: (i, 0) is correct for instance i only, so UB(i) over its single target j = 0 is
    1/4 for every i < n - 1, while the whole row n - 1 is correct for every instance."""
    common = {"n_layers": n, "granularity": "attn", "config_hash": "u"}
    pairs = sorted({(n - 1, j) for j in range(n)} | {(i, 0) for i in range(n)})
    rows = []
    for k in range(4):
        iid, lang = f"u{k}", "ab"[k % 2]
        rows.append(row(iid, lang, correct=False, **common))
        rows += [row(iid, lang, i, j, correct=(i == n - 1 or (j == 0 and i == k)), **common) for i, j in pairs]
    return rows


@pytest.fixture(scope="module")
def partial_report(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("partial") / "run"
    write_shard(run_dir / "s.parquet", upper_bounds_rows())
    write_run_json(run_dir, grid="upper_bounds", n_layers=4, config_hash="u")
    reduce.main([f"run={run_dir}"])
    report = run_dir / "report"
    return report, json.loads((report / "summary.json").read_text())


def test_partial_grid_defines_row_metrics_only_on_whole_rows(partial_report):
    """A UB(i) over one partner is never presented as the Eq. 4 bound: null there, labelled beside it."""
    report, summary = partial_report
    entry = summary["runs"][0]
    overall = entry["overall"]
    assert overall["source_upper_bound"] == [None, None, None, 1.0]
    assert overall["source_upper_bound_over_present"] == [0.25, 0.25, 0.25, 1.0]
    assert overall["source_upper_bound_pairs"] == [1, 1, 1, 4]
    assert overall["target_upper_bound"] == [1.0, None, None, None]
    assert overall["target_upper_bound_pairs"] == [4, 1, 1, 1]
    assert overall["source_gain"][:3] == [None] * 3 and overall["source_gain_pairs"] == [1, 1, 1, 4]
    assert overall["source_gain_over_present"][0] == 0.25
    assert (overall["source_last_upper_bound"], overall["target_first_upper_bound"]) == (1.0, 1.0)
    for m in (*entry["by_lang"].values(), *entry["by_group"].values()):
        assert m["source_upper_bound"][:3] == [None] * 3 and m["source_upper_bound"][3] == 1.0
    grid = entry["grid"]
    assert (grid["n_configs"], grid["share_of_full"]) == (7, 7 / 16)
    assert (grid["whole_source_layers"], grid["whole_target_layers"]) == ([3], [0])
    text = (report / "report.md").read_text()
    assert "Grid `upper_bounds`: 7 of 4×4 = 16 configs (43.8%)" in text
    assert "defined for source layers 3 (whole rows)" in text
    with (report / f"{entry['slug']}.layers.csv").open() as f:
        first = next(r for r in csv.DictReader(f) if r["scope"] == "All" and r["layer"] == "0")
    assert (first["source_upper_bound"], first["source_upper_bound_pairs"], first["source_upper_bound_over_present"]) == (
        "", "1", "0.25",
    )  # fmt: skip


def test_partial_grid_figures_show_what_the_grid_has(partial_report, captured, tmp_path):
    report, summary = partial_report
    entry = summary["runs"][0]
    slug = entry["slug"]
    # one whole row and one whole column: no layer-gain curves of single points; the rows as curves instead
    assert set(summary["figures"]) == {"upper_bounds.png", "win_tie_lose.png"} | {
        f"{slug}.{k}.png" for k in ("grid", "lines", "languages")
    }
    # no curve over layers to draw: Table 4 as bars (vanilla, SourceLast, TargetFirst, oracle)
    plots.upper_bound_curves(summary["runs"], tmp_path / "ub.png")
    assert [p.get_height() for p in captured[0].axes[0].patches] == [0.0, 1.0, 1.0, 1.0]
    plots.grid_lines(entry, tmp_path / "lines.png")
    row_ax, column_ax = captured[1].axes[:2]
    sourcelast = next(line for line in row_ax.get_lines() if line.get_label() == "acc, SourceLast (i = 3)")
    assert list(sourcelast.get_ydata()) == [1.0] * 4  # acc(3, j) against the target layer j
    targetfirst = next(line for line in column_ax.get_lines() if line.get_label() == "acc, TargetFirst (j = 0)")
    assert list(targetfirst.get_ydata()) == [0.25, 0.25, 0.25, 1.0]  # acc(i, 0) against the source layer i
    assert any(line.get_label() == "vanilla" for line in row_ax.get_lines())


def test_upper_bound_curves_leave_out_partial_rows(two_run_report, partial_report, captured, tmp_path):
    """A partial run beside a full one: its curve has points only where its row is whole."""
    full, partial = two_run_report[1]["runs"][1], partial_report[1]["runs"][0]
    plots.upper_bound_curves([full, partial], tmp_path / "ub.png")
    curves = [line for line in captured[0].axes[0].get_lines() if line.get_marker() == "o"]
    ydata = list(curves[1].get_ydata())
    assert all(math.isnan(y) for y in ydata[:3]) and ydata[3] == 1.0  # no 1-partner point beside the N-partner one
    assert "defined at 1 of 4 source layers" in curves[1].get_label() and "defined" not in curves[0].get_label()
