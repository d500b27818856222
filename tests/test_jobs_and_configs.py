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
