"""The out_dir of a sweep: whether it may be written, and who writes it (its lock or lease).

:func:`check_out_dir` refuses an out_dir that cannot become a writable directory;
:func:`guard_out_dir` refuses to mix two configurations' results in one out_dir (or, with
``overwrite=true``, moves the previous run aside under a name never used before);
:func:`locked_out_dir` holds the out_dir for the whole run: a ``.lock`` file under ``flock`` in a
local (or shared-mount) folder, a lease object renewed by a heartbeat on an object store.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pyarrow.fs as pafs

from pipeline.errors import PipelineError
from pipeline.store import Store
from pipeline.rundir import LOCK_FILE, read_run

log = logging.getLogger("pipeline.sweep")


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
