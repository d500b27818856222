"""Fitting a selector with instance-grouped cross-validation, and saving it (issue 11, item 2).

The rule (per instance): score vanilla and every candidate config with the learned P(correct);
take the best candidate c* if P(c*) > P(vanilla) + margin, else keep vanilla. Hyperparameters are
chosen by out-of-fold log loss and the margin by out-of-fold selected accuracy, both over
``GroupKFold`` folds grouped by instance (no instance is in the training and evaluation part of a
fold); then the scorer is refitted on every training instance. The per-fold report evaluates fold
f with the margin chosen on the other folds' out-of-fold predictions, so fold f never tunes its
own margin (the hyperparameters are chosen once over all folds, which is slightly optimistic; the
honest number is ``evaluate`` on held-out runs).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

from pipeline.errors import PipelineError
from pipeline.jsonable import jsonable
from pipeline.files import check_owned_dir
from pipeline.reduce import metrics
from pipeline.selector import artefact
from pipeline.selector.fitted import Selector, decide
from pipeline.select.data import Candidate, SelectionTable
from pipeline.selector.learners import LEARNERS, FeatureSpec, make_scorer
from pipeline.files import written_whole

NEVER, ALWAYS = 1.0, -1.0  # margins: P(c*) - P(vanilla) lies in [-1, 1]


@dataclass(frozen=True)
class FitOptions:
    """``python -m pipeline.select fit`` options (conf/select.yaml)."""

    learner: str = "hgb"
    candidates: str = "sl_tf"
    granularities: tuple[str, ...] | None = None
    folds: int = 5
    seed: int = 0
    margin: float | None = None  # None: chosen by grouped CV
    threads: int | None = None  # OpenMP/BLAS threads of the learner; None = every core
    params: dict = field(default_factory=dict)  # learner -> {hyperparameter: [values]}

    def __post_init__(self):
        if self.learner not in LEARNERS:
            raise PipelineError(f"learner={self.learner} is not valid; valid: {', '.join(LEARNERS)}")
        if self.folds < 2:
            raise PipelineError(f"folds must be >= 2, got {self.folds}")
        if self.margin is not None and not -1.0 <= self.margin <= 1.0:
            raise PipelineError(f"margin must lie in [-1, 1] (a difference of probabilities), got {self.margin}")

    def grid(self) -> list[dict]:
        """Every hyperparameter setting of the learner's grid."""
        space = dict(self.params.get(self.learner) or {})
        names = sorted(space)
        values = [v if isinstance(v, list | tuple) else [v] for v in (space[n] for n in names)]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)] or [{}]


def selected_correct(choice: np.ndarray, correct: np.ndarray, vanilla: np.ndarray) -> np.ndarray:
    """[n] correctness of the chosen config (vanilla's where -1); a missing row counts as wrong."""
    picked = correct[np.arange(len(choice)), np.maximum(choice, 0)]
    return np.where(choice < 0, vanilla.astype(float), np.nan_to_num(picked, nan=0.0))


def pick_margin(p: np.ndarray, correct: np.ndarray, vanilla: np.ndarray) -> float:
    """The margin maximising selected accuracy on these predictions; ties go to the larger margin
    (fewer transplants). Thresholds lie midway between consecutive distinct lifts."""
    if len(p) == 0:
        return NEVER
    best = np.argmax(p[:, 1:], axis=1)
    lift = p[np.arange(len(p)), best + 1] - p[:, 0]
    gain = np.nan_to_num(correct[np.arange(len(p)), best], nan=0.0) - vanilla  # [n] if transplanted
    order = np.argsort(-lift, kind="stable")
    lift, gain = lift[order], gain[order]
    distinct = np.flatnonzero(np.r_[lift[1:] != lift[:-1], True])  # last index of each run of equal lifts
    totals = np.r_[0.0, np.cumsum(gain)[distinct]]  # gain when transplanting the top 0, 1, ... runs
    k = int(np.argmax(totals))  # first maximum = fewest transplants
    if k == 0:
        return NEVER
    if k == len(distinct):
        return ALWAYS
    return float((lift[distinct[k - 1]] + lift[distinct[k]]) / 2)


def labels_of(table: SelectionTable) -> np.ndarray:
    """[n, K + 1] labels: vanilla, then the candidates (NaN where no row)."""
    return np.column_stack([table.vanilla.astype(float), table.correct])


def log_loss(p: np.ndarray, labels: np.ndarray) -> float:
    known = ~np.isnan(labels)
    q = np.clip(p[known], 1e-6, 1 - 1e-6)
    y = labels[known]
    return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean()) if known.any() else float("nan")


def folds_of(table: SelectionTable, options: FitOptions) -> list[np.ndarray]:
    """[fold] -> instance positions held out; grouped by instance key."""
    if table.n_instances < options.folds:
        raise PipelineError(
            f"folds={options.folds} needs at least {options.folds} instances; the runs hold {table.n_instances}"
        )
    splitter = GroupKFold(n_splits=options.folds, shuffle=True, random_state=options.seed)
    return [test for _, test in splitter.split(np.zeros(table.n_instances), groups=table.keys)]


def out_of_fold(table, spec, x, labels, folds, options: FitOptions, params: dict) -> np.ndarray:
    """[n, K + 1] predictions of each instance by the scorer fitted without its fold."""
    p = np.zeros(labels.shape)
    for test in folds:
        train = np.setdiff1d(np.arange(table.n_instances), test)
        scorer = make_scorer(options.learner, spec, table.candidates, params, options.seed)
        p[test] = scorer.fit(x[train], labels[train]).predict(x[test])
    return p


def fit(table: SelectionTable, options: FitOptions) -> tuple[Selector, dict]:
    """Grouped CV (hyperparameters, margin, per-fold report), then the final fit on every instance."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=options.threads):
        return _fit(table, options)


def _fit(table: SelectionTable, options: FitOptions) -> tuple[Selector, dict]:
    spec = FeatureSpec.learn(table.features, table.n_layers)
    x = spec.encode(table.features)
    labels = labels_of(table)
    folds = folds_of(table, options)
    trials = []
    for params in options.grid():
        p = out_of_fold(table, spec, x, labels, folds, options, params)
        trials.append({"params": params, "log_loss": log_loss(p, labels), "oof": p})
    chosen = min(trials, key=lambda t: t["log_loss"])
    oof = chosen["oof"]
    margin = options.margin if options.margin is not None else pick_margin(oof, table.correct, table.vanilla)
    report_folds = []
    for f, test in enumerate(folds):
        train = np.setdiff1d(np.arange(table.n_instances), test)
        fold_margin = options.margin
        if fold_margin is None:
            fold_margin = pick_margin(oof[train], table.correct[train], table.vanilla[train])
        best_fixed = _best_fixed(table.correct[train], table.candidates)
        entry = fold_metrics(table.subset(test), oof[test], fold_margin, best_fixed)
        report_folds.append({"fold": f, "n_train": len(train), "margin": fold_margin, **entry})
    scorer = make_scorer(options.learner, spec, table.candidates, chosen["params"], options.seed)
    scorer.fit(x, labels)
    training = {
        "runs": table.runs,
        "n_instances": table.n_instances,
        "tasks": sorted(set(table.task)),
        "langs": sorted(set(table.lang)),
        "folds": options.folds,
        "seed": options.seed,
        "margin_source": "given" if options.margin is not None else "grouped cross-validation",
        "trials": [{"params": t["params"], "oof_log_loss": t["log_loss"]} for t in trials],
    }
    selector = Selector(
        model=table.model, n_layers=table.n_layers, candidates=list(table.candidates), spec=spec, scorer=scorer,
        margin=float(margin), learner=options.learner, params=chosen["params"],
        best_fixed=_best_fixed(table.correct, table.candidates), training=training,
    )  # fmt: skip
    return selector, {"folds": report_folds, "mean": _mean_folds(report_folds)}


def _best_fixed(correct: np.ndarray, candidates: list[Candidate]) -> Candidate | None:
    """The single candidate with the highest accuracy on these instances (a non-adaptive baseline)."""
    if correct.size == 0:
        return None
    rows = (~np.isnan(correct)).sum(axis=0)
    acc = np.where(rows > 0, np.nansum(correct, axis=0) / np.maximum(rows, 1), -1.0)
    return candidates[int(np.argmax(acc))]


def _mean_folds(folds: list[dict]) -> dict:
    keys = [k for k, v in folds[0].items() if isinstance(v, float | int) and k not in ("fold",)]
    return {k: float(np.nanmean([np.nan if f[k] is None else f[k] for f in folds])) for k in keys}


# -- the artefact on disk (pipeline.selector.artefact: data, never code) -------------------------
def save(selector: Selector, cv: dict, out: Path, describe: str) -> Path:
    """Writes ``out/`` atomically: selector.json, estimators.skops, cv.json, cv.md.

    Refuses an existing ``out`` that is not a selector directory this tool wrote, or that holds
    anything else (:func:`check_out`).
    """
    import sklearn

    out = Path(out)
    check_out(out)
    with written_whole(out) as tmp:  # the previous selector moves aside only once this one is complete
        state, estimators = selector.scorer.export()
        meta = {
            "model": selector.model, "n_layers": selector.n_layers, "learner": selector.learner,
            "params": selector.params, "margin": selector.margin, "granularities": list(selector.granularities),
            "candidates": [list(c) for c in selector.candidates], "best_fixed": selector.best_fixed,
            "features": selector.spec.names, "langs": selector.spec.langs, "tasks": selector.spec.tasks,
            "scorer": state, "training": selector.training, "sklearn_version": sklearn.__version__,
        }  # fmt: skip
        artefact.write(tmp, jsonable(meta), estimators)
        (tmp / "cv.json").write_text(json.dumps(jsonable(cv), indent=1) + "\n")
        (tmp / "cv.md").write_text(describe)
    return out


def check_out(out: Path) -> None:
    """An ``out=`` that exists must be a selector directory this tool wrote holding nothing else (it is
    replaced); anything else is refused."""
    check_owned_dir(out, artefact.is_selector_dir(out) if out.is_dir() else False, artefact.FILES | {artefact.PICKLE},
                    "a selector directory (its selector.json)")  # fmt: skip


def fold_metrics(table: SelectionTable, p: np.ndarray, margin: float, best_fixed) -> dict:
    """Flat numbers of one cross-validation fold (held-out instances ``table``, predictions ``p``)."""
    choice = decide(p, margin)
    learned = selected_correct(choice, table.correct, table.vanilla)
    ceiling = ceiling_of(table)
    gap = metrics.gap_closed(learned, table.vanilla, ceiling, n_boot=200)
    fixed = None
    if best_fixed in table.candidates:
        column = table.correct[:, table.candidates.index(best_fixed)]
        fixed = float(np.nanmean(column)) if (~np.isnan(column)).any() else None
    labels = np.column_stack([table.vanilla.astype(float), table.correct])
    return {
        "n_instances": table.n_instances,
        "vanilla": float(table.vanilla.mean()),
        "learned": float(learned.mean()),
        "best_fixed": fixed,
        "ceiling": float(ceiling.mean()),
        "transplanted": float((choice >= 0).mean()),
        "gap_closed": gap.value,
        "log_loss": log_loss(p, labels),
    }


def ceiling_of(table: SelectionTable) -> np.ndarray:
    """[n] vanilla or some candidate is correct (a missing row is not correct)."""
    return table.vanilla | (np.nan_to_num(table.correct, nan=0.0) > 0).any(axis=1)
