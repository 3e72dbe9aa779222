"""Interactive explorations: move a control, see an idea respond.

Each exploration is a pure function (parameters in, figure or numbers out, tested like the rest of facekit)
and a thin wrapper returning an :class:`~facekit.explore.core.Exploration`. Displayed as the last expression of
a cell, it is a live ipywidgets control panel in JupyterLab and a static figure at its default values (plus a
small grid of other values) under papermill, nbval or plain Python; see :func:`~facekit.explore.core.frontend`.
Everything expensive (feature maps, attention maps, raw detector outputs, quantised embeddings, the privacy
accountant) is computed once when the wrapper is called, so a moved control only redraws.

Importing this package imports neither ipywidgets nor matplotlib.
"""

from facekit.explore.core import STATIC_ENV, Choice, Exploration, Slider, frontend, update_times
from facekit.explore.attention import explore_attention, query_attention
from facekit.explore.convolution import explore_conv, feature_maps, receptive_field
from facekit.explore.detection import detection_point, detections_at, explore_detection
from facekit.explore.generator import explore_generator, identity_grid
from facekit.explore.privacy import epsilon_grid, explore_privacy
from facekit.explore.quantization import bits_sweep, explore_bits, quantize_embeddings
from facekit.explore.margins import explore_margins, margin_regions, meets_margin
from facekit.explore.threshold import explore_threshold, operating_point

__all__ = ["STATIC_ENV", "Choice", "Exploration", "Slider", "frontend", "update_times",
           "explore_attention", "query_attention", "explore_conv", "feature_maps", "receptive_field",
           "detection_point", "detections_at", "explore_detection", "explore_generator", "identity_grid",
           "epsilon_grid", "explore_privacy", "bits_sweep", "explore_bits", "quantize_embeddings", "explore_margins", "margin_regions", "meets_margin", "explore_threshold", "operating_point"]
