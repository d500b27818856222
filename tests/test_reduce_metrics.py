"""Every metric of pipeline.reduce.metrics on the hand-computed EXAMPLE (tests/reduce_rows.py).

EXAMPLE, N = 2, correct[source][target] per instance, vanilla in brackets:
    i0 (a) [1]: [[1, 0], [0, 0]]      i2 (b) [0]: [[0, 0], [0, 0]]
    i1 (a) [0]: [[0, 0], [1, 1]]      i3 (b) [1]: [[1, 0], [0, 1]]
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from reduce_rows import example_outcomes

from pipeline.reduce import metrics
from pipeline.errors import PipelineError

ALL = np.ones(4, bool)


@pytest.fixture
def example():
    return example_outcomes()


def test_vanilla_accuracy_overall_and_per_language(example):
    vanilla, _, lang = example
    assert metrics.vanilla_accuracy(vanilla, ALL) == 0.5  # i0, i3 of 4
    assert metrics.vanilla_accuracy(vanilla, lang == 0) == 0.5  # i0 of (i0, i1)
    assert metrics.vanilla_accuracy(vanilla, np.array([True, True, True, False])) == pytest.approx(1 / 3)


def test_accuracy_and_gain_matrices(example):
    vanilla, grid, lang = example
    acc = metrics.accuracy_matrix(grid, ALL)
    # (0,0): i0, i3; (0,1): none; (1,0): i1; (1,1): i1, i3
    np.testing.assert_allclose(acc, [[0.5, 0.0], [0.25, 0.5]])
    np.testing.assert_allclose(metrics.gain_matrix(acc, 0.5), [[0.0, -0.5], [-0.25, 0.0]])
    np.testing.assert_allclose(metrics.accuracy_matrix(grid, lang == 1), [[0.5, 0.0], [0.0, 0.5]])


def test_mean_over_configs(example):
    _, grid, lang = example
    assert metrics.mean_config_accuracy(metrics.accuracy_matrix(grid, ALL)) == pytest.approx((0.5 + 0 + 0.25 + 0.5) / 4)
    assert metrics.mean_config_accuracy(metrics.accuracy_matrix(grid, lang == 0)) == pytest.approx(
        (0.5 + 0 + 0.5 + 0.5) / 4
    )


def test_win_tie_lose_overall_and_per_language(example):
    vanilla, grid, lang = example
    # overall vanilla 0.5: (0,0) and (1,1) tie, (0,1) and (1,0) lose
    assert metrics.win_tie_lose(grid, vanilla, ALL) == (0.0, 0.5, 0.5)
    # language a, vanilla 0.5: acc 0.5, 0, 0.5, 0.5 -> 3 ties, 1 loss
    assert metrics.win_tie_lose(grid, vanilla, lang == 0) == (0.0, 0.75, 0.25)
    # only i1 (vanilla wrong): every config with i1 correct wins
    assert metrics.win_tie_lose(grid, vanilla, np.array([False, True, False, False])) == (0.5, 0.5, 0.0)


def test_win_tie_lose_compares_exact_counts_on_missing_rows(example):
    vanilla, grid, _ = example
    grid.present[3, 1, 1] = grid.correct[3, 1, 1] = False
    # (1,1) now 1 correct of 3 rows = 0.333 < vanilla 2/4: a loss, not a tie
    win, tie, lose = metrics.win_tie_lose(grid, vanilla, ALL)
    assert (win, tie, lose) == (0.0, 0.25, 0.75)


def test_layer_gains(example):
    vanilla, grid, _ = example
    gains = metrics.gain_matrix(metrics.accuracy_matrix(grid, ALL), 0.5)
    layer = metrics.layer_gains(gains)
    np.testing.assert_allclose(layer.source, [(0 - 0.5) / 2, (-0.25 + 0) / 2])
    np.testing.assert_allclose(layer.target, [(0 - 0.25) / 2, (-0.5 + 0) / 2])
    assert layer.source_pairs.tolist() == layer.target_pairs.tolist() == [2, 2]
    np.testing.assert_allclose(layer.source_over_present, layer.source)


def test_upper_bounds_eq4_eq5(example):
    _, grid, lang = example
    ub = metrics.upper_bounds(grid, ALL)
    np.testing.assert_allclose(ub.source, [2 / 4, 2 / 4])  # source 0: i0, i3; source 1: i1, i3
    np.testing.assert_allclose(ub.target, [3 / 4, 2 / 4])  # target 0: i0, i1, i3; target 1: i1, i3
    assert ub.oracle == 0.75  # i2 is never correct
    assert ub.source_last == 0.5 and ub.target_first == 0.75
    ub_b = metrics.upper_bounds(grid, lang == 1)
    np.testing.assert_allclose(ub_b.source, [0.5, 0.5])
    assert ub_b.oracle == 0.5


def test_partial_grid_metrics_use_configs_present(example):
    vanilla, grid, _ = example
    grid.present[:, :, 1] = False  # a target_first grid: only target layer 0 was run
    grid.correct[:, :, 1] = False
    acc = metrics.accuracy_matrix(grid, ALL)
    assert np.isnan(acc[:, 1]).all()
    assert metrics.mean_config_accuracy(acc) == pytest.approx((0.5 + 0.25) / 2)
    assert metrics.win_tie_lose(grid, vanilla, ALL) == (0.0, 0.5, 0.5)
    ub = metrics.upper_bounds(grid, ALL)
    assert np.isnan(ub.source).all()  # no source row is whole: Eq. 4 is undefined, not a 1-target bound
    np.testing.assert_allclose(ub.source_over_present, [2 / 4, 1 / 4])  # source 1 only via (1,0): i1
    assert ub.source_pairs.tolist() == [1, 1] and ub.target_pairs.tolist() == [2, 0]
    assert ub.target[0] == 0.75 and math.isnan(ub.target[1])  # column 0 is whole
    assert ub.target_first == 0.75 and math.isnan(ub.source_last)
    layer = metrics.layer_gains(metrics.gain_matrix(acc, 0.5))
    assert np.isnan(layer.source).all()
    np.testing.assert_allclose(layer.source_over_present, [0.0, -0.25])
    np.testing.assert_allclose(layer.target[:1], [(0.0 - 0.25) / 2])
    assert math.isnan(layer.target[1]) and math.isnan(layer.target_over_present[1])


def test_upper_bounds_grid_defines_eq4_only_on_the_whole_row():
    """grid=upper_bounds (SourceLast row + TargetFirst column) on N = 3: UB(i < N-1) would be over one
    target, so Eq. 4 is left undefined there; the whole row N-1 and column 0 keep their bounds."""
    from pipeline.reduce.results import Outcomes

    n, instances = 3, 4
    present = np.zeros((instances, n, n), bool)
    present[:, n - 1, :] = True  # SourceLast row
    present[:, :, 0] = True  # TargetFirst column
    correct = np.zeros_like(present)
    correct[0, 0, 0] = True  # source 0 correct through its single target: UB over 1 partner = 0.25
    correct[1, 2, 1] = correct[2, 2, 2] = True  # row 2: instances 1 and 2
    grid = Outcomes(present=present, correct=correct, entropy_first=np.zeros(present.shape),
                    entropy_mean=np.zeros(present.shape), perplexity=np.zeros(present.shape),
                    empty=np.zeros_like(present), consistent=None)  # fmt: skip
    ub = metrics.upper_bounds(grid, np.ones(instances, bool))
    assert math.isnan(ub.source[0]) and math.isnan(ub.source[1]) and ub.source[2] == 0.5
    assert ub.source_over_present[0] == 0.25 and ub.source_pairs.tolist() == [1, 1, 3]
    assert ub.target[0] == 0.25 and np.isnan(ub.target[1:]).all() and ub.target_pairs.tolist() == [3, 1, 1]
    assert (ub.source_last, ub.target_first, ub.oracle) == (0.5, 0.25, 0.75)
    gains = metrics.layer_gains(metrics.gain_matrix(metrics.accuracy_matrix(grid, np.ones(instances, bool)), 0.0))
    assert np.isnan(gains.source[:2]).all() and gains.source[2] == pytest.approx(0.5 / 3)
    assert gains.source_over_present[0] == 0.25


def test_entropy_selection_default_entropy_mean(example):
    vanilla, grid, lang = example
    candidates = metrics.resolve_layers([(0, 0), (-1, 0)], 2)
    assert candidates == [(0, 0), (1, 0)]
    # i0 -> (0,0) correct; i1 -> (1,0) correct; i2 tie -> first (0,0) wrong; i3 null ranks last -> (1,0) wrong
    sel = metrics.entropy_selection(grid, vanilla, ALL, candidates)
    assert sel.accuracy == 0.5
    assert sel.chosen == [0.5, 0.5] and sel.fallback == 0.0
    assert metrics.entropy_selection(grid, vanilla, lang == 0, candidates).accuracy == 1.0


def test_entropy_selection_entropy_first_and_vanilla_candidate(example):
    vanilla, grid, _ = example
    candidates = [(0, 0), (1, 0)]
    # i0 -> (1,0) wrong; i1 -> (0,0) wrong; i2 -> (0,0) wrong; i3 -> (0,0) correct
    assert metrics.entropy_selection(grid, vanilla, ALL, candidates, "entropy_first").accuracy == 0.25
    vanilla.entropy_mean[:] = [9.0, 9.0, 9.0, 0.01]  # only i3 prefers vanilla, which is correct
    sel = metrics.entropy_selection(grid, vanilla, ALL, candidates, include_vanilla=True)
    assert sel.accuracy == 0.75 and sel.chosen[2] == 0.25


def test_entropy_selection_falls_back_to_vanilla_without_candidate_rows(example):
    vanilla, grid, _ = example
    grid.present[0, :, 0] = False
    sel = metrics.entropy_selection(grid, vanilla, ALL, [(0, 0), (1, 0)])
    # i0 has no candidate row: scored with vanilla (correct), the rest as before
    assert sel.fallback == 0.25 and sel.accuracy == 0.5


def test_resolve_layers_rejects_out_of_range():
    with pytest.raises(PipelineError, match="outside layers 0..1"):
        metrics.resolve_layers([(2, 0)], 2)


def test_perplexity_excludes_and_counts_empty_rows(example):
    vanilla, _, _ = example
    ppl = metrics.perplexity(vanilla, ALL)
    # exp(2/2), exp(3/3), exp(0/1); i1 generated nothing
    assert ppl.mean == pytest.approx((math.e + math.e + 1) / 3)
    assert ppl.median == pytest.approx(math.e)
    assert (ppl.n_rows, ppl.n_excluded) == (3, 1)


def test_language_consistency_over_present_rows(example):
    vanilla, grid, _ = example
    vanilla.consistent[:] = [True, False, True, True]
    assert metrics.language_consistency(vanilla, ALL) == 0.75
    grid.consistent[:] = True
    grid.consistent[0] = False
    grid.present[1] = False
    # rows present: i0 (4 inconsistent), i2, i3 (8 consistent)
    assert metrics.language_consistency(grid, ALL) == pytest.approx(8 / 12)
    vanilla.consistent = None
    assert metrics.language_consistency(vanilla, ALL) is None


def test_best_config_and_group_mean():
    acc = np.array([[0.2, np.nan], [0.7, 0.7]])
    assert metrics.best_config(acc) == (1, 0, 0.7)
    assert metrics.best_config(np.full((2, 2), np.nan)) is None
    assert metrics.group_mean([0.2, 0.6, None]) == pytest.approx(0.4)
    assert metrics.group_mean([[0.2, float("nan")], [0.4, 0.5]]) == pytest.approx([0.3, 0.5])
    assert metrics.group_mean([None, None]) is None
