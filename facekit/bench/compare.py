"""A speed-up with its interval, and a verdict by the course's noise rule, from paired timing rounds.

Timings on a shared machine drift with its load, so two configurations are timed back to back in each round
(:func:`facekit.bench.measure_levers` with ``rounds``) and compared round by round. Speed is compared on the log
scale: ``log(a / b)`` per round, a paired t interval of its mean over rounds, and ``exp`` of the ends for the
speed-up ratio. A winner is named only as :mod:`facekit.stats` allows (the interval excludes zero, ``p < ALPHA``,
at least ``MIN_SEEDS`` rounds).

>>> v, ratio = speedup_verdict([200.0, 210.0, 190.0], [100.0, 104.0, 98.0], names=("compiled", "eager"))
>>> v.winner, f"{ratio:.2f}"
('a', '1.99 [1.88, 2.09]')
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from facekit.stats import MIN_SEEDS, Interval, Verdict, paired_t, verdict


def speedup_verdict(rates_a: Sequence[float], rates_b: Sequence[float], names=("A", "B"), *,
                    level: float = 0.95) -> tuple[Verdict, Interval]:
    """``(verdict, speed-up)``: is A faster than B over paired rounds, and by what factor (A / B, with interval).

    Args:
        rates_a, rates_b: items/s (images/s, chips/s) of A and B in each round, the same rounds in the same order.
        names: display names of A and B.
    """
    a, b = np.asarray(rates_a, dtype=float), np.asarray(rates_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"rates_a and rates_b need one rate per round each: shapes {a.shape}, {b.shape}")
    if not ((a > 0).all() and (b > 0).all()):
        raise ValueError("rates must be > 0 (items per second)")
    test = paired_t(np.log(a), np.log(b), level)
    v = verdict(test.difference, names, p_value=test.p_value, n=test.n, unit="timing rounds",
                method="paired t on log items/s", metric="log speed-up", min_n=MIN_SEEDS)
    d = test.difference
    ratio = Interval(math.exp(d.estimate), math.exp(d.low), math.exp(d.high), d.level,
                     f"exp of a paired t interval of log speed-ups over {test.n} rounds")
    return v, ratio


__all__ = ["speedup_verdict"]
