"""Shared pieces of the command-line entry points (sweep, transplant, inspect)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf.errors import OmegaConfBaseException

from pipeline.errors import PipelineError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("model", "task", "grid", "cluster")


def check_group_choices(argv: list[str]) -> None:
    """One clear line for an unknown config-group choice (Hydra's own error is several lines)."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in GROUPS:
            continue
        valid = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
        for choice in value.split(","):
            if choice and choice not in valid:
                raise PipelineError(f"unknown {key} '{choice}'; valid: {', '.join(valid)}")


@contextmanager
def config_errors() -> Iterator[None]:
    """Turns an OmegaConf error (a missing mandatory value, a bad key) into a one-line PipelineError."""
    try:
        yield
    except OmegaConfBaseException as err:
        raise PipelineError(f"config: {err}") from err
