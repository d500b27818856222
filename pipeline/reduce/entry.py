"""Reduce stage entry: one or more sweep run directories -> ``report/`` (issue 5).

    python -m pipeline.reduce run=DIR [run=DIR2 ...] [out=REPORT_DIR] [report.lid_model=lid.176.bin]
    python -m pipeline.reduce run=[DIR,DIR2] report.entropy=entropy_first report.configs=[[31,0]]

    options: out=DIR report.lid_model=PATH|none report.entropy=entropy_mean|entropy_first
    report.candidates=[[0,0],[-1,0]] report.include_vanilla=false report.configs=[[i,j],...]
    report.groups={High:[..],Mid:[..],Low:[..]} report.figures=true   (docs/reports.md)

Everything comes from the stored rows; nothing is recomputed with a model. Rows are grouped by
(run, model, task, granularity); a report covers all of them. The report goes to the first run's
``report/`` unless ``out=`` names a directory. It is written into a temporary directory beside the
destination and renamed into place at the end, so a failure never leaves half a report.

The reduce never deletes results or a user's files: an existing ``out=`` is replaced only if it is
a report directory this tool wrote (its ``.xtransplant-report`` marker file) holding nothing but
the report's own files, and a report is never written over or inside a run directory's shards.
A shard file that is not readable Parquet is named in one ``error:`` line.

A Hydra app: ``conf/reduce.yaml`` typed by :class:`ReduceConfig`. ``run=`` may repeat (joined into
one list before Hydra, which would keep only the last) or be a list.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, List, Optional  # noqa: UP035 (OmegaConf structured configs need typing generics)

import pyarrow as pa
import pyarrow.fs as pafs
import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from pipeline import __version__
from pipeline.reduce import plots
from pipeline.cli import CONF_DIR, config_errors, join_repeated, run_app
from pipeline.errors import PipelineError, exit_on_user_error
from pipeline.reduce.langid import LanguageIdentifier, resolve_lid_model
from pipeline.reduce.report import write_markdown, write_tables
from pipeline.reduce.results import UnitResults, load_run, shard_files
from pipeline.reduce.selected import attach_selections
from pipeline.reduce.completeness import check_run
from pipeline.files import replace_dir, staged_dir
from pipeline.rundir import SHARD_DIR
from pipeline.store import Store
from pipeline.reduce.summary import SCHEMA_VERSION, ReportOptions, clean, short_model, summarize_unit

REPORT_MARKER = ".xtransplant-report"
"""Marker file in every report directory this tool writes: the only kind of ``out=`` it replaces."""

log = logging.getLogger(__name__)


@dataclass
class ReportConfig:
    """``report.*`` options (see docs/reports.md)."""

    lid_model: Optional[str] = None  # noqa: UP045  fastText LID model; None = packaged lid.176.ftz, 'none' = off
    entropy: str = "entropy_mean"  # Appendix F ranking column: entropy_mean | entropy_first
    candidates: List[List[int]] = field(default_factory=lambda: [[0, 0], [-1, 0]])  # noqa: UP006  (source, target)
    include_vanilla: bool = False  # vanilla competes in entropy selection
    configs: List[List[int]] = field(default_factory=list)  # noqa: UP006  extra (source, target) table rows
    groups: Any = None  # {group: [languages]} overriding run.json groups (Any: Hydra merges into a typed dict)
    figures: bool = True


@dataclass
class ReduceConfig:
    """The reduce stage's whole configuration."""

    run: List[str] = field(default_factory=list)  # noqa: UP006  run directories or store URIs
    out: Optional[str] = None  # noqa: UP045  report directory or URI; default: first run's report/
    allow_partial: bool = False  # report a run whose planned shards/instances are not all present
    report: ReportConfig = field(default_factory=ReportConfig)


ConfigStore.instance().store(name="reduce_schema", node=ReduceConfig)


def slugs_for(units: list[UnitResults]) -> list[str]:
    """File-name-safe, unique names of units: model_task[-prompt]_granularity."""
    slugs: list[str] = []
    for unit in units:
        task = unit.task + (f"-{unit.run.variant}" if unit.run.variant else "")
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{short_model(unit.model)}_{task}_{unit.granularity}")
        slug, k = base, 2
        while slug in slugs:
            slug, k = f"{base}-{k}", k + 1
        slugs.append(slug)
    return slugs


def run(cfg: ReduceConfig) -> Path | str:
    """Computes every metric over the runs of ``cfg`` and writes the report; returns its directory."""
    if not cfg.run:
        raise PipelineError("no run given; usage: python -m pipeline.reduce run=DIR [run=DIR2 ...]")
    groups = cfg.report.groups
    if groups is not None and not (
        isinstance(groups, dict) and all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in groups.values())
    ):
        raise PipelineError(f"report.groups must map group names to lists of languages, e.g. {{Low:[sw,ur]}}; got {groups!r}")
    options = ReportOptions(
        entropy=cfg.report.entropy,
        candidates=tuple(_pairs(cfg.report.candidates, "report.candidates")),
        include_vanilla=cfg.report.include_vanilla,
        configs=tuple(_pairs(cfg.report.configs, "report.configs")),
    )
    lid_path, why_not = resolve_lid_model(cfg.report.lid_model)  # default: the packaged lid.176.ftz
    lid = LanguageIdentifier(lid_path) if lid_path else None
    if lid:
        consistency = {"status": "computed", "model": str(lid.path), "reason": None}
    else:
        consistency = {"status": "skipped", "model": None, "reason": why_not}
    runs = [Store.open(r) for r in cfg.run]
    out = Store.open(cfg.out) if cfg.out else runs[0].child("report")
    check_report_out(out, runs)
    units, partial = _load_units(runs, lid, groups, cfg.allow_partial)
    attach_selections(units)  # issue 11: the learned-selection row of grid=selected runs
    entries = [summarize_unit(u, options, slug, consistency) for u, slug in zip(units, slugs_for(units), strict=True)]
    summary = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "package_version": __version__,
        "options": {
            "entropy": options.entropy,
            "candidates": [list(c) for c in options.candidates],
            "include_vanilla": options.include_vanilla,
            "configs": [list(c) for c in options.configs],
            "lid_model": cfg.report.lid_model,
        },
        "partial": [p.as_dict() for p in partial] or None,
        "runs": clean(entries),
    }
    for entry, unit in zip(summary["runs"], units, strict=True):
        entry["partial"] = next((p.as_dict() for p in partial if p.run == unit.run.path), None)
    return _write_atomically(summary, out, cfg.report.figures)


def _load_units(
    runs: list[Store], lid: LanguageIdentifier | None, groups: dict | None, allow_partial: bool
) -> tuple[list[UnitResults], list]:
    """The (task, granularity) units of every run, and the completeness of each partial run.

    A run with rows missing is refused unless ``allow_partial``; then it is reported as partial.
    """
    units: list[UnitResults] = []
    partial = []
    for store in runs:
        check_readable(store)
        try:
            loaded = load_run(store, lid.consistent if lid else None, dict(groups or {}) or None)
        except (OSError, pa.ArrowException) as err:
            raise PipelineError(f"run {store.describe()}: cannot read its shards ({err})") from err
        if not loaded:
            raise PipelineError(f"run {store.describe()}: its shards hold no rows")
        whole = check_run(store, loaded[0].run.meta, min(u.n_instances for u in loaded))
        if not whole.complete:
            if not allow_partial:
                raise PipelineError(
                    f"{whole.line()}; re-run its sweep command to compute them (it resumes), or pass "
                    "allow_partial=true to report the rows present as a partial run"
                )
            log.warning("[reduce] PARTIAL: %s; allow_partial=true, so the report covers only the rows present", whole.line())
            partial.append(whole)
        units += loaded
    return units, partial


def check_readable(store: Store) -> None:
    """Names the first shard of a run whose Parquet footer does not read (truncated, foreign)."""
    for rel in shard_files(store):
        try:
            store.parquet_footer(rel)
        except (OSError, pa.ArrowException) as err:
            raise PipelineError(
                f"{store.describe(rel)}: not a readable Parquet file ({err}); move it away, or re-run the sweep, "
                "which recomputes a damaged shard"
            ) from err


def check_report_out(out: Store, runs: list[Store]) -> None:
    """Refuses a report destination whose replacement could lose results or a user's files.

    Refused: ``out`` equal to or above a run directory, ``out`` inside a run's ``shards/`` tree,
    an existing file, and an existing directory that is not a report this tool wrote (no
    :data:`REPORT_MARKER`) or that holds files the report does not list.
    """
    for run in runs:
        if type(run.fs) is not type(out.fs):
            continue
        if out.root == run.root or run.root.startswith(out.root.rstrip("/") + "/"):
            raise PipelineError(f"out={out.describe()} would replace run directory {run.describe()}; choose a new directory")
        shards = f"{run.root}/{SHARD_DIR}"
        if out.root == shards or out.root.startswith(shards + "/"):
            raise PipelineError(
                f"out={out.describe()} lies inside the shards of run {run.describe()}; choose a directory outside it"
            )
    kind = out.info().type
    if kind == pafs.FileType.NotFound:
        return
    if kind != pafs.FileType.Directory:
        raise PipelineError(f"out={out.describe()} exists and is not a directory; choose a new directory")
    listed = _listed_report_files(out)
    if not out.is_file(REPORT_MARKER) and listed is None:
        raise PipelineError(
            f"out={out.describe()} exists and is not a report directory written by pipeline.reduce (no {REPORT_MARKER}); "
            "choose a new directory"
        )
    entries = set(os.listdir(out.local_path)) if out.is_local else {rel.split("/", 1)[0] for rel in out.files()}
    foreign = sorted(entries - (listed or set()) - {"summary.json", "report.md", REPORT_MARKER})
    if foreign:
        raise PipelineError(
            f"out={out.describe()} holds {foreign[0]}, which is not part of the report it replaces; move it away first"
        )


def _listed_report_files(report: Store) -> set[str] | None:
    """The tables and figures a report directory's own summary.json lists; None without one.

    A report written before the marker file existed is recognised by this summary.json (it has a
    ``schema_version``) and is replaced only if it holds nothing else.
    """
    try:
        summary = json.loads(report.read_text("summary.json"))
        if not isinstance(summary, dict) or "schema_version" not in summary:
            return None
        return set(summary.get("tables") or []) | set(summary.get("figures") or [])
    except (OSError, ValueError, TypeError, pa.ArrowException):
        return None


def _pairs(values, name: str) -> list[tuple[int, int]]:
    pairs = [tuple(int(x) for x in v) for v in values]
    if any(len(p) != 2 for p in pairs):
        raise PipelineError(f"{name} takes [source, target] pairs, e.g. {name}=[[0,0],[-1,0]]")
    return pairs


def _write_atomically(summary: dict, out: Store, figures: bool) -> Path | str:
    """Writes everything into a temporary local directory, then puts it at ``out``.

    A local ``out`` is renamed into place (the previous report moves aside first). An object
    store has no rename: the previous report's files (:func:`check_report_out` made sure it holds
    nothing else) are deleted and the new ones uploaded, the marker last.
    """
    parent = out.local_path.parent if out.is_local else Path(tempfile.gettempdir())
    with staged_dir(Path(out.name), parent) as tmp:
        (tmp / REPORT_MARKER).write_text(f"written by pipeline.reduce {__version__}\n")
        summary["tables"] = [p.name for p in write_tables(summary, tmp)]
        per_run, shared = _draw(summary["runs"], tmp) if figures else ({}, [])
        summary["figures"] = sorted([*shared, *(f for fs in per_run.values() for f in fs)])
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False))
        write_markdown(summary, per_run, shared, tmp)
        if out.is_local:
            replace_dir(tmp, out.local_path)  # the previous one moves aside first
            return out.local_path
        for rel in out.files():
            out.delete(rel)
        for path in sorted(tmp.iterdir(), key=lambda p: p.name == REPORT_MARKER):
            out.write_bytes(path.name, path.read_bytes())
        return out.describe()


def _draw(entries: list[dict], out: Path) -> tuple[dict[str, list[str]], list[str]]:
    """All figures; returns (run slug -> its figure files, figures covering every run)."""
    per_run = {}
    for e in entries:
        slug = e["slug"]
        per_run[slug] = [plots.grid_heatmaps(e, out / f"{slug}.grid.png").name]
        if len(e["grid"]["whole_source_layers"]) > 1 or len(e["grid"]["whole_target_layers"]) > 1:
            per_run[slug].append(plots.layer_gain_curves(e, out / f"{slug}.layer_gains.png").name)
        if plots.has_grid_lines(e):  # a partial grid: its whole rows / columns as curves
            per_run[slug].append(plots.grid_lines(e, out / f"{slug}.lines.png").name)
        per_run[slug].append(plots.language_gain_heatmaps(e, out / f"{slug}.languages.png").name)
    shared = [plots.upper_bound_curves(entries, out / "upper_bounds.png").name] if plots.has_upper_bounds(entries) else []
    shared.append(plots.win_tie_lose_bars(entries, out / "win_tie_lose.png").name)
    return per_run, shared


@hydra.main(config_path=str(CONF_DIR), config_name="reduce", version_base=None)
@exit_on_user_error
def _hydra_main(cfg: DictConfig) -> None:
    with config_errors():
        typed: ReduceConfig = OmegaConf.to_object(cfg)
    out = run(typed)
    log.info("report written to %s", out)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m pipeline.reduce run=DIR [run=DIR2 ...] [out=DIR] [report.*=...]``.

    A Hydra app (``conf/reduce.yaml``, typed by :class:`ReduceConfig`): ``--help``, ``--cfg job``
    and multirun work as for the sweep. ``argv`` (tests) stands in for the command line.
    """
    args = join_repeated(sys.argv[1:] if argv is None else list(argv), "run")
    run_app(_hydra_main, args, config_name="reduce")


if __name__ == "__main__":
    main()
