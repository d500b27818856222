"""Shards in a run's store: deterministic names, atomic writes, verified resume, the out_dir guard and lock.

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

import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.sweep.store import Store

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


FEATURES_DIR = "features"  # per-shard selector features (pipeline.select.features), beside shards/


def features_rel(shard_name: str) -> str:
    """Where a shard's feature file goes inside its run's store: ``features/<shard name>``."""
    return f"{FEATURES_DIR}/{shard_name}"


def shard_rel(shard: Shard) -> str:
    """A shard's file inside its run's store: ``shards/<name>``."""
    return f"{SHARD_DIR}/{shard.name}"


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
    """A Parquet file at a local ``path``, atomically (:meth:`pipeline.sweep.store.Store.write_bytes`)."""
    Store.open(path.parent).write_table(path.name, table)


def write_json_atomic(data: dict, path: Path) -> None:
    """A JSON document at a local ``path`` (an inspect case file), atomically."""
    Store.open(path.parent).write_json(path.name, data)


def shard_problem(store: Store, rel: str, expected_rows: int) -> str | None:
    """Why the shard file ``rel`` of ``store`` cannot be trusted (None when it can).

    Reads only the Parquet footer: a truncated or foreign file has none, and a complete shard
    holds exactly ``expected_rows`` rows with the columns of ``pipeline.schema.ROW_SCHEMA``.
    """
    from pipeline.schema import ROW_SCHEMA

    try:
        rows, names = store.parquet_footer(rel)
    except (OSError, pa.ArrowException) as err:
        return f"not a readable Parquet file ({' '.join(str(err).split())})"
    if rows != expected_rows:
        return f"holds {rows} rows, the shard must hold {expected_rows}"
    if names != ROW_SCHEMA.names:
        return "its columns are not those of pipeline.schema.ROW_SCHEMA"
    return None


def check_shard_set(store: Store, shards: Sequence[Shard]) -> None:
    """Refuses shard files of another plan in ``out_dir/shards`` (their ``-of-N`` or index differs).

    Mixing plans would duplicate rows (a grown task) or keep stale ones; the reduce refuses such a
    directory later, so the sweep refuses it now, before computing anything.
    """
    planned = {s.name for s in shards}
    found = [rel.split("/", 1)[1] for rel in store.files(SHARD_DIR, ".parquet") if rel.count("/") == 1]
    foreign = sorted(name for name in found if name not in planned)
    if foreign:
        raise PipelineError(
            f"out_dir {store.describe()}: {store.describe(f'{SHARD_DIR}/{foreign[0]}')} is not one of this run's "
            f"{len(shards)} shards ({shards[0].name} ... {shards[-1].name}); use another out_dir or pass "
            "overwrite=true to move it aside"
        )


def set_aside(store: Store, rel: str, problem: str) -> None:
    """Renames an untrusted shard file to ``NAME.corrupt-TIME`` (kept for inspection, never read as rows)."""
    aside = f"{rel}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
    store.move(rel, aside)
    log.warning("[sweep] shard %s %s: moved it to %s and recomputing it", rel, problem, aside.rsplit("/", 1)[-1])


def pending(store: Store, shards: Sequence[Shard], expected_rows: Callable[[Shard], int | None]) -> list[Shard]:
    """Shards without a trustworthy file: the ones a resumed run computes.

    A finished shard holds ``expected_rows(shard)`` rows (the plan's count, :mod:`pipeline.sweep.plan`;
    None: the plan cannot count it, e.g. a ``grid=selected`` shard whose feature file is missing).
    A file that fails :func:`shard_problem` is set aside (:func:`set_aside`) and its shard recomputed.
    """
    todo = []
    for shard in shards:
        rel = shard_rel(shard)
        if not store.is_file(rel):
            todo.append(shard)
            continue
        expected = expected_rows(shard)
        problem = "has no feature file to check it against" if expected is None else shard_problem(store, rel, expected)
        if problem is not None:
            set_aside(store, rel, problem)
            todo.append(shard)
    return todo


def read_run(store: Store) -> dict | None:
    """The store's ``run.json``, or None when it has none."""
    if not store.is_file(RUN_FILE):
        return None
    try:
        return json.loads(store.read_text(RUN_FILE))
    except json.JSONDecodeError as err:
        raise PipelineError(
            f"{store.describe(RUN_FILE)}: not valid JSON ({err}); move it away or use another out_dir"
        ) from err


def check_out_dir(store: Store) -> None:
    """Refuses an out_dir that cannot become a directory we may write, before anything is written.

    Locally: an existing file, a path below a file, or a directory (or nearest existing parent)
    without write permission each get one line naming the offending path. An object store: the
    bucket must be reachable with the credentials at hand (one line with the store's answer).
    """
    if not store.is_local:
        if store.info().type == pafs.FileType.File:
            raise PipelineError(f"out_dir {store.describe()} is a file, not a directory; choose a directory")
        return
    out_dir = store.local_path
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
    store: Store, config_hash: str, shard_size: int, overwrite: bool, identity: dict | None = None
) -> None:
    """Refuses to mix results of two configurations in one out_dir.

    Same configuration: resume. Another configuration (or Parquet files of unknown provenance):
    a clear error naming what differs (``identity``: the run's result identity, compared with the
    one run.json recorded), unless ``overwrite`` -- then the old directory is moved aside, not
    deleted.
    """
    previous = read_run(store)
    has_rows = bool(store.files(suffix=".parquet"))
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
        raise PipelineError(
            f"out_dir {store.describe()} {why}; choose another out_dir or pass overwrite=true to move it aside"
        )
    aside = store.unused_sibling(f"{store.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    store.move_to(aside, keep=frozenset({LOCK_FILE}))  # under the lock, which stays
    log.info("[sweep] overwrite=true: moved the previous results to %s", aside.describe())


LEASE_SECONDS = 600
"""An object store's lock is a lease: renewed by its holder every :data:`HEARTBEAT_SECONDS` while
the sweep runs, taken over by another sweep once it has not been renewed for this long (its
holder is then presumed dead), or at once when its holder is provably gone."""
HEARTBEAT_SECONDS = LEASE_SECONDS / 6


@contextmanager
def locked_out_dir(store: Store) -> Iterator[Callable[[], None]]:
    """Creates the out_dir and holds its lock for the whole run; yields a function that renews it.

    Local (or shared-mount) folder: ``out_dir/.lock`` under ``fcntl.flock``, opened without
    following a symbolic link. A second sweep into the same out_dir waits for the first (saying
    so, with the holder's pid) and then resumes: it finds the first one's shards done and computes
    only what is left. The lock dies with its process, so a killed sweep never leaves a stale lock.

    Object store (no lock primitive): ``.lock`` is a lease object naming its holder
    (``host:pid:token``), renewed by a heartbeat thread while the run lasts (a shard may take
    longer than the lease). A second sweep takes it over at once when the holder is provably gone
    (same host, no such process), after :data:`LEASE_SECONDS` without renewal otherwise, and says
    while it waits when the lease expires and which object to delete to take it over now. Best
    effort: two sweeps starting within the same second can both take it (their rows are still
    exact, the later write of a shard wins).
    """
    if not store.is_local:
        with _leased(store) as renew:
            yield renew
        return
    out_dir = store.local_path
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as err:
        why = "it is a symbolic link, which a lock is never taken through" if err.errno == errno.ELOOP else err.strerror
        raise PipelineError(f"out_dir {out_dir}: cannot open {out_dir / LOCK_FILE} ({why})") from err
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
        yield lambda: None
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder_gone(holder: str) -> bool:
    """Whether a lease's holder (``host:pid:token``) is provably gone: this host, and no such process."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@contextmanager
def _leased(store: Store) -> Iterator[Callable[[], None]]:
    """The object-store lease of :func:`locked_out_dir`."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
    said = False
    while store.is_file(LOCK_FILE):
        mtime = store.info(LOCK_FILE).mtime  # None where the filesystem keeps none: taken as expired
        age = time.time() - mtime.timestamp() if mtime is not None else LEASE_SECONDS
        holder = store.read_text(LOCK_FILE).strip()
        if _holder_gone(holder):
            log.warning("[sweep] taking over the lease %s of %s: that process no longer runs on this host",
                        store.describe(LOCK_FILE), holder)  # fmt: skip
            break
        if age >= LEASE_SECONDS:
            log.warning("[sweep] taking over the lease %s of %s (not renewed for %.0f s)", store.describe(LOCK_FILE), holder, age)
            break
        if not said:
            expires = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + LEASE_SECONDS - age))
            log.info("[sweep] out_dir %s is in use by another sweep (%s): waiting for it to finish; its lease expires "
                     "at %s unless renewed (to take it over now, delete %s)", store.describe(), holder, expires,
                     store.describe(LOCK_FILE))  # fmt: skip
            said = True
        time.sleep(5)
    renew = lambda: store.write_bytes(LOCK_FILE, owner.encode())  # noqa: E731
    renew()
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                renew()
            except PipelineError as err:
                log.warning("[sweep] could not renew the lease %s: %s", store.describe(LOCK_FILE), err)

    beat = threading.Thread(target=heartbeat, name="lease-heartbeat", daemon=True)
    beat.start()
    try:
        yield renew
    finally:
        stop.set()
        beat.join()
        try:
            if store.is_file(LOCK_FILE) and store.read_text(LOCK_FILE) == owner:
                store.delete(LOCK_FILE)
        except (OSError, PipelineError):
            log.warning("[sweep] could not remove the lease %s; it expires in %d s", store.describe(LOCK_FILE), LEASE_SECONDS)
