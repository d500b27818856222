"""The result store (pipeline.store) on a local folder, and where a sweep's out_dir resolves.

The store against a real S3-compatible server is tested in tests/test_multinode.py.
"""

from __future__ import annotations

import pytest
from sweeps import REPO, cli, write_task

from pipeline.sweep.config import RAY_JOB_ENV, RESULTS_ROOT_ENV, resolve_out_dir
from pipeline.errors import PipelineError
from pipeline.store import Store


def test_local_store_writes_whole_files_and_lists_them(tmp_path):
    store = Store.open(tmp_path / "run")
    store.write_bytes("shards/a.parquet", b"x")
    store.write_json("run.json", {"k": 1})
    store.write_bytes("shards/.b.parquet", b"partial")  # a hidden file (temporary): left out for readers
    assert store.files(suffix=".parquet") == ["shards/.b.parquet", "shards/a.parquet"]
    assert store.files(suffix=".parquet", hidden=False) == ["shards/a.parquet"]
    assert store.read_text("run.json").strip() == '{\n  "k": 1\n}'
    assert not list((tmp_path / "run" / "shards").glob(".a.parquet.*.tmp"))  # no temp file of write_bytes left
    store.move("shards/a.parquet", "shards/a.parquet.corrupt-1")
    assert store.is_file("shards/a.parquet.corrupt-1") and not store.exists("shards/a.parquet")
    aside = store.sibling("run.replaced-1")
    store.move_to(aside)
    assert (tmp_path / "run.replaced-1" / "run.json").is_file() and not any((tmp_path / "run").iterdir())


def test_file_uri_is_a_local_folder(tmp_path):
    store = Store.open(f"file://{tmp_path}/run")
    assert store.is_local and store.local_path == tmp_path / "run"


def test_a_uri_pyarrow_cannot_open_is_one_line():
    with pytest.raises(PipelineError, match=r"^cannot open the result store nosuch://bucket/run: "):
        Store.open("nosuch://bucket/run")


def test_relative_out_dir_under_a_ray_job(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert resolve_out_dir("runs/a") == str(tmp_path / "runs" / "a")  # not a job: the working directory
    assert resolve_out_dir("s3://bucket/a?x=1") == "s3://bucket/a?x=1"
    monkeypatch.setenv(RAY_JOB_ENV, "{}")
    monkeypatch.delenv(RESULTS_ROOT_ENV, raising=False)
    with pytest.raises(PipelineError, match="is relative and this sweep runs as a Ray job"):
        resolve_out_dir("runs/a")
    assert resolve_out_dir(str(tmp_path / "abs")) == str(tmp_path / "abs")
    monkeypatch.setenv(RESULTS_ROOT_ENV, str(tmp_path / "results"))
    assert resolve_out_dir("runs/a") == str(tmp_path / "results" / "runs" / "a")


def test_sweep_refuses_a_relative_out_dir_in_a_ray_job_with_one_line(tmp_path):
    task = write_task(tmp_path / "task.jsonl", n=2)
    done = cli(["pipeline.sweep", "model.tiny.n_layers=2", "task=jsonl", f"task.path={task}", "cluster=inprocess",
                "out_dir=runs/xt-relative-test"], env={RAY_JOB_ENV: "{}", RESULTS_ROOT_ENV: ""})  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: out_dir=runs/xt-relative-test is relative and this sweep runs as a Ray job")
    assert done.stderr.count("\n") == 1 and not (REPO / "runs" / "xt-relative-test").exists()
