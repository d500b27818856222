"""Shards on disk: deterministic names, atomic Parquet writes, resume, and the out_dir guard.

A shard is a block of ``shard_size`` consecutive instances with all their configs; it is the unit
of scheduling, retry and resume. A shard file exists only once complete (written to a temp file
and renamed), so re-running the same command recomputes exactly the shards that have no file:
no loss, no duplicates. ``run.json`` names the configuration; an out_dir holding results of
another configuration is refused (``overwrite=true`` moves it aside, it never deletes results).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import PipelineError
from pipeline.instances import Instance

SHARD_DIR = "shards"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class Shard:
    """Instances [start, start + len(instances)) of the run's instance list."""

    index: int
    total: int
    instances: tuple[Instance, ...]

    @property
    def name(self) -> str:
        return f"shard-{self.index:06d}-of-{self.total:06d}.parquet"


def plan_shards(instances: Sequence[Instance], shard_size: int) -> list[Shard]:
    total = max(1, -(-len(instances) // shard_size))
    return [
        Shard(index=k, total=total, instances=tuple(instances[k * shard_size : (k + 1) * shard_size]))
        for k in range(total)
        if instances[k * shard_size : (k + 1) * shard_size]
    ]


def shard_path(out_dir: Path, shard: Shard) -> Path:
    return out_dir / SHARD_DIR / shard.name


def write_atomic(table: pa.Table, path: Path) -> None:
    """Writes a Parquet file so that it either exists complete or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def pending(out_dir: Path, shards: Sequence[Shard]) -> list[Shard]:
    """Shards without a finished file (the ones a resumed run recomputes)."""
    return [s for s in shards if not shard_path(out_dir, s).is_file()]


def read_run(out_dir: Path) -> dict | None:
    path = out_dir / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON ({err}); move it away or use another out_dir") from err


def guard_out_dir(out_dir: Path, config_hash: str, shard_size: int, overwrite: bool) -> None:
    """Refuses to mix results of two configurations in one out_dir.

    Same configuration: resume. Another configuration (or Parquet files of unknown provenance):
    a clear error, unless ``overwrite`` -- then the old directory is renamed aside, not deleted.
    """
    previous = read_run(out_dir)
    has_rows = out_dir.is_dir() and any(out_dir.rglob("*.parquet"))
    if previous is None and not has_rows:
        return
    same = previous is not None and previous.get("config_hash") == config_hash
    if same and previous.get("shard_size") == shard_size:
        return
    if not overwrite:
        if previous is None:
            why = "holds Parquet files but no run.json"
        elif same:
            why = f"was sharded with shard_size={previous.get('shard_size')}, not {shard_size}"
        else:
            why = f"holds results of another configuration (config_hash {previous.get('config_hash')}, this run {config_hash})"
        raise PipelineError(f"out_dir {out_dir} {why}; choose another out_dir or pass overwrite=true to move it aside")
    aside = out_dir.with_name(f"{out_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    out_dir.rename(aside)
    print(f"overwrite=true: moved the previous results to {aside}", flush=True)
