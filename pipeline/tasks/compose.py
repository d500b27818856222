"""Command lines of the task tools: ``task=NAME task.<key>=VALUE ... key=VALUE`` -> a task config.

``pipeline.export`` and ``pipeline.pilot`` take the sweep's task syntax without being full Hydra
apps: ``task=NAME`` is checked against the registry first (an unknown name is one line listing
the valid ones, not a Hydra stack trace), then ``conf/task/<name>.yaml`` is composed with the
``task.*`` overrides through Hydra's compose API, so the overrides mean exactly what they mean
for ``pipeline.sweep``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.cli import CONF_DIR
from pipeline.errors import PipelineError, one_line

def parse_argv(
    argv: Sequence[str], own_keys: Sequence[str], usage: str
) -> tuple[str | None, list[str], dict[str, str]]:
    """Splits ``key=value`` arguments into the task name, ``task.*`` overrides and the tool's own keys.

    Args:
        argv: the command-line arguments (without the program name).
        own_keys: keys the tool itself takes (e.g. ``out``).
        usage: the usage line shown with errors.

    Returns:
        (task name or None, Hydra overrides for the task group, {own key: raw value}).

    Raises:
        PipelineError: an argument that is not ``key=value`` or names an unknown key.
    """
    name: str | None = None
    overrides: list[str] = []
    own: dict[str, str] = {}
    for argument in argv:
        key, sep, value = argument.partition("=")
        bare = key.lstrip("+~")
        if bare == "task" and sep:
            name = value
        elif bare.startswith("task.") and (sep or key.startswith("~")):
            overrides.append(argument)
        elif key in own_keys and sep:
            own[key] = value
        else:
            raise PipelineError(f"unexpected argument {argument!r}; usage: {usage}")
    return name, overrides, own


def compose_task(name: str | None, overrides: Sequence[str]) -> dict[str, Any]:
    """Composes ``conf/task/<name>.yaml`` with ``task.*`` overrides into a plain mapping.

    Raises:
        PipelineError: no or an unknown task name (listing the valid ones), or an override
            Hydra rejects (e.g. a key the task does not have), as one line.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from pipeline.tasks import TASK_NAMES

    if name not in TASK_NAMES:
        given = "no task given" if name is None else f"unknown task {name!r}"
        raise PipelineError(f"{given}; valid tasks: {', '.join(TASK_NAMES)} (task=NAME)")
    if not (CONF_DIR / "task" / f"{name}.yaml").is_file():
        raise PipelineError(f"task {name}: config file not found: {CONF_DIR / 'task' / f'{name}.yaml'}")
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None, job_name="pipeline"):
            cfg = compose(overrides=[f"+task={name}", *overrides])
        task = OmegaConf.to_container(cfg.task, resolve=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise PipelineError(f"task {name}: {one_line(str(err))}") from None
    assert isinstance(task, Mapping)
    return dict(task)


def positive_int(value: str, key: str) -> int:
    """Parses ``key=value`` as an integer >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise PipelineError(f"{key} must be an integer, got {value!r}") from None
    if number < 1:
        raise PipelineError(f"{key} must be >= 1, got {number}")
    return number
