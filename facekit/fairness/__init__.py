"""Fairness of face verification: error rates per demographic group and their disparities (computed in
:mod:`facekit.metrics.groups`).

>>> from facekit.fairness import group_rates, per_group_thresholds, disparity
"""

from facekit.metrics.groups import (GroupRates, disparity, global_threshold, group_rates, per_group_thresholds,
                                    threshold_at_fmr)

__all__ = ["GroupRates", "disparity", "global_threshold", "group_rates", "per_group_thresholds", "threshold_at_fmr"]
