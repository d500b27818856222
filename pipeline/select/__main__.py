"""``python -m pipeline.select``: fit a per-instance (source, target) selector, or evaluate one.

    python -m pipeline.select fit run=PILOT_DIR [run=PILOT_DIR2 ...] out=SELECTOR_DIR [learner=logistic]
    python -m pipeline.select evaluate selector=SELECTOR_DIR run=HELDOUT_DIR [out=REPORT_DIR]

    options (conf/select.yaml): learner=hgb|logistic candidates=sl_tf|full granularities=[attn,ffn]
    folds=5 seed=0 margin=null|FLOAT n_boot=1000 params.hgb.max_leaf_nodes=[7,31] params.logistic.C=[..]

``fit`` reads sweeps run with ``features=true`` (at least the SourceLast and TargetFirst rows), picks
hyperparameters and the margin by instance-grouped cross-validation, prints the per-fold report
and writes the selector directory (selector.json, estimators.skops, cv.json, cv.md) atomically.
``evaluate`` simulates the selection on held-out runs' rows (no generation) and writes
selection.md / selection.json (default: the first run's ``selection/``). Then
``python -m pipeline.sweep grid=selected grid.selector=SELECTOR_DIR`` runs it for real.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import hydra
import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from pipeline.cli import CONF_DIR, config_errors, hydra_flags, join_repeated, run_app
from pipeline.errors import PipelineError, exit_on_user_error
from pipeline.jsonable import jsonable
from pipeline.files import check_owned_dir, written_whole

USAGE = "\n\n".join(__doc__.split("\n\n")[1:3])
COMMANDS = ("fit", "evaluate")
REPORT_MARKER = "selection.json"
REPORT_FILES = frozenset({REPORT_MARKER, "selection.md"})  # what evaluate writes (and so may replace)

log = logging.getLogger(__name__)


@dataclass
class SelectSchema:
    """The types of ``conf/select.yaml``'s keys (ConfigStore ``select_schema``); the values and their
    comments are the YAML's. Hydra refuses an unknown key or a wrong type (``folds=abc``) in one line."""

    command: str = MISSING
    run: Any = MISSING  # one directory or a list (run= may repeat)
    out: Optional[str] = MISSING  # noqa: UP045  (OmegaConf reads typing.Optional)
    selector: Optional[str] = MISSING  # noqa: UP045
    learner: str = MISSING
    candidates: str = MISSING
    granularities: Any = MISSING  # null, one name or a list
    folds: int = MISSING
    seed: int = MISSING
    margin: Optional[float] = MISSING  # noqa: UP045
    n_boot: int = MISSING
    threads: Optional[int] = MISSING  # noqa: UP045
    params: Any = MISSING  # a grid per learner: {learner: {name: value or [values]}}


ConfigStore.instance().store(name="select_schema", node=SelectSchema)


def fit_command(cfg: dict) -> Path:
    from pipeline.select.data import load_table
    from pipeline.select.fit import FitOptions, check_out, fit, save

    if not cfg["out"]:
        raise PipelineError("fit needs out=DIR (where the selector is written)")
    out = Path(cfg["out"]).expanduser().resolve()
    check_out(out)
    margin = cfg["margin"]
    options = FitOptions(
        learner=str(cfg["learner"]), candidates=str(cfg["candidates"]),
        granularities=tuple(cfg["granularities"]) if cfg["granularities"] else None,
        folds=int(cfg["folds"]), seed=int(cfg["seed"]), margin=None if margin is None else float(margin),
        params=cfg["params"], threads=None if cfg["threads"] is None else int(cfg["threads"]),
    )  # fmt: skip
    table = load_table(cfg["run"], options.candidates, options.granularities)
    granularities = ", ".join(dict.fromkeys(g for g, _, _ in table.candidates))
    log.info(f"[select] {table.n_instances} instances, {len(table.candidates)} candidates ({granularities}), "
          f"{table.model} ({table.n_layers} layers); {options.folds}-fold grouped CV of {options.learner} "
          f"over {len(options.grid())} setting(s)")  # fmt: skip
    selector, cv = fit(table, options)
    text = cv_markdown(selector, cv)
    log.info("%s", text)
    save(selector, cv, out, text)
    log.info("[select] selector written to %s", out)
    return out


def cv_markdown(selector, cv: dict) -> str:
    """The per-fold report (accuracies in %)."""
    cols = ["n_instances", "margin", "vanilla", "best_fixed", "learned", "ceiling", "transplanted", "gap_closed",
            "log_loss"]  # fmt: skip
    pct = {"vanilla", "best_fixed", "learned", "ceiling", "transplanted", "gap_closed"}

    def cell(key, value):
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return ""
        if key in pct:
            return f"{100 * value:.1f}"
        if key == "n_instances":
            return f"{value:.0f}" if isinstance(value, int) else f"{value:.1f}"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = [
        f"# Selector: {selector.learner} {selector.params}, margin {selector.margin:.3f}", "",
        f"Grouped {len(cv['folds'])}-fold cross-validation on the training runs (each fold's margin chosen on the "
        "other folds; accuracies in %; best_fixed = the best single candidate of the other folds).", "",
        "| fold | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols),
    ]  # fmt: skip
    for f in cv["folds"]:
        lines.append(f"| {f['fold']} | " + " | ".join(cell(c, f.get(c)) for c in cols) + " |")
    lines.append("| mean | " + " | ".join(cell(c, cv["mean"].get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def evaluate_command(cfg: dict) -> Path:
    from pipeline.select.data import load_table
    from pipeline.select.evaluate import evaluate, markdown
    from pipeline.selector.fitted import load

    if not cfg["selector"]:
        raise PipelineError("evaluate needs selector=DIR (made by python -m pipeline.select fit)")
    if not cfg["run"]:
        raise PipelineError("evaluate needs run=DIR: a held-out sweep with features=true and the selector's candidates")
    selector = load(cfg["selector"])
    out = Path(cfg["out"] or Path(cfg["run"][0]) / "selection").expanduser().resolve()
    check_owned_dir(out, (out / REPORT_MARKER).is_file(), REPORT_FILES, f"a selection report directory ({REPORT_MARKER})")
    table = load_table(cfg["run"], selector.candidates, selector.granularities)
    if table.n_layers != selector.n_layers:
        raise PipelineError(
            f"selector {cfg['selector']} was fitted on a model with {selector.n_layers} layers ({selector.model}); "
            f"the runs come from {table.model} with {table.n_layers}: a selector only applies to its own model"
        )
    if table.model != selector.model:
        log.warning("[select] warning: selector fitted on %s, runs from %s", selector.model, table.model)
    missing = np.isnan(table.correct)
    if missing.any():
        k = int(np.flatnonzero(missing.any(axis=0))[0])
        g, i, j = table.candidates[k]
        raise PipelineError(
            f"the runs lack rows of {int(missing.any(axis=0).sum())} of the selector's {len(table.candidates)} "
            f"candidates for {int(missing.any(axis=1).sum())} instance(s) (e.g. {g} ({i}, {j})); sweep the held-out "
            "set with the selector's candidates (grid=source_last and grid=target_first, or grid=full) and features=true"
        )
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=None if cfg["threads"] is None else int(cfg["threads"])):
        report = evaluate(selector, table, n_boot=int(cfg["n_boot"]), seed=int(cfg["seed"]))
    text = markdown(report)
    _write_report(out, jsonable(report), text)
    log.info("%s", text)
    log.info("[select] report written to %s", out)
    return out


def _write_report(out: Path, report: dict, text: str) -> None:
    """selection.json + selection.md into a temporary sibling, renamed into place."""
    with written_whole(out) as tmp:  # the previous report moves aside only once this one is complete
        (tmp / REPORT_MARKER).write_text(json.dumps(report, indent=1) + "\n")
        (tmp / "selection.md").write_text(text)


@hydra.main(config_path=str(CONF_DIR), config_name="select", version_base=None)
@exit_on_user_error
def _hydra_main(cfg: DictConfig) -> None:
    with config_errors():
        options = OmegaConf.to_container(cfg, resolve=True)
    command = options.pop("command")
    {"fit": fit_command, "evaluate": evaluate_command}[command](options)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m pipeline.select COMMAND key=value ...``, a Hydra app over ``conf/select.yaml``.

    The command (first argument) becomes ``command=``; ``run=`` may repeat or be a list.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0 if argv else 2)
    command = next((a for a in argv if a in COMMANDS), None)  # Hydra's flags (--cfg job) may come first
    if command is None:
        given = next((a for a in argv if "=" not in a and not a.startswith("-")), None)
        what = f"unknown command {given!r}" if given else "no command given"
        raise PipelineError(f"{what}; valid: {', '.join(COMMANDS)} (python -m pipeline.select fit ...)")
    flags, overrides = hydra_flags([a for a in argv if a != command])
    args = [*flags, f"command={command}", *join_repeated(overrides, "run")]
    run_app(_hydra_main, args, config_name="select")


if __name__ == "__main__":
    main()
