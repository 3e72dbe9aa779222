"""Open-set identification: the threshold from a target false accept rate, and the rates it gives.

A watch-list system answers "who is this, or nobody?": it reports the top-1 gallery identity only when
its score reaches a threshold ``t`` (accept means ``score >= t``). Unknown people (not enrolled) must be
rejected.

- false alarm rate (FAR, also FPIR): fraction of unknown probes whose top-1 score is ``>= t``;
- detection-and-identification rate (DIR, also TPIR): fraction of known probes whose top-1 identity is
  right *and* whose score is ``>= t`` (at ``t = -inf`` it is the closed-set rank-1 rate).

:func:`threshold_at_far` is the one rule that turns impostor scores and a target rate into a threshold
(verification's FAR, fairness's FMR and open-set's false alarm rate alike): pick ``t`` on held-out
impostor scores (unknown probes of other people than those tested), so that at most the target fraction
of them is accepted.

>>> threshold_at_far([0.9, 0.8, 0.7, 0.6, 0.5], 0.2) > 0.8
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _scores(x, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError(f"{what} must be a non-empty array of finite scores")
    return arr


def threshold_at_far(impostor_scores, far: float) -> float:
    """The lowest threshold that accepts at most ``floor(far * n)`` of the `n` impostor scores.

    Accept means ``score >= threshold``. With the scores sorted high to low, ``k = floor(far * n)`` may be
    accepted, so the threshold sits just above the (k+1)-th highest score (``np.nextafter``); with ties
    fewer than ``k`` may be accepted. The empirical FAR on these scores is therefore ``<= far``. When every
    score may be accepted (``k = n``) the threshold is ``-inf``.

    >>> s = [0.9, 0.8, 0.7, 0.6, 0.5]
    >>> [float(np.mean(np.array(s) >= threshold_at_far(s, f))) for f in (0.0, 0.2, 0.5, 1.0)]
    [0.0, 0.2, 0.4, 1.0]
    """
    given = np.asarray(impostor_scores)
    dtype = given.dtype if given.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    scores = np.sort(_scores(impostor_scores, "impostor_scores"))[::-1]  # high to low
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far={far} must be in [0, 1]")
    k = int(np.floor(far * len(scores) + 1e-9))
    if k >= len(scores):
        return -np.inf  # accept everything
    # the next number above scores[k] in the scores' own precision (float32 scores compare in float32)
    return float(np.nextafter(dtype.type(scores[k]), dtype.type(np.inf)))


@dataclass(frozen=True)
class OpenSetResult:
    """Open-set identification at one threshold (accept a probe's top-1 identity when its score >= threshold)."""

    threshold: float
    dir: float  # detection-and-identification rate: known probes accepted with the right identity
    false_alarm_rate: float  # fraction of unknown probes accepted (as anyone)
    rank1: float  # closed-set rank-1 rate of known probes (no threshold)
    num_known: int
    num_unknown: int
    accuracy: float  # (known accepted and right + unknown rejected) / all probes
    known_false_rejection: float  # fraction of known probes rejected

    @property
    def unknown_rejection(self) -> float:
        """Fraction of unknown probes rejected (1 - false alarm rate)."""
        return 1.0 - self.false_alarm_rate

    @property
    def known_identification(self) -> float:
        """Known probes accepted *and* named correctly (= :attr:`dir`)."""
        return self.dir


def _rates(known, correct, unknown, threshold: float) -> OpenSetResult:
    if len(correct) != len(known):
        raise ValueError(f"got {len(known)} known scores but {len(correct)} correctness flags")
    if len(known) + len(unknown) == 0:
        raise ValueError("no probes: give known or unknown scores")
    frac = lambda x: float(np.mean(x)) if len(x) else float("nan")  # noqa: E731
    accept_k, accept_u = known >= threshold, unknown >= threshold
    good = int((accept_k & correct).sum() + (~accept_u).sum())
    return OpenSetResult(float(threshold), frac(correct & accept_k), frac(accept_u), frac(correct), len(known),
                         len(unknown), good / (len(known) + len(unknown)), frac(~accept_k))


def open_set_rates(known_top1_scores, known_top1_correct, unknown_top1_scores, threshold: float) -> OpenSetResult:
    """DIR and false alarm rate at `threshold` from each probe's top-1 score (both kinds of probe needed).

    Args:
        known_top1_scores: (P,) top-1 score of each enrolled person's probe.
        known_top1_correct: (P,) bool, whether that top-1 identity is the probe's own.
        unknown_top1_scores: (U,) top-1 score of each probe of a person not enrolled.
        threshold: accept when score >= threshold.

    >>> r = open_set_rates([0.9, 0.7, 0.4], [True, False, True], [0.8, 0.3], threshold=0.5)
    >>> r.dir, r.false_alarm_rate, r.rank1
    (0.3333333333333333, 0.5, 0.6666666666666666)
    """
    known = _scores(known_top1_scores, "known_top1_scores")
    correct = np.asarray(known_top1_correct, dtype=bool).reshape(-1)
    unknown = _scores(unknown_top1_scores, "unknown_top1_scores")
    return _rates(known, correct, unknown, threshold)


def open_set_metrics(threshold: float, known_scores, known_correct, unknown_scores) -> OpenSetResult:
    """:func:`open_set_rates` with the threshold first; either kind of probe may be absent (its rates are NaN).

    >>> open_set_metrics(0.5, [0.9, 0.4], [True, True], []).accuracy
    0.5
    """
    ks, kc = np.asarray(known_scores, float).reshape(-1), np.asarray(known_correct, bool).reshape(-1)
    return _rates(ks, kc, np.asarray(unknown_scores, float).reshape(-1), threshold)


def dir_at_far(known_top1_scores, known_top1_correct, unknown_top1_scores, far: float,
               calibration_scores=None) -> OpenSetResult:
    """Open-set rates at the threshold set for false alarm rate `far`.

    The threshold comes from `calibration_scores` (top-1 scores of held-out unknown probes) when given,
    else from `unknown_top1_scores` themselves (optimistic: the threshold is fitted on the test set).
    """
    source = unknown_top1_scores if calibration_scores is None else calibration_scores
    return open_set_rates(known_top1_scores, known_top1_correct, unknown_top1_scores, threshold_at_far(source, far))


def choose_open_set_threshold(known_scores, known_correct, unknown_scores) -> float:
    """The threshold that maximises open-set accuracy (see :class:`OpenSetResult`) on a calibration set.

    Candidates are the midpoints between consecutive distinct scores (and one below / above all);
    ties keep the lowest threshold.

    >>> choose_open_set_threshold([0.9, 0.8, 0.3], [True, True, False], [0.5, 0.2])
    0.65
    """
    scores = np.unique(np.concatenate([np.asarray(known_scores, float), np.asarray(unknown_scores, float)]))
    if scores.size == 0:
        raise ValueError("no calibration scores")
    candidates = np.concatenate([[scores[0] - 1e-6], (scores[1:] + scores[:-1]) / 2, [scores[-1] + 1e-6]])
    acc = [open_set_metrics(t, known_scores, known_correct, unknown_scores).accuracy for t in candidates]
    return float(candidates[int(np.argmax(acc))])


__all__ = ["threshold_at_far", "OpenSetResult", "open_set_rates", "open_set_metrics", "dir_at_far",
           "choose_open_set_threshold"]
