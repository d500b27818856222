"""Bad input to the selector (issue 11): one ``error:`` line each, exit status 2, nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from select_synth import write_synthetic_run
from sweeps import compose_sweep, write_task

from pipeline.cli import check_overrides, config_errors
from pipeline.errors import PipelineError, one_line
from pipeline.reduce.results import load_run
from pipeline.select.__main__ import main
from pipeline.select.data import load_table
from pipeline.sweep import run as sweep_run

FAST = ["folds=2", "threads=1", "params.hgb.max_leaf_nodes=7", "params.hgb.max_iter=20"]


def refused(capsys, argv) -> str:
    """Runs the select CLI, expects exit 2 with exactly one ``error:`` line; returns it."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def selector_dir(tmp_path_factory):
    """A selector fitted on a 4-layer model called "tiny"."""
    root = tmp_path_factory.mktemp("sel")
    main(["fit", f"run={write_synthetic_run(root / 'train', 30)}", f"out={root / 'selector'}", *FAST])
    return root / "selector"


def test_run_without_features(tmp_path, capsys):
    train = write_synthetic_run(tmp_path / "train", 12, with_features=False)
    line = refused(capsys, ["fit", f"run={train}", f"out={tmp_path / 'out'}", *FAST])
    assert "has no feature files" in line and "features=true" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("other", [{"n_layers": 3}, {"model": "other/model"}])
def test_mixed_models_or_layer_counts(tmp_path, capsys, other):
    a = write_synthetic_run(tmp_path / "a", 12)
    b = write_synthetic_run(tmp_path / "b", 12, id_prefix="b", config_hash="h2", **other)
    line = refused(capsys, ["fit", f"run={a}", f"run={b}", f"out={tmp_path / 'out'}", *FAST])
    assert "different models or layer counts" in line
    assert not (tmp_path / "out").exists()


def test_empty_candidate_set(tmp_path, capsys):
    run_dir = write_synthetic_run(tmp_path / "r", 12, pairs=[(0, 1), (1, 2)])  # neither SourceLast nor TargetFirst
    line = refused(capsys, ["fit", f"run={run_dir}", f"out={tmp_path / 'out'}", *FAST])
    assert "empty candidate set" in line and "candidates=full" in line
    assert not (tmp_path / "out").exists()


def test_source_last_and_target_first_runs_merge_but_must_agree(tmp_path, capsys):
    def rule(features, pair, rng):  # deterministic: the shared config (3, 0) agrees across runs
        return pair is not None and (pair[0] + pair[1]) % 2 == 0

    a = write_synthetic_run(tmp_path / "a", 12, rule=rule, pairs=[(3, j) for j in range(4)])
    b = write_synthetic_run(tmp_path / "b", 12, rule=rule, pairs=[(i, 0) for i in range(4)], config_hash="h2")
    table = load_table([a, b])
    assert table.n_instances == 12 and len(table.candidates) == 7 and not np.isnan(table.correct).any()
    assert table.correct[:, table.candidates.index(("attn", 3, 1))].all()
    c = write_synthetic_run(tmp_path / "c", 12, seed=5, config_hash="h3")
    assert "disagree" in refused(capsys, ["fit", f"run={a}", f"run={c}", f"out={tmp_path / 'out'}", *FAST])
    assert not (tmp_path / "out").exists()


def test_out_that_is_not_a_selector_directory(tmp_path, capsys):
    train = write_synthetic_run(tmp_path / "train", 12)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    line = refused(capsys, ["fit", f"run={train}", f"out={tmp_path / 'mine'}", *FAST])
    assert "not a selector directory" in line
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_bad_options(tmp_path, capsys):
    train = write_synthetic_run(tmp_path / "train", 12)
    assert "unknown command" in refused(capsys, ["fitt", f"run={train}"])
    out = f"out={tmp_path / 'o'}"
    assert "learner=forest is not valid" in refused(capsys, ["fit", f"run={train}", out, "learner=forest"])
    assert "unknown config key 'foldz'; valid: candidates, command, folds" in refused(
        capsys, ["fit", f"run={train}", f"out={tmp_path / 'o'}", "foldz=3"])
    assert "bad option 'folds'" in refused(capsys, ["fit", f"run={train}", "folds"])
    assert "margin must lie in [-1, 1]" in refused(capsys, ["fit", f"run={train}", f"out={tmp_path / 'o'}", "margin=2"])
    assert not (tmp_path / "o").exists()


def test_evaluate_with_another_layer_count(tmp_path, capsys, selector_dir):
    held_out = write_synthetic_run(tmp_path / "held_out", 12, n_layers=3)
    line = refused(capsys, ["evaluate", f"selector={selector_dir}", f"run={held_out}"])
    assert "4 layers" in line and "3" in line
    assert not (held_out / "selection").exists()


def test_evaluate_on_a_run_without_the_candidates(tmp_path, capsys, selector_dir):
    held_out = write_synthetic_run(tmp_path / "held_out", 12, pairs=[(3, 0), (3, 1)])
    line = refused(capsys, ["evaluate", f"selector={selector_dir}", f"run={held_out}"])
    assert "lack rows of 5 of the selector's 7 candidates" in line
    assert not (held_out / "selection").exists()


def test_evaluate_needs_a_selector_directory(tmp_path, capsys):
    held_out = write_synthetic_run(tmp_path / "held_out", 12)
    assert "not a selector directory" in refused(capsys, ["evaluate", f"selector={tmp_path}", f"run={held_out}"])


def test_reduce_skips_feature_files(tmp_path):
    run_dir = write_synthetic_run(tmp_path / "r", 12)
    (unit,) = load_run(run_dir)  # features/*.parquet are not rows (they lack the row columns)
    assert unit.n_instances == 12


def test_selected_sweep_on_a_model_with_another_layer_count(tmp_path, selector_dir):
    task = write_task(tmp_path / "task.jsonl")
    out = tmp_path / "out"
    args = ["model.tiny.n_layers=3", "cluster=inprocess", "task=jsonl", f"task.path={task}", "grid=selected",
            f"grid.selector={selector_dir}", f"out_dir={out}"]  # fmt: skip
    check_overrides(args)  # the command line's keys and values are valid (the CLI checks them before Hydra)
    with pytest.raises(PipelineError) as err:
        sweep_run(compose_sweep(args))
    message = one_line(str(err.value))
    assert message.startswith("selector") and "4 layers" in message and "has 3" in message
    assert not out.exists()


def test_selected_sweep_needs_a_selector(tmp_path):
    task = write_task(tmp_path / "task.jsonl")
    with pytest.raises(PipelineError, match="selector"), config_errors():
        sweep_run(compose_sweep(["cluster=inprocess", "task=jsonl", f"task.path={task}", "grid=selected",
                                 f"out_dir={tmp_path / 'out'}"]))  # fmt: skip
    with pytest.raises(PipelineError, match="not a selector directory"):
        sweep_run(compose_sweep(["cluster=inprocess", "task=jsonl", f"task.path={task}", "grid=selected",
                                 f"grid.selector={tmp_path}", f"out_dir={tmp_path / 'out'}"]))  # fmt: skip
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["fit", "run=r", "out=o", "folds=abc"], "folds=abc"),  # a typed key (SelectSchema), not a traceback
        (["fit", "run=r", "out=o", "n_boot=[1]"], "n_boot"),
        (["fitt", "run=r"], "unknown command 'fitt'; valid: fit, evaluate"),
        (["run=r", "out=o"], "no command given; valid: fit, evaluate"),
    ],
)
def test_bad_options_are_one_line(tmp_path, capsys, argv, expected):
    assert expected in refused(capsys, argv)


def test_hydra_flags_may_come_first(capsys):
    """``--cfg job`` before or after the command prints the composed config, runs nothing."""
    for argv in (["--cfg", "job", "fit", "run=a", "run=b", "out=o"], ["fit", "--cfg", "job", "run=a", "run=b", "out=o"]):
        main(argv)
        out = capsys.readouterr().out
        assert "command: fit" in out and "run:\n- a\n- b\n" in out, out
