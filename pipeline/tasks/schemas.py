"""The typed keys of every task: one OmegaConf structured schema per ``conf/task/<name>.yaml``.

A schema holds the keys and their types; the YAML file holds the values (the defaults, written
once there). Hydra composes a task as its schema under its YAML file (each file's defaults list
names ``<name>_schema``, registered here), so ``task.limit=abc`` or ``task.hux.path=...`` is
refused when the command line is read. :func:`task_config` applies the same schema to a task
config given as a plain mapping (``run.json``, tests, the Python API), so both routes check
alike. What a type cannot say (a language the benchmark has, a file that exists, ``limit >= 1``)
is the task classes' own check.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.confdir import CONF_DIR
from pipeline.errors import PipelineError

# Optional[...] rather than X | None: OmegaConf 2.3 reads only the typing form.


@dataclass
class HubSchema:
    """``task.hub``: the original dataset through ``datasets.load_dataset`` (``source=hub``)."""

    path: str = MISSING
    name: Optional[str] = None  # "{lang}" is replaced by each language
    split: str = MISSING
    revision: Optional[str] = None
    data_files: Any = None  # a path pattern, a list or a {split: files} mapping, as load_dataset takes
    cache_dir: Optional[str] = None


@dataclass
class XcopaHubSchema(HubSchema):
    """XCOPA's hub keys: its English translations and the original COPA besides the dataset."""

    english_name: str = MISSING
    english_data_files: Any = None
    copa_data_files: Any = None


@dataclass
class BenchmarkSchema:
    """The keys every built-in benchmark has (:class:`pipeline.tasks.common.BuiltinTask`)."""

    name: str = MISSING
    source: str = MISSING
    split: str = MISSING
    langs: list[str] = MISSING
    prompt: str = MISSING
    groups: Optional[dict[str, list[str]]] = None
    limit: Optional[int] = None
    pilot_size: int = MISSING
    seed: int = MISSING
    hub: HubSchema = field(default_factory=HubSchema)


@dataclass
class MultilingualSchema(BenchmarkSchema):
    """A multilingual benchmark (target = a language, source = the pivot): MKQA."""

    pivot: str = MISSING


@dataclass
class ReleaseSchema(MultilingualSchema):
    """XNLI and XQuAD: also readable from the authors' released files under ``root``."""

    root: Optional[str] = None


@dataclass
class XcopaSchema(MultilingualSchema):
    question_lang: str = MISSING
    hub: XcopaHubSchema = field(default_factory=XcopaHubSchema)


@dataclass
class CulturalSchema(BenchmarkSchema):
    """A cultural benchmark (target = English, source = the culture's language)."""

    translations: Optional[str] = None  # JSONL of source prompts
    countries: Optional[dict[str, str]] = None  # country -> language, added to the task's table


@dataclass
class GlobalOpinionQaSchema(CulturalSchema):
    root: Optional[str] = None
    min_top_prob: float = MISSING


@dataclass
class CulturalBenchSchema(CulturalSchema):
    variant: str = MISSING


@dataclass
class JsonlSchema:
    name: str = MISSING
    path: Optional[str] = MISSING
    groups: Optional[dict[str, list[str]]] = None


@dataclass
class SampleSchema:
    name: str = MISSING
    subsets: list[str] = MISSING
    groups: Optional[dict[str, list[str]]] = None


SCHEMAS: dict[str, type] = {
    "xnli": ReleaseSchema,
    "xquad": ReleaseSchema,
    "mkqa": MultilingualSchema,
    "xcopa": XcopaSchema,
    "globalopinionqa": GlobalOpinionQaSchema,
    "culturalbench": CulturalBenchSchema,
    "jsonl": JsonlSchema,
    "sample": SampleSchema,
}
"""Task name -> its schema; ``conf/task/<name>.yaml`` starts with ``defaults: [<name>_schema, _self_]``."""

for _name, _schema in SCHEMAS.items():
    ConfigStore.instance().store(group="task", name=f"{_name}_schema", node=_schema)


@functools.cache
def _defaults(name: str) -> Any:
    path = CONF_DIR / "task" / f"{name}.yaml"
    try:
        values = OmegaConf.load(path)
    except OSError as err:
        raise PipelineError(f"task {name}: cannot read its config {path} ({err})") from err
    values.pop("defaults", None)
    return values


def task_defaults(name: str) -> dict[str, Any]:
    """``conf/task/<name>.yaml``'s values as a fresh plain mapping (callers may change it)."""
    return OmegaConf.to_container(_defaults(name))


def _check_keys(name: str, schema: type, cfg: Mapping[str, Any], below: str | None = None) -> None:
    """One line naming a key the schema does not have, and the valid ones at that level."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in cfg.items():
        if key not in fields:
            if below is None:
                raise PipelineError(f"task {name}: unknown key {key!r}; valid keys: {', '.join(fields)}")
            raise PipelineError(f"task {name}: unknown task.{below} key {key!r}; valid: {', '.join(fields)}")
        nested = fields[key].default_factory
        if dataclasses.is_dataclass(nested) and isinstance(value, Mapping):
            _check_keys(name, nested, value, below=key if below is None else f"{below}.{key}")


def task_config(name: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config of task ``name``: its YAML file's values overridden by ``cfg``, typed by its schema.

    Raises:
        PipelineError: a key the task does not have (naming the valid ones) or a value of the
            wrong type (naming the key), in one line.
    """
    schema = SCHEMAS[name]
    _check_keys(name, schema, cfg)
    base = OmegaConf.merge(OmegaConf.structured(schema), _defaults(name))
    try:
        merged = OmegaConf.merge(base, dict(cfg))
    except OmegaConfBaseException as err:
        raise PipelineError(_type_error(name, schema, base, cfg, err)) from err
    return OmegaConf.to_container(merged)


def _type_error(name: str, schema: type, base: Any, cfg: Mapping[str, Any], err: OmegaConfBaseException) -> str:
    """One line naming the key whose value does not fit its type (OmegaConf does not always name it)."""
    key = getattr(err, "full_key", "") or next((k for k in cfg if not _fits(base, k, cfg[k])), "")
    if key in cfg:
        hint = typing.get_type_hints(schema)[key]
        hint = hint.__name__ if typing.get_origin(hint) is None and isinstance(hint, type) else str(hint).replace("typing.", "")
        return f"task {name}: task.{key}={cfg[key]!r} is not of type {hint}"
    return f"task {name}: " + (f"task.{key}: " if key else "") + str(err).splitlines()[0]


def _fits(base: Any, key: str, value: Any) -> bool:
    try:
        OmegaConf.merge(base, {key: value})
    except OmegaConfBaseException:
        return False
    return True
