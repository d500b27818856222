"""Scorers: P(correct | instance features, candidate config), from scikit-learn (issue 11, item 2).

Two learners, both returning an [n, K + 1] matrix of probabilities (column 0 = vanilla, then the K
candidates):

* ``hgb`` (default): one ``HistGradientBoostingClassifier`` over (instance, candidate) rows. The
  candidate enters as features (vanilla flag, granularity, source layer i, target layer j, and the
  instance's source/target similarity at layers i and j), so trees learn the *interactions* a
  per-instance choice needs (a model additive in instance and candidate features would rank the
  candidates identically for every instance), share strength between neighbouring layers, take
  language and task as native categoricals and missing values as they are; trees need no scaling.
  Early stopping is off: its internal validation split would not be grouped by instance.
* ``logistic``: one ``LogisticRegression`` per candidate (= instance features crossed with the
  candidate one-hot), each an sklearn ``Pipeline`` of one-hot language/task, imputation and
  standard scaling, so the scaling lives inside the saved artefact. Simple and well calibrated,
  but it shares nothing between candidates.

A candidate whose training labels are all equal gets that constant (sklearn refuses one class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pipeline.errors import PipelineError
from pipeline.selector.features import FEATURE_SITES, LAYER_FEATURES, SCALAR_FEATURES

LEARNERS = ("hgb", "logistic")
CATEGORICAL = ("lang", "task")


@dataclass
class FeatureSpec:
    """How feature rows become a numeric matrix: column names and the category vocabularies.

    Columns: the scalar features, then each layer feature at layers 0..N-1, then ``lang`` and
    ``task`` as category codes (NaN for a value unseen in training).
    """

    n_layers: int
    langs: list[str]
    tasks: list[str]
    names: list[str] = field(default_factory=list)

    @classmethod
    def learn(cls, features: pa.Table, n_layers: int) -> FeatureSpec:
        names = [*SCALAR_FEATURES]
        names += [f"{name}[{k}]" for name in LAYER_FEATURES for k in range(n_layers)]
        names += list(CATEGORICAL)
        langs = sorted(set(features["lang"].to_pylist()))
        tasks = sorted(set(features["task"].to_pylist()))
        return cls(n_layers=n_layers, langs=langs, tasks=tasks, names=names)

    @property
    def categorical(self) -> list[int]:
        return [len(self.names) - len(CATEGORICAL) + k for k in range(len(CATEGORICAL))]

    def column(self, layer_feature: str, layer: int) -> int:
        return len(SCALAR_FEATURES) + LAYER_FEATURES.index(layer_feature) * self.n_layers + layer

    def encode(self, features: pa.Table) -> np.ndarray:
        """[n, D] float64 matrix of the feature rows."""
        n = features.num_rows
        parts = [
            np.asarray(features[name].to_numpy(zero_copy_only=False), np.float64)[:, None] for name in SCALAR_FEATURES
        ]
        for name in LAYER_FEATURES:
            values = np.array(features[name].to_pylist(), dtype=np.float64).reshape(n, -1)
            if values.shape[1] != self.n_layers:
                raise PipelineError(
                    f"feature {name} has {values.shape[1]} layers; the selector expects {self.n_layers}"
                )
            parts.append(values)
        for name, vocab in (("lang", self.langs), ("task", self.tasks)):
            lookup = {v: float(k) for k, v in enumerate(vocab)}
            parts.append(np.array([lookup.get(v, np.nan) for v in features[name].to_pylist()])[:, None])
        return np.hstack(parts) if n else np.zeros((0, len(self.names)))


def _site(granularity: str) -> str | None:
    """The feature site of a granularity (attn_released transplants at the attention site)."""
    if granularity in FEATURE_SITES:
        return granularity
    return "attn" if granularity.startswith("attn") else None


def candidate_matrix(x: np.ndarray, spec: FeatureSpec, candidates: Sequence[tuple[str, int, int]]) -> np.ndarray:
    """[n * (K + 1), D + 8] rows: each instance's features with vanilla, then each candidate's encoding.

    Candidate columns: is_vanilla, granularity code, i, j, cos at i, cos at j, log norm ratio at
    i, log norm ratio at j (for the candidate's granularity; NaN for vanilla).
    """
    n, k = x.shape[0], len(candidates) + 1
    grans = sorted({g for g, _, _ in candidates})
    extra = np.full((n, k, 8), np.nan)
    extra[:, 0, 0] = 1.0
    for c, (g, i, j) in enumerate(candidates, start=1):
        extra[:, c, 0] = 0.0
        extra[:, c, 1] = grans.index(g)
        extra[:, c, 2:4] = (i, j)
        site = _site(g)
        if site is not None:
            at = ((f"cos_{site}", i), (f"cos_{site}", j), (f"log_norm_ratio_{site}", i), (f"log_norm_ratio_{site}", j))
            for col, (kind, layer) in enumerate(at):
                extra[:, c, 4 + col] = x[:, spec.column(kind, layer)]
    base = np.repeat(x[:, None, :], k, axis=1)
    return np.concatenate([base, extra], axis=2).reshape(n * k, -1).astype(np.float32)


class BoostedScorer:
    """``hgb``: gradient-boosted trees over (instance, candidate) rows."""

    def __init__(self, spec: FeatureSpec, candidates: Sequence[tuple[str, int, int]], params: dict, seed: int = 0):
        self.spec = spec
        self.candidates = list(candidates)
        self.params = dict(params)
        categorical = [*spec.categorical, len(spec.names) + 1]  # lang, task, candidate granularity
        width = len(spec.names) + 8
        mask = np.zeros(width, bool)
        mask[categorical] = True
        self.model = HistGradientBoostingClassifier(
            categorical_features=mask, early_stopping=False, random_state=seed, **self.params
        )
        self.constant: float | None = None

    def fit(self, x: np.ndarray, labels: np.ndarray) -> BoostedScorer:
        """``labels``: [n, K + 1] 1/0, NaN where the run had no row (left out)."""
        rows = candidate_matrix(x, self.spec, self.candidates)
        y = labels.reshape(-1)
        known = ~np.isnan(y)
        values = np.unique(y[known])
        if len(values) < 2:
            self.constant = float(values[0]) if len(values) else 0.0
            return self
        self.model.fit(rows[known], y[known].astype(int))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """[n, K + 1] P(correct)."""
        k = len(self.candidates) + 1
        if self.constant is not None:
            return np.full((x.shape[0], k), self.constant)
        rows = candidate_matrix(x, self.spec, self.candidates)
        return self.model.predict_proba(rows)[:, 1].reshape(x.shape[0], k)

    def export(self) -> tuple[dict, object]:
        """(JSON state, fitted estimator or None) for ``pipeline.selector.artefact``."""
        return {"constant": self.constant}, None if self.constant is not None else self.model

    def restore(self, state: dict, estimators) -> BoostedScorer:
        self.constant = state.get("constant")
        if self.constant is None:
            self.model = estimators
        return self


class LogisticScorer:
    """``logistic``: one scaled logistic regression per candidate (and one for vanilla)."""

    def __init__(self, spec: FeatureSpec, candidates: Sequence[tuple[str, int, int]], params: dict, seed: int = 0):
        self.spec = spec
        self.candidates = list(candidates)
        self.params = dict(params)
        self.seed = seed
        self.models: list[Pipeline | float] = []

    def _pipeline(self) -> Pipeline:
        categorical = self.spec.categorical
        numeric = [c for c in range(len(self.spec.names)) if c not in categorical]
        prepare = ColumnTransformer([
            ("categories", Pipeline([("fill", SimpleImputer(strategy="constant", fill_value=-1.0)),
                                     ("onehot", OneHotEncoder(handle_unknown="ignore"))]), categorical),
            ("numbers", Pipeline([("fill", SimpleImputer(strategy="median", keep_empty_features=True)),
                                  ("scale", StandardScaler())]), numeric),
        ])  # fmt: skip
        model = LogisticRegression(max_iter=2000, random_state=self.seed, **self.params)
        return Pipeline([("prepare", prepare), ("model", model)])

    def fit(self, x: np.ndarray, labels: np.ndarray) -> LogisticScorer:
        self.models = []
        for c in range(labels.shape[1]):
            known = ~np.isnan(labels[:, c])
            values = np.unique(labels[known, c])
            if len(values) < 2:
                self.models.append(float(values[0]) if len(values) else 0.0)
                continue
            self.models.append(self._pipeline().fit(x[known], labels[known, c].astype(int)))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        columns = [
            np.full(x.shape[0], m) if isinstance(m, float) else m.predict_proba(x)[:, 1] for m in self.models
        ]
        return np.column_stack(columns) if columns else np.zeros((x.shape[0], 0))

    def export(self) -> tuple[dict, object]:
        """(JSON state: each column's constant or None, the fitted pipelines with None for constants)."""
        constants = [m if isinstance(m, float) else None for m in self.models]
        return {"constants": constants}, [None if isinstance(m, float) else m for m in self.models]

    def restore(self, state: dict, estimators) -> LogisticScorer:
        self.models = [c if c is not None else m for c, m in zip(state["constants"], estimators, strict=True)]
        return self


def make_scorer(learner: str, spec: FeatureSpec, candidates, params: dict, seed: int = 0):
    """A fresh, unfitted scorer of kind ``learner`` with hyperparameters ``params``."""
    if learner == "hgb":
        return BoostedScorer(spec, candidates, params, seed)
    if learner == "logistic":
        return LogisticScorer(spec, candidates, params, seed)
    raise PipelineError(f"learner={learner} is not valid; valid: {', '.join(LEARNERS)}")
