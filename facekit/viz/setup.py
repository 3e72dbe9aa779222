"""Matplotlib defaults for the notebooks, with modest sizes for the HTML reports."""

from __future__ import annotations

NOTEBOOK_DPI = 72  # keeps executed notebooks and their HTML small
JPEG_QUALITY = 88  # photos and noisy faces are 5-10x smaller as JPEG than as PNG


def setup_notebook(dpi: int = NOTEBOOK_DPI, figure_format: str = "jpeg") -> None:
    """Matplotlib defaults for notebooks: small figures (JPEG by default), seaborn's clean style."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "image.cmap": "gray"})
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # plain Python: nothing to configure
        return
    if get_ipython() is not None:
        kwargs = {"pil_kwargs": {"quality": JPEG_QUALITY}} if figure_format == "jpeg" else {}
        set_matplotlib_formats(figure_format, **kwargs)


__all__ = ["setup_notebook", "NOTEBOOK_DPI", "JPEG_QUALITY"]
