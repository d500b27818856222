"""Shared pieces of the command-line entry points: every ``python -m pipeline.*`` is a Hydra app.

Hydra's own messages for a mistyped group choice, key or value span several lines (and for a key
suggest ``+key=``). These checks run before Hydra and turn each into one ``error:`` line naming
the choice, key or value and the valid ones (:func:`run_app` runs them, then the app).
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.confdir import CONF_DIR
from pipeline.errors import PipelineError, one_line


GROUPS = ("model", "task", "grid", "cluster", "experiment")
"""Config groups; ``experiment`` (``+experiment=main/xnli``, the paper's runs) is not in the defaults."""


def group_choices(group: str) -> list[str]:
    """The choices of a config group: its YAML files, nested ones as ``main/xnli``."""
    folder = CONF_DIR / group
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))


def check_group_choices(argv: list[str]) -> None:
    """One clear line for an unknown config-group choice (Hydra's own error is several lines)."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in GROUPS:
            continue
        valid = group_choices(key)
        for choice in value.split(","):
            if choice and choice not in valid:
                raise PipelineError(f"unknown {key} '{choice}'; valid: {', '.join(valid)}")


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


def hydra_overrides(argv: list[str]) -> list[str]:
    """The overrides among ``argv``, as Hydra's own command-line parser separates them from its flags."""
    from hydra._internal.utils import get_args_parser  # the parser @hydra.main itself uses

    known, unknown = get_args_parser().parse_known_args(argv)
    if unknown:  # Hydra's own parse would stop here with its usage text
        raise PipelineError(
            f"unrecognized arguments: {' '.join(unknown)} (Hydra's flags such as -m or --cfg go before the key=value "
            "overrides)"
        )
    return list(known.overrides)


def check_overrides(argv: list[str], config_name: str = "config") -> None:
    """Composes ``config_name`` with ``argv`` as Hydra will, so a bad key or value is one ``error:`` line.

    Against the typed schemas (``SweepSchema``, ``ReduceConfig``, each task's), ``max_new_tokens=abc``
    or ``report.figures=maybe`` fail Hydra's composition, which would print several lines and exit
    1; ``granulrity=ffn`` and ``+granulrity=ffn`` alike are refused naming the valid keys at that
    level. A multirun sweep (``a=1,2 b=x,y``, group choices included) is composed once per value of
    each swept key (the others at their first value), so every value is checked without composing
    the whole product; each variant is composed once, twice when it adds keys with ``+``. Keys
    added with ``+`` below ``task`` are the task's to check (:mod:`pipeline.tasks.schemas`).
    """
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if GlobalHydra.instance().is_initialized():
        return
    parser = OverridesParser.create()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        for parsed in _variants(hydra_overrides(argv), parser):
            adds = [o for _, o in parsed if _keyed(o) and (o.is_add() or o.is_force_add())
                    and not o.key_or_group.startswith("task.")]  # fmt: skip
            tree = _compose(config_name, [arg for arg, o in parsed if o not in adds], parsed)
            for o in adds:
                problem = _missing_key(tree, o.key_or_group)
                if problem:
                    raise PipelineError(problem)
            if adds:
                _compose(config_name, [arg for arg, _ in parsed], parsed)  # the added values against their types


def _variants(overrides: list[str], parser) -> list[list[tuple[str, object]]]:
    """The override lists to compose, each override with its parse: every swept key at its first
    value, then each other value in turn."""
    fixed, swept = [], []
    for arg in overrides:
        override = _parse(parser, arg)
        if override.is_sweep_override():
            prefix = "+" if override.is_add() else "++" if override.is_force_add() else ""
            values = [f"{prefix}{override.key_or_group}={v}" for v in override.sweep_string_iterator()]
            swept.append([(value, _parse(parser, value)) for value in values])
        else:
            fixed.append((arg, override))
    firsts = [values[0] for values in swept]
    others = [[*firsts[:k], v, *firsts[k + 1 :]] for k, values in enumerate(swept) for v in values[1:]]
    return [[*fixed, *variant] for variant in [firsts, *others]]


def _parse(parser, arg: str):
    """Hydra's parse of one override; a malformed one as one line."""
    try:
        return parser.parse_overrides([arg])[0]
    except Exception as err:  # noqa: BLE001  Hydra's grammar errors share no base class
        first = str(err).strip().splitlines()[1:2] or [str(err)]
        raise PipelineError(f"bad option {arg!r}: {first[0].strip()} (expected key=value)") from err


def _keyed(override) -> bool:
    """An override of a config key (not a group choice, Hydra's own settings or a package)."""
    key = override.key_or_group
    return key not in GROUPS and not key.startswith("hydra") and "/" not in key and override.package is None


def _compose(config_name: str, overrides: list[str], parsed: list) -> dict:
    """The composed config as plain containers; a failure as one line, naming an unknown key's valid ones."""
    from hydra import compose
    from hydra.errors import HydraException

    try:
        return OmegaConf.to_container(compose(config_name, overrides=overrides))
    except (HydraException, OmegaConfBaseException) as err:
        failure = err
    keys = [o.key_or_group for _, o in parsed if _keyed(o) and not o.is_add() and not o.is_force_add()]
    if keys:  # an unknown key: name the valid ones at its level, from the config of these group choices
        try:
            groups = OmegaConf.to_container(compose(config_name, overrides=[a for a, o in parsed if not _keyed(o)]))
        except (HydraException, OmegaConfBaseException):
            groups = None
        for key in keys if groups is not None else []:
            problem = _missing_key(groups, key)
            if problem:
                raise PipelineError(problem) from failure
    raise PipelineError(f"bad option: {_composition_error(failure)}") from failure


def _composition_error(err: Exception) -> str:
    """Hydra's composition message without its hints and OmegaConf's type bookkeeping lines."""
    text = str(err) + (f"\n{err.__cause__}" if err.__cause__ and str(err.__cause__) not in str(err) else "")
    lines = text.split("\nSet the environment variable HYDRA_FULL_ERROR")[0].splitlines()
    kept = [line.strip() for line in lines if not line.strip().startswith(("reference_type=", "object_type="))]
    return "; ".join(line for line in kept if line)


FLAGS_WITH_VALUE = ("--cfg", "-c", "--package", "-p", "--info", "-i", "--config-name", "-cn", "--config-path", "-cp",
                    "--config-dir", "-cd", "--experimental-rerun")  # fmt: skip


def hydra_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` split into Hydra's flags (``--cfg job``, ``-m``, ...), which Hydra takes only before
    the overrides, and the ``key=value`` overrides, each in the order given."""
    flags, overrides, k = [], [], 0
    while k < len(argv):
        arg = argv[k]
        if arg.startswith("-"):
            takes = arg in FLAGS_WITH_VALUE and k + 1 < len(argv) and "=" not in argv[k + 1]
            flags.extend(argv[k : k + 1 + takes])
            k += 1 + takes
            continue
        overrides.append(arg)
        k += 1
    return flags, overrides


def join_repeated(argv: list[str], key: str) -> list[str]:
    """Joins repeated ``key=`` arguments into one ``key=[...]`` list override (Hydra keeps only the last).

    ``run=a run=b run=[c,d]`` -> ``run=['a','b','c','d']``: values are quoted, so any path survives
    Hydra's override grammar; ``[...]`` lists are read by Hydra's own parser. Every other argument
    passes through unchanged.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values: list[str] = []
    rest: list[str] = []
    for arg in argv:
        name, sep, value = arg.partition("=")
        if name.lstrip("+") != key or not sep:
            rest.append(arg)
        elif value.startswith("["):
            try:
                values += [str(v) for v in OverridesParser.create().parse_override(arg).value()]
            except Exception as err:  # noqa: BLE001  Hydra's grammar errors share no base class
                raise PipelineError(f"bad {key} list {value!r}: {one_line(str(err))}") from err
        elif len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:  # already quoted, as out_dir='s3://...?a=b'
            values.append(value[1:-1])
        else:
            values.append(value)
    return [*rest, f"{key}=[" + ",".join(_quoted(key, v) for v in values) + "]"] if values else rest


def _quoted(key: str, value: str) -> str:
    for quote in ("'", '"'):
        if quote not in value and not value.endswith("\\"):
            return quote + value + quote
    raise PipelineError(f"{key}={value}: a value with both kinds of quotes (or a trailing backslash) is not supported")


def run_app(app: Callable[[], None], argv: list[str] | None, config_name: str, required: tuple[str, ...] = ()) -> None:
    """Runs the Hydra app ``app`` (a ``@hydra.main`` function) on ``argv`` (default: the command line).

    Before Hydra: a group choice, key or value it would refuse over several lines becomes one
    ``error:`` line (:func:`check_group_choices`, :func:`check_overrides`), and a group in
    ``required`` with no choice given is named with its valid choices. ``argv`` stands in for ``sys.argv[1:]`` (tests, and entry points that rewrite it).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    for group in required:
        if not any(a.lstrip("+").startswith(f"{group}=") for a in args):
            raise PipelineError(f"no {group} given; valid: {', '.join(group_choices(group))} ({group}=NAME)")
    check_group_choices(args)
    check_overrides(args, config_name=config_name)
    saved = sys.argv
    sys.argv = [saved[0], *args]
    try:
        app()
    finally:
        sys.argv = saved


def mutable_twin(spec: type) -> type:
    """A non-frozen dataclass with ``spec``'s fields, types and defaults: its Hydra schema.

    The specs are frozen (they travel to Ray workers and must not change), and OmegaConf makes a
    frozen dataclass's node read-only, which Hydra cannot merge a YAML file into.
    """
    hints = typing.get_type_hints(spec)
    return dataclasses.make_dataclass(
        f"{spec.__name__}Schema",
        [(f.name, hints[f.name], dataclasses.field(default=f.default, default_factory=f.default_factory))
         for f in dataclasses.fields(spec)],  # fmt: skip
    )


def plain(node) -> typing.Any:
    """A composed config node as plain Python (dicts, lists, scalars); anything else as it is."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node
