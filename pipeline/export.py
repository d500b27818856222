"""Freeze a task: write the instances it yields in the JSONL task format.

    python -m pipeline.export task=NAME [task.<key>=VALUE ...] out=FILE.jsonl

e.g. ``python -m pipeline.export task=xnli task.root=../shared/xtransplant-data task.langs=[de,zh]
out=xnli_de_zh.jsonl``. The file holds ``id``, ``lang``, ``prompt``, ``source_prompt``, ``answer``
and, where the task has them, ``choices``/``choice_aliases``/``aliases``/``response_lang``/
``scoring``, in the task's stable order; ``task=jsonl task.path=FILE`` re-runs it with the same
prompts and the same scoring. The file is validated in full and written atomically (nothing is
written on error).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from collections.abc import Sequence

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from pipeline.cli import CONF_DIR, plain, run_app
from pipeline.errors import PipelineError, exit_on_user_error
from pipeline.tasks import Task, load_task
from pipeline.tasks.jsonl import write_jsonl

USAGE = "python -m pipeline.export task=NAME [task.<key>=VALUE ...] out=FILE.jsonl"

log = logging.getLogger(__name__)




def export(task: Task, out: str) -> int:
    """Writes every instance of ``task`` to ``out`` (JSONL task format); returns the count."""
    return write_jsonl(out, [(instance, task.rule(instance)) for instance in task.instances()])


@dataclass
class ExportSchema:
    """The types of ``conf/export.yaml`` (ConfigStore ``export_schema``); ``task`` is the task's own keys."""

    task: Any = MISSING
    out: str = MISSING


ConfigStore.instance().store(name="export_schema", node=ExportSchema)


@hydra.main(config_path=str(CONF_DIR), config_name="export", version_base=None)
@exit_on_user_error
def _hydra_main(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "out"):
        raise PipelineError(f"out=FILE.jsonl is required; usage: {USAGE}")
    task_config = plain(cfg.task)  # as the sweep reads it: the task names a value left unset
    task = load_task(task_config)
    count = export(task, str(cfg.out))
    log.info("wrote %d instances of task %s to %s", count, task_config["name"], cfg.out)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m pipeline.export``: a Hydra app over ``conf/export.yaml``."""
    run_app(_hydra_main, None if argv is None else list(argv), config_name="export", required=("task",))


if __name__ == "__main__":
    main()
