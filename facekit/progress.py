"""Progress bars that suit where the code runs: a live bar in JupyterLab, one final line in a report.

:func:`tqdm` takes tqdm's arguments and returns the bar that fits the setting; :func:`bar` is the short form::

    >>> from facekit.progress import bar
    >>> total = sum(bar(range(3), desc="demo", mode="off"))

The setting (:func:`mode`) is ``$FACEKIT_PROGRESS`` when it is set, else guessed:

- ``final``: nothing while the loop runs, then **one line** when it ends (``desc: n/total unit in time, rate``,
  followed by the last message the loop wrote with ``bar.write``), so executed notebooks hold no per-iteration
  output. Chosen in a ``facekit report`` run (the runner sets ``FACEKIT_PROGRESS=final`` for its kernels) and in
  any kernel that no Jupyter server started (plain ``papermill``, nbval): jupyter_server sets
  ``JPY_SESSION_NAME`` for the kernels of the notebooks it opens (VS Code and Colab count as watched too):
  :func:`kernel_frontend`, the one rule that :mod:`facekit.explore` uses as well.
- ``live``: tqdm's own choice: a widget bar in JupyterLab (with ipywidgets), a text bar in a terminal. In a
  kernel without ipywidgets it is a text bar rather than tqdm's ``TqdmWarning: IProgress not found``. Force it
  with ``FACEKIT_PROGRESS=live`` in a frontend that does not set ``JPY_SESSION_NAME``.
- ``off``: no bar and no line.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any, Iterable

from facekit.config import ConfigError

ENV_VAR = "FACEKIT_PROGRESS"
MODES = ("final", "live", "off")
ACCEPTED = MODES + ("auto",)
REPORT_ENV_VAR = "FACEKIT_REPORT_RUN"  # set by the report runner for its kernels (facekit.reports.batch)
SERVER_SESSION_ENV_VAR = "JPY_SESSION_NAME"  # set by jupyter_server for the kernel of each notebook it opens


__all__ = ["ENV_VAR", "MODES", "mode", "kernel_frontend", "tqdm", "bar", "final_line"]


def mode(requested: str = "auto") -> str:
    """The bar style to use: `requested` unless ``auto``, else ``$FACEKIT_PROGRESS``, else guessed (see module doc).

    >>> mode("off")
    'off'
    """
    if requested not in ACCEPTED:
        raise ConfigError(f"progress mode {requested!r} is not accepted; use one of: {', '.join(ACCEPTED)}")
    if requested != "auto":
        return requested
    raw = os.environ.get(ENV_VAR, "").strip()
    if raw and raw != "auto":
        if raw not in MODES:
            raise ConfigError(f"${ENV_VAR}={raw!r} is not accepted; use one of: {', '.join(ACCEPTED)}")
        return raw
    if os.environ.get(REPORT_ENV_VAR, "").strip():
        return "final"
    if kernel_frontend()[0] == "unwatched":
        return "final"  # a kernel nobody watches live: papermill, nbval
    return "live"


def kernel_frontend() -> tuple[str, str]:
    """Who watches this process's output, with the reason: ``"terminal"`` (not a Jupyter kernel), ``"watched"``
    (a kernel with a live frontend: a Jupyter server session, VS Code or Colab) or ``"unwatched"`` (a kernel
    that nobody watches live: papermill, nbval, a console). The one rule behind progress bars here and the
    widgets of :mod:`facekit.explore`.

    >>> kernel_frontend()[0]
    'terminal'
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return "terminal", "not running under IPython"
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel") or shell.__class__.__name__ != "ZMQInteractiveShell":
        return "terminal", "no Jupyter kernel (plain Python or a terminal IPython)"
    if os.environ.get(SERVER_SESSION_ENV_VAR, "").strip():
        return "watched", "a Jupyter server session (JupyterLab or Notebook)"
    if os.environ.get("VSCODE_PID") or "google.colab" in sys.modules:
        return "watched", "VS Code or Colab"
    return "unwatched", "a kernel without a Jupyter server session (papermill, nbval or a console)"


def _in_kernel() -> bool:
    return kernel_frontend()[0] != "terminal"


def _widgets_available() -> bool:
    try:
        from ipywidgets import FloatProgress  # noqa: F401  (what tqdm.notebook needs)
    except ImportError:
        return False
    return True


def final_line(n: int, total: int | None, elapsed_s: float, *, desc: str | None = None, unit: str = "it") -> str:
    """The one line of ``final`` mode.

    >>> final_line(30, 30, 62.1, desc="fit", unit="epoch")
    'fit: 30/30 epoch in 01:02 (2.07 s/epoch)'
    >>> final_line(3, 5, 0.5)
    '3/5 it in 00:00 (6 it/s)'
    """
    from tqdm.std import tqdm as std_tqdm

    count = f"{n}/{total}" if total else f"{n}"
    if n and elapsed_s > 0:
        rate = n / elapsed_s
        speed = f" ({rate:.3g} {unit}/s)" if rate >= 1 else f" ({1 / rate:.3g} s/{unit})"
    else:
        speed = ""
    return f"{desc + ': ' if desc else ''}{count} {unit} in {std_tqdm.format_interval(elapsed_s)}{speed}"


def _final_line_class():
    from tqdm.std import tqdm as std_tqdm

    class FinalLine(std_tqdm):
        """A tqdm that shows nothing while it runs and writes one line to stdout when it closes."""

        def __init__(self, *args, file=None, **kwargs):
            self._out = file if file is not None else sys.stdout
            self._last_message = None
            kwargs.pop("mininterval", None)
            kwargs.pop("miniters", None)
            super().__init__(*args, file=io.StringIO(), mininterval=float("inf"), **kwargs)

        def display(self, msg=None, pos=None):  # nothing while the loop runs
            return True

        class _Write:  # bar.write(msg) is remembered for the final line; tqdm.write(msg) prints as usual
            def __get__(self, obj, cls):
                if obj is None:
                    return std_tqdm.write.__get__(None, cls)
                return obj._remember

        write = _Write()

        def _remember(self, s, file=None, end="\n", nolock=False):
            self._last_message = str(s).strip() or self._last_message

        def close(self):
            if getattr(self, "disable", True) or getattr(self, "_closed_once", False):
                return super().close()
            self._closed_once = True
            line = final_line(self.n, self.total, self.format_dict["elapsed"], desc=self.desc, unit=self.unit)
            if self._last_message:
                line += f" | last: {self._last_message}"
            print(line, file=self._out, flush=True)
            return super().close()

    return FinalLine


def tqdm(*args: Any, mode: str = "auto", **kwargs: Any):
    """``tqdm.tqdm`` with the bar that suits the setting (see :func:`mode`); same arguments, same methods.

    >>> for _ in tqdm(range(2), desc="demo", mode="off"):
    ...     pass
    """
    chosen = globals()["mode"](mode)
    if chosen == "off":
        from tqdm.std import tqdm as std_tqdm

        return std_tqdm(*args, **{**kwargs, "disable": True})
    if chosen == "final":
        return _final_line_class()(*args, **kwargs)
    if _in_kernel():
        if _widgets_available():
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(*args, **kwargs)
        from tqdm.std import tqdm as std_tqdm

        kwargs.setdefault("file", sys.stdout)  # stderr is shown on red in notebooks
        return std_tqdm(*args, **kwargs)
    from tqdm.std import tqdm as std_tqdm

    return std_tqdm(*args, **kwargs)


def bar(iterable: Iterable | None = None, *, desc: str | None = None, total: int | None = None,
        mode: str = "auto", **kwargs: Any):
    """A progress bar over `iterable` (see :func:`tqdm`): ``for x in bar(items, desc="embedding"): ...``."""
    return tqdm(iterable, desc=desc, total=total, mode=mode, **kwargs)
