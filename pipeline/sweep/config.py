"""Typed sweep configuration, built once from the Hydra config at the edge.

:class:`SweepSchema` is the sweep config's structured schema, registered with Hydra's ConfigStore
as ``sweep_schema`` and first in ``conf/config.yaml``'s defaults: Hydra itself then refuses a key
that is not in it (with or without ``+``) and a value of the wrong type (``max_new_tokens=abc``,
``grid.pairs=[[0.5,1]]``, ``cluster.num_workers=two``); ``pipeline.cli`` turns either into one
``error:`` line before the run. What remains here are the checks types cannot say: ranges,
choices, the granularity list.

Below :func:`sweep_config` nothing reads Hydra/OmegaConf objects: workers, the engine and the
shard writer receive these frozen dataclasses (picklable, so they travel to Ray workers as-is).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, List, Optional  # noqa: UP035  (OmegaConf's structured configs read typing generics)

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from pipeline.transplant.engine import EngineOptions
from pipeline.errors import PipelineError
from pipeline.sweep.plan import GridSpec
from pipeline.instances import Instance
from pipeline.models import ModelSpec
from pipeline.models.config import ModelSchema, model_spec
from pipeline.cli import mutable_twin, plain
from pipeline.store import is_uri
from pipeline.models.layouts import GRANULARITIES, check_granularity
from pipeline.tasks import schemas as _task_schemas  # noqa: F401  registers each task's schema with Hydra

CLUSTER_KINDS = ("local", "inprocess")


@dataclass(frozen=True)
class ClusterSpec:
    """Where shards run.

    Attributes:
        kind: ``local`` starts (or, with RAY_ADDRESS set, joins) a Ray cluster; ``inprocess`` runs
            shards in the driver process (debugging, profiling).
        num_workers: worker actors; None = as many as the live nodes hold (one per GPU on a CUDA run,
            else CPUs // cpus_per_worker per node).
        cpus_per_worker: CPUs each worker holds (on CPU, also its torch thread count).
        max_restarts: how often Ray restarts a dead worker actor.
        max_task_retries: how often a shard is retried after its worker died; -1 (the default) =
            until the worker itself is given up (``max_restarts``): Ray counts every failed call
            to a worker whose node just died against this, and can spend a small budget before
            the worker has been restarted on another node.
        num_gpus: logical GPUs to declare when this process starts a local Ray (tests); None = detect.
        stall_timeout_s: how long the driver waits, with no shard finishing, on a worker that is
            not running (pending for resources, restarting after its node died) before it stops
            the run with one line naming what the worker waits for (a re-run resumes).
        shard_timeout_s: a worker on one shard for longer than this is taken to hang and the run
            stops with one line naming the shard (a re-run resumes); None: no limit.
        allow_unauthenticated: let the local cluster a sweep starts run without token
            authentication when the environment says ``RAY_AUTH_MODE=disabled`` (refused otherwise).
    """

    kind: str = "local"
    num_workers: int | None = None
    cpus_per_worker: int = 1
    max_restarts: int = 3
    max_task_retries: int = -1
    num_gpus: int | None = None
    stall_timeout_s: int = 600
    shard_timeout_s: int | None = None
    allow_unauthenticated: bool = False

    def __post_init__(self):
        if self.kind not in CLUSTER_KINDS:
            raise PipelineError(f"unknown cluster '{self.kind}'; valid: {', '.join(CLUSTER_KINDS)}")
        for name, value, least in (
            ("num_workers", self.num_workers, 1),
            ("cpus_per_worker", self.cpus_per_worker, 1),
            ("max_restarts", self.max_restarts, -1),  # -1: Ray's "restart forever"
            ("max_task_retries", self.max_task_retries, -1),
            ("num_gpus", self.num_gpus, 0),
            ("stall_timeout_s", self.stall_timeout_s, 1),
            ("shard_timeout_s", self.shard_timeout_s, 1),
        ):
            if value is not None and value < least:  # the type is the schema's (SweepSchema)
                raise PipelineError(f"cluster.{name} must be >= {least}, got {value!r}")


@dataclass(frozen=True)
class DebugSpec:
    """Fault injection for tests: crash a worker once on a shard, hang on one, or fake out-of-memory."""

    crash_on_shard: int | None = None
    hang_on_shard: int | None = None
    crash_marker: str | None = None  # file created at the crash, so it happens once
    simulate_oom_above: int | None = None


@dataclass(frozen=True)
class SweepConfig:
    """Everything a sweep needs, validated."""

    model: ModelSpec
    task: dict[str, Any]
    granularities: tuple[str, ...]
    grid: GridSpec
    engine: EngineOptions
    shard_size: int
    out_dir: str  # a local path (absolute) or a store URI (pipeline.store)
    overwrite: bool = False
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    debug: DebugSpec = field(default_factory=DebugSpec)
    features: bool = False  # write per-instance selector features (pipeline.select)

    def result_identity(self, instances: Sequence[Instance], revision: str | None = None) -> dict[str, Any]:
        """The settings that determine the rows (not where or how fast they are computed).

        ``instances`` is the task's instance set: its content (ids, prompts, answers, ...) and
        order are hashed in, so an edited or grown task file is another run, never a silent mix
        of stale and new shards in one out_dir.
        """
        model = asdict(self.model)  # device kind and dtype resolved (ModelSpec.for_run): a CPU run is not a GPU run
        model.pop("cache_dir")
        if revision is not None:  # what model.revision resolved to: the checkpoint's commit or content hash
            model["resolved_revision"] = revision
        content = json.dumps([asdict(i) for i in instances], sort_keys=True, ensure_ascii=False, default=list)
        return {
            "model": model,
            "task": self.task,
            "instances": hashlib.sha256(content.encode()).hexdigest(),
            "granularities": list(self.granularities),
            "grid": asdict(self.grid),
            "max_new_tokens": self.engine.max_new_tokens,
            "decoding": self.engine.decoding,
        } | ({"features": True} if self.features else {})

    def config_hash(self, instances: Sequence[Instance], revision: str | None = None) -> str:
        """A short hash of :meth:`result_identity`; every row and run.json carry it."""
        blob = json.dumps(self.result_identity(instances, revision), sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


ClusterSchema = mutable_twin(ClusterSpec)
DebugSchema = mutable_twin(DebugSpec)


@dataclass
class GridSchema:
    """``conf/grid/*.yaml`` (see :class:`~pipeline.sweep.plan.GridSpec`)."""

    kind: str = MISSING
    pairs: Optional[List[List[int]]] = None  # noqa: UP006, UP045
    attention: Optional[str] = None  # noqa: UP045
    selector: Optional[str] = None  # noqa: UP045


@dataclass
class SweepSchema:
    """The types of ``conf/config.yaml``'s keys; their values and comments live in the YAML files only.

    ``task`` is typed by the chosen task's own schema (:mod:`pipeline.tasks.schemas`, named in the
    defaults list of ``conf/task/<name>.yaml``): the tasks' keys differ, so the field takes any.
    ``granularity`` is a name or a list of names.
    """

    model: ModelSchema = MISSING
    task: Any = MISSING
    grid: GridSchema = MISSING
    cluster: ClusterSchema = MISSING  # type: ignore[valid-type]
    granularity: Any = MISSING
    max_new_tokens: int = MISSING
    decoding: str = MISSING
    chunk_size: int = MISSING
    share_layers: bool = MISSING
    instance_batch: int = MISSING
    shard_size: int = MISSING
    out_dir: str = MISSING
    overwrite: bool = MISSING
    features: bool = MISSING
    debug: DebugSchema = MISSING  # type: ignore[valid-type]


ConfigStore.instance().store(name="sweep_schema", node=SweepSchema)


def _granularities(value) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value)
    for g in items:
        check_granularity(g)
    if not items or len(set(items)) != len(items):
        raise PipelineError(f"granularity must list each of {', '.join(GRANULARITIES)} at most once, got {items}")
    return tuple(items)


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise PipelineError(f"{name} must be >= 1, got {value!r}")
    return value


RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
"""Set by Ray's job supervisor in the environment of a ``ray job submit`` entrypoint."""
RESULTS_ROOT_ENV = "XT_RESULTS"
"""Where a relative out_dir resolves under ``ray job submit`` (the experiments' results root, too)."""


def resolve_out_dir(value: str) -> str:
    """The out_dir as the sweep uses it: a store URI as given, a local path made absolute.

    Under ``ray job submit`` the driver's working directory is Ray's temporary copy of
    ``--working-dir`` (under the session's temp folder, deleted with the session), so a relative
    out_dir there would put the results where nobody finds them. It resolves against
    ``$XT_RESULTS`` when that is set, and is refused otherwise.
    """
    if is_uri(value):
        return value
    path = Path(value).expanduser()
    if not path.is_absolute() and os.environ.get(RAY_JOB_ENV):
        root = os.environ.get(RESULTS_ROOT_ENV)
        if not root:
            raise PipelineError(
                f"out_dir={value} is relative and this sweep runs as a Ray job, whose working directory "
                f"({Path.cwd()}) is Ray's temporary copy, deleted with the session: pass an absolute out_dir "
                f"on a disk that outlives the job, a storage URI (s3://bucket/prefix), or set {RESULTS_ROOT_ENV}=DIR "
                "in the job's environment (--runtime-env-json '{\"env_vars\": {...}}') to resolve relative out_dirs there"
            )
        path = Path(root).expanduser() / path
    return str(path.resolve())


def sweep_config(cfg: DictConfig) -> SweepConfig:
    """Builds the typed config from the composed Hydra config (the only place that reads it)."""
    try:
        return _sweep_config(cfg)
    except TypeError as err:  # an unknown key in a config group, e.g. cluster.num_worker
        raise PipelineError(f"config: {err}") from err


def _sweep_config(cfg: DictConfig) -> SweepConfig:
    model = model_spec(cfg.model)
    g = plain(cfg.grid)
    grid = GridSpec(
        kind=g["kind"], pairs=tuple(tuple(p) for p in (g.get("pairs") or ())), attention=g.get("attention"),
        selector=str(Path(str(g["selector"])).expanduser().resolve()) if g.get("selector") else None,
    )
    c = plain(cfg.cluster)
    d = plain(cfg.debug)
    engine = EngineOptions(
        max_new_tokens=_positive("max_new_tokens", cfg.max_new_tokens),
        chunk_size=_positive("chunk_size", cfg.chunk_size),
        share_layers=cfg.share_layers,
        instance_batch=_positive("instance_batch", cfg.instance_batch),
        simulate_oom_above=d.get("simulate_oom_above"),
        decoding=cfg.decoding,
    )
    return SweepConfig(
        model=model,
        task=plain(cfg.task),
        granularities=_granularities(plain(cfg.granularity)),
        grid=grid,
        engine=engine,
        shard_size=_positive("shard_size", cfg.shard_size),
        out_dir=resolve_out_dir(str(cfg.out_dir)),
        overwrite=bool(cfg.overwrite),
        cluster=ClusterSpec(**c),
        debug=DebugSpec(**d),
        features=cfg.features,
    )
