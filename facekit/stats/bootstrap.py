"""The percentile bootstrap: an interval for any metric, by recomputing it on resampled test sets.

The test set is one sample of the items the model could have been tested on. Drawing ``n`` items *with
replacement* from it imitates drawing another test set; the metric recomputed on ``n_boot`` such resamples
spreads about as it would across test sets, and the middle 95% of that spread is the percentile interval.

**Resample what is independent.** Verification pairs are not independent items: the pairs of one person share
that person's images, so if the model handles that person badly, all of their pairs fail together. Resampling
single pairs then treats 10 correlated pairs as 10 independent pieces of evidence, and the interval comes out
too narrow. With ``groups`` (one label per item, e.g. the person of each pair) whole groups are drawn with
replacement, each with all of its items: the interval then reflects how the metric varies across *people*, which
is what a new test set of new people would change. For impostor pairs, which involve two people, pass one of
them (e.g. the person of the first image): that keeps most shared images together.

**Paired.** :func:`paired_bootstrap` draws one set of indices per resample and scores both models on it, so the
difference is measured on the same items each time; the items' difficulty cancels, and the interval of the
difference is much narrower than two separate intervals would suggest.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np

from facekit.stats.interval import Interval, check_level

__all__ = ["bootstrap", "paired_bootstrap", "resample_indices", "as_array", "MAX_FAILED_FRACTION"]

BLOCK_ELEMENTS = 2_000_000  # draws per block of resamples (memory: about 16 MB per array of that size)
MAX_FAILED_FRACTION = 0.1  # resamples where the metric is undefined (one class only) are skipped; more: an error


def as_array(x, name: str) -> np.ndarray:
    """``x`` (numpy array, torch tensor or list) as a numpy array; a ValueError naming ``name`` if impossible."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array-like of one value per item: {err}") from err
    if a.ndim == 0:
        raise ValueError(f"{name} must hold one value per item, got a scalar {a!r}")
    return a


def _check_arrays(arrays: Sequence, groups) -> tuple[list[np.ndarray], np.ndarray | None, int]:
    if not arrays:
        raise ValueError("give at least one array of per-item values to resample")
    arrs = [as_array(a, f"array {i}") for i, a in enumerate(arrays)]
    n = len(arrs[0])
    for i, a in enumerate(arrs):
        if len(a) != n:
            raise ValueError(f"all arrays need one value per item: array 0 has {n}, array {i} has {len(a)}")
    if n == 0:
        raise ValueError("no items to resample (n = 0)")
    g = None
    if groups is not None:
        g = as_array(groups, "groups")
        if g.shape != (n,):
            raise ValueError(f"groups must hold one label per item, shape ({n},); got shape {g.shape}")
    return arrs, g, n


def resample_indices(n: int, groups=None, *, rng: np.random.Generator) -> np.ndarray:
    """Indices of one bootstrap resample of ``n`` items: ``n`` items with replacement, or, with ``groups``,
    as many groups as there are, with replacement, each contributing all of its items.

    >>> idx = resample_indices(4, ["x", "x", "y", "z"], rng=np.random.default_rng(0))
    >>> sorted(set(idx.tolist())) in ([0, 1], [2], [3], [0, 1, 2], [0, 1, 3], [2, 3], [0, 1, 2, 3])
    True
    """
    if groups is None:
        return rng.integers(0, n, size=n)
    members = group_members(np.asarray(groups))
    return np.concatenate([members[i] for i in rng.integers(0, len(members), size=len(members))])


def group_members(groups: np.ndarray) -> list[np.ndarray]:
    """The item indices of each distinct group label, in the order of the sorted labels."""
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, bounds)


def check_n_boot(n_boot) -> int:
    """``n_boot`` as an int >= 10, or a ValueError naming the parameter."""
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 10:
        raise ValueError(f"n_boot must be an integer >= 10 (2,000 is usual); got {n_boot!r}")
    return int(n_boot)


def draw_blocks(rng: np.random.Generator, units: int, n_boot: int):
    """The resamples' draws, ``units`` indices in ``[0, units)`` each, in blocks of shape (c, units).

    One stream for every bootstrap in this package: the same seed draws the same items (or groups) whether the
    metric is computed one resample at a time (:func:`bootstrap`) or on a block at once (the ROC metrics).
    """
    per_block = max(1, BLOCK_ELEMENTS // units)
    done = 0
    while done < n_boot:
        c = min(per_block, n_boot - done)
        yield rng.integers(0, units, size=(c, units))
        done += c


def percentile_interval(estimate: float, values, n_boot: int, level: float, unit: str) -> Interval:
    """The percentile interval of the finite bootstrap ``values``; a ValueError if too many resamples failed."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    failed = n_boot - values.size
    if failed > MAX_FAILED_FRACTION * n_boot:
        raise ValueError(f"the metric was undefined on {failed} of {n_boot} resamples (e.g. a resample with only one "
                         "class): the test set is too small or too unbalanced for a bootstrap interval")
    alpha = 1.0 - level
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return Interval(float(estimate), float(low), float(high), level,
                    f"percentile bootstrap, {n_boot:,} resamples of {unit}")


def check_estimate(estimate: float) -> float:
    estimate = float(estimate)
    if not math.isfinite(estimate):
        raise ValueError(f"the metric is {estimate} on the data as given (e.g. only one class present): no interval")
    return estimate


def bootstrap(metric: Callable[..., float], *arrays, groups=None, n_boot: int = 2000, level: float = 0.95,
              seed: int = 0) -> Interval:
    """Percentile bootstrap interval of ``metric(*arrays)``.

    Use it for any metric without a formula for its interval (a mean score, a rate, a custom metric), and with
    ``groups`` whenever items are not independent (verification pairs: pass the person of each pair). For
    AUC, TAR@FAR, EER and accuracy of verification scores, :func:`facekit.stats.auc_interval` and its siblings
    draw the same resamples and compute them all at once, much faster.

    Args:
        metric: a function of the arrays, returning a float; e.g. ``lambda s, y: roc_auc_score(y, s)``.
        *arrays: per-item arrays of equal length (numpy, torch or lists), resampled together.
        groups: optional, one label per item; whole groups are resampled (see the module docstring for why).
        n_boot: number of resamples. With 2,000 each end of a 95% interval moves by about 1.5% of the
            interval's width from one seed to another (the Monte-Carlo error of a 2.5% quantile).
        level: coverage, default 0.95.
        seed: seed of the resampling generator (the interval is reproducible).

    Returns:
        an :class:`Interval` with ``estimate = metric(*arrays)`` on the data as measured.

    Resamples where ``metric`` raises ValueError or returns NaN (e.g. only one class drawn) are skipped; if
    more than ``MAX_FAILED_FRACTION`` of them fail, a ValueError says so.

    >>> x = np.arange(100.0)
    >>> iv = bootstrap(np.mean, x, n_boot=500)
    >>> iv.estimate, iv.low < 49.5 < iv.high
    (49.5, True)
    """
    level, n_boot = check_level(level), check_n_boot(n_boot)
    arrs, g, n = _check_arrays(arrays, groups)
    estimate = check_estimate(metric(*arrs))
    members = group_members(g) if g is not None else None
    values = []
    for block in draw_blocks(np.random.default_rng(seed), n if members is None else len(members), n_boot):
        for draw in block:
            idx = draw if members is None else np.concatenate([members[i] for i in draw])
            try:
                with warnings.catch_warnings():  # e.g. sklearn's "only one class": counted as failed instead
                    warnings.simplefilter("ignore")
                    values.append(float(metric(*[a[idx] for a in arrs])))
            except ValueError:
                values.append(math.nan)
    unit = f"{len(members):,} groups" if members is not None else f"{n:,} items"
    return percentile_interval(estimate, values, n_boot, level, unit)


def paired_bootstrap(metric: Callable[..., float], a_scores, b_scores, *shared, groups=None, n_boot: int = 2000,
                     level: float = 0.95, seed: int = 0) -> Interval:
    """Interval of ``metric(a_scores, *shared) - metric(b_scores, *shared)``: two models on the same items.

    Each resample draws one set of items (or of groups) and scores *both* models on it, so the difference is
    always taken on the same items. Use it for a difference of AUCs, of TAR@FAR, of accuracies.

    Args:
        metric: function of one model's per-item values and the shared arrays, e.g.
            ``lambda s, y: roc_auc_score(y, s)``.
        a_scores, b_scores: per-item values of model A and model B (same items, same order).
        *shared: per-item arrays both models share (labels such as ``is_same``).
        groups, n_boot, level, seed: as in :func:`bootstrap`.

    >>> y = np.array([1, 0] * 50)
    >>> a = y + np.random.default_rng(1).normal(0, 0.5, 100)   # A separates the classes
    >>> b = np.random.default_rng(2).normal(0, 0.5, 100)       # B is noise
    >>> from sklearn.metrics import roc_auc_score
    >>> paired_bootstrap(lambda s, t: roc_auc_score(t, s), a, b, y, n_boot=200).low > 0
    True
    """
    def difference(a, b, *rest):
        return metric(a, *rest) - metric(b, *rest)

    iv = bootstrap(difference, a_scores, b_scores, *shared, groups=groups, n_boot=n_boot, level=level, seed=seed)
    return Interval(iv.estimate, iv.low, iv.high, iv.level, "paired " + iv.method)
