"""The paper's metrics, each an exact reduction over dense outcome arrays (``pipeline.reduce.results``).

Notation: N layers counted from 0; config (i, j) transplants the source prompt's output of layer i
into layer j of the target prompt (source layer i, target layer j); vanilla is no transplant.
acc(c, L) is the share of correct rows of config c among the instances of language L. ``mask`` is
a [n_instances] bool selecting the instances a metric is taken over (one language, or all of
them for the micro average). Arrays shaped (n, N, N) are [instance, source layer, target layer].

Partial grids (``grid=coarse``, ``source_last``, ``target_first``, ``upper_bounds``, ``pairs``,
``selected``, or an interrupted sweep): a metric over single configs or over the whole grid (vanilla,
acc(c), mean over configs, win/tie/lose, oracle upper bound) is over the configs present; a config's
accuracy is over the instances that have a row for it. A metric over one *row* or *column* of the
N x N grid (source-wise Eq. 4 and target-wise Eq. 5 upper bounds, layer-wise gains of Fig. 3) is
defined only where the run holds that whole row (all N target layers) or column (all N source
layers); elsewhere it is NaN (``null`` in JSON), and the same reduction over the partners present
is reported beside it, labelled with how many partners it covers (``*_over_present``,
``*_pairs``), so that a UB(i) over one target layer is never read as the Eq. 4 bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import PipelineError
from pipeline.reduce.results import Outcomes

ENTROPY_COLUMNS = ("entropy_mean", "entropy_first")


def _mean(values: np.ndarray, axis=None) -> np.ndarray | float:
    """Mean over the non-NaN entries (NaN where there are none), without numpy's empty-slice warning."""
    ok = ~np.isnan(values)
    count = ok.sum(axis=axis)
    total = np.where(ok, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)[()]


def share(flags: np.ndarray) -> float:
    """Share of True among ``flags`` (NaN when empty)."""
    return float(flags.mean()) if flags.size else float("nan")


def vanilla_accuracy(vanilla: Outcomes, mask: np.ndarray) -> float:
    """Share of correct vanilla rows among the masked instances (paper Table 3, "Vanilla")."""
    return share(vanilla.correct[mask])


def accuracy_matrix(grid: Outcomes, mask: np.ndarray) -> np.ndarray:
    """Full grid (paper Fig. 3 heatmaps): [N, N] acc((i, j), mask), NaN for configs with no row.

    Entry [i, j] = correct rows of (i, j) / rows of (i, j), over the masked instances.
    """
    rows = grid.present[mask].sum(axis=0)
    correct = grid.correct[mask].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, correct / np.maximum(rows, 1), np.nan)


def gain_matrix(accuracy: np.ndarray, vanilla_acc: float) -> np.ndarray:
    """[N, N] acc(i, j) - vanilla: the gain over vanilla of every config (Fig. 3)."""
    return accuracy - vanilla_acc


def mean_config_accuracy(accuracy: np.ndarray) -> float:
    """Average over configs (paper Fig. 2b): mean of acc(c) over the configs present."""
    return float(_mean(accuracy))


def win_tie_lose(grid: Outcomes, vanilla: Outcomes, mask: np.ndarray) -> tuple[float, float, float]:
    """Win / tie / lose rates (paper Fig. 2a): the share of configs whose accuracy is above /
    equal to / below vanilla's, over the configs present among the masked instances.

    Compared exactly on counts (c/n vs v/m as c*m vs v*n), so a tie is a true tie.
    """
    rows = grid.present[mask].sum(axis=0)
    correct = grid.correct[mask].sum(axis=0)
    v_correct, v_rows = int(vanilla.correct[mask].sum()), int(mask.sum())
    defined = rows > 0
    lhs, rhs = correct * v_rows, v_correct * rows
    n = int(defined.sum())
    if n == 0 or v_rows == 0:
        return float("nan"), float("nan"), float("nan")
    return (
        float(((lhs > rhs) & defined).sum() / n),
        float(((lhs == rhs) & defined).sum() / n),
        float(((lhs < rhs) & defined).sum() / n),
    )


@dataclass(frozen=True)
class LayerGains:
    """Layer-wise gains (paper Fig. 3) of an [N, N] gain matrix.

    Attributes:
        source: [N] source_gain[i] = mean over all N target layers j of acc(i, j) - vanilla;
            NaN unless every (i, j) of row i is present (the Fig. 3 curve needs the whole row).
        target: [N] target_gain[j] = the same over all N source layers i; NaN unless column j is whole.
        source_pairs / target_pairs: [N] how many partners (targets of row i / sources of column
            j) are present.
        source_over_present / target_over_present: [N] the mean over the partners present (NaN
            where none): equal to ``source`` / ``target`` on whole rows / columns, and over
            ``*_pairs`` configs elsewhere.
    """

    source: np.ndarray
    target: np.ndarray
    source_pairs: np.ndarray
    target_pairs: np.ndarray
    source_over_present: np.ndarray
    target_over_present: np.ndarray


def layer_gains(gains: np.ndarray) -> LayerGains:
    """Layer-wise gains (paper Fig. 3) from an [N, N] gain matrix (NaN = config not present)."""
    n = gains.shape[0]
    defined = ~np.isnan(gains)
    source_pairs, target_pairs = defined.sum(axis=1), defined.sum(axis=0)
    source_mean, target_mean = np.asarray(_mean(gains, axis=1)), np.asarray(_mean(gains, axis=0))
    return LayerGains(
        source=np.where(source_pairs == n, source_mean, np.nan),
        target=np.where(target_pairs == n, target_mean, np.nan),
        source_pairs=source_pairs,
        target_pairs=target_pairs,
        source_over_present=source_mean,
        target_over_present=target_mean,
    )


@dataclass(frozen=True)
class UpperBounds:
    """Instance-aware upper bounds (paper Eq. 4-5, Table 4).

    Attributes:
        source: [N] UB_src(i) = share of instances for which some target layer j in 0..N-1 makes
            (i, j) correct (Eq. 4). NaN unless row i is whole: every (i, j) has a row for every
            instance (a bound over fewer targets is a different, smaller quantity).
        target: [N] UB_tgt(j) = share of instances for which some source layer i in 0..N-1 makes
            (i, j) correct (Eq. 5). NaN unless column j is whole.
        oracle: share of instances for which some config of the grid is correct (vanilla not
            included, as in the authors' evaluation scripts).
        source_pairs / target_pairs: [N] target layers j of row i (source layers i of column j)
            whose config has a row for every instance.
        source_over_present / target_over_present: [N] the same shares over the configs present
            (an absent row counts as not correct; NaN where the layer has no config at all): a
            lower bound of Eq. 4 / Eq. 5 over ``*_pairs`` partners, equal to them on whole rows.
    """

    source: np.ndarray
    target: np.ndarray
    oracle: float
    source_pairs: np.ndarray
    target_pairs: np.ndarray
    source_over_present: np.ndarray
    target_over_present: np.ndarray

    @property
    def source_last(self) -> float:
        """Table 4 "SourceLast": UB_src(N-1), the last layer as source (NaN unless row N-1 is whole)."""
        return float(self.source[-1])

    @property
    def target_first(self) -> float:
        """Table 4 "TargetFirst": UB_tgt(0), the first layer as target (NaN unless column 0 is whole)."""
        return float(self.target[0])


def upper_bounds(grid: Outcomes, mask: np.ndarray) -> UpperBounds:
    """Eq. 4-5 over the masked instances; the denominator is every masked instance."""
    correct = grid.correct[mask]  # [n, N, N]
    present = grid.present[mask]
    n_layers = correct.shape[1]
    if correct.shape[0] == 0:
        nan, zero = np.full(n_layers, np.nan), np.zeros(n_layers, np.int64)
        return UpperBounds(nan, nan.copy(), float("nan"), zero, zero.copy(), nan.copy(), nan.copy())
    whole = present.all(axis=0)  # [N, N] configs with a row for every masked instance
    source_pairs, target_pairs = whole.sum(axis=1), whole.sum(axis=0)
    source = correct.any(axis=2).mean(axis=0)
    target = correct.any(axis=1).mean(axis=0)
    source[~present.any(axis=(0, 2))] = np.nan
    target[~present.any(axis=(0, 1))] = np.nan
    oracle = float(correct.any(axis=(1, 2)).mean()) if present.any() else float("nan")
    return UpperBounds(
        source=np.where(source_pairs == n_layers, source, np.nan),
        target=np.where(target_pairs == n_layers, target, np.nan),
        oracle=oracle,
        source_pairs=source_pairs,
        target_pairs=target_pairs,
        source_over_present=source,
        target_over_present=target,
    )


def resolve_layers(candidates: Sequence[Sequence[int]], n_layers: int) -> list[tuple[int, int]]:
    """(source, target) pairs with negative indices counted from the end (-1 = layer N-1)."""
    resolved = []
    for source, target in candidates:
        pair = (source % n_layers if source < 0 else source, target % n_layers if target < 0 else target)
        if not (0 <= pair[0] < n_layers and 0 <= pair[1] < n_layers):
            raise PipelineError(
                f"config ({source}, {target}) is outside layers 0..{n_layers - 1} (layers count from 0; -1 is the last)"
            )
        resolved.append(pair)
    return resolved


@dataclass(frozen=True)
class EntropySelection:
    """Entropy-based layer selection (paper Appendix F) over the masked instances.

    Attributes:
        accuracy: share correct when each instance takes the candidate with the lowest entropy.
        chosen: share of instances that took each candidate (same order as the candidates,
            vanilla last when included).
        fallback: share of instances with no candidate row at all, scored with vanilla.
    """

    accuracy: float
    chosen: list[float]
    fallback: float


def entropy_selection(
    grid: Outcomes,
    vanilla: Outcomes,
    mask: np.ndarray,
    candidates: Sequence[tuple[int, int]],
    entropy: str = "entropy_mean",
    include_vanilla: bool = False,
) -> EntropySelection:
    """Appendix F: per instance, among candidate configs (default target = 0, source in {0, N-1}),
    take the one whose generation had the lowest entropy and score it.

    A candidate without a row for the instance is skipped; a null entropy ranks after every
    finite one; ties go to the earlier candidate. ``include_vanilla`` adds vanilla as a candidate.
    """
    if entropy not in ENTROPY_COLUMNS:
        raise ValueError(f"entropy must be one of {ENTROPY_COLUMNS}, got {entropy!r}")
    index = np.flatnonzero(mask)
    at = (index[:, None], np.array([s for s, _ in candidates])[None, :], np.array([t for _, t in candidates])[None, :])
    ent = getattr(grid, entropy)[at]  # [n, K]
    avail = grid.present[at]
    correct = grid.correct[at]
    if include_vanilla:
        ent = np.column_stack([ent, getattr(vanilla, entropy)[index]])
        avail = np.column_stack([avail, np.ones(len(index), bool)])
        correct = np.column_stack([correct, vanilla.correct[index]])
    finite_max = np.finfo(np.float64).max
    score = np.where(avail, np.where(np.isnan(ent), finite_max, ent), np.inf)
    choice = np.argmin(score, axis=1)
    none = ~avail.any(axis=1)
    picked = np.where(none, vanilla.correct[index], correct[np.arange(len(index)), choice])
    chosen = [share((choice == k) & ~none) for k in range(score.shape[1])]
    return EntropySelection(share(picked), chosen, share(none))


@dataclass(frozen=True)
class Perplexity:
    """Perplexity (paper Table 1): per row exp(-logprob_sum / n_new_tokens), averaged over rows.

    Attributes:
        mean: mean over rows with at least one generated token.
        median: median over the same rows (robust to a few degenerate generations).
        n_rows: rows averaged.
        n_excluded: rows with no generated token, excluded and counted.
    """

    mean: float
    median: float
    n_rows: int
    n_excluded: int


def perplexity(outcomes: Outcomes, mask: np.ndarray) -> Perplexity:
    """Perplexity over the masked instances' rows (vanilla rows, or every config row of a grid)."""
    values = outcomes.perplexity[mask]
    kept = values[~np.isnan(values)]
    excluded = int((outcomes.present[mask] & outcomes.empty[mask]).sum())
    if kept.size == 0:
        return Perplexity(float("nan"), float("nan"), 0, excluded)
    return Perplexity(float(kept.mean()), float(np.median(kept)), int(kept.size), excluded)


def language_consistency(outcomes: Outcomes, mask: np.ndarray) -> float | None:
    """Language consistency (paper Table 1): share of the masked rows whose response's language ID
    equals the language it should be in (``response_lang``); empty responses count as inconsistent.
    None when language ID was not run.
    """
    if outcomes.consistent is None:
        return None
    present = outcomes.present[mask]
    return share(outcomes.consistent[mask][present])


def best_config(accuracy: np.ndarray) -> tuple[int, int, float] | None:
    """The (source, target) config with the highest accuracy (first in row-major order on ties).

    Chosen on the evaluated instances themselves, so it is an optimistic, oracle-picked number.
    """
    if np.all(np.isnan(accuracy)):
        return None
    i, j = np.unravel_index(np.nanargmax(accuracy), accuracy.shape)
    return int(i), int(j), float(accuracy[i, j])


def group_mean(values: Sequence) -> object:
    """High/Mid/Low group value (paper Table 3): the mean of the group's language values, entry by
    entry for lists and matrices; NaN entries are left out. None when no language has a value.
    """
    present = [v for v in values if v is not None]
    if not present:
        return None
    stacked = np.array(present, dtype=np.float64)
    result = _mean(stacked, axis=0)
    return result.tolist() if isinstance(result, np.ndarray) else float(result)


@dataclass(frozen=True)
class GapClosed:
    """Share of the vanilla-to-upper-bound gap a selection closes, with a bootstrap interval.

    Attributes:
        value: (selected - vanilla) / (upper bound - vanilla), accuracies over the instances; NaN
            when the upper bound equals vanilla (no gap to close).
        low / high: percentile bootstrap interval (``level``) over instances, resampled within
            strata (languages, for a High/Mid/Low group); NaN when undefined.
        n: instances.
    """

    value: float
    low: float
    high: float
    n: int


def gap_closed(
    selected: np.ndarray,
    vanilla: np.ndarray,
    upper: np.ndarray,
    strata: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> GapClosed:
    """Gap closed by a per-instance selection (issue 11) with a bootstrap interval over instances.

    Args:
        selected / vanilla / upper: [n] per-instance correctness (0/1) of the selection, of vanilla,
            and of the upper bound (some allowed choice is correct).
        strata: [n] stratum codes; the accuracy is the mean over strata of the per-stratum
            accuracy (the paper's group value: the mean of its languages), and the bootstrap
            resamples within each stratum. None = one stratum (micro average).
        n_boot / seed / level: bootstrap replicates, generator seed, interval coverage.
    """
    selected, vanilla, upper = (np.asarray(a, np.float64) for a in (selected, vanilla, upper))
    n = len(selected)
    if n == 0:
        return GapClosed(float("nan"), float("nan"), float("nan"), 0)
    strata = np.zeros(n, np.int64) if strata is None else np.asarray(strata)
    rng = np.random.default_rng(seed)
    point = np.zeros(3)
    boot = np.zeros((n_boot, 3))
    values = np.stack([selected, vanilla, upper], axis=1)  # [n, 3]
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    for index in groups:
        point += values[index].mean(axis=0)
        draws = index[rng.integers(0, len(index), size=(n_boot, len(index)))]  # [B, n_s]
        boot += np.stack([values[:, c][draws].mean(axis=1) for c in range(3)], axis=1)  # [B, 3]
    point, boot = point / len(groups), boot / len(groups)

    def ratio(a: np.ndarray) -> np.ndarray:
        gap = a[..., 2] - a[..., 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(gap > 0, (a[..., 0] - a[..., 1]) / np.where(gap > 0, gap, 1.0), np.nan)

    value = float(ratio(point))
    replicates = ratio(boot)
    replicates = replicates[~np.isnan(replicates)]
    if np.isnan(value) or replicates.size == 0:
        return GapClosed(value, float("nan"), float("nan"), n)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return GapClosed(value, float(low), float(high), n)
