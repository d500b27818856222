"""Every config composes, and every ready job in jobs/ is a valid sweep command line."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from sweeps import REPO, compose_sweep

from pipeline.tasks import load_task

JOB_FILES = sorted((REPO / "jobs").glob("*.yaml"))
JOBS = [(f.name, j) for f in JOB_FILES for j in yaml.safe_load(f.read_text())["jobs"]]


@pytest.mark.parametrize("model", sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml")))
@pytest.mark.parametrize("grid", ["full", "source_last", "target_first", "upper_bounds", "coarse"])
def test_model_and_grid_groups_compose(model, grid, tmp_path):
    overrides = [f"model={model}", f"grid={grid}", f"out_dir={tmp_path}"]
    if model == "hf":
        overrides.append("model.path=/some/checkpoint")
    cfg = compose_sweep(overrides)
    assert cfg.model.name == model and cfg.grid.kind == grid


def test_there_are_jobs_for_every_family():
    assert {f.name for f in JOB_FILES} == {"main.yaml", "coarse.yaml", "upper_bound.yaml", "chinese_centric.yaml"}
    assert len({j["name"] for _, j in JOBS}) == len(JOBS)


@pytest.mark.parametrize("file,job", JOBS, ids=[j["name"] for _, j in JOBS])
def test_job_entrypoint_is_a_valid_sweep(file, job, monkeypatch, shared_dir, tmp_path):
    monkeypatch.setenv("XT_DATA", str(shared_dir / "xtransplant-data"))
    monkeypatch.setenv("XT_RESULTS", str(tmp_path))
    monkeypatch.setenv("XT_MKQA", str(shared_dir / "benchmarks" / "mkqa" / "test_mkqa.jsonl.gz"))
    translations = tmp_path / "culturalbench_translations.jsonl"
    translations.write_text('{"id": "culturalbench-0", "source_prompt": "x"}\n')
    monkeypatch.setenv("XT_CULTURALBENCH_TRANSLATIONS", str(translations))
    argv = shlex.split(job["entrypoint"])
    assert argv[:3] == ["python", "-m", "pipeline.sweep"]
    cfg = compose_sweep(argv[3:])
    assert Path(cfg.out_dir).is_relative_to(tmp_path)
    load_task(cfg.task)  # task keys, languages and (for release) the data root are valid


EXPERIMENTS = sorted(p.relative_to(REPO / "conf" / "experiment").with_suffix("").as_posix()
                     for p in (REPO / "conf" / "experiment").rglob("*.yaml"))  # fmt: skip


def test_every_experiment_is_a_job_and_every_job_an_experiment():
    used = {a.split("=", 1)[1] for _, j in JOBS for a in shlex.split(j["entrypoint"]) if a.startswith("+experiment=")}
    assert used == set(EXPERIMENTS)
    for _, job in JOBS:  # jobs/ is the list of runs: an experiment, a model and at most the other grid
        assert len(shlex.split(job["entrypoint"])) <= 6, job


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_its_task_into_its_family_folder(experiment, monkeypatch, tmp_path):
    monkeypatch.setenv("XT_RESULTS", str(tmp_path))
    family, task = experiment.split("/")
    cfg = compose_sweep([f"+experiment={experiment}", "model=qwen2"])
    assert cfg.task["name"] == task
    assert Path(cfg.out_dir).relative_to(tmp_path).parts[:3] == (family, "qwen2", task)
    assert compose_sweep([f"+experiment={experiment}", "model=qwen2", "task.limit=3"]).task["limit"] == 3
