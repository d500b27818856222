"""A non-editable install carries everything a sweep needs (the Hydra configs, the bundled sample).

The wheel is built from a copy of the sources (so nothing is written into the checkout), installed
with ``pip install --target`` and run from an unrelated directory with that copy first on the path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sweeps import REPO


@pytest.mark.slow
def test_installed_wheel_runs_a_sweep_from_another_directory(tmp_path):
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "pipeline", src / "pipeline", ignore=ignore)
    shutil.copytree(REPO / "conf", src / "conf", ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", src / "pyproject.toml")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(src)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    shutil.rmtree(src)  # the installed copy alone must suffice
    for folder, shipped in ((REPO / "conf", site / "pipeline" / "conf"),
                            (REPO / "pipeline" / "data", site / "pipeline" / "data")):  # fmt: skip
        files = {p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
        assert files and files <= {p.relative_to(shipped) for p in shipped.rglob("*") if p.is_file()}
    modules = {p.relative_to(REPO) for p in (REPO / "pipeline").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= {p.relative_to(site) for p in (site / "pipeline").rglob("*.py")}  # every package listed

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import pipeline, pipeline.cli as c; print(pipeline.__file__); print(c.CONF_DIR)"],
        cwd=work, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert all(Path(p).is_relative_to(site) for p in where), where

    out = work / "run"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.sweep", "model=tiny", "model.tiny.n_layers=2", "task=sample",
         "task.subsets=[xnli]", "grid=pairs", "grid.pairs=[[0,1]]", "max_new_tokens=2", "cluster=inprocess",
         f"out_dir={out}"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads((out / "run.json").read_text())
    assert run["task"] == "sample"
    assert list((out / "shards").glob("*.parquet"))
    assert not list(work.glob("outputs")), "Hydra must write nothing into the working directory"
