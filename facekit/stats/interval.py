"""A confidence interval as a value, and the two intervals for a proportion (Wald standard error, Wilson).

An accuracy measured on ``n`` test items is a proportion ``k / n``; repeat the experiment on another ``n`` items
and it moves by about one standard error, ``sqrt(p (1 - p) / n)``. An :class:`Interval` carries the estimate with
the range of values compatible with the data at a stated level (95% by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Interval", "wilson", "standard_error", "z_value", "check_level"]


def check_level(level: float) -> float:
    """``level`` as a float in (0, 1), or a ValueError naming the parameter."""
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95 for a 95% interval; got {level}")
    return level


def z_value(level: float = 0.95) -> float:
    """The two-sided normal quantile for ``level``: 1.96 for 95%.

    >>> round(z_value(0.95), 3)
    1.96
    """
    from scipy.stats import norm

    return float(norm.ppf(0.5 + check_level(level) / 2))


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval ``[low, high]`` at ``level``, and how it was computed.

    ``str(interval)`` gives ``"0.812 [0.781, 0.840]"``; a format spec applies to all three numbers, so
    ``f"{diff:+.3f}"`` gives ``"+0.031 [+0.012, +0.050]"``.

    >>> iv = Interval(0.8123, 0.7811, 0.8404, method="Wilson")
    >>> str(iv), f"{iv:+.2f}", iv.excludes(0.0)
    ('0.812 [0.781, 0.840]', '+0.81 [+0.78, +0.84]', True)
    """

    estimate: float  # the point estimate (the metric on the data as measured)
    low: float  # lower end of the interval
    high: float  # upper end of the interval
    level: float = 0.95  # coverage of the interval, e.g. 0.95
    method: str = ""  # how it was computed, e.g. "Wilson" or "percentile bootstrap, 2,000 resamples of 120 people"

    def __post_init__(self):
        check_level(self.level)
        if not all(math.isfinite(v) for v in (self.estimate, self.low, self.high)):
            raise ValueError(f"interval values must be finite; got {self.estimate}, {self.low}, {self.high}")
        if not self.low <= self.high:
            raise ValueError(f"interval low {self.low} must not exceed high {self.high}")

    def __format__(self, spec: str) -> str:
        spec = spec or ".3f"
        return f"{self.estimate:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def __str__(self) -> str:
        return format(self, ".3f")

    @property
    def width(self) -> float:
        """``high - low``: how precisely the data pin the value down."""
        return self.high - self.low

    def contains(self, value: float) -> bool:
        """Whether ``low <= value <= high``."""
        return self.low <= value <= self.high

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside the interval; for a difference, ``excludes(0)`` is the noise rule's test."""
        return not self.contains(value)

    def negated(self) -> "Interval":
        """The interval of ``-x``: the difference B - A from the difference A - B."""
        return Interval(-self.estimate, -self.high, -self.low, self.level, self.method)


def _check_count(k, n) -> tuple[int, int]:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n (the number of items) must be a positive integer; got {n!r}")
    if isinstance(k, bool) or int(k) != k or not 0 <= k <= n:
        raise ValueError(f"k (the number of successes) must be an integer in [0, n={int(n)}]; got {k!r}")
    return int(k), int(n)


def standard_error(p: float, n: int) -> float:
    """The standard error of a proportion ``p`` measured on ``n`` independent items: ``sqrt(p (1 - p) / n)``.

    Good for a quick sense of scale (accuracy 0.8 on 1,000 images: about 0.013); for an interval use
    :func:`wilson`, which stays inside [0, 1] and is honest near 0 and 1, where this one collapses to zero.

    >>> round(standard_error(0.8, 1000), 4)
    0.0126
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n (the number of items) must be a positive integer; got {n!r}")
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a proportion in [0, 1]; got {p}")
    return math.sqrt(p * (1.0 - p) / n)


def wilson(k: int, n: int, level: float = 0.95) -> Interval:
    """The Wilson score interval for a proportion ``k / n`` (e.g. ``k`` correct of ``n`` test images).

    Use it for one accuracy, one FAR or FRR counted on independent items. It inverts the score test, so unlike
    ``p ± 1.96 SE`` it never leaves [0, 1] and keeps a sensible width at 0% or 100% (a model at 100% on 120
    pairs is compatible with about 97%). For items that are not independent (verification pairs that share
    people) use :func:`facekit.stats.bootstrap` with ``groups``.

    Args:
        k: successes, ``0 <= k <= n``.
        n: trials (items), ``n >= 1``.
        level: coverage, default 0.95.

    >>> print(wilson(812, 1000))
    0.812 [0.787, 0.835]
    """
    k, n = _check_count(k, n)
    z = z_value(level)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), level, "Wilson score")
