"""Verdicts: "A better", "B better" or "no detectable difference at this size", by the course's noise rule.

Every comparison the course's prose states goes through :func:`verdict` (or one of the ``compare_*`` helpers
that compute the paired difference first) and is shown with ``fk.notebook.say(v.text)``.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass

import numpy as np

from facekit.stats.bootstrap import as_array, paired_bootstrap
from facekit.stats.interval import Interval
from facekit.stats.paired import _as_bool, mcnemar, paired_t
from facekit.stats.verification import roc_bootstrap, score_metric

__all__ = ["ALPHA", "MIN_SEEDS", "MIN_ITEMS", "MIN_GROUPS", "Verdict", "verdict", "compare_correct",
           "compare_scores", "compare_seeds"]

ALPHA = 0.05  # the course's significance level: 95% intervals, p < 0.05
MIN_SEEDS = 3  # a comparison over seeds names a winner only with at least this many seeds per model
MIN_ITEMS = 100  # ... over test items (images, pairs) only with at least this many items
MIN_GROUPS = 20  # ... when people are resampled, only with at least this many people


@dataclass(frozen=True)
class Verdict:
    """Which of two models is better, by the noise rule, with the interval of the difference.

    ``difference`` is always A - B (model ``names[0]`` minus ``names[1]``) in the metric's own units; ``winner``
    is ``"a"``, ``"b"`` or None. Use ``v.winner`` in code (there is deliberately no truth value: ``if v:``
    raises no error but means nothing) and ``v.text`` in prose.
    """

    names: tuple[str, str]  # (name of A, name of B)
    winner: str | None  # "a", "b" or None (no detectable difference at this size)
    difference: Interval  # A - B with its interval
    p_value: float | None  # the paired test's p-value, when there is one
    method: str  # e.g. "paired bootstrap"
    n: int  # items (pairs, images) or seeds compared
    unit: str = "items"  # what n counts: "pairs", "images", "seeds", "people"
    metric: str = ""  # e.g. "AUC"; shown before the difference
    higher_is_better: bool = True
    reason: str = ""  # why no winner was named, when that is not just the interval

    @property
    def text(self) -> str:
        """One sentence for the prose, e.g. ``ArcFace better than softmax: AUC +0.031 [+0.012, +0.050] (...)``.

        The signed difference is first-named minus second-named model, so it reads with the sentence.
        """
        a, b = self.names
        metric = f"{self.metric} " if self.metric else ""
        p = f", p = {self.p_value:.2g}" if self.p_value is not None else ""
        details = f"{self.method} over {self.n:,} {self.unit}, {self.difference.level:.0%}{p}"
        if self.winner == "a":
            return f"{a} better than {b}: {metric}{self.difference:+.3f} ({details})"
        if self.winner == "b":
            return f"{b} better than {a}: {metric}{self.difference.negated():+.3f} ({details})"
        why = f"; {self.reason}" if self.reason else ""
        return (f"no detectable difference between {a} and {b} at this size: {metric}{self.difference:+.3f} "
                f"({details}{why})")

    @property
    def row(self) -> dict:
        """The verdict as one table row (``pd.DataFrame([v.row for v in verdicts])`` lists a chapter's verdicts)."""
        a, b = self.names
        winner = {"a": a, "b": b}.get(self.winner or "", "no detectable difference")
        return {"A": a, "B": b, "metric": self.metric, "A - B": self.difference.estimate,
                "low": self.difference.low, "high": self.difference.high, "p": self.p_value, "n": self.n,
                "unit": self.unit, "method": self.method, "verdict": winner}

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


def verdict(difference: Interval, names=("A", "B"), *, p_value: float | None = None, n: int, unit: str = "items",
            method: str | None = None, metric: str = "", higher_is_better: bool = True,
            min_n: int = MIN_ITEMS) -> Verdict:
    """Apply the noise rule to a paired difference A - B.

    A winner is named only when the interval excludes zero, the p-value (if given) is below :data:`ALPHA`, and
    ``n >= min_n``; otherwise the verdict is "no detectable difference at this size" (and ``reason`` says which
    condition failed when it was not the interval).

    Args:
        difference: the interval of A - B (from :func:`paired_bootstrap`, :func:`paired_seeds`, ...).
        names: display names of A and B.
        p_value: the paired test's p-value, if any.
        n: items or seeds behind the comparison; ``unit`` says which.
        method: how the difference was computed (default: the interval's method).
        metric: the metric's display name.
        higher_is_better: False for error rates (EER, FAR): then a negative A - B means A is better.
        min_n: the least ``n`` at which a winner may be named (:data:`MIN_ITEMS`, :data:`MIN_SEEDS`, ...).

    >>> print(verdict(Interval(0.031, 0.012, 0.050), ("ArcFace", "softmax"), n=3000, unit="pairs",
    ...               method="paired bootstrap", metric="AUC").text)
    ArcFace better than softmax: AUC +0.031 [+0.012, +0.050] (paired bootstrap over 3,000 pairs, 95%)
    """
    if not isinstance(difference, Interval):
        raise TypeError(f"difference must be an Interval (e.g. from paired_bootstrap); got {type(difference).__name__}")
    if len(names) != 2:
        raise ValueError(f"names must be two names (A, B); got {names!r}")
    if p_value is not None and not 0.0 <= p_value <= 1.0:
        raise ValueError(f"p_value must be in [0, 1]; got {p_value}")
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer count of {unit}; got {n!r}")
    reason = ""
    winner = None
    if n < min_n:
        reason = f"fewer than {min_n:,} {unit}: too few to name a winner"
    elif not difference.excludes(0.0):
        if p_value is not None and p_value < ALPHA:
            reason = f"borderline: the test's p = {p_value:.2g} but the interval includes zero"
    elif p_value is not None and p_value >= ALPHA:
        reason = f"borderline: the interval excludes zero but the test's p = {p_value:.2g}"
    else:
        a_better = difference.estimate > 0 if higher_is_better else difference.estimate < 0
        winner = "a" if a_better else "b"
    return Verdict((str(names[0]), str(names[1])), winner, difference, p_value, method or difference.method, int(n),
                   unit, metric, higher_is_better, reason)


def compare_correct(correct_a, correct_b, names=("A", "B"), *, groups=None, n_boot: int = 2000, level: float = 0.95,
                    seed: int = 0, unit: str = "images") -> Verdict:
    """Two classifiers on the same test items: McNemar's exact p and a paired bootstrap of the accuracy difference.

    Args:
        correct_a, correct_b: (N,) booleans, whether A (B) got item i right.
        groups: optional per-item groups to resample (e.g. the person of each image).
    """
    a, b = _as_bool(correct_a, "correct_a"), _as_bool(correct_b, "correct_b")
    test = mcnemar(a, b)  # validates shapes and n > 0
    diff = paired_bootstrap(np.mean, a.astype(float), b.astype(float), groups=groups, n_boot=n_boot, level=level,
                            seed=seed)
    method = "McNemar exact test and paired bootstrap" + (" (people resampled)" if groups is not None else "")
    n_groups = len(np.unique(as_array(groups, "groups"))) if groups is not None else None
    return _with_groups(verdict(diff, names, p_value=test.p_value, n=test.n, unit=unit, method=method,
                                metric="accuracy"), n_groups)


def _with_groups(v: Verdict, n_groups: int | None) -> Verdict:
    """With resampled groups, also require MIN_GROUPS of them."""
    if n_groups is None or n_groups >= MIN_GROUPS or v.winner is None:
        return v
    from dataclasses import replace
    return replace(v, winner=None, reason=f"only {n_groups} people resampled, fewer than {MIN_GROUPS}")


def compare_scores(scores_a, scores_b, is_same, metric: str = "auc", groups=None, names=("A", "B"), *,
                   n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Verdict:
    """Two verification models on the same pairs: paired bootstrap of the metric difference A - B.

    Args:
        scores_a, scores_b: (N,) scores of each model on the same pairs.
        is_same: (N,) whether each pair is genuine.
        metric: ``"auc"``, ``"eer"``, ``"accuracy"`` or ``"tar@far=1e-3"`` (see :func:`score_metric`).
        groups: the person of each pair (for an impostor pair, the person of its first image): people are
            resampled, as they should be (see :mod:`facekit.stats.bootstrap`); at least :data:`MIN_GROUPS` of
            them are needed to name a winner.
        names: display names of A and B.
        n_boot, level, seed: as in :func:`facekit.stats.bootstrap`.

    >>> rng = np.random.default_rng(0)
    >>> person = np.repeat(np.arange(100), 30)                       # 100 people, 30 pairs each
    >>> same = rng.random(3000) < 0.5
    >>> arcface = rng.normal(1.5 * same, 1.0)                        # separates genuine from impostor pairs better
    >>> softmax = rng.normal(1.0 * same, 1.0)
    >>> v = compare_scores(arcface, softmax, same, "auc", groups=person, names=("ArcFace", "softmax"), n_boot=500)
    >>> v.winner, v.text.split(":")[0]
    ('a', 'ArcFace better than softmax')
    """
    m = score_metric(metric)
    diff = roc_bootstrap(m, scores_a, is_same, groups, other_scores=scores_b, n_boot=n_boot, level=level, seed=seed)
    n_groups = len(np.unique(as_array(groups, "groups"))) if groups is not None else None
    method = "paired bootstrap (people resampled)" if groups is not None else "paired bootstrap"
    return _with_groups(verdict(diff, names, n=len(as_array(is_same, "is_same")), unit="pairs", method=method,
                                metric=m.name, higher_is_better=m.higher_is_better), n_groups)


def compare_seeds(values_a, values_b, names=("A", "B"), higher_is_better: bool = True, *, level: float = 0.95,
                  metric: str = "") -> Verdict:
    """Two training recipes over the same seeds (one final value per seed each): paired t interval and p-value.

    A winner needs at least :data:`MIN_SEEDS` seeds; with 2 the verdict is "no detectable difference".
    """
    test = paired_t(values_a, values_b, level)
    out = verdict(test.difference, names, p_value=test.p_value, n=test.n, unit="seeds", method="paired t",
                  metric=metric, higher_is_better=higher_is_better, min_n=MIN_SEEDS)
    if test.difference.width == 0.0 and out.winner is not None:
        # Every seed gave the same difference (common with a coarse metric such as k-fold accuracy on a few
        # hundred pairs): the spread, and so the noise, cannot be estimated; t is infinite only by accident.
        out = dataclasses.replace(out, winner=None, reason="the seeds' differences are all equal, so their spread "
                                  "(the noise) cannot be estimated: run more seeds or use a finer metric")
    return out
