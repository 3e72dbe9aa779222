"""Open-set identification metrics, re-exported from their home :mod:`facekit.metrics.openset`.

>>> from facekit.search.openset import threshold_at_far
>>> threshold_at_far([0.9, 0.8], 1.0)
-inf
"""

from facekit.metrics.openset import OpenSetResult, dir_at_far, open_set_rates, threshold_at_far

__all__ = ["threshold_at_far", "OpenSetResult", "open_set_rates", "dir_at_far"]
