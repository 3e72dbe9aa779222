"""Face search: a gallery index (faiss or exact torch); the open-set metrics are re-exported from facekit.metrics.

>>> from facekit.search import FaceIndex, threshold_at_far, open_set_rates
"""

from facekit.search.index import BACKENDS, FaceIndex, SearchResult, faiss_available
from facekit.metrics.openset import OpenSetResult, dir_at_far, open_set_rates, threshold_at_far

__all__ = ["BACKENDS", "FaceIndex", "SearchResult", "faiss_available", "OpenSetResult", "dir_at_far",
           "open_set_rates", "threshold_at_far"]
