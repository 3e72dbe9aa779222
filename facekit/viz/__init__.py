"""Every figure helper of facekit: notebook defaults, image grids and detections, learning curves.

matplotlib and seaborn are imported when a figure is drawn, never at ``import facekit.viz``.

- :mod:`facekit.viz.setup`: :func:`setup_notebook` (small JPEG figures, seaborn's style).
- :mod:`facekit.viz.images`: :func:`image_grid`, :func:`draw_detections`.
- :mod:`facekit.viz.history`: :func:`plot_history` (train and val curves per metric).
"""

from facekit.viz.history import plot_history
from facekit.viz.images import draw_detections, image_grid
from facekit.viz.setup import JPEG_QUALITY, NOTEBOOK_DPI, setup_notebook

__all__ = ["setup_notebook", "NOTEBOOK_DPI", "JPEG_QUALITY", "image_grid", "draw_detections", "plot_history"]
