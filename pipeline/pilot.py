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

import sys
from collections.abc import Sequence

from pipeline.errors import PipelineError, exit_on_user_error
from pipeline.export import rule_of
from pipeline.tasks import Task, load_task
from pipeline.tasks.common import BuiltinTask
from pipeline.tasks.compose import compose_task, parse_argv, positive_int
from pipeline.tasks.jsonl import write_jsonl
from pipeline.tasks.pilotset import PILOT_SEED, PILOT_SIZE, Record, select_pilot

USAGE = "python -m pipeline.pilot task=NAME [task.<key>=VALUE ...] out=FILE.jsonl [n=50] [seed=666]"


def build_pilot(task: Task, n: int = PILOT_SIZE, seed: int = PILOT_SEED) -> list[Record]:
    """Draws the PilotSet of ``task``'s instances (see the module docstring)."""
    if isinstance(task, BuiltinTask):
        return task.pilot_records(n, seed)
    records = [Record(instance.id, instance) for instance in task.instances()]
    return select_pilot(records, n, seed, parallel=False)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m pipeline.pilot``."""
    name, overrides, own = parse_argv(sys.argv[1:] if argv is None else argv, ("out", "n", "seed"), USAGE)
    if not own.get("out"):
        raise PipelineError(f"out=FILE.jsonl is required; usage: {USAGE}")
    n = positive_int(own.get("n", str(PILOT_SIZE)), "n")
    try:
        seed = int(own.get("seed", str(PILOT_SEED)))
    except ValueError:
        raise PipelineError(f"seed must be an integer, got {own['seed']!r}") from None
    config = compose_task(name, overrides)
    if "split" in config and not any(o.lstrip("+").startswith("task.split=") for o in overrides):
        config["split"] = "all"
    task = load_task(config)
    pilot = build_pilot(task, n, seed)
    count = write_jsonl(own["out"], [(record.instance, rule_of(task, record.instance)) for record in pilot])
    langs = len({record.instance.lang for record in pilot})
    summary = f"{count} instances ({langs} languages, n={n}, seed={seed})"
    print(f"wrote a PilotSet of {summary} of task {name} to {own['out']}")


if __name__ == "__main__":
    main()
