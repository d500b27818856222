"""python -m pipeline.reduce end to end on hand-built Parquet runs (no model needed).

Expected numbers are those of the hand-computed EXAMPLE (see tests/test_reduce_metrics.py), now read
back through shards, run.json, summary.json and the CSV tables.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import pytest
from reduce_rows import example_rows, row, write_example_run, write_run_json, write_shard

from pipeline import reduce
from pipeline.cli import CONF_DIR, join_repeated
from pipeline.errors import PipelineError

CONTRACT_M = ("vanilla_accuracy", "mean_config_accuracy", "win_rate", "tie_rate", "lose_rate",
              "source_upper_bound", "target_upper_bound", "oracle_upper_bound")  # fmt: skip
NO_FIGURES = "report.figures=false"  # figures are tested where they matter; they cost seconds each


def summary_of(report_dir):
    return json.loads((report_dir / "summary.json").read_text())


def test_summary_contract_and_hand_computed_values(tmp_path):
    run_dir = write_example_run(tmp_path / "run")
    reduce.main([f"run={run_dir}", NO_FIGURES, "report.lid_model=none"])
    summary = summary_of(run_dir / "report")
    (entry,) = summary["runs"]
    assert {k: entry[k] for k in ("model", "task", "granularity", "n_layers", "n_instances")} == {
        "model": "tiny/llama", "task": "xnli", "granularity": "attn", "n_layers": 2, "n_instances": 4}  # fmt: skip
    for m in [entry["overall"], *entry["by_lang"].values(), *entry["by_group"].values()]:
        assert set(CONTRACT_M) <= set(m)
        for key in CONTRACT_M:
            values = m[key] if isinstance(m[key], list) else [m[key]]
            assert all(0 <= v <= 1 for v in values)
    overall = entry["overall"]
    assert overall["vanilla_accuracy"] == 0.5
    assert overall["mean_config_accuracy"] == pytest.approx(0.3125)
    assert (overall["win_rate"], overall["tie_rate"], overall["lose_rate"]) == (0.0, 0.5, 0.5)
    assert overall["source_upper_bound"] == [0.5, 0.5]
    assert overall["target_upper_bound"] == [0.75, 0.5]
    assert overall["oracle_upper_bound"] == 0.75
    assert (overall["source_last_upper_bound"], overall["target_first_upper_bound"]) == (0.5, 0.75)
    assert overall["entropy_selection_accuracy"] == 0.5
    assert overall["accuracy_matrix"] == [[0.5, 0.0], [0.25, 0.5]]
    assert entry["by_lang"]["a"]["tie_rate"] == 0.75
    # group G = mean of languages a (tie 0.75) and b (tie 0.5)
    assert entry["by_group"]["G"]["tie_rate"] == pytest.approx(0.625)
    assert entry["by_group"]["G"]["n_instances"] == 4
    # group matrix = mean of a [[.5, 0], [.5, .5]] and b [[.5, 0], [0, .5]]; first maximum wins
    assert entry["by_group"]["G"]["accuracy_matrix"] == [[0.5, 0.0], [0.25, 0.5]]
    assert entry["by_group"]["G"]["best_config"] == {"source_layer": 0, "target_layer": 0, "accuracy": 0.5}
    assert entry["perplexity"]["vanilla"]["n_excluded"] == 1
    assert entry["language_consistency"]["status"] == "skipped"
    assert "lid_model" in entry["language_consistency"]["reason"]
    assert overall["vanilla_language_consistency"] is None
    assert entry["split"] == "test" and entry["grid"]["n_missing_rows"] == 0


def test_tables_and_markdown_written(tmp_path):
    run_dir = write_example_run(tmp_path / "run")
    reduce.main([f"run={run_dir}", "report.configs=[[1,1]]"])
    report = run_dir / "report"
    summary = summary_of(report)
    for name in summary["tables"] + summary["figures"] + ["report.md"]:
        assert (report / name).stat().st_size > 0
    slug = summary["runs"][0]["slug"]
    with (report / f"{slug}.accuracy.csv").open() as f:
        table = {r["method"]: r for r in csv.DictReader(f)}
    assert table["Vanilla"]["All"] == "50.0"
    assert table["Config (1, 1)"]["a"] == "50.0" and table["Config (1, 1)"]["b"] == "50.0"
    assert table["Oracle UB"]["G avg"] == "75.0"
    text = (report / "report.md").read_text()
    assert "Metric definitions" in text and "Eq. 4–5" in text


def test_two_runs_and_two_granularities_in_one_report(tmp_path):
    first = tmp_path / "llama"
    write_shard(first / "attn.parquet", example_rows())
    write_shard(first / "ffn.parquet", example_rows(granularity="ffn", correct=True))
    write_run_json(first, granularities=["attn", "ffn"])
    second = tmp_path / "qwen"
    write_shard(second / "s.parquet", example_rows(model="tiny/qwen", config_hash="h2"))
    reduce.main([f"run={first}", f"run={second}"])
    runs = summary_of(first / "report")["runs"]
    assert [(r["model"], r["granularity"]) for r in runs] == [
        ("tiny/llama", "attn"),
        ("tiny/llama", "ffn"),
        ("tiny/qwen", "attn"),
    ]
    assert runs[1]["overall"]["oracle_upper_bound"] == 1.0
    assert runs[2]["by_group"] == {}  # no run.json: no groups
    assert not (second / "report").exists()


def test_list_spelling_out_dir_and_cot_rows(tmp_path):
    direct = write_example_run(tmp_path / "direct")
    cot = write_example_run(tmp_path / "cot", config={"task": {"name": "xnli", "split": "test", "prompt": "cot"}})
    out = tmp_path / "reports" / "xnli"
    reduce.main([f"run=[{direct},{cot}]", f"out={out}", NO_FIGURES])
    with (out / "comparison.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["prompt"] for r in rows] == ["", "cot"]
    assert len({r["run"] for r in rows}) == 2
    assert not (direct / "report").exists()


def test_groups_from_config_when_run_json_missing(tmp_path):
    write_shard(tmp_path / "run" / "s.parquet", example_rows())
    reduce.main([f"run={tmp_path / 'run'}", "report.groups={Low:[b]}", NO_FIGURES])
    entry = summary_of(tmp_path / "run" / "report")["runs"][0]
    assert list(entry["by_group"]) == ["Low"]
    assert entry["by_group"]["Low"]["vanilla_accuracy"] == entry["by_lang"]["b"]["vanilla_accuracy"]
    assert entry["prompt"] is None and entry["split"] is None


def test_partial_grid_reports_missing_rows(tmp_path):
    run_dir = tmp_path / "run"
    write_shard(
        run_dir / "s.parquet",
        example_rows(skip={("i3", 1, 1), *((i, s, 1) for i in ("i0", "i1", "i2", "i3") for s in (0,))}),
    )
    reduce.main([f"run={run_dir}", "report.entropy=entropy_first", NO_FIGURES])
    entry = summary_of(run_dir / "report")["runs"][0]
    assert entry["grid"]["n_configs"] == 3 and entry["grid"]["n_missing_rows"] == 1
    assert entry["overall"]["accuracy_matrix"][0][1] is None
    assert entry["overall"]["accuracy_matrix"][1][1] == pytest.approx(1 / 3)
    assert entry["overall"]["entropy_selection_accuracy"] == 0.25


def test_run_spellings_compose_into_one_list():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    argv = join_repeated(["run=a", "+run=b", "run=[c, d]", "run=x y,=z", "out=o", "report.candidates=[[0,0]]"], "run")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = OmegaConf.to_object(compose("reduce", overrides=argv))
    assert isinstance(cfg, reduce.ReduceConfig)
    assert cfg.run == ["a", "b", "c", "d", "x y,=z"] and cfg.out == "o"
    assert cfg.report.candidates == [[0, 0]] and cfg.report.entropy == "entropy_mean"


def test_a_run_path_with_spaces_commas_and_equals_signs(tmp_path):
    run_dir = write_example_run(tmp_path / "my run, v=2")
    reduce.main([f"run={run_dir}", NO_FIGURES, "report.lid_model=none"])
    assert json.loads((run_dir / "report" / "summary.json").read_text())["runs"][0]["run"] == str(run_dir)


def _fails(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        reduce.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_no_shards_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _fails(capsys, [f"run={tmp_path / 'empty'}"], "holds no *.parquet shards")
    assert not (tmp_path / "empty" / "report").exists()
    _fails(capsys, [f"run={tmp_path / 'missing'}"], "does not exist")


def test_mixed_config_hash_is_refused(tmp_path, capsys):
    write_shard(tmp_path / "run" / "a.parquet", example_rows())
    write_shard(tmp_path / "run" / "b.parquet", [row("i9", "a", config_hash="other")])
    _fails(capsys, [f"run={tmp_path / 'run'}"], "config_hash")


def test_missing_vanilla_is_refused(tmp_path, capsys):
    rows = [r for r in example_rows() if not (r["instance_id"] == "i2" and r["source_layer"] is None)]
    write_shard(tmp_path / "run" / "s.parquet", rows)
    _fails(capsys, [f"run={tmp_path / 'run'}"], "no vanilla row (e.g. i2)")
    write_shard(
        tmp_path / "g" / "s.parquet", [r for r in example_rows(granularity="ffn") if r["source_layer"] is not None]
    )
    _fails(capsys, [f"run={tmp_path / 'g'}"], "has no vanilla rows")


def test_duplicate_rows_and_bad_layers_are_refused(tmp_path, capsys):
    write_shard(tmp_path / "dup" / "s.parquet", example_rows() + [row("i0", "a", 1, 1)])
    _fails(capsys, [f"run={tmp_path / 'dup'}"], "duplicate rows")
    write_shard(tmp_path / "layer" / "s.parquet", example_rows() + [row("i0", "a", 2, 0)])
    _fails(capsys, [f"run={tmp_path / 'layer'}"], "source_layer 2 outside 0..1")


def test_bad_options_are_refused(tmp_path, capsys):
    run_dir = write_example_run(tmp_path / "run")
    _fails(capsys, [f"run={run_dir}", "report.entropy=entropy_max"], "report.entropy=entropy_max")
    _fails(capsys, [f"run={run_dir}", "report.nope=1"], "unknown config key 'report.nope' under 'report'; valid:")
    _fails(capsys, [f"run={run_dir}", "+report.nope=1"], "unknown config key 'report.nope'")
    _fails(capsys, [f"run={run_dir}", "report.figures=maybe"], "report.figures")
    _fails(capsys, [f"run={run_dir}", "report.groups=[a]"], "report.groups must map group names")
    _fails(capsys, [f"run={run_dir}", "out"], "bad option")
    _fails(capsys, [f"run={run_dir}", f"report.lid_model={tmp_path / 'lid.bin'}"], "no such file")
    _fails(capsys, [], "no run given")
    assert not (run_dir / "report").exists()


def test_failed_reduce_keeps_previous_report(tmp_path, capsys):
    run_dir = write_example_run(tmp_path / "run")
    reduce.main([f"run={run_dir}", NO_FIGURES])
    before = (run_dir / "report" / "summary.json").read_text()
    write_shard(run_dir / "late.parquet", [row("i9", "a", 0, 0)])
    _fails(capsys, [f"run={run_dir}"], "no vanilla row")
    assert (run_dir / "report" / "summary.json").read_text() == before
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []


def test_rerun_replaces_its_own_report_but_never_a_users_file(tmp_path, capsys):
    run_dir = write_example_run(tmp_path / "run")
    reduce.main([f"run={run_dir}", NO_FIGURES])
    report = run_dir / "report"
    first = summary_of(report)["generated_at"]
    assert (report / reduce.REPORT_MARKER).is_file()
    reduce.main([f"run={run_dir}", "report.configs=[[1,1]]", NO_FIGURES])
    assert summary_of(report)["options"]["configs"] == [[1, 1]] and summary_of(report)["generated_at"] >= first
    (report / "notes.txt").write_text("my notes")
    _fails(capsys, [f"run={run_dir}", NO_FIGURES], f"out={report} holds notes.txt, which is not part of the report")
    assert (report / "notes.txt").read_text() == "my notes"


def test_report_from_before_the_marker_is_recognised(tmp_path):
    run_dir = write_example_run(tmp_path / "run")
    reduce.main([f"run={run_dir}", NO_FIGURES])
    (run_dir / "report" / reduce.REPORT_MARKER).unlink()
    reduce.main([f"run={run_dir}", NO_FIGURES])
    assert (run_dir / "report" / reduce.REPORT_MARKER).is_file()


def _snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target,message", [
    ("{run}", "would replace run directory"),
    ("{tmp}", "would replace run directory"),
    ("{tmp}/mine", "is not a report directory written by pipeline.reduce"),
    ("{tmp}/mine/data.csv", "exists and is not a directory"),
    ("{run}/shards", "lies inside the shards of run"),
    ("{run}/shards/report", "lies inside the shards of run"),
])  # fmt: skip
def test_out_never_replaces_results_or_user_files(tmp_path, capsys, target, message):
    run_dir = tmp_path / "run"
    write_shard(run_dir / "shards" / "shard-000000-of-000001.parquet", example_rows())
    write_run_json(run_dir)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.csv").write_text("a,b\n1,2\n")
    before = _snapshot(tmp_path)
    out = target.format(run=run_dir, tmp=tmp_path)
    _fails(capsys, [f"run={run_dir}", f"out={out}", NO_FIGURES], message)
    assert _snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "run"]


def test_truncated_shard_is_named_in_one_line(tmp_path, capsys):
    run_dir = write_example_run(tmp_path / "run")
    shard = run_dir / "worker-1" / "shard-1.parquet"
    shard.write_bytes(shard.read_bytes()[:200])
    _fails(capsys, [f"run={run_dir}", NO_FIGURES], f"{shard}: not a readable Parquet file")
    assert not (run_dir / "report").exists()


def test_report_gets_the_users_umask(tmp_path):
    run_dir = write_example_run(tmp_path / "run")
    previous = os.umask(0o022)
    try:
        reduce.main([f"run={run_dir}", NO_FIGURES])
    finally:
        os.umask(previous)
    report = run_dir / "report"
    assert stat.S_IMODE(report.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in report.iterdir()} == {0o644}


def test_run_raises_pipeline_error_directly(tmp_path):
    with pytest.raises(PipelineError):
        reduce.run(reduce.ReduceConfig(run=[str(tmp_path)]))


def test_groups_follow_paper_order_high_mid_low(tmp_path):
    run_dir = write_example_run(tmp_path / "run", groups={"Low": ["b"], "High": ["a"], "Mid": []})
    reduce.main([f"run={run_dir}", NO_FIGURES])
    entry = summary_of(run_dir / "report")["runs"][0]
    assert list(entry["by_group"]) == ["High", "Low"]  # an empty group is left out
    with (run_dir / "report" / f"{entry['slug']}.accuracy.csv").open() as f:
        assert next(csv.reader(f))[-3:] == ["High avg", "Low avg", "All"]


def _run_missing_a_shard(run_dir: Path) -> Path:
    """The EXAMPLE's four instances in shards 0 and 1 of a run whose run.json planned 3 shards of 2 (6 instances)."""
    rows = example_rows()
    first = [r for r in rows if r["instance_id"] in ("i0", "i1")]
    write_shard(run_dir / "shards" / "shard-000000-of-000003.parquet", first)
    write_shard(run_dir / "shards" / "shard-000001-of-000003.parquet", [r for r in rows if r not in first])
    write_run_json(run_dir, n_shards=3, shard_size=2, n_instances=6, finished=None)
    return run_dir


def test_incomplete_run_is_refused_with_the_missing_shards(tmp_path, capsys):
    run_dir = _run_missing_a_shard(tmp_path / "run")
    with pytest.raises(SystemExit) as exit_info:
        reduce.main([f"run={run_dir}", NO_FIGURES])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: run {run_dir} is incomplete (its sweep has not finished)")
    assert "1 of 3 planned shards are missing (shards/shard-000002-of-000003.parquet)" in err[0]
    assert "4 of 6 planned instances have rows" in err[0] and "allow_partial=true" in err[0]
    assert not (run_dir / "report").exists()


def test_allow_partial_reports_it_loudly(tmp_path):
    run_dir = _run_missing_a_shard(tmp_path / "run")
    reduce.main([f"run={run_dir}", "allow_partial=true", NO_FIGURES])
    summary = summary_of(run_dir / "report")
    expected = {"run": str(run_dir), "missing_shards": ["shards/shard-000002-of-000003.parquet"], "n_shards_planned": 3,
                "n_instances_planned": 6, "n_instances_present": 4, "run_finished": None}  # fmt: skip
    assert summary["partial"] == [expected] and summary["runs"][0]["partial"] == expected
    text = (run_dir / "report" / "report.md").read_text()
    assert text.splitlines()[4].startswith(f"**PARTIAL RUN** `{run_dir}`: 1 of 3 planned shards missing")


def test_complete_run_is_not_partial(tmp_path):
    run_dir = _run_missing_a_shard(tmp_path / "run")
    rows = example_rows()
    extra = [{**r, "instance_id": r["instance_id"] + "x"} for r in rows if r["instance_id"] in ("i0", "i1")]
    write_shard(run_dir / "shards" / "shard-000002-of-000003.parquet", extra)
    reduce.main([f"run={run_dir}", NO_FIGURES])
    assert summary_of(run_dir / "report")["partial"] is None
