"""The learned selector on synthetic sweep tables where the right choice is known (issue 11).

A feature that decides which config is right must be learned (held-out accuracy near the
ceiling); a pure-noise feature must give no gain beyond chance (the gap-closed interval holds 0).
Plus the rule's pieces (decide, pick_margin, gap_closed) against hand-computed values.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from select_synth import noise_rule, write_synthetic_run

from pipeline.reduce import metrics
from pipeline.select.__main__ import main
from pipeline.select.fit import ALWAYS, NEVER, pick_margin
from pipeline.selector.fitted import decide

FAST = ["folds=3", "threads=1", "params.hgb.max_leaf_nodes=7", "params.hgb.max_iter=60", "n_boot=300"]


def fit_and_evaluate(tmp_path, rule=None, extra=()):
    kw = {} if rule is None else {"rule": rule}
    train = write_synthetic_run(tmp_path / "train", 240, seed=1, **kw)
    held_out = write_synthetic_run(tmp_path / "held_out", 240, seed=2, id_prefix="y", **kw)
    main(["fit", f"run={train}", f"out={tmp_path / 'selector'}", *FAST, *extra])
    main(["evaluate", f"selector={tmp_path / 'selector'}", f"run={held_out}", *FAST])
    report = json.loads((held_out / "selection" / "selection.json").read_text())
    return report, tmp_path / "selector"


def test_a_deciding_feature_is_learned(tmp_path):
    report, selector_dir = fit_and_evaluate(tmp_path)
    xnli = report["tasks"]["xnli"]
    methods, gap = xnli["methods"], xnli["gap_closed"]["All"]
    assert methods["Vanilla"]["All"] < 0.35
    assert methods["Learned selection"]["All"] >= 0.9
    assert methods["Selection ceiling (vanilla or a candidate)"]["All"] == 1.0
    assert gap["value"] >= 0.85 and gap["low"] >= 0.8
    # the two configs the feature decides between are (nearly) the only ones chosen
    assert sum(report["chosen"].get(c, 0) for c in ("attn (3, 2)", "attn (1, 0)")) >= 0.9 * 240
    # each decides for half of the instances: no single config comes close (the non-adaptive baseline)
    best_fixed = next(v for k, v in methods.items() if k.startswith("Best fixed"))
    assert best_fixed["All"] < 0.65
    assert set(xnli["scopes"]) == {"de", "fr", "sw", "High avg", "Low avg", "All"}
    assert methods["Vanilla"]["High avg"] == pytest.approx((methods["Vanilla"]["de"] + methods["Vanilla"]["fr"]) / 2)
    meta = json.loads((selector_dir / "selector.json").read_text())
    assert meta["kind"] == "xtransplant-selector" and meta["n_layers"] == 4 and meta["model"] == "tiny"
    assert len(meta["candidates"]) == 7  # 2N - 1 SourceLast + TargetFirst pairs at attn
    cv = json.loads((selector_dir / "cv.json").read_text())
    assert [f["fold"] for f in cv["folds"]] == [0, 1, 2] and sum(f["n_instances"] for f in cv["folds"]) == 240
    assert all(f["learned"] >= 0.85 for f in cv["folds"])


def test_pure_noise_gives_no_gain_beyond_chance(tmp_path):
    report, _ = fit_and_evaluate(tmp_path, rule=noise_rule)
    xnli = report["tasks"]["xnli"]
    gap = xnli["gap_closed"]["All"]
    assert gap["low"] <= 0.0 <= gap["high"]
    assert abs(xnli["methods"]["Learned selection"]["All"] - xnli["methods"]["Vanilla"]["All"]) < 0.12


def test_logistic_learner_learns_the_deciding_feature(tmp_path):
    report, selector_dir = fit_and_evaluate(tmp_path, extra=["learner=logistic", "params.logistic.C=[1.0]"])
    assert report["learner"] == "logistic"
    assert report["tasks"]["xnli"]["methods"]["Learned selection"]["All"] >= 0.85


def test_decide_and_pick_margin_by_hand():
    # columns: vanilla, candidate 0, candidate 1
    p = np.array([[0.2, 0.9, 0.1], [0.5, 0.6, 0.3], [0.4, 0.3, 0.2]])
    correct = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, np.nan]])
    vanilla = np.array([0.0, 1.0, 0.0])
    # best candidate is 0 everywhere; lifts 0.7, 0.1, -0.1; transplanting gains +1, -1, +1
    # cumulative gain over the top 0..3 lifts: 0, 1, 0, 1 -> the first maximum: only the top one
    assert pick_margin(p, correct, vanilla) == pytest.approx(0.4)
    assert decide(p, 0.4).tolist() == [0, -1, -1]
    assert decide(p, ALWAYS).tolist() == [0, 0, 0]
    assert decide(p, NEVER).tolist() == [-1, -1, -1]
    assert pick_margin(p, correct, np.ones(3)) == NEVER  # transplanting never helps
    assert pick_margin(p, np.ones((3, 2)), np.zeros(3)) == ALWAYS
    # equal lifts are one threshold: both or neither
    tied = np.array([[0.0, 0.5], [0.0, 0.5], [0.0, 0.1]])
    margin = pick_margin(tied, np.array([[1.0], [0.0], [0.0]]), np.zeros(3))
    assert decide(tied, margin).tolist() == [0, 0, -1]


def test_gap_closed_by_hand():
    selected, vanilla, upper = np.array([1, 1, 0, 0]), np.array([0, 1, 0, 0]), np.array([1, 1, 1, 0])
    gap = metrics.gap_closed(selected, vanilla, upper, n_boot=500)
    assert gap.value == pytest.approx((0.5 - 0.25) / (0.75 - 0.25)) and gap.n == 4
    assert gap.low <= gap.value <= gap.high
    same = metrics.gap_closed(upper, vanilla, upper, n_boot=200)
    assert (same.value, same.low, same.high) == (1.0, 1.0, 1.0)
    assert np.isnan(metrics.gap_closed(selected, vanilla, vanilla).value)  # no gap to close
    # strata: the mean of per-stratum accuracies (a High/Mid/Low group value), not the micro mean
    strata = np.array([0, 0, 0, 1])
    s, v, u = np.array([1, 0, 0, 1]), np.array([0, 0, 0, 0]), np.array([1, 1, 1, 1])
    assert metrics.gap_closed(s, v, u, strata, n_boot=50).value == pytest.approx((1 / 3 + 1) / 2)
