"""What every task provides to the sweep and to the reports.

A task is small and declarative: a config under ``conf/task/`` (languages, split, source, groups,
prompt variant) plus one module with a loader and a scoring rule. The sweep only needs
:class:`Task`; the reduce stage reads ``groups`` from ``run.json`` and the ``correct`` column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from pipeline.instances import Instance


class Task(Protocol):
    """A benchmark turned into parallel instances plus the authors' scoring rule."""

    name: str

    def instances(self) -> list[Instance]:
        """All instances of the configured split and languages, in a stable order."""

    def score(self, instance: Instance, response: str) -> bool:
        """True iff ``response`` answers ``instance`` correctly under the task's rule."""

    @property
    def groups(self) -> Mapping[str, Sequence[str]]:
        """Resource groups (paper Table 3: High/Mid/Low) -> languages; empty if none."""

    @property
    def max_new_tokens(self) -> int | None:
        """Generation budget the task asks for (``prompt=cot``: 200), or None for the run's."""
