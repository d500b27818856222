"""Shared pieces of the command-line entry points (sweep, transplant, inspect).

Hydra's own messages for a mistyped group choice or key span several lines and suggest ``+key=``,
which then composes silently (the key is ignored). These checks run before Hydra and turn each
into one ``error:`` line naming the choice or key and the valid ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.errors import PipelineError



def _conf_dir() -> Path:
    """The Hydra configs: ``pipeline/conf`` in an installed wheel, the checkout's ``conf/`` otherwise.

    ``pyproject.toml`` maps the top-level ``conf/`` (their only source) to the ``pipeline.conf``
    package, so a non-editable ``pip install`` carries them; an editable install and a plain
    checkout read ``conf/`` beside the package.
    """
    here = Path(__file__).resolve().parent
    installed = here / "conf"
    return installed if (installed / "config.yaml").is_file() else here.parent / "conf"


CONF_DIR = _conf_dir()
GROUPS = ("model", "task", "grid", "cluster", "experiment")
"""Config groups; ``experiment`` (``+experiment=main/xnli``, the paper's runs) is not in the defaults."""


def check_group_choices(argv: list[str]) -> None:
    """One clear line for an unknown config-group choice (Hydra's own error is several lines)."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in GROUPS:
            continue
        valid = sorted(p.relative_to(CONF_DIR / key).with_suffix("").as_posix() for p in (CONF_DIR / key).rglob("*.yaml"))
        for choice in value.split(","):
            if choice and choice not in valid:
                raise PipelineError(f"unknown {key} '{choice}'; valid: {', '.join(valid)}")


def check_override_keys(argv: list[str], config_name: str = "config") -> None:
    """One clear line for an override of a key the composed config does not have.

    ``granulrity=ffn`` and ``+granulrity=ffn`` alike are refused, naming the valid keys at that
    level. The config is composed with the command line's group choices (every choice of a swept
    group), so ``task.path`` is valid exactly when the chosen task has it. Keys added with ``+``
    below ``task`` are left to the task, which checks its own keys.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    overrides = []
    for arg in argv:
        if arg.startswith("-"):
            continue
        try:
            overrides += parser.parse_overrides([arg])
        except Exception:  # noqa: BLE001  a malformed override: Hydra reports it itself
            continue
    keyed = [o for o in overrides if o.key_or_group not in GROUPS and not o.key_or_group.startswith("hydra")
             and "/" not in o.key_or_group and o.package is None]  # fmt: skip
    if not keyed or GlobalHydra.instance().is_initialized():
        return
    choices = {
        ("+" if o.is_add() else "") + o.key_or_group: (
            list(o.sweep_string_iterator()) if o.is_sweep_override() else [str(o.value())]
        )
        for o in overrides
        if o.key_or_group in GROUPS and not o.is_delete()
    }
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        trees = [
            OmegaConf.to_container(compose(config_name, overrides=[f"{g}={c}" for g, c in zip(choices, combo)]))
            for combo in itertools.product(*choices.values())
        ]
    for o in keyed:
        if (o.is_add() or o.is_force_add()) and o.key_or_group.startswith("task."):
            continue
        problems = [_missing_key(tree, o.key_or_group) for tree in trees]
        if all(problems):
            raise PipelineError(problems[0])


def _missing_key(tree: dict, key: str) -> str | None:
    """Why ``key`` (dotted) is not in ``tree``; None when it is, or when a level is not a mapping."""
    node, parents = tree, []
    for part in key.split("."):
        if not isinstance(node, dict):
            return None  # below a null/list/value: the config's own checks decide
        if part not in node:
            where = f" under '{'.'.join(parents)}'" if parents else ""
            return f"unknown config key '{key}'{where}; valid: {', '.join(sorted(node))}"
        node, parents = node[part], [*parents, part]
    return None


@contextmanager
def config_errors() -> Iterator[None]:
    """Turns an OmegaConf error (a missing mandatory value, a bad key) into a one-line PipelineError."""
    try:
        yield
    except OmegaConfBaseException as err:
        raise PipelineError(f"config: {err}") from err


def check_overrides(argv: list[str], config_name: str) -> None:
    """Composes ``config_name`` with ``argv`` once, so a value of the wrong type is one ``error:`` line.

    For the typed configs (e.g. ``report.figures=maybe`` against ``conf/reduce.yaml``): Hydra would
    print its composition error over several lines and exit 1.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    if GlobalHydra.instance().is_initialized():
        return
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        try:
            compose(config_name, overrides=[a for a in argv if not a.startswith("-")])
        except (HydraException, OmegaConfBaseException) as err:
            message = str(err).split("\nSet the environment variable HYDRA_FULL_ERROR")[0]
            raise PipelineError(f"bad option: {message}") from err
