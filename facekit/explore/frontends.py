"""Where explorations run: live widgets or static figures (:func:`frontend`, decided by ``FACEKIT_STATIC``,
the kernel and the Jupyter frontend; see :mod:`facekit.explore.core`)."""

from __future__ import annotations

import os

from facekit.config import ConfigError
from facekit.progress import kernel_frontend

STATIC_ENV = "FACEKIT_STATIC"  # "1": static figures only; "0": widgets whenever ipywidgets imports
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def frontend() -> tuple[str, str]:
    """``("widget" | "static", reason)``: how explorations show themselves in this process.

    >>> os.environ[STATIC_ENV] = "1"; frontend()[0]
    'static'
    >>> del os.environ[STATIC_ENV]
    """
    forced = os.environ.get(STATIC_ENV, "").strip().lower()
    if forced in TRUE:
        return "static", f"{STATIC_ENV}={os.environ[STATIC_ENV]}"
    if forced and forced not in FALSE:
        raise ConfigError(f"{STATIC_ENV}={os.environ[STATIC_ENV]!r} is not accepted; use 1 (static) or 0 (widgets)")
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return "static", "ipywidgets is not installed"
    if forced in FALSE:
        return "widget", f"{STATIC_ENV}={os.environ[STATIC_ENV]}"
    kind, reason = kernel_frontend()
    return ("widget" if kind == "watched" else "static"), reason
