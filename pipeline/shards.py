"""Shards on disk: deterministic names, atomic writes, verified resume, the out_dir guard and lock.

A shard is a block of ``shard_size`` consecutive instances with all their configs; it is the unit
of scheduling, retry and resume. A shard file is written to a temp file and renamed, and a resumed
run trusts a file only if its Parquet footer reads and its row count is the one the shard must
hold: anything else is renamed aside (``NAME.corrupt-TIME``, never deleted) and recomputed, so
re-running the same command after any interruption gives every row once. ``run.json`` names the
configuration; an out_dir holding results of another configuration, or shard files of another
plan (``-of-N`` differs), is refused (``overwrite=true`` moves it aside, it never deletes results).
Two sweeps into one out_dir serialise on ``out_dir/.lock``. Files and directories get the user's
umask (results are meant to be shared), not ``tempfile``'s private 0600/0700.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import PipelineError
from pipeline.instances import Instance

SHARD_DIR = "shards"
RUN_FILE = "run.json"
LOCK_FILE = ".lock"

log = logging.getLogger(__name__)


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


def umask() -> int:
    """The process umask, read without changing it (Linux reports it in /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)  # no /proc: the classic read-by-setting, restored at once
    os.umask(current)
    return current


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Writes ``path`` so that it exists complete or not at all, with the user's umask.

    ``write`` fills a temp file beside ``path`` (same filesystem, so the final rename is atomic);
    the temp file is removed on any failure. This is the one write-then-rename helper of the
    package (shards, run.json, inspect's case files).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def replace_dir(tmp: Path, out: Path) -> None:
    """Puts the finished directory ``tmp`` at ``out`` (reports, selectors: written whole, then renamed).

    A previous ``out`` moves aside first and is removed only once the new one is in place, so a
    failure at any point leaves one complete directory at ``out``, never a mix or nothing.
    """
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
        out.rename(old / out.name)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def write_atomic(table: pa.Table, path: Path) -> None:
    """One shard's Parquet file, atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda fh: pq.write_table(table, fh))


def write_json_atomic(data: dict, path: Path) -> None:
    """A JSON document (run.json, a case file), atomically (see :func:`atomic_write`)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode()))


def shard_problem(path: Path, expected_rows: int) -> str | None:
    """Why the shard file at ``path`` cannot be trusted (None when it can).

    Reads only the Parquet footer: a truncated or foreign file has none, and a complete shard
    holds exactly ``expected_rows`` rows with the columns of ``pipeline.schema.ROW_SCHEMA``.
    """
    from pipeline.schema import ROW_SCHEMA

    try:
        meta = pq.read_metadata(path)
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as err:
        return f"not a readable Parquet file ({' '.join(str(err).split())})"
    if meta.num_rows != expected_rows:
        return f"holds {meta.num_rows} rows, the shard must hold {expected_rows}"
    if names != ROW_SCHEMA.names:
        return "its columns are not those of pipeline.schema.ROW_SCHEMA"
    return None


def check_shard_set(out_dir: Path, shards: Sequence[Shard]) -> None:
    """Refuses shard files of another plan in ``out_dir/shards`` (their ``-of-N`` or index differs).

    Mixing plans would duplicate rows (a grown task) or keep stale ones; the reduce refuses such a
    directory later, so the sweep refuses it now, before computing anything.
    """
    planned = {s.name for s in shards}
    foreign = sorted(p.name for p in (out_dir / SHARD_DIR).glob("*.parquet") if p.name not in planned)
    if foreign:
        raise PipelineError(
            f"out_dir {out_dir}: {out_dir / SHARD_DIR / foreign[0]} is not one of this run's {len(shards)} shards "
            f"({shards[0].name} ... {shards[-1].name}); use another out_dir or pass overwrite=true to move it aside"
        )


def pending(out_dir: Path, shards: Sequence[Shard], rows_per_instance: int) -> list[Shard]:
    """Shards without a trustworthy file: the ones a resumed run computes.

    A shard of n instances must hold ``n * rows_per_instance`` rows. A file that fails
    :func:`shard_problem` is renamed aside (``NAME.corrupt-TIME``, kept for inspection, no longer
    read as a result) and its shard recomputed, with one log line saying so.
    """
    todo = []
    for shard in shards:
        path = shard_path(out_dir, shard)
        if not path.is_file():
            todo.append(shard)
            continue
        problem = shard_problem(path, len(shard.instances) * rows_per_instance)
        if problem is None:
            continue
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(aside)
        log.warning("[sweep] shard %s %s: moved it to %s and recomputing it", path.name, problem, aside.name)
        todo.append(shard)
    return todo


def read_run(out_dir: Path) -> dict | None:
    path = out_dir / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON ({err}); move it away or use another out_dir") from err


def check_out_dir(out_dir: Path) -> None:
    """Refuses an out_dir that cannot become a directory we may write, before anything is written.

    An existing file, a path below a file, or a directory (or nearest existing parent) without
    write permission each get one line naming the offending path.
    """
    if os.path.exists(out_dir) and not out_dir.is_dir():
        raise PipelineError(f"out_dir {out_dir} is a file, not a directory; choose a directory")
    existing = out_dir
    while not os.path.exists(existing):  # os.path.exists: False, never an error, below a file
        existing = existing.parent
    if not existing.is_dir():
        raise PipelineError(f"out_dir {out_dir} lies below {existing}, which is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PipelineError(f"out_dir {out_dir}: {existing} is not writable by this user")


def guard_out_dir(
    out_dir: Path, config_hash: str, shard_size: int, overwrite: bool, identity: dict | None = None
) -> None:
    """Refuses to mix results of two configurations in one out_dir.

    Same configuration: resume. Another configuration (or Parquet files of unknown provenance):
    a clear error naming what differs (``identity``: the run's result identity, compared with the
    one run.json recorded), unless ``overwrite`` -- then the old directory is renamed aside, not
    deleted.
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
            before = previous.get("result_identity") or {}
            now = json.loads(json.dumps(identity or {}, default=list))  # as run.json stores it (lists)
            differs = sorted(k for k in now if k in before and before[k] != now[k])
            what = f"; they differ in: {', '.join(differs)}" if differs else ""
            why = (
                f"holds results of another configuration (config_hash {previous.get('config_hash')}, "
                f"this run {config_hash}{what})"
            )
        raise PipelineError(f"out_dir {out_dir} {why}; choose another out_dir or pass overwrite=true to move it aside")
    aside = out_dir.with_name(f"{out_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    out_dir.rename(aside)
    log.info("[sweep] overwrite=true: moved the previous results to %s", aside)


@contextmanager
def locked_out_dir(out_dir: Path) -> Iterator[None]:
    """Creates ``out_dir`` and holds ``out_dir/.lock`` (``fcntl.flock``) for the whole run.

    A second sweep into the same out_dir waits for the first (saying so, with the holder's pid)
    and then resumes: it finds the first one's shards done and computes only what is left. The
    lock dies with its process, so a killed sweep never leaves a stale lock behind.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise PipelineError(f"out_dir {out_dir}: cannot create it ({err.strerror})") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            log.info(
                "[sweep] out_dir %s is in use by another sweep (pid %s): waiting for it to finish", out_dir, holder
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
            log.info("[sweep] the other sweep released %s; resuming after it", out_dir)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
