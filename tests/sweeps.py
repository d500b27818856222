"""Helpers for sweep tests: a small JSONL task, Hydra composition, reading a run's rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
from hydra import compose, initialize_config_dir

from pipeline.sweep.config import SweepConfig, sweep_config

REPO = Path(__file__).resolve().parents[1]
KEY = ["instance_id", "granularity", "source_layer", "target_layer"]


def write_task(path: Path, n: int = 4) -> Path:
    """n parallel items in two languages, XNLI-style choices on half of them."""
    langs = ["de", "fr"]
    lines = []
    for k in range(n):
        lang = langs[k % 2]
        item = {
            "id": f"{lang}-{k}",
            "lang": lang,
            "prompt": f"[{lang}] Frage {k}: Ist {k} gerade? (1) ja (2) nein",
            "source_prompt": f"Question {k}: is {k} even? (1) yes (2) no",
            "answer": "1" if k % 2 == 0 else "2",
        }
        if k % 2 == 0:
            item["choices"] = ["1", "2"]
        else:
            item["answer"] = "ja"
        lines.append(json.dumps(item, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n")
    return path


def compose_sweep(overrides: list[str]) -> SweepConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return sweep_config(compose("config", overrides=overrides))


def compose_task(name: str, overrides: list[str]) -> dict:
    """``conf/task/<name>.yaml`` composed with ``task.*`` overrides, as every entry point composes it."""
    from omegaconf import OmegaConf

    import pipeline.export  # noqa: F401  registers export_schema (and, through the tasks, their schemas)

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return OmegaConf.to_container(compose("export", overrides=[f"task={name}", *overrides]).task, resolve=True)


def rows(out_dir: Path):
    """Every ``*.parquet`` file below out_dir, read together (the run's result by contract)."""
    return ds.dataset([str(p) for p in sorted(Path(out_dir).rglob("*.parquet"))], format="parquet").to_table()


def keys(table) -> list[tuple]:
    cols = [table.column(k).to_pylist() for k in KEY]
    return list(zip(*cols))


def cli(args: list[str], env: dict | None = None, timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    """Runs ``python -m <args>`` with the test interpreter, from the repo root."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=full_env, capture_output=True,
                          text=True, timeout=timeout, **kw)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.2) -> None:
    """Polls ``predicate`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")
