"""What every task provides to the sweep and to the reports.

A task is small and declarative: a config under ``conf/task/`` (languages, split, source, groups,
prompt variant) plus one module with a loader and a scoring rule. The sweep only needs
:class:`Task`; the reduce stage reads ``groups`` from ``run.json`` and the ``correct`` column.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from pipeline.instances import Instance
from pipeline.tasks.scoring import score


class Task(ABC):
    """A benchmark turned into parallel instances plus the authors' scoring rule.

    A task names the rule of each instance (:meth:`rule`, one of :data:`pipeline.tasks.scoring.RULES`);
    scoring, the resource groups and the default generation budget are the same for every task.
    """

    name: str
    _groups: dict[str, list[str]]  # set by each task's constructor

    @abstractmethod
    def instances(self) -> list[Instance]:
        """All instances of the configured split and languages, in a stable order."""

    @abstractmethod
    def rule(self, instance: Instance) -> str:
        """The name of the scoring rule ``instance`` is scored by (:mod:`pipeline.tasks.scoring`)."""

    def score(self, instance: Instance, response: str) -> bool:
        """True iff ``response`` answers ``instance`` correctly under its rule."""
        return score(self.rule(instance), instance, response)

    @property
    def groups(self) -> Mapping[str, Sequence[str]]:
        """Resource groups (paper Table 3: High/Mid/Low) -> languages: the task's or ``task.groups``."""
        return self._groups

    @property
    def max_new_tokens(self) -> int | None:
        """Generation budget the task asks for (``prompt=cot``: 200), or None for the run's."""
        return None
