"""Chapter 4: a decision threshold over the genuine and impostor score histograms, with FAR, FRR, TAR and the ROC point.

>>> import numpy as np
>>> point = operating_point([0.9, 0.8, 0.3, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0, 0], threshold=0.5)
>>> round(point.tar, 4), round(point.far, 4), round(point.frr, 4)
(0.6667, 0.3333, 0.3333)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facekit.explore.core import Exploration, Slider

__all__ = ["OperatingPoint", "ThresholdData", "operating_point", "prepare_threshold", "draw_threshold",
           "explore_threshold"]

SLIDER_STEPS = 200  # positions of the threshold slider between the lowest and the highest score


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float  # accept a pair when its score >= threshold (as facekit.metrics.verification.roc)
    tar: float  # true accept rate: accepted genuine / genuine
    far: float  # false accept rate: accepted impostor / impostor
    frr: float  # false reject rate: 1 - TAR
    accuracy: float  # correct decisions / pairs
    num_genuine: int
    num_impostor: int


@dataclass(frozen=True)
class ThresholdData:
    """Precomputed once: both score sets sorted, the ROC, the histogram bins and the EER threshold."""

    genuine: np.ndarray  # (G,) sorted scores of genuine pairs
    impostor: np.ndarray  # (I,) sorted scores of impostor pairs
    roc_far: np.ndarray
    roc_tar: np.ndarray
    bins: np.ndarray
    eer: float
    eer_threshold: float


def _split(scores, is_same) -> tuple[np.ndarray, np.ndarray]:
    from facekit.metrics.verification import _check

    s, y = _check(scores, is_same)
    return np.sort(s[y]), np.sort(s[~y])


def _point(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> OperatingPoint:
    accepted_g = len(genuine) - np.searchsorted(genuine, threshold, side="left")  # scores >= threshold
    accepted_i = len(impostor) - np.searchsorted(impostor, threshold, side="left")
    tar, far = accepted_g / len(genuine), accepted_i / len(impostor)
    accuracy = (accepted_g + len(impostor) - accepted_i) / (len(genuine) + len(impostor))
    return OperatingPoint(float(threshold), float(tar), float(far), float(1 - tar), float(accuracy),
                          len(genuine), len(impostor))


def operating_point(scores, is_same, threshold: float) -> OperatingPoint:
    """TAR, FAR, FRR and accuracy when pairs with ``score >= threshold`` are accepted as the same person.

    Args:
        scores: (P,) similarity of each pair (higher = more alike); is_same: (P,) bool, True for genuine pairs.
        threshold: the decision threshold.
    """
    genuine, impostor = _split(scores, is_same)
    return _point(genuine, impostor, float(threshold))


def prepare_threshold(scores, is_same, bins: int = 40) -> ThresholdData:
    """Sort the scores, compute the ROC and the EER once (:mod:`facekit.metrics.verification`)."""
    from facekit.metrics.verification import eer, roc

    genuine, impostor = _split(scores, is_same)
    curve = roc(scores, is_same)
    rate, thr = eer(scores, is_same)
    lo, hi = min(genuine[0], impostor[0]), max(genuine[-1], impostor[-1])
    return ThresholdData(genuine, impostor, curve.far, curve.tar, np.linspace(lo, hi, bins + 1), rate, thr)


def draw_threshold(fig, data: ThresholdData, threshold: float) -> OperatingPoint:
    """Histograms with the threshold line and the four rates (left); the ROC with the operating point (right)."""
    p = _point(data.genuine, data.impostor, threshold)
    ax_h, ax_r = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.7, 1]})
    ax_h.hist(data.impostor, data.bins, histtype="stepfilled", color="tab:red", alpha=0.55, label=f"impostor ({p.num_impostor})")
    ax_h.hist(data.genuine, data.bins, histtype="stepfilled", color="tab:blue", alpha=0.55, label=f"genuine ({p.num_genuine})")
    ax_h.axvline(threshold, color="k", lw=1.5)
    ax_h.axvspan(threshold, data.bins[-1], color="tab:green", alpha=0.07)
    ax_h.set(xlabel="score (accept when >= threshold)", ylabel="pairs",
             title=f"threshold {threshold:.3f}: TAR {p.tar:.3f}, FAR {p.far:.3f}, FRR {p.frr:.3f}")
    ax_h.title.set_fontsize(9)
    ax_h.legend(fontsize=7, loc="upper left")
    ax_r.plot(data.roc_far, data.roc_tar, color="tab:blue", lw=1.2)
    ax_r.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
    ax_r.plot([p.far], [p.tar], "o", color="k", ms=7)
    ax_r.set(xlabel="FAR", ylabel="TAR", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal",
             title=f"ROC; EER {data.eer:.3f}, accuracy here {p.accuracy:.3f}")
    ax_r.title.set_fontsize(9)
    return p


def explore_threshold(scores, is_same, threshold: float | None = None, bins: int = 40) -> Exploration:
    """Move the decision threshold over genuine/impostor score histograms; FAR, FRR, TAR and the ROC point follow.

    Args:
        scores: (P,) pair similarities; is_same: (P,) bool.
        threshold: the starting threshold (default: the EER threshold).

    >>> ex = explore_threshold([0.9, 0.8, 0.3, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0, 0])
    >>> len(ex.update(threshold=0.5)) > 0
    True
    """
    data = prepare_threshold(scores, is_same, bins)
    lo, hi = float(data.bins[0]), float(data.bins[-1])
    step = (hi - lo) / SLIDER_STEPS or 1.0
    start = float(np.clip(data.eer_threshold if threshold is None else threshold, lo, hi))
    far_points = [float(np.clip(np.quantile(data.impostor, q), lo, hi)) for q in (0.5, 0.9, 0.99)]
    return Exploration(
        lambda fig, threshold: draw_threshold(fig, data, threshold),
        {"threshold": Slider(lo, hi, step, start, description="threshold")},
        figsize=(8.4, 3.2),
        static_grid=[{"threshold": t} for t in far_points],
        grid_title="decision threshold at the impostor scores' median, 90th and 99th percentiles",
    )
