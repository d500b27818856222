"""Task registry: ``task.name`` -> a :class:`~pipeline.tasks.base.Task` built from the task's config.

The paper's six benchmarks (XNLI, XQuAD, GlobalOpinionQA; XCOPA, MKQA, CulturalBench out of
distribution), ``jsonl`` (any file in the JSONL task format) and ``sample`` (the bundled demo).
The sweep calls ``load_task(OmegaConf.to_container(cfg.task))`` once; a task's config is a plain
mapping with ``name`` plus the keys of ``conf/task/<name>.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pipeline.errors import PipelineError
from pipeline.tasks.base import Task
from pipeline.tasks.culturalbench import CulturalBenchTask
from pipeline.tasks.globalopinionqa import GlobalOpinionQaTask
from pipeline.tasks.jsonl import JsonlTask
from pipeline.tasks.mkqa import MkqaTask
from pipeline.tasks.sample import SampleTask
from pipeline.tasks.schemas import task_config
from pipeline.tasks.xcopa import XcopaTask
from pipeline.tasks.xnli import XnliTask
from pipeline.tasks.xquad import XquadTask


def _jsonl(cfg: Mapping[str, Any]) -> JsonlTask:
    cfg = task_config("jsonl", cfg)
    if cfg["path"] in (None, "", "???"):
        raise PipelineError("task jsonl: task.path is required (task=jsonl task.path=FILE.jsonl)")
    return JsonlTask(cfg["path"], groups=cfg["groups"])


BUILTIN = (XnliTask, XquadTask, GlobalOpinionQaTask, XcopaTask, MkqaTask, CulturalBenchTask)

REGISTRY: dict[str, Callable[[Mapping[str, Any]], Task]] = {
    **{cls.NAME: cls for cls in BUILTIN},
    "jsonl": _jsonl,
    "sample": SampleTask,
}

TASK_NAMES: tuple[str, ...] = tuple(REGISTRY)


def load_task(cfg: Mapping[str, Any]) -> Task:
    """Builds the task named by ``cfg["name"]`` from its config mapping.

    Config errors (unknown keys or languages, missing root or files, a language without a
    template) are raised here, before any work; data is read on the first ``instances()``.

    Args:
        cfg: ``{"name": ..., **task keys}``, e.g. ``{"name": "xnli", "source": "release",
            "root": "../shared/xtransplant-data", "split": "pilot", "langs": ["de"]}``.

    Raises:
        PipelineError: an unknown task name (listing the valid ones) or a bad task config.
    """
    if not isinstance(cfg, Mapping):
        raise PipelineError(f"task config must be a mapping with a 'name', got {type(cfg).__name__}")
    name = cfg.get("name")
    if name not in REGISTRY:
        raise PipelineError(f"unknown task {name!r}; valid tasks: {', '.join(TASK_NAMES)}")
    return REGISTRY[name](cfg)


__all__ = ["TASK_NAMES", "Task", "load_task"]
