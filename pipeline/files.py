"""File-system facts shared by every stage that writes files (shards, reports, converted checkpoints)."""

from __future__ import annotations

import os
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
