"""Intervals for verification metrics (AUC, TAR@FAR, EER, best-threshold accuracy) by bootstrap.

The point metrics are :mod:`facekit.metrics.verification` (built on ``sklearn.metrics``), so an interval's
estimate is exactly the number the chapter reports. Pass ``groups`` (the person of each pair) to resample
people rather than pairs: see :mod:`facekit.stats.bootstrap` for why.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from facekit.metrics import verification as vm
from facekit.stats.bootstrap import as_array, bootstrap
from facekit.stats.interval import Interval

__all__ = ["auc_interval", "tar_at_far_interval", "eer_interval", "ScoreMetric", "score_metric"]


@dataclass(frozen=True)
class ScoreMetric:
    """A verification metric of ``(scores, is_same)``, its display name and its direction."""

    name: str  # e.g. "AUC", "TAR@FAR=1e-03"
    fn: Callable[[np.ndarray, np.ndarray], float]  # (scores, is_same) -> value
    higher_is_better: bool


def _auc(s, y) -> float:
    return vm.auc(s, y)


def _eer(s, y) -> float:
    return vm.eer(s, y)[0]


def _accuracy(s, y) -> float:
    return vm.best_accuracy_threshold(s, y)[1]


def _tar_at(far: float) -> Callable[[np.ndarray, np.ndarray], float]:
    def tar(s, y) -> float:
        return vm.tar_at_far(s, y, (far,))[0].tar
    return tar


_FIXED = {
    "auc": ScoreMetric("AUC", _auc, True),
    "eer": ScoreMetric("EER", _eer, False),
    "accuracy": ScoreMetric("best-threshold accuracy", _accuracy, True),
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
            return ScoreMetric(f"TAR@FAR={far:.0e}", _tar_at(far), True)
    raise ValueError(f"unknown metric {name!r}: use 'auc', 'eer', 'accuracy' or 'tar@far=<FAR>' such as 'tar@far=1e-3'")


def _checked(scores, is_same) -> tuple[np.ndarray, np.ndarray]:
    s = as_array(scores, "scores").astype(np.float64)
    y = as_array(is_same, "is_same").astype(bool)
    return vm._check(s, y)  # one home for the validation: shapes, NaN, both classes present


def auc_interval(scores, is_same, groups=None, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """AUC with a percentile-bootstrap interval; with ``groups`` (person per pair) people are resampled.

    >>> rng = np.random.default_rng(0); y = rng.random(400) < 0.5
    >>> iv = auc_interval(rng.normal(y.astype(float), 1.0), y, n_boot=200)
    >>> iv.low < iv.estimate < iv.high
    True
    """
    s, y = _checked(scores, is_same)
    return bootstrap(_auc, s, y, groups=groups, n_boot=n_boot, level=level, seed=seed)


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
    return bootstrap(_tar_at(far), s, y, groups=groups, n_boot=n_boot, level=level, seed=seed)


def eer_interval(scores, is_same, groups=None, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Equal error rate with a percentile-bootstrap interval (lower is better)."""
    s, y = _checked(scores, is_same)
    return bootstrap(_eer, s, y, groups=groups, n_boot=n_boot, level=level, seed=seed)
