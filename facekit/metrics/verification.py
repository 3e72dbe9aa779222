"""Face verification and identification metrics: pure functions of ``(scores, is_same)``.

A verification score is higher when the two faces are more likely the same person (e.g. the
cosine of their embeddings, :func:`cosine_scores`). A pair is *accepted* when its score reaches
the threshold; genuine pairs (``is_same``) should be accepted, impostor pairs rejected:

    TAR = accepted genuine / genuine      (true accept rate, = 1 - FRR)
    FAR = accepted impostor / impostor    (false accept rate)

``scores`` and ``is_same`` may be numpy arrays, torch tensors or lists, shape (N,).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from facekit.metrics.identification import IdentificationResult, cosine_scores, identification  # re-exported

FAR_TARGETS = (1e-1, 1e-2, 1e-3, 1e-4)  # the usual operating points of TAR@FAR tables


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check(scores, is_same, *, both_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(N,) float64 scores and (N,) bool labels, validated."""
    s = _to_numpy(scores).astype(np.float64)
    y = _to_numpy(is_same).astype(bool)
    if s.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"expected (N,) scores and (N,) is_same, got {s.shape} and {y.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} score(s) are NaN or infinite")
    if both_classes and (y.all() or not y.any()):
        raise ValueError(f"need both genuine and impostor pairs, got {int(y.sum())} genuine of {y.size}")
    return s, y


@dataclass(frozen=True)
class RocCurve:
    far: np.ndarray  # (T,) false accept rate at each threshold, non-decreasing from 0 to 1
    tar: np.ndarray  # (T,) true accept rate at each threshold, non-decreasing from 0 to 1
    thresholds: np.ndarray  # (T,) decreasing; accept when score >= threshold; thresholds[0] = +inf (accept none)
    num_genuine: int  # number of genuine (same) pairs
    num_impostor: int  # number of impostor (different) pairs


def roc(scores, is_same) -> RocCurve:
    """The ROC curve (FAR, TAR) at every distinct score, from ``sklearn.metrics.roc_curve``.

    >>> r = roc([0.9, 0.8, 0.7, 0.3], [True, True, False, True])
    >>> r.far.tolist(), r.tar.round(3).tolist()
    ([0.0, 0.0, 0.0, 1.0, 1.0], [0.0, 0.333, 0.667, 0.667, 1.0])
    """
    from sklearn.metrics import roc_curve

    s, y = _check(scores, is_same)
    far, tar, thresholds = roc_curve(y, s, drop_intermediate=False)
    return RocCurve(far, tar, thresholds, int(y.sum()), int((~y).sum()))


def auc(scores, is_same) -> float:
    """Area under the ROC curve: the probability that a genuine pair outscores an impostor pair.

    >>> auc([0.9, 0.8, 0.7, 0.3], [True, True, False, True])
    0.6666666666666666
    """
    from sklearn.metrics import roc_auc_score

    s, y = _check(scores, is_same)
    return float(roc_auc_score(y, s))


def _finite_thresholds(curve: RocCurve) -> np.ndarray:
    """The thresholds with the +inf end replaced by the next float above the highest score (still accepts none)."""
    t = curve.thresholds.astype(np.float64).copy()
    if len(t) > 1 and np.isinf(t[0]):
        t[0] = np.nextafter(t[1], np.inf)
    return t


def _interpolate(curve: RocCurve, far_target: float) -> tuple[float, float]:
    """(TAR, threshold) at FAR = far_target on the ROC polyline (linear between the ROC points)."""
    far, tar, thr = curve.far, curve.tar, _finite_thresholds(curve)
    i = int(np.searchsorted(far, far_target, side="right")) - 1  # last point with FAR <= target: highest TAR there
    if i >= len(far) - 1 or far[i] == far_target:
        return float(tar[i]), float(thr[i])
    w = (far_target - far[i]) / (far[i + 1] - far[i])  # far[i] < target < far[i + 1]
    return float(tar[i] + w * (tar[i + 1] - tar[i])), float(thr[i] + w * (thr[i + 1] - thr[i]))


def eer(scores, is_same) -> tuple[float, float]:
    """Equal error rate: ``(rate, threshold)`` where FAR = FRR (= 1 - TAR), interpolated on the ROC.

    The ROC is a polyline; the EER is where it crosses the line ``FAR + TAR = 1``, and the
    threshold is interpolated on the same segment.

    >>> eer([0.9, 0.8, 0.3, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0, 0])  # at 0.7: FAR = FRR = 1/3
    (0.3333333333333333, 0.7)
    """
    curve = roc(scores, is_same)
    far, tar, thr = curve.far, curve.tar, _finite_thresholds(curve)
    n_gen, n_imp = curve.num_genuine, curve.num_impostor
    false_accepts, false_rejects = np.rint(far * n_imp), n_gen - np.rint(tar * n_gen)  # counts, exact
    gap = false_accepts * n_gen - false_rejects * n_imp  # (FAR - FRR) * n_gen * n_imp: -, ..., + (non-decreasing)
    j = int(np.argmax(gap >= 0))  # first point with FAR >= FRR
    if gap[j] == 0 or j == 0:
        return float(far[j]), float(thr[j])
    w = -gap[j - 1] / (gap[j] - gap[j - 1])
    return float(far[j - 1] + w * (far[j] - far[j - 1])), float(thr[j - 1] + w * (thr[j] - thr[j - 1]))


@dataclass(frozen=True)
class TarAtFar:
    far_target: float  # the requested false accept rate
    tar: float  # true accept rate at that FAR, interpolated on the ROC
    threshold: float  # the score threshold at that point, interpolated likewise
    num_impostor_pairs: int  # impostor pairs behind the FAR estimate
    supported: bool  # num_impostor_pairs >= 1 / far_target: at least one false accept is observable


def min_impostor_pairs(far_target: float) -> int:
    """Impostor pairs needed to observe FAR = far_target at all: ``ceil(1 / far_target)``.

    >>> min_impostor_pairs(1e-4)
    10000
    """
    return math.ceil(round(1.0 / far_target, 6))


def tar_at_far(scores, is_same, far_targets: Sequence[float] = FAR_TARGETS) -> list[TarAtFar]:
    """TAR at each target FAR, linearly interpolated on the ROC polyline.

    The ROC points are joined in order; where the polyline is vertical at the target, the
    highest TAR is taken. Without tied scores the ROC is a staircase and this is the best TAR
    with FAR <= target; tied genuine and impostor scores make diagonal segments, interpolated.
    The threshold is interpolated on the same segment (insightface interpolates the threshold
    on a grid and then measures the TAR there).

    With fewer than ``1 / far`` impostor pairs, a FAR that low cannot be measured (it lies
    between 0 and one false accept): the interpolated value is still given, with ``supported``
    False. LFW's 3,000 impostor pairs support FAR down to 1e-3, not 1e-4.

    >>> [round(r.tar, 3) for r in tar_at_far([0.9, 0.8, 0.3, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0, 0], (0.1, 1 / 3))]
    [0.667, 1.0]
    >>> tar_at_far([0.9, 0.1], [1, 0], (0.1,))[0].supported  # 1 impostor pair < 10
    False
    """
    curve = roc(scores, is_same)
    out = []
    for f in far_targets:
        if not 0 < f <= 1:
            raise ValueError(f"far target {f} must be in (0, 1]")
        tar, threshold = _interpolate(curve, f)
        out.append(TarAtFar(float(f), tar, threshold, curve.num_impostor,
                            curve.num_impostor >= min_impostor_pairs(f)))
    return out


def best_accuracy_threshold(scores, is_same) -> tuple[float, float]:
    """``(threshold, accuracy)`` maximising the accuracy of "same iff score > threshold".

    Candidates: -inf (accept all), the midpoints between consecutive distinct scores, +inf
    (accept none). Among equally good thresholds the smallest is returned.

    >>> best_accuracy_threshold([0.9, 0.6, 0.4, 0.1], [1, 1, 0, 0])
    (0.5, 1.0)
    """
    s, y = _check(scores, is_same, both_classes=False)
    distinct = np.unique(s)  # sorted
    candidates = np.concatenate([[-np.inf], (distinct[:-1] + distinct[1:]) / 2, [np.inf]])
    genuine, impostor = np.sort(s[y]), np.sort(s[~y])
    genuine_accepted = len(genuine) - np.searchsorted(genuine, candidates, side="right")  # scores > t
    impostor_rejected = np.searchsorted(impostor, candidates, side="right")  # scores <= t
    accuracy = (genuine_accepted + impostor_rejected) / len(s)
    best = int(np.argmax(accuracy))  # first maximum: the smallest threshold
    return float(candidates[best]), float(accuracy[best])


@dataclass(frozen=True)
class KFoldResult:
    mean: float  # mean held-out accuracy over the folds
    std: float  # standard deviation over the folds (ddof=0, as the LFW tables report)
    accuracies: np.ndarray  # (k,) accuracy on each held-out fold
    thresholds: np.ndarray  # (k,) threshold applied to each fold, chosen on the other folds


def _as_folds(folds, n: int) -> list[np.ndarray]:
    if isinstance(folds, (int, np.integer)):
        if not 2 <= folds <= n:
            raise ValueError(f"folds={folds} must be between 2 and the number of pairs ({n})")
        return np.array_split(np.arange(n), int(folds))  # contiguous splits
    out = [np.asarray(f, dtype=np.int64).reshape(-1) for f in folds]
    if len(out) < 2 or any(f.size == 0 for f in out):
        raise ValueError(f"need at least 2 non-empty folds, got sizes {[f.size for f in out]}")
    every = np.concatenate(out)
    if every.min() < 0 or every.max() >= n:
        raise ValueError(f"fold indices must be in [0, {n}), got [{every.min()}, {every.max()}]")
    if np.unique(every).size != every.size:
        raise ValueError("folds overlap: an index is in more than one fold")
    return out


def kfold_accuracy(scores, is_same, folds=10) -> KFoldResult:
    """Verification accuracy by k-fold cross-validation of the threshold (the LFW protocol).

    For each fold, the threshold is the one that maximises accuracy on the *other* folds
    (:func:`best_accuracy_threshold`); it is then applied, unchanged, to the held-out fold. The
    held-out fold's scores never take part in choosing its threshold.

    Args:
        scores, is_same: (N,) each.
        folds: a list of index arrays (LFW's 10 folds: ``facekit.data.LFWPairs(...).folds``) or
            an int k (k contiguous splits of range(N)).

    >>> s = [0.9, 0.6, 0.4, 0.1] * 3
    >>> r = kfold_accuracy(s, [1, 1, 0, 0] * 3, folds=3)
    >>> r.mean, r.thresholds.tolist()
    (1.0, [0.5, 0.5, 0.5])
    """
    s, y = _check(scores, is_same, both_classes=False)
    folds = _as_folds(folds, s.size)
    accuracies, thresholds = np.zeros(len(folds)), np.zeros(len(folds))
    for i, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != i])  # the other folds only
        thresholds[i], _ = best_accuracy_threshold(s[train], y[train])
        accuracies[i] = np.mean((s[test] > thresholds[i]) == y[test])  # applied to the held-out fold
    return KFoldResult(float(accuracies.mean()), float(accuracies.std()), accuracies, thresholds)


def held_out_correct(scores, is_same, folds, thresholds) -> np.ndarray:
    """(N,) bool: whether each pair is decided right by its own fold's threshold (chosen on the other folds).

    The per-pair outcome behind :func:`kfold_accuracy` (pass ``result.thresholds``), which paired tests need:
    two models scored on the same pairs are compared pair by pair (``facekit.stats.compare_correct``).

    >>> s = [0.9, 0.6, 0.4, 0.1] * 3
    >>> r = kfold_accuracy(s, [1, 0, 0, 0] * 3, folds=3)
    >>> bool(held_out_correct(s, [1, 0, 0, 0] * 3, 3, r.thresholds).mean() == r.mean)
    True
    """
    s, y = _check(scores, is_same, both_classes=False)
    folds = _as_folds(folds, s.size)
    thresholds = np.asarray(thresholds, dtype=float).reshape(-1)
    if thresholds.size != len(folds):
        raise ValueError(f"need one threshold per fold: {len(folds)} folds, {thresholds.size} thresholds")
    correct = np.zeros(s.size, dtype=bool)
    for fold, threshold in zip(folds, thresholds):
        correct[fold] = (s[fold] > threshold) == y[fold]
    return correct


@dataclass(frozen=True)
class VerificationReport:
    roc: RocCurve
    auc: float  # area under the ROC
    eer: float  # equal error rate
    eer_threshold: float  # score threshold at the EER
    tar_at_far: tuple[TarAtFar, ...]  # one per FAR target
    kfold: KFoldResult | None  # None when no folds were given
    num_genuine: int
    num_impostor: int

    def summary(self) -> str:
        """A few lines for a notebook or a log."""
        lines = [f"{self.num_genuine} genuine / {self.num_impostor} impostor pairs",
                 f"AUC {self.auc:.4f}   EER {self.eer:.4f} (threshold {self.eer_threshold:.4f})"]
        if self.kfold is not None:
            lines.append(f"{len(self.kfold.accuracies)}-fold accuracy {self.kfold.mean:.4f} +- {self.kfold.std:.4f}")
        for r in self.tar_at_far:
            flag = "" if r.supported else f"  (unsupported: < {min_impostor_pairs(r.far_target)} impostor pairs)"
            lines.append(f"TAR@FAR={r.far_target:g}: {r.tar:.4f}{flag}")
        return "\n".join(lines)


def verification_report(scores, is_same, folds=None, far_targets: Sequence[float] = FAR_TARGETS) -> VerificationReport:
    """ROC, AUC, EER, TAR@FAR and (with `folds`) the k-fold accuracy of one set of pair scores.

    >>> rep = verification_report([0.9, 0.6, 0.4, 0.1] * 3, [1, 1, 0, 0] * 3, folds=3)
    >>> rep.auc, rep.eer, rep.kfold.mean
    (1.0, 0.0, 1.0)
    """
    curve = roc(scores, is_same)
    rate, threshold = eer(scores, is_same)
    kfold = None if folds is None else kfold_accuracy(scores, is_same, folds)
    return VerificationReport(curve, auc(scores, is_same), rate, threshold,
                              tuple(tar_at_far(scores, is_same, far_targets)), kfold,
                              curve.num_genuine, curve.num_impostor)


__all__ = ["FAR_TARGETS", "RocCurve", "roc", "auc", "eer", "TarAtFar", "tar_at_far", "min_impostor_pairs",
           "held_out_correct",
           "best_accuracy_threshold", "KFoldResult", "kfold_accuracy", "VerificationReport", "verification_report",
           "cosine_scores", "IdentificationResult", "identification"]
