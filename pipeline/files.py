"""File-system facts shared by every stage that writes files (shards, reports, converted checkpoints)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import PipelineError


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


def check_owned_dir(out: Path, written_by_us: bool, names: frozenset[str] | set[str], what: str) -> None:
    """Refuses to replace ``out`` unless it is a directory this tool wrote holding only its files.

    A tool that replaces its output directory (a selector, a selection report) deletes what was
    there; so ``out`` must not exist, or be ``what`` (``written_by_us``: its marker file is there)
    with nothing in it beyond ``names``. Anything else is refused in one line, nothing touched.
    """
    if not out.exists():
        return
    if not out.is_dir() or not written_by_us:
        raise PipelineError(f"out={out} exists and is not {what}; choose another out=")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in names)
    if foreign:
        raise PipelineError(f"out={out} holds {foreign[0]}, which this tool did not write; move it away or choose "
                            "another out=")  # fmt: skip


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


@contextmanager
def staged_dir(out: Path, parent: Path | None = None) -> Iterator[Path]:
    """A fresh hidden directory beside ``out`` (or in ``parent``) to write ``out``'s files into.

    Its mode follows the user's umask (``mkdtemp`` makes it 0700; reports and selectors are
    shared); it is removed when the block ends, whether it succeeded or not, unless it was moved.
    """
    parent = out.parent if parent is None else parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=parent))
    try:
        tmp.chmod(0o777 & ~umask())
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def written_whole(out: Path) -> Iterator[Path]:
    """A directory written whole: the block fills a staging directory, which then replaces ``out``
    (:func:`replace_dir`); a failure leaves the previous ``out`` as it was."""
    with staged_dir(out) as tmp:
        yield tmp
        replace_dir(tmp, out)
