"""Paired tests: two models measured on the same items (McNemar, DeLong) or the same seeds (paired t).

Why paired: most of the variation between test items is how hard each item is, and it is the same for both
models. Comparing each item with itself removes it; two separate intervals, or the standard error of one
accuracy used for a difference, leave it in and either hide real differences or invent them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facekit.stats.bootstrap import as_array
from facekit.stats.interval import Interval, check_level, z_value

__all__ = ["Test", "mcnemar", "paired_seeds", "paired_t", "delong"]


@dataclass(frozen=True)
class Test:
    """The result of a hypothesis test of "no difference"."""

    statistic: float  # the test statistic (McNemar exact: the smaller discordant count; t; z)
    p_value: float  # two-sided p-value
    method: str  # e.g. "McNemar exact"
    n: int  # items (or seeds) compared
    difference: Interval | None = None  # the difference A - B with its interval, when the test gives one


def _as_bool(x, name: str) -> np.ndarray:
    a = as_array(x, name)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one correct/incorrect per item); got shape {a.shape}")
    if a.dtype != bool and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must hold booleans or 0/1 (correct or not per item)")
    return a.astype(bool)


def mcnemar(correct_a, correct_b) -> Test:
    """McNemar's exact test: do two classifiers scored on the same items differ in accuracy?

    Only the discordant items carry information: ``b`` items A got right and B wrong, ``c`` the reverse. With no
    difference each discordant item is a fair coin, so ``min(b, c)`` is Binomial(b + c, 1/2); the p-value is the
    two-sided exact binomial tail. Items both got right (or both wrong) say nothing about which is better.

    Args:
        correct_a, correct_b: (N,) booleans, whether A (B) classified item i correctly; same items, same order.

    >>> t = mcnemar([1, 1, 1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 1, 0])  # b = 6, c = 0
    >>> t.statistic, round(t.p_value, 4)
    (0.0, 0.0312)
    """
    from scipy.stats import binom

    a, b_ = _as_bool(correct_a, "correct_a"), _as_bool(correct_b, "correct_b")
    if a.shape != b_.shape:
        raise ValueError(f"correct_a and correct_b must score the same items: shapes {a.shape} and {b_.shape}")
    if a.size == 0:
        raise ValueError("no items to compare (n = 0)")
    b, c = int((a & ~b_).sum()), int((~a & b_).sum())
    k = min(b, c)
    p = 1.0 if b + c == 0 else min(1.0, 2.0 * float(binom.cdf(k, b + c, 0.5)))
    return Test(float(k), p, f"McNemar exact ({b} vs {c} discordant)", int(a.size))


_TIED = 1e-12  # relative spread below which the seeds' differences count as all equal


def paired_t(values_a, values_b, level: float = 0.95) -> Test:
    """Paired t-test over seeds: the mean of ``a_i - b_i`` against zero, with its t interval.

    Each seed is one repetition of the whole experiment (initialisation, data order); A and B share the seed
    so the pair differs only in what is being compared. The differences' spread across seeds is the noise.
    """
    from scipy.stats import t as student_t

    level = check_level(level)
    a, b = as_array(values_a, "values_a").astype(float), as_array(values_b, "values_b").astype(float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"values_a and values_b need one value per seed each, same seeds: shapes {a.shape}, {b.shape}")
    if a.size < 2:
        raise ValueError(f"a paired comparison over seeds needs at least 2 seeds (3 or more to name a winner); "
                         f"got {a.size}. Rerun both with more seeds.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("values_a and values_b must be finite")
    d = a - b
    n = d.size
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd <= _TIED * max(abs(mean), 1.0):  # equal differences up to round-off: no spread at all
        sd = 0.0
    se = sd / math.sqrt(n)
    q = float(student_t.ppf(0.5 + level / 2, n - 1))
    method = f"paired t over {n} seeds"
    if se == 0.0:
        stat, p = (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    else:
        stat = mean / se
        p = float(2 * student_t.sf(abs(stat), n - 1))
    return Test(stat, p, method, n, Interval(mean, mean - q * se, mean + q * se, level, method))


def paired_seeds(values_a, values_b, level: float = 0.95) -> Interval:
    """Paired t interval of the mean difference ``a - b`` over seeds (one value per seed for each).

    >>> print(paired_seeds([0.81, 0.83, 0.82], [0.78, 0.80, 0.80]))
    0.027 [0.012, 0.041]
    """
    return paired_t(values_a, values_b, level).difference


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components from midranks: V10 (per positive), V01 (per negative)."""
    from scipy.stats import rankdata

    m, n = pos.size, neg.size
    r_all = rankdata(np.concatenate([pos, neg]))
    v10 = (r_all[:m] - rankdata(pos)) / n  # share of negatives below each positive (ties 1/2)
    v01 = 1.0 - (r_all[m:] - rankdata(neg)) / m  # share of positives above each negative
    return v10, v01


def delong(scores_a, scores_b, is_same, level: float = 0.95) -> Test:
    """DeLong's test for the difference of two correlated AUCs (two models scored on the same pairs).

    Each AUC is the mean over genuine pairs of the share of impostor pairs it outscores; DeLong's variance of
    the difference comes from how those per-pair shares co-vary between the models. Faster than a bootstrap and
    exact in the limit, but it treats pairs as independent: with people shared between pairs prefer
    :func:`facekit.stats.paired_bootstrap` with ``groups``.
    """
    from scipy.stats import norm

    level = check_level(level)
    y = as_array(is_same, "is_same").astype(bool)
    sa, sb = as_array(scores_a, "scores_a").astype(float), as_array(scores_b, "scores_b").astype(float)
    if not (sa.shape == sb.shape == y.shape) or y.ndim != 1:
        raise ValueError(f"scores_a, scores_b and is_same need the same (N,) shape; "
                         f"got {sa.shape}, {sb.shape}, {y.shape}")
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 genuine and 2 impostor pairs; got {m} genuine, {n} impostor")
    comps = [_placements(s[y], s[~y]) for s in (sa, sb)]
    aucs = np.array([c[0].mean() for c in comps])
    s10 = np.cov(np.stack([c[0] for c in comps]))  # 2x2 over genuine pairs
    s01 = np.cov(np.stack([c[1] for c in comps]))  # 2x2 over impostor pairs
    contrast = np.array([1.0, -1.0])
    var = float(contrast @ s10 @ contrast / m + contrast @ s01 @ contrast / n)
    diff = float(aucs[0] - aucs[1])
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:
        z, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    else:
        z = diff / se
        p = float(2 * norm.sf(abs(z)))
    half = z_value(level) * se
    method = f"DeLong over {m + n:,} pairs"
    return Test(z, p, method, m + n, Interval(diff, diff - half, diff + half, level, method))
