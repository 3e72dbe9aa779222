"""Per-group error rates, re-exported from their home :mod:`facekit.metrics.groups`.

>>> from facekit.fairness.rates import disparity
>>> disparity([0.01, 0.04, 0.02])
4.0
"""

from facekit.metrics.groups import (GroupRates, disparity, global_threshold, group_rates, per_group_thresholds,
                                    threshold_at_fmr)

__all__ = ["GroupRates", "group_rates", "threshold_at_fmr", "global_threshold", "per_group_thresholds", "disparity"]
