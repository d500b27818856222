"""Build a PilotSet the paper's way and write it in the JSONL task format.

    python -m pipeline.pilot task=NAME [task.<key>=VALUE ...] out=FILE.jsonl [n=50] [seed=666]

The pool is the task's instances for ``task.split`` (``all`` unless given). From it, ``n`` items
per language are drawn with ``random.Random(seed)`` (the paper: 50, seed 666): for multilingual
tasks one set of parallel items shared by every language, for cultural tasks per language;
GlobalOpinionQA's pool already keeps only confident items (``task.min_top_prob``). The file is
all a sweep needs (``task=jsonl task.path=FILE``), and the same inputs give the same file, byte
for byte.
"""

from __future__ import annotations

import logging

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, DictConfig, OmegaConf

from pipeline.cli import CONF_DIR, plain, run_app
from pipeline.errors import PipelineError, exit_on_user_error
from pipeline.tasks import Task, load_task
from pipeline.tasks.common import BuiltinTask
from pipeline.tasks.jsonl import write_jsonl
from pipeline.tasks.pilotset import PILOT_SEED, PILOT_SIZE, Record, select_pilot

USAGE = "python -m pipeline.pilot task=NAME [task.<key>=VALUE ...] out=FILE.jsonl [n=50] [seed=666]"

log = logging.getLogger(__name__)


def build_pilot(task: Task, n: int = PILOT_SIZE, seed: int = PILOT_SEED) -> list[Record]:
    """Draws the PilotSet of ``task``'s instances (see the module docstring)."""
    if isinstance(task, BuiltinTask):
        return task.pilot_records(n, seed)
    records = [Record(instance.id, instance) for instance in task.instances()]
    return select_pilot(records, n, seed, parallel=False)


@dataclass
class PilotSchema:
    """The schema of ``conf/pilot.yaml`` (ConfigStore ``pilot_schema``); ``task`` is the task's own."""

    task: Any = MISSING
    out: str = MISSING
    n: int = MISSING
    seed: int = MISSING


ConfigStore.instance().store(name="pilot_schema", node=PilotSchema)


@hydra.main(config_path=str(CONF_DIR), config_name="pilot", version_base=None)
@exit_on_user_error
def _hydra_main(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "out"):
        raise PipelineError(f"out=FILE.jsonl is required; usage: {USAGE}")
    if cfg.n < 1:
        raise PipelineError(f"n must be >= 1, got {cfg.n}")
    config = plain(cfg.task)  # as the sweep reads it: the task names a value left unset
    given = HydraConfig.get().overrides.task
    if "split" in config and not any(o.lstrip("+").startswith("task.split=") for o in given):
        config["split"] = "all"
    task = load_task(config)
    pilot = build_pilot(task, cfg.n, cfg.seed)
    count = write_jsonl(str(cfg.out), [(record.instance, task.rule(record.instance)) for record in pilot])
    langs = len({record.instance.lang for record in pilot})
    summary = f"{count} instances ({langs} languages, n={cfg.n}, seed={cfg.seed})"
    log.info("wrote a PilotSet of %s of task %s to %s", summary, config["name"], cfg.out)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m pipeline.pilot``: a Hydra app over ``conf/pilot.yaml``."""
    run_app(_hydra_main, None if argv is None else list(argv), config_name="pilot", required=("task",))


if __name__ == "__main__":
    main()
