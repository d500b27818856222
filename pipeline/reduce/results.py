"""A sweep's rows, loaded once into dense arrays indexed by (instance, source layer, target layer).

The reduce stage never loops over rows in Python: one streaming scan of a run directory's Parquet
shards (``pyarrow.dataset``, a batch at a time) scatters every row into per-unit numpy arrays, and
every metric of the paper is then an array reduction (``pipeline.reduce.metrics``). A *unit* is one
(run directory, model, task, granularity): the rows one report section covers.

The checks that make a run unusable raise :class:`PipelineError` with one line: a directory with no
shards, rows from more than one ``config_hash``, a row whose (instance, config) appears twice, a
layer index outside 0..N-1, and config rows of an instance that has no vanilla row at the same
granularity (every gain is measured against vanilla).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from pipeline.errors import PipelineError
from pipeline.rundir import FEATURES_DIR, read_run
from pipeline.store import Store

BASE_COLUMNS = (
    "instance_id", "lang", "response_lang", "granularity", "source_layer", "target_layer",
    "correct", "n_new_tokens", "logprob_sum", "entropy_first", "entropy_mean",
    "model", "task", "n_layers", "config_hash",
)  # fmt: skip
"""Columns of ``pipeline.schema.ROW_SCHEMA`` the reduce reads; ``response`` only for language ID."""

BATCH_ROWS = 262_144

"""Folder of a run directory holding per-instance selector features (``pipeline.select``), not rows."""

ConsistencyFn = Callable[[pa.Array, pa.Array], np.ndarray]
"""(response, response_lang) columns of a batch -> bool array: response in the expected language."""


@dataclass(frozen=True)
class RunInfo:
    """One run directory and what its ``run.json`` (optional) says about it.

    Attributes:
        path: the run directory.
        meta: the parsed ``run.json``, or ``{}`` when the sweep did not write one.
        groups: resource groups (paper Table 3: High/Mid/Low) -> languages; may be empty.
        prompt: ``config.task.prompt`` (e.g. ``"cot"``) or None when unknown.
        split: ``config.task.split`` or None when unknown.
    """

    path: str
    meta: dict
    groups: dict[str, list[str]]
    prompt: str | None
    split: str | None

    @property
    def variant(self) -> str | None:
        """The prompt variant a report names (e.g. "cot"); None for the default prompt."""
        return None if self.prompt in (None, "default") else self.prompt


@dataclass
class Outcomes:
    """Per-row outcomes laid out densely; shape ``S`` is ``(n_instances,)`` for vanilla rows and
    ``(n_instances, N, N)`` = [instance, source layer, target layer] for transplanted configs.

    Attributes:
        present: a row exists (partial grids and interrupted sweeps leave holes).
        correct: the task's scoring rule accepted the response (False where absent).
        entropy_first / entropy_mean: entropy (nats) of the first / mean over decode steps; NaN
            where absent or null.
        perplexity: exp(-logprob_sum / n_new_tokens); NaN where absent or n_new_tokens == 0.
        empty: n_new_tokens == 0 (these rows are excluded from perplexity and counted).
        consistent: the response's language ID equals ``response_lang``; None when not computed.
    """

    present: np.ndarray
    correct: np.ndarray
    entropy_first: np.ndarray
    entropy_mean: np.ndarray
    perplexity: np.ndarray
    empty: np.ndarray
    consistent: np.ndarray | None

    @classmethod
    def allocate(cls, shape: tuple[int, ...], with_consistency: bool) -> Outcomes:
        nan = lambda: np.full(shape, np.nan, dtype=np.float64)  # noqa: E731
        return cls(
            present=np.zeros(shape, bool),
            correct=np.zeros(shape, bool),
            entropy_first=nan(),
            entropy_mean=nan(),
            perplexity=nan(),
            empty=np.zeros(shape, bool),
            consistent=np.zeros(shape, bool) if with_consistency else None,
        )


@dataclass
class UnitResults:
    """All rows of one (run, model, task, granularity), as dense arrays.

    Attributes:
        instance_ids: [n_instances] instance ids, in the order of the first axis everywhere.
        lang: [n_instances] index into ``langs`` of each instance's language.
        langs: the unit's languages, sorted.
        vanilla: outcomes of the vanilla rows, shape (n_instances,).
        grid: outcomes of config (i, j) rows, shape (n_instances, N, N).
    """

    run: RunInfo
    model: str
    task: str
    granularity: str
    n_layers: int
    config_hash: str
    instance_ids: np.ndarray
    lang: np.ndarray
    langs: list[str]
    vanilla: Outcomes
    grid: Outcomes
    selected: np.ndarray | None = None  # [n_instances] learned selection correct (1/0), NaN = not covered
    selected_run: str | None = None  # the grid=selected run it comes from (see selected.attach_selections)
    selected_upper: np.ndarray | None = None  # [n_instances] vanilla or a config of this run is correct

    @property
    def n_instances(self) -> int:
        return len(self.instance_ids)

    def lang_mask(self, lang: str) -> np.ndarray:
        """[n_instances] bool: the instances of ``lang``."""
        return self.lang == self.langs.index(lang)


@dataclass
class _Accumulator:
    """Rows of one unit gathered batch by batch, before the instance count is known."""

    n_layers: int | None = None
    ids: dict[str, int] = field(default_factory=dict)
    langs: dict[int, str] = field(default_factory=dict)
    parts: list[dict[str, np.ndarray]] = field(default_factory=list)

    def codes(self, instance_id: pa.Array) -> np.ndarray:
        """Instance ids -> dense codes, assigning new codes in order of first appearance."""
        encoded = instance_id.dictionary_encode() if not pa.types.is_dictionary(instance_id.type) else instance_id
        lookup = np.array([self.ids.setdefault(v, len(self.ids)) for v in encoded.dictionary.to_pylist()], np.int32)
        return lookup[encoded.indices.to_numpy(zero_copy_only=False)]


def read_run_info(store: Store, groups_override: dict[str, list[str]] | None = None) -> RunInfo:
    """Reads the run's ``run.json`` if present; without it, groups are empty unless given in the config."""
    meta = read_run(store) or {}
    task_cfg = (meta.get("config") or {}).get("task") or {}
    groups = groups_override if groups_override else (meta.get("groups") or {})
    return RunInfo(
        path=store.describe(),
        meta=meta,
        groups={str(k): [str(x) for x in groups[k]] for k in sorted(groups, key=_group_order) if groups[k]},
        prompt=task_cfg.get("prompt") if isinstance(task_cfg, dict) else None,
        split=task_cfg.get("split") if isinstance(task_cfg, dict) else None,
    )


def _group_order(name: str) -> tuple[int, str]:
    """Paper order High, Mid, Low first (run.json may store groups sorted by name)."""
    canonical = ("High", "Mid", "Low")
    return (canonical.index(name) if name in canonical else len(canonical), name)


def shard_files(store: Store) -> list[str]:
    """Every ``*.parquet`` below the run's store (relative paths) except hidden or temporary ones
    (names starting . or _) and the selector features under ``features/`` (``FEATURES_DIR``), which
    are not rows."""
    if not store.is_dir():
        raise PipelineError(f"run directory {store.describe()} does not exist")
    files = [rel for rel in store.files(suffix=".parquet", hidden=False) if rel.split("/", 1)[0] != FEATURES_DIR]
    if not files:
        raise PipelineError(f"run directory {store.describe()} holds no *.parquet shards")
    return files


def load_run(
    location: str | Path | Store, consistency: ConsistencyFn | None = None, groups: dict | None = None
) -> list[UnitResults]:
    """Loads one run directory into one :class:`UnitResults` per (model, task, granularity).

    Args:
        location: the run directory or store URI (shards anywhere below it, optional ``run.json``).
        consistency: language-ID check applied per batch; None skips language consistency.
        groups: resource groups overriding ``run.json``'s.

    Raises:
        PipelineError: no shards, missing columns, mixed ``config_hash``, duplicate rows, layers
            out of range, or config rows without a vanilla row (see module docstring).
    """
    store = location if isinstance(location, Store) else Store.open(location)
    path = store.describe()
    info = read_run_info(store, groups)
    dataset = ds.dataset([store.path(rel) for rel in shard_files(store)], filesystem=store.fs, format="parquet")
    columns = list(BASE_COLUMNS) + (["response"] if consistency else [])
    missing = [c for c in columns if c not in dataset.schema.names]
    if missing:
        raise PipelineError(f"run {path}: shards lack column(s) {', '.join(missing)} of pipeline.schema.ROW_SCHEMA")
    hashes: set[str] = set()
    units: dict[tuple[str, str, str], tuple[_Accumulator, _Accumulator]] = {}
    for batch in dataset.to_batches(columns=columns, batch_size=BATCH_ROWS):
        if batch.num_rows == 0:
            continue
        hashes.update(pc.unique(batch.column("config_hash")).to_pylist())
        if len(hashes) > 1:
            raise PipelineError(
                f"run {path}: rows come from {len(hashes)} configurations "
                f"(config_hash {', '.join(sorted(hashes))}); reduce one sweep per directory"
            )
        for key, rows in _split_by_unit(batch):
            vanilla_acc, grid_acc = units.setdefault(key, (_Accumulator(), _Accumulator()))
            _add_rows(path, key, rows, vanilla_acc, grid_acc, consistency)
    return [
        _to_unit(path, info, key, v, g, next(iter(hashes), ""), consistency is not None)
        for key, (v, g) in sorted(units.items())
    ]


def _split_by_unit(batch: pa.RecordBatch):
    """Yields ((model, task, granularity), rows) for each unit present in ``batch``."""
    encoded = [batch.column(c).dictionary_encode() for c in ("model", "task", "granularity")]
    codes = [e.indices.to_numpy(zero_copy_only=False).astype(np.int64) for e in encoded]
    sizes = [len(e.dictionary) for e in encoded]
    combined = (codes[0] * sizes[1] + codes[1]) * sizes[2] + codes[2]
    for value in np.unique(combined):
        m, rest = divmod(int(value), sizes[1] * sizes[2])
        t, g = divmod(rest, sizes[2])
        key = tuple(str(e.dictionary[i]) for e, i in zip(encoded, (m, t, g), strict=True))
        selected = combined == value
        rows = batch if selected.all() else batch.filter(pa.array(selected))
        yield key, rows


def _numpy(column: pa.Array, dtype, fill) -> np.ndarray:
    return column.fill_null(fill).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _add_rows(path, key, rows: pa.RecordBatch, vanilla_acc, grid_acc, consistency) -> None:
    """Validates one unit's rows of a batch and appends them to the vanilla or grid accumulator."""
    source_null = rows.column("source_layer").is_null().to_numpy(zero_copy_only=False)
    target_null = rows.column("target_layer").is_null().to_numpy(zero_copy_only=False)
    if np.any(source_null != target_null):
        raise PipelineError(
            f"run {path}: rows of {'/'.join(key)} have a null source_layer with a non-null target_layer "
            "(or the reverse); vanilla rows have both null"
        )
    n_layers = set(np.unique(_numpy(rows.column("n_layers"), np.int64, -1)).tolist())
    if vanilla_acc.n_layers is not None:
        n_layers.add(vanilla_acc.n_layers)
    if len(n_layers) > 1:
        raise PipelineError(f"run {path}: rows of {'/'.join(key)} disagree on n_layers ({sorted(n_layers)})")
    vanilla_acc.n_layers = grid_acc.n_layers = n_layers.pop()
    n_new = _numpy(rows.column("n_new_tokens"), np.int64, 0)
    logprob = _numpy(rows.column("logprob_sum"), np.float64, np.nan)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        perplexity = np.where(n_new > 0, np.exp(-logprob / np.maximum(n_new, 1)), np.nan)
    part = {
        "source": _numpy(rows.column("source_layer"), np.int32, -1),
        "target": _numpy(rows.column("target_layer"), np.int32, -1),
        "correct": _numpy(rows.column("correct"), bool, False),
        "entropy_first": _numpy(rows.column("entropy_first"), np.float64, np.nan),
        "entropy_mean": _numpy(rows.column("entropy_mean"), np.float64, np.nan),
        "perplexity": perplexity,
        "empty": n_new == 0,
    }
    if consistency is not None:
        part["consistent"] = consistency(rows.column("response"), rows.column("response_lang"))
    for acc, mask in ((vanilla_acc, source_null), (grid_acc, ~source_null)):
        if not mask.any():
            continue
        index = np.flatnonzero(mask)
        chosen = {k: v[index] for k, v in part.items()}
        chosen["code"] = acc.codes(rows.column("instance_id").take(pa.array(index)))
        if acc is vanilla_acc:
            langs = rows.column("lang").take(pa.array(index)).to_pylist()
            acc.langs.update(zip(chosen["code"].tolist(), langs, strict=True))
        acc.parts.append(chosen)


def _to_unit(path, info, key, vanilla_acc, grid_acc, config_hash, with_consistency) -> UnitResults:
    """Builds the dense arrays of one unit; instances are those with a vanilla row."""
    name = "/".join(key)
    if not vanilla_acc.parts:
        raise PipelineError(
            f"run {path}: {name} has no vanilla rows (source_layer and target_layer null); "
            "every gain is measured against vanilla"
        )
    n = vanilla_acc.n_layers or 0
    if n <= 0:
        raise PipelineError(f"run {path}: {name} has n_layers={n}")
    vanilla_rows = _concat(vanilla_acc.parts)
    grid_rows = _concat(grid_acc.parts) if grid_acc.parts else None
    n_instances = len(vanilla_acc.ids)
    if np.bincount(vanilla_rows["code"], minlength=n_instances).max() > 1:
        raise PipelineError(f"run {path}: {name} has more than one vanilla row for some instance")
    vanilla = _scatter(vanilla_rows, vanilla_rows["code"], (n_instances,), with_consistency, path, name)
    grid = Outcomes.allocate((n_instances, n, n), with_consistency)
    if grid_rows is not None:
        no_vanilla = sorted(set(grid_acc.ids) - set(vanilla_acc.ids))
        if no_vanilla:
            raise PipelineError(
                f"run {path}: {len(no_vanilla)} instance(s) of {name} have config rows but no vanilla row "
                f"(e.g. {', '.join(no_vanilla[:3])})"
            )
        remap = np.array([vanilla_acc.ids[i] for i in grid_acc.ids], np.int64)
        codes = remap[grid_rows["code"]]
        for axis in ("source", "target"):
            bad = (grid_rows[axis] < 0) | (grid_rows[axis] >= n)
            if bad.any():
                raise PipelineError(
                    f"run {path}: {name} has {axis}_layer {int(grid_rows[axis][bad][0])} "
                    f"outside 0..{n - 1} (layers count from 0)"
                )
        flat = (codes.astype(np.int64) * n + grid_rows["source"]) * n + grid_rows["target"]
        grid = _scatter(grid_rows, flat, (n_instances, n, n), with_consistency, path, name)
    ids = np.empty(n_instances, dtype=object)
    ids[list(vanilla_acc.ids.values())] = list(vanilla_acc.ids.keys())
    lang_names = [vanilla_acc.langs[i] for i in range(n_instances)]
    langs = sorted(set(lang_names))
    return UnitResults(
        run=info, model=key[0], task=key[1], granularity=key[2], n_layers=n, config_hash=config_hash,
        instance_ids=ids, lang=np.array([langs.index(x) for x in lang_names], np.int64), langs=langs,
        vanilla=vanilla, grid=grid,
    )  # fmt: skip


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _scatter(rows, flat: np.ndarray, shape, with_consistency, path, name) -> Outcomes:
    """Places rows at their flat (instance[, source, target]) position; a position hit twice is an error."""
    size = int(np.prod(shape))
    if np.bincount(flat, minlength=size).max(initial=0) > 1:
        raise PipelineError(
            f"run {path}: {name} has duplicate rows for the same (instance, source_layer, target_layer)"
        )
    out = Outcomes.allocate(shape, with_consistency)
    for name_, array in vars(out).items():
        if array is None:
            continue
        target = array.reshape(-1)
        target[flat] = True if name_ == "present" else rows[name_]
    return out
