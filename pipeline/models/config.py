"""The ``model=`` config group: its schema and the typed :class:`~pipeline.models.ModelSpec` it becomes.

Every entry point that loads a model (``pipeline.sweep``, ``pipeline.transplant``,
``pipeline.inspect``, the benchmarks) reads ``conf/model/*.yaml`` through :func:`model_spec`, so
the keys, their defaults and their types are written once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from pipeline.cli import group_choices, mutable_twin, plain
from pipeline.confdir import CONF_DIR
from pipeline.errors import PipelineError
from pipeline.models import ModelSpec
from pipeline.models.tiny import TinySpec

TinySchema = mutable_twin(TinySpec)


@dataclass
class ModelSchema:
    """``conf/model/*.yaml`` (see :class:`~pipeline.models.ModelSpec`, which this becomes)."""

    name: str = MISSING
    path: Optional[str] = None  # noqa: UP045  (OmegaConf reads typing.Optional)
    dtype: str = "auto"
    device: str = "auto"
    revision: Optional[str] = None  # noqa: UP045
    tiny: Optional[TinySchema] = None  # noqa: UP045  # type: ignore[valid-type]
    gguf_file: Optional[str] = None  # noqa: UP045
    package: Optional[str] = None  # noqa: UP045
    cache_dir: Optional[str] = None  # noqa: UP045


def model_spec(node: DictConfig) -> ModelSpec:
    """The typed model spec of a ``model=`` config group choice (defaults: :class:`ModelSchema`)."""
    m = plain(OmegaConf.merge(OmegaConf.structured(ModelSchema), node))
    tiny = TinySpec(**m["tiny"]) if m["tiny"] else None
    return ModelSpec(
        name=m["name"], path=str(m["path"] or m["package"] or m["name"]), dtype=m["dtype"], device=m["device"],
        revision=m["revision"], tiny=tiny, gguf_file=m["gguf_file"], package=m["package"], cache_dir=m["cache_dir"],
    )


def named_model_spec(name: str, **overrides: str) -> ModelSpec:
    """The spec of ``model=<name>`` with ``model.<key>=<value>`` overrides, without composing a
    whole sweep config (for tools that only load a model: the benchmarks).

    Raises:
        PipelineError: no ``conf/model/<name>.yaml``.
    """
    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        raise PipelineError(f"model={name} is not a config of {path.parent}; choose one of: "
                            f"{', '.join(group_choices('model'))}")  # fmt: skip
    return model_spec(OmegaConf.merge(OmegaConf.load(path), overrides))
