"""Intervals for verification metrics (AUC, TAR@FAR, EER, best-threshold accuracy) by bootstrap.

The point estimates are :mod:`facekit.metrics.verification` (built on ``sklearn.metrics``), so an interval's
estimate is exactly the number the chapter reports. Pass ``groups`` (the person of each pair) to resample
people rather than pairs: see :mod:`facekit.stats.bootstrap` for why.

How it is fast: a resample is the same pairs with multiplicities ``w`` (how often each was drawn). Sorting the
scores once, the ROC of any resample is two cumulative sums of weights over the distinct scores (genuine and
impostor pairs accepted at each threshold), so a block of resamples is a few array operations, not thousands of
``sklearn`` calls. The resamples are the ones :func:`facekit.stats.bootstrap` draws with the same seed, and the
tests check that both give the same interval.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from facekit.metrics import verification as vm
from facekit.stats.bootstrap import (as_array, check_estimate, check_n_boot, draw_blocks, group_members,
                                     percentile_interval)
from facekit.stats.interval import Interval, check_level

__all__ = ["auc_interval", "tar_at_far_interval", "eer_interval", "ScoreMetric", "score_metric", "roc_bootstrap"]


# ---- metrics of ROC counts: TP, FP of shape (c, T), accepting the top t distinct scores at column t -----------

def _auc_counts(tp, fp):
    p, n = tp[:, -1], fp[:, -1]
    area = (np.diff(fp, axis=1) * (tp[:, 1:] + tp[:, :-1])).sum(1) / 2  # trapezoids; a tie is a diagonal
    with np.errstate(invalid="ignore", divide="ignore"):
        return area / (p * n)


def _tar_counts(far_target: float):
    def tar_at(tp, fp):
        with np.errstate(invalid="ignore", divide="ignore"):
            far, tar = fp / fp[:, -1:], tp / tp[:, -1:]
        rows = np.arange(len(far))
        i = (far <= far_target).sum(1) - 1  # last point with FAR <= target (FAR is non-decreasing)
        j = np.minimum(i + 1, far.shape[1] - 1)
        step = far[rows, j] - far[rows, i]
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(step > 0, (far_target - far[rows, i]) / step, 0.0)
        return tar[rows, i] + w * (tar[rows, j] - tar[rows, i])
    return tar_at


def _eer_counts(tp, fp):
    p, n = tp[:, -1:], fp[:, -1:]
    gap = fp * p - (p - tp) * n  # (FAR - FRR) * P * N, non-decreasing along each row
    with np.errstate(invalid="ignore", divide="ignore"):
        far = fp / n
    rows = np.arange(len(gap))
    j = np.argmax(gap >= 0, axis=1)
    prev = np.maximum(j - 1, 0)
    g1, g0 = gap[rows, j], gap[rows, prev]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where((g1 == 0) | (j == 0), 0.0, -g0 / (g1 - g0))
    base = np.where((g1 == 0) | (j == 0), far[rows, j], far[rows, prev])
    return np.where((g1 == 0) | (j == 0), base, base + w * (far[rows, j] - far[rows, prev]))


def _accuracy_counts(tp, fp):
    p, n = tp[:, -1:], fp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((tp + n - fp) / (p + n)).max(1)


@dataclass(frozen=True)
class ScoreMetric:
    """A verification metric of ``(scores, is_same)``, its display name and its direction."""

    name: str  # e.g. "AUC", "TAR@FAR=1e-03"
    fn: Callable[[np.ndarray, np.ndarray], float]  # (scores, is_same) -> value, from facekit.metrics
    higher_is_better: bool
    from_counts: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (TP, FP) ROC counts (c, T) -> (c,) values
    far: float | None = None  # the FAR of a TAR@FAR metric


def _tar_fn(far: float):
    def tar(s, y) -> float:
        return vm.tar_at_far(s, y, (far,))[0].tar
    return tar


_FIXED = {
    "auc": ScoreMetric("AUC", vm.auc, True, _auc_counts),
    "eer": ScoreMetric("EER", lambda s, y: vm.eer(s, y)[0], False, _eer_counts),
    "accuracy": ScoreMetric("best-threshold accuracy", lambda s, y: vm.best_accuracy_threshold(s, y)[1], True,
                            _accuracy_counts),
}
_TAR = re.compile(r"^tar@far=([0-9.eE+-]+)$")


def score_metric(name: str) -> ScoreMetric:
    """The metric called ``name``: ``"auc"``, ``"eer"``, ``"accuracy"`` (at the best threshold on the same pairs,
    optimistic but equally so for both models) or ``"tar@far=1e-3"`` (any FAR in (0, 1]).

    >>> score_metric("tar@far=1e-3").name, score_metric("eer").higher_is_better
    ('TAR@FAR=1e-03', False)
    """
    key = str(name).strip().lower().replace(" ", "")
    if key in _FIXED:
        return _FIXED[key]
    m = _TAR.match(key)
    if m:
        try:
            far = float(m.group(1))
        except ValueError:
            far = -1.0
        if 0 < far <= 1:
            return ScoreMetric(f"TAR@FAR={far:.0e}", _tar_fn(far), True, _tar_counts(far), far)
    raise ValueError(f"unknown metric {name!r}: use 'auc', 'eer', 'accuracy' or 'tar@far=<FAR>' such as 'tar@far=1e-3'")


def _checked(scores, is_same) -> tuple[np.ndarray, np.ndarray]:
    s = as_array(scores, "scores").astype(np.float64)
    y = as_array(is_same, "is_same").astype(bool)
    return vm._check(s, y)  # one home for the validation: shapes, NaN, both classes present


class _SortedScores:
    """One model's scores sorted once (highest first), cut at its distinct values."""

    def __init__(self, scores: np.ndarray, is_same: np.ndarray):
        self.order = np.argsort(-scores, kind="stable")
        s = scores[self.order]
        self.starts = np.concatenate([[0], np.flatnonzero(np.diff(s)) + 1])  # first position of each value
        self.genuine = is_same[self.order]

    def counts(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted genuine (TP) and impostor (FP) pairs accepted by each threshold: (c, T + 1), from 0."""
        w = weights[:, self.order].astype(np.float64)
        gen = np.add.reduceat(w * self.genuine, self.starts, axis=1)
        imp = np.add.reduceat(w * ~self.genuine, self.starts, axis=1)
        zero = np.zeros((len(w), 1))
        return np.hstack([zero, gen.cumsum(1)]), np.hstack([zero, imp.cumsum(1)])


def _valid(from_counts, tp, fp) -> np.ndarray:
    """The metric of each resample, NaN where a resample drew only genuine or only impostor pairs."""
    ok = (tp[:, -1] > 0) & (fp[:, -1] > 0)
    return np.where(ok, from_counts(tp, fp), np.nan)


def roc_bootstrap(metric: ScoreMetric | str, scores, is_same, groups=None, *, other_scores=None,
                  n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap of a verification metric, or of the difference ``metric(scores) - metric(other)``.

    The fast path behind :func:`auc_interval`, :func:`tar_at_far_interval`, :func:`eer_interval` and
    :func:`facekit.stats.compare_scores`; same resamples and same interval as :func:`facekit.stats.bootstrap` of
    the ``facekit.metrics`` function with the same seed.
    """
    m = score_metric(metric) if isinstance(metric, str) else metric
    level, n_boot = check_level(level), check_n_boot(n_boot)
    s, y = _checked(scores, is_same)
    models = [s] if other_scores is None else [s, _checked(other_scores, is_same)[0]]
    estimate = check_estimate(m.fn(s, y) - (m.fn(models[1], y) if len(models) == 2 else 0.0))
    gid, units, unit = None, len(y), f"{len(y):,} items"
    if groups is not None:
        g = as_array(groups, "groups")
        if g.shape != y.shape:
            raise ValueError(f"groups must hold one label per pair, shape {y.shape}; got shape {g.shape}")
        members = group_members(g)
        gid = np.empty(len(y), dtype=np.int64)
        for k, idx in enumerate(members):
            gid[idx] = k
        units, unit = len(members), f"{len(members):,} groups"
    sorted_models = [_SortedScores(x, y) for x in models]
    values = []
    for block in draw_blocks(np.random.default_rng(seed), units, n_boot):
        c = len(block)
        offsets = (np.arange(c)[:, None] * units + block).ravel()
        counts = np.bincount(offsets, minlength=c * units).reshape(c, units)  # times each unit was drawn
        weights = counts if gid is None else counts[:, gid]  # (c, N) multiplicity of each pair
        per_model = [_valid(m.from_counts, *sm.counts(weights)) for sm in sorted_models]
        values.append(per_model[0] - per_model[1] if len(per_model) == 2 else per_model[0])
    iv = percentile_interval(estimate, np.concatenate(values), n_boot, level, unit)
    if len(models) == 2:
        return Interval(iv.estimate, iv.low, iv.high, iv.level, "paired " + iv.method)
    return iv


def auc_interval(scores, is_same, groups=None, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """AUC with a percentile-bootstrap interval; with ``groups`` (person per pair) people are resampled.

    >>> rng = np.random.default_rng(0); y = rng.random(400) < 0.5
    >>> iv = auc_interval(rng.normal(y.astype(float), 1.0), y, n_boot=200)
    >>> iv.low < iv.estimate < iv.high
    True
    """
    return roc_bootstrap("auc", scores, is_same, groups, n_boot=n_boot, level=level, seed=seed)


def tar_at_far_interval(scores, is_same, far: float = 1e-3, groups=None, *, n_boot: int = 2000, level: float = 0.95,
                        seed: int = 0) -> Interval:
    """TAR at one FAR with a percentile-bootstrap interval.

    Warns when there are fewer than ``1 / far`` impostor pairs: such a FAR cannot be observed at all (see
    :func:`facekit.metrics.min_impostor_pairs`), and the interval is about the interpolation, not the model.
    """
    s, y = _checked(scores, is_same)
    if not 0 < far <= 1:
        raise ValueError(f"far must be in (0, 1]; got {far}")
    if (~y).sum() < vm.min_impostor_pairs(far):
        warnings.warn(f"{int((~y).sum())} impostor pairs cannot measure FAR={far:g} (needs "
                      f"{vm.min_impostor_pairs(far)}); the TAR@FAR interval is not meaningful", stacklevel=2)
    return roc_bootstrap(f"tar@far={far!r}", s, y, groups, n_boot=n_boot, level=level, seed=seed)


def eer_interval(scores, is_same, groups=None, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Equal error rate with a percentile-bootstrap interval (lower is better)."""
    return roc_bootstrap("eer", scores, is_same, groups, n_boot=n_boot, level=level, seed=seed)
