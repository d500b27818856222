"""The sweep in-process: output contract, grids, verified resume, the out_dir guard and lock, umask, bad input."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import stat
import subprocess
import sys
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest
from sweeps import REPO, cli, compose_sweep, keys, rows, write_task

from pipeline.errors import PipelineError
from pipeline.schema import ROW_SCHEMA
from pipeline.sweep import main as sweep_main
from pipeline.sweep import run

TINY = ["model.tiny.n_layers=3", "max_new_tokens=6", "cluster=inprocess"]


def sweep_args(tmp_path, *extra):
    task = write_task(tmp_path / "task.jsonl")
    return [*TINY, "task=jsonl", f"task.path={task}", f"out_dir={tmp_path / 'out'}", *extra]


def test_rows_follow_the_contract(tmp_path):
    out = run(compose_sweep(sweep_args(tmp_path, "granularity=[attn,block]", "shard_size=3")))
    table = rows(out)
    assert table.schema.equals(ROW_SCHEMA)
    # 4 instances x 2 granularities x (9 pairs + vanilla)
    assert table.num_rows == 4 * 2 * 10
    assert len(set(keys(table))) == table.num_rows
    vanilla = table.filter(table.column("source_layer").is_null())
    assert vanilla.num_rows == 8 and vanilla.column("target_layer").null_count == 8
    for row in table.to_pylist():
        assert row["n_new_tokens"] == len(row["token_ids"]) <= 6
        assert row["model"] == "tiny" and row["task"] == "jsonl" and row["n_layers"] == 3
    meta = json.loads((out / "run.json").read_text())
    assert meta["n_shards"] == 2 and meta["finished"] and meta["granularities"] == ["attn", "block"]
    assert sorted(p.name for p in (out / "shards").iterdir()) == [
        "shard-000000-of-000002.parquet", "shard-000001-of-000002.parquet"]


def test_attn_released_is_a_granularity_of_the_sweep_and_the_cli(tmp_path):
    """One prefill serves [attn, attn_released, ffn]; the Parquet value is the granularity's name."""
    out = run(compose_sweep(sweep_args(tmp_path, "granularity=[attn,attn_released,ffn]", "shard_size=4")))
    table = rows(out)
    assert Counter(table.column("granularity").to_pylist()) == {"attn": 40, "attn_released": 40, "ffn": 40}
    ok = cli(["pipeline.transplant", "prompt=Hallo Welt", "source_prompt=Hello world", "source_layer=3",
              "target_layer=0", "granularity=attn_released", "decoding=plain", "max_new_tokens=4"])
    assert ok.returncode == 0, ok.stderr
    assert "granularity: attn_released" in ok.stdout and "transplant:" in ok.stdout


@pytest.mark.parametrize("grid,extra,expected", [
    ("source_last", [], {(2, 0), (2, 1), (2, 2)}),
    ("target_first", [], {(0, 0), (1, 0), (2, 0)}),
    ("upper_bounds", [], {(2, 0), (2, 1), (2, 2), (0, 0), (1, 0)}),
    ("pairs", ["grid.pairs=[[0,2],[1,1]]"], {(0, 2), (1, 1)}),
])
def test_grid_kinds(tmp_path, grid, extra, expected):
    out = run(compose_sweep(sweep_args(tmp_path, f"grid={grid}", *extra)))
    pairs = {(s, t) for _, _, s, t in keys(rows(out)) if s is not None}
    assert pairs == expected


def test_resume_recomputes_only_missing_shards(tmp_path):
    cfg = compose_sweep(sweep_args(tmp_path, "shard_size=1"))
    out = run(cfg)
    before = rows(out)
    shard_files = sorted((out / "shards").iterdir())
    kept_mtime = shard_files[0].stat().st_mtime_ns
    shard_files[2].unlink()
    (out / "shards" / ".leftover.tmp").write_text("a killed writer's temp file")
    run(cfg)
    after = rows(out)
    assert shard_files[0].stat().st_mtime_ns == kept_mtime
    assert Counter(keys(after)) == Counter(keys(before))
    assert len(set(keys(after))) == after.num_rows


def test_truncated_or_short_shard_is_moved_aside_and_recomputed(tmp_path, caplog):
    cfg = compose_sweep(sweep_args(tmp_path, "shard_size=1"))
    out = run(cfg)
    before = rows(out)
    files = sorted((out / "shards").glob("*.parquet"))
    kept_mtime = files[0].stat().st_mtime_ns
    files[1].write_bytes(files[1].read_bytes()[:300])  # a half-written file: no footer
    pq.write_table(pq.read_table(files[2]).slice(0, 3), files[2])  # a readable file with 3 of its 10 rows
    caplog.set_level(logging.INFO, logger="pipeline")
    run(cfg)
    moved = sorted(p.name for p in (out / "shards").iterdir() if ".corrupt-" in p.name)
    assert [m.split(".corrupt-")[0] for m in moved] == [files[1].name, files[2].name]
    assert "not a readable Parquet file" in caplog.text and "holds 3 rows, the shard must hold 10" in caplog.text
    assert "2/4 shards already done" in caplog.text
    assert files[0].stat().st_mtime_ns == kept_mtime
    after = rows(out)
    assert Counter(keys(after)) == Counter(keys(before)) and len(set(keys(after))) == after.num_rows


@pytest.mark.parametrize("change", ["grow", "edit"])
def test_changed_task_content_is_another_configuration(tmp_path, change):
    args = sweep_args(tmp_path, "shard_size=3")
    first = compose_sweep(args)
    run(first)
    task = tmp_path / "task.jsonl"
    lines = task.read_text().splitlines()
    if change == "grow":
        lines.append(lines[0].replace('"de-0"', '"de-9"'))
    else:
        lines[1] = lines[1].replace("Frage", "Question")
    task.write_text("\n".join(lines) + "\n")
    with pytest.raises(PipelineError, match="another configuration .*they differ in: instances\\)"):
        run(compose_sweep(args))


def test_shard_files_of_another_plan_are_refused(tmp_path):
    cfg = compose_sweep(sweep_args(tmp_path, "shard_size=3"))
    out = run(cfg)
    first = out / "shards" / "shard-000000-of-000002.parquet"
    stray = out / "shards" / "shard-000000-of-000003.parquet"
    stray.write_bytes(first.read_bytes())
    with pytest.raises(PipelineError, match="shard-000000-of-000003.parquet is not one of this run's 2 shards"):
        run(cfg)


def test_results_get_the_users_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        out = run(compose_sweep(sweep_args(tmp_path, "shard_size=3")))
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out, out / "shards", out / "run.json",
                                                              *(out / "shards").iterdir()]}  # fmt: skip
    assert modes == {"out": 0o755, "shards": 0o755, "run.json": 0o644,
                     "shard-000000-of-000002.parquet": 0o644, "shard-000001-of-000002.parquet": 0o644}  # fmt: skip


def test_second_sweep_into_a_locked_out_dir_waits_then_skips(tmp_path):
    """Another sweep holds out_dir/.lock: this one says so, waits, then finds every shard done."""
    args = sweep_args(tmp_path, "shard_size=3")
    out = run(compose_sweep(args))
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    holder = os.open(out / ".lock", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    os.pwrite(holder, b"424242\n", 0)
    log_file = tmp_path / "second.log"
    with log_file.open("w") as log:
        second = subprocess.Popen([sys.executable, "-m", "pipeline.sweep", *args], cwd=REPO, stdout=log,
                                  stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while "waiting for it to finish" not in log_file.read_text() and second.poll() is None:
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.2)
        assert f"out_dir {out} is in use by another sweep (pid 424242)" in log_file.read_text()
    finally:
        os.close(holder)
    assert second.wait(timeout=300) == 0, log_file.read_text()
    assert "2/2 shards already done" in log_file.read_text()
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == mtimes


def test_a_run_is_one_device_kind_and_one_dtype(tmp_path, caplog):
    """model.device/dtype=auto resolve once, at the driver, into the run's identity: here the CPU and
    float32, the same run as saying so (a resume), and another run than bfloat16 (refused)."""
    task = write_task(tmp_path / "task.jsonl", n=2)
    common = ["cluster=inprocess", "model.tiny.n_layers=2", "max_new_tokens=3", "task=jsonl", f"task.path={task}",
              f"out_dir={tmp_path / 'out'}"]  # fmt: skip
    out = run(compose_sweep(common))
    meta = json.loads((out / "run.json").read_text())
    assert {k: meta["result_identity"]["model"][k] for k in ("device", "dtype")} == {"device": "cpu", "dtype": "float32"}
    assert [w["device"] for w in meta["workers"]] == ["cpu float32"]
    with caplog.at_level(logging.INFO, logger="pipeline.sweep"):
        run(compose_sweep([*common, "model.device=cpu", "model.dtype=float32"]))
    assert "1/1 shards already done" in caplog.text
    with pytest.raises(PipelineError, match=r"holds results of another configuration .*they differ in: model\)"):
        run(compose_sweep([*common, "model.dtype=bfloat16"]))


def test_out_dir_of_another_configuration_is_refused(tmp_path):
    run(compose_sweep(sweep_args(tmp_path)))
    with pytest.raises(PipelineError, match="another configuration.*overwrite=true"):
        run(compose_sweep(sweep_args(tmp_path, "max_new_tokens=3")))
    run(compose_sweep(sweep_args(tmp_path, "max_new_tokens=3", "overwrite=true")))
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("out.replaced-")]
    assert len(aside) == 1 and any(aside[0].rglob("*.parquet"))
    assert set(rows(tmp_path / "out").column("n_new_tokens").to_pylist()) <= {0, 1, 2, 3}


@pytest.mark.parametrize("override,message", [
    ("model=gpt9", "unknown model 'gpt9'; valid: chinese_alpaca2, "),
    ("task=squad", "unknown task 'squad'; valid:"),
    ("grid=diagonal", "unknown grid 'diagonal'; valid:"),
    ("granularity=mlp", "granularity 'mlp' is not valid; valid: attn, ffn, block, attn_released"),
    ("model=hf model.path=/no/such/checkpoint", "model.path '/no/such/checkpoint' is not a checkpoint directory"),
    ("max_new_tokens=0", "max_new_tokens must be >= 1, got 0"),
    ("max_new_tokens=abc", "Value 'abc' of type 'str' could not be converted to Integer; full_key: max_new_tokens"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, override, message):
    task = write_task(tmp_path / "task.jsonl")
    out = tmp_path / "out"
    argv = ["pipeline.sweep", "cluster=inprocess", "task=jsonl", f"task.path={task}", f"out_dir={out}",
            *override.split()]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        sweep_main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not out.exists()


def test_bad_input_from_a_real_process(tmp_path):
    """The same path as above, once through a real interpreter: exit status and no traceback."""
    out = tmp_path / "out"
    proc = cli(["pipeline.sweep", "cluster=inprocess", "model=gpt9", f"out_dir={out}"])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown model 'gpt9'") and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("line,message", [
    ('{"id": "a", "lang": "de", "prompt": "p", "answer": "x"}', "line 2: missing field 'source_prompt'"),
    ('{"id": "de-0", "lang": "de", "prompt": "p", "source_prompt": "s", "answer": "x"}', "line 2"),
    ('{"id": "b", "lang": "de", "prompt": "  ", "source_prompt": "s", "answer": "x"}', "line 2: field 'prompt' is empty"),
])
def test_bad_jsonl_names_file_line_and_field(tmp_path, monkeypatch, capsys, line, message):
    task = tmp_path / "bad.jsonl"
    good = '{"id": "de-0", "lang": "de", "prompt": "p", "source_prompt": "s", "answer": "x"}'
    task.write_text(good + "\n" + line + "\n")
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["pipeline.sweep", "cluster=inprocess", "task=jsonl", f"task.path={task}",
                                      f"out_dir={out}"])
    with pytest.raises(SystemExit) as exit_info:
        sweep_main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert str(task) in err and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_transplant_cli_bad_layer_and_success():
    ok = cli(["pipeline.transplant", "prompt=Hallo Welt", "source_prompt=Hello world", "source_layer=3",
              "target_layer=0", "granularity=ffn", "max_new_tokens=4"])
    assert ok.returncode == 0, ok.stderr
    assert "vanilla:" in ok.stdout and "transplant:" in ok.stdout
    bad = cli(["pipeline.transplant", "prompt=Hallo", "source_prompt=Hello", "source_layer=4", "target_layer=0"])
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: source_layer=4 out of range: the model has layers 0..3"
