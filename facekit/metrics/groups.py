"""Per-group error rates of a verification system, at one global threshold or one threshold per group.

A pair is accepted ("match") when its score reaches the threshold (``score >= threshold``):

    FNMR(g) = rejected genuine pairs of group g / genuine pairs of group g     (false non-match rate)
    FMR(g)  = accepted impostor pairs of group g / impostor pairs of group g   (false match rate)

Following NIST FRVT's demographic reports, impostor pairs are compared within a group (both people
from it); the caller drops cross-group pairs. A *disparity* is the ratio of the worst to the best
group's rate (1 = parity).

>>> r = group_rates([0.9, 0.4, 0.8, 0.7, 0.2, 0.6], [1, 1, 0, 1, 0, 0], ["a", "a", "a", "b", "b", "b"], 0.5)
>>> r.groups, r.fnmr.tolist(), r.fmr.tolist()
(['a', 'b'], [0.5, 0.0], [1.0, 0.5])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from facekit.metrics.openset import threshold_at_far


def _check(scores, is_same, groups):
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(is_same).astype(bool).reshape(-1)
    g = np.asarray(groups).reshape(-1)
    if not (len(s) == len(y) == len(g)):
        raise ValueError(f"scores, is_same and groups need one entry per pair; got {len(s)}, {len(y)}, {len(g)}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    return s, y, g


def threshold_at_fmr(impostor_scores, fmr: float) -> float:
    """The lowest threshold whose FMR (``mean(impostor >= t)``) is at most ``fmr``: :func:`threshold_at_far`'s rule.

    >>> threshold_at_fmr([0.1, 0.2, 0.3, 0.4], 0.25) > 0.3
    True
    """
    return threshold_at_far(impostor_scores, fmr)


@dataclass(frozen=True)
class GroupRates:
    groups: list  # group labels, sorted
    fnmr: np.ndarray  # (G,) false non-match rate per group
    fmr: np.ndarray  # (G,) false match rate per group
    thresholds: np.ndarray  # (G,) the threshold applied to each group
    num_genuine: np.ndarray  # (G,) genuine pairs behind each FNMR
    num_impostor: np.ndarray  # (G,) impostor pairs behind each FMR

    def frame(self):
        """A pandas DataFrame, one row per group."""
        import pandas as pd

        return pd.DataFrame({"group": self.groups, "FNMR": self.fnmr, "FMR": self.fmr, "threshold": self.thresholds,
                             "genuine pairs": self.num_genuine, "impostor pairs": self.num_impostor})


def group_rates(scores, is_same, groups, threshold) -> GroupRates:
    """FNMR and FMR of each group at ``threshold``: one float (global) or a mapping group -> threshold.

    A group without genuine (impostor) pairs gets NaN for FNMR (FMR).
    """
    s, y, g = _check(scores, is_same, groups)
    names = sorted(set(g.tolist()))
    if isinstance(threshold, Mapping):
        missing = [k for k in names if k not in threshold]
        if missing:
            raise ValueError(f"no threshold for groups {missing}; thresholds given for {sorted(threshold)}")
        thr = np.array([float(threshold[k]) for k in names])
    else:
        thr = np.full(len(names), float(threshold))
    fnmr, fmr, n_gen, n_imp = [], [], [], []
    for name, t in zip(names, thr):
        m = g == name
        gen, imp = s[m & y], s[m & ~y]
        n_gen.append(len(gen))
        n_imp.append(len(imp))
        fnmr.append(float(np.mean(gen < t)) if len(gen) else np.nan)
        fmr.append(float(np.mean(imp >= t)) if len(imp) else np.nan)
    return GroupRates(names, np.array(fnmr), np.array(fmr), thr, np.array(n_gen), np.array(n_imp))


def global_threshold(scores, is_same, fmr: float) -> float:
    """The threshold giving FMR <= ``fmr`` over all impostor pairs together."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_same).astype(bool)
    return threshold_at_fmr(s[~y], fmr)


def per_group_thresholds(scores, is_same, groups, fmr: float) -> dict:
    """One threshold per group, each giving that group FMR <= ``fmr`` (equalises the false match rates)."""
    s, y, g = _check(scores, is_same, groups)
    return {name: threshold_at_fmr(s[(g == name) & ~y], fmr) for name in sorted(set(g.tolist()))}


def disparity(rates) -> float:
    """max / min of the finite rates (1 = parity; inf when the best group is at 0 and another is not).

    >>> disparity([0.01, 0.04, 0.02])
    4.0
    """
    r = np.asarray(rates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return float("nan")
    hi, lo = r.max(), r.min()
    if hi == 0:
        return 1.0
    return float(hi / lo) if lo > 0 else float("inf")


__all__ = ["GroupRates", "group_rates", "threshold_at_fmr", "global_threshold", "per_group_thresholds", "disparity"]
