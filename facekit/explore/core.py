"""What every exploration shares: control specs, frontend detection, static figures, a live widget.

An exploration is a *pure drawing function* ``draw(fig, **params)`` that fills a matplotlib figure from its
parameters (everything expensive precomputed before), plus a dict of :class:`Slider` / :class:`Choice`
controls. :class:`Exploration` shows it as

- a **live widget** (ipywidgets controls and the figure as a PNG image) where a widget frontend is present
  (JupyterLab, Jupyter Notebook 7, VS Code, Colab), or
- a **static figure** at the default values, plus optionally one small grid of other values, everywhere else
  (papermill reports, nbval, plain Python), so reports show the idea and test output is stable.

Which one is decided by :func:`frontend`: ``FACEKIT_STATIC=1`` forces static (the report runner and CI can set
it), ``FACEKIT_STATIC=0`` forces widgets; otherwise widgets need an IPython kernel and a frontend that launched
it through a Jupyter server (``JPY_SESSION_NAME``, set by jupyter_server for every notebook session; papermill and
nbval start kernels without it) or VS Code / Colab.
"""

from __future__ import annotations

import io
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from facekit.config import ConfigError
from facekit.explore.controls import Choice, Control, Slider  # re-exported: the controls' home
from facekit.explore.frontends import FALSE, STATIC_ENV, TRUE, frontend  # re-exported: deciding widget or static

__all__ = ["Slider", "Choice", "Exploration", "frontend", "STATIC_ENV", "figure_png", "one_thread", "update_times"]

PNG_COMPRESS_LEVEL = 1  # zlib level of the widget's PNGs: level 6 (the default) costs ~5x the time for ~20% less
EXPLORATION_DPI = 72  # the notebooks' figure resolution (facekit.viz.NOTEBOOK_DPI)


def figure_png(fig, dpi: int = EXPLORATION_DPI) -> bytes:
    """The figure as PNG bytes (what the live widget shows), fast zlib level: a redraw must stay interactive."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    return buf.getvalue()


@contextmanager
def one_thread():
    """torch on one thread meanwhile: a redraw's tensors are small, and on a busy machine waking a thread pool
    for each small op costs ~10 ms (torch.cos of 1,440 numbers: 0.3 ms on one thread, 21 ms on two, measured
    at a load of 11 on 2 cores)."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pin_titles(fig) -> None:
    """Titles at a fixed height above their axes: matplotlib otherwise measures every tick label on each draw to
    lift a title clear of them (a third of a redraw with log axes), and no exploration has ticks on top."""
    for ax in fig.axes:
        title = ax.title
        if title.get_text():
            ax.set_title(title.get_text(), fontsize=title.get_fontsize(), y=1.0)


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


@dataclass
class Exploration:
    """A pure drawing function with controls, shown live or static (see the module docstring).

    Args:
        draw: ``draw(fig, **params)`` fills ``fig`` (already cleared) for one setting of the controls; the
            Exploration lays the figure out (``tight_layout`` once, then the same margins on every redraw).
        controls: name -> :class:`Slider` or :class:`Choice`; their defaults are the static figure's values.
        figsize: inches (width, height) of the figure.
        static_grid: other settings shown under the default figure when static (each a dict of overrides).
        grid_title: the static grid's title (what its panels show).

    ``update(**changes)`` redraws with some controls changed and returns the PNG bytes; ``figure(**params)``
    returns a new matplotlib figure; ``widget()`` builds the ipywidgets UI. Displaying the object (the last
    expression of a cell) shows the widget or the static figures, as :func:`frontend` decides.
    """

    draw: Callable
    controls: Mapping[str, Control]
    figsize: tuple = (8.0, 3.2)
    static_grid: Sequence[Mapping[str, Any]] = ()
    grid_title: str = ""
    params: dict = field(init=False)
    _fig: Any = field(default=None, init=False, repr=False)
    _layout: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if not self.controls:
            raise ConfigError("an Exploration needs at least one control")
        self.params = {name: c.default for name, c in self.controls.items()}
        for overrides in self.static_grid:
            self.settings(**overrides)

    def settings(self, **changes) -> dict:
        """The current parameters with ``changes`` applied and checked (unknown names are an error)."""
        unknown = set(changes) - set(self.controls)
        if unknown:
            raise ConfigError(f"unknown control(s) {sorted(unknown)}; this exploration has: {list(self.controls)}")
        out = dict(self.params)
        out.update({k: self.controls[k].check(k, v) for k, v in changes.items()})
        return out

    def figure(self, **params):
        """A new figure drawn at the defaults with ``params`` applied (the caller closes it)."""
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=self.figsize)
        self.draw(fig, **self.settings(**params))
        fig.tight_layout()
        return fig

    def update(self, **changes) -> bytes:
        """Apply ``changes`` to the current parameters, redraw the one persistent figure, return its PNG bytes."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.params = self.settings(**changes)
        if self._fig is None:
            self._fig = Figure(figsize=self.figsize)  # not managed by pyplot: never shown twice, never leaked
            FigureCanvasAgg(self._fig)
        fig = self._fig
        fig.clear()
        if self._layout:  # the first draw's tight layout, kept: cheaper, and the panels do not jump
            fig.subplots_adjust(**self._layout)
        with one_thread():
            self.draw(fig, **self.params)
        _pin_titles(fig)
        if not self._layout:
            fig.tight_layout()
            p = fig.subplotpars
            self._layout = dict(left=p.left, right=p.right, bottom=p.bottom, top=p.top, wspace=p.wspace,
                                hspace=p.hspace)
        return figure_png(fig)

    # -- static ---------------------------------------------------------------------------------------------
    def static_figures(self) -> list:
        """The default figure, and the static grid as one figure of small panels (if any)."""
        import matplotlib.pyplot as plt
        import numpy as np
        from PIL import Image

        figs = [self.figure()]
        if self.static_grid:
            panels = []
            for overrides in self.static_grid:
                png = Exploration.update(self._copy(), **overrides)
                panels.append((np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), overrides))
            cols = min(3, len(panels))
            rows = math.ceil(len(panels) / cols)
            w, h = self.figsize
            fig, axes = plt.subplots(rows, cols, figsize=(min(12.0, w * cols * 0.6), h * rows * 0.6 + 0.3),
                                     squeeze=False)
            for ax in axes.flat:
                ax.set_axis_off()
            for ax, (img, overrides) in zip(axes.flat, panels):
                ax.imshow(img)
                ax.set_title(", ".join(f"{k}={_format(v)}" for k, v in overrides.items()), fontsize=8)
            fig.suptitle(self.grid_title or "other settings", fontsize=9)
            fig.tight_layout()
            figs.append(fig)
        return figs

    def _copy(self) -> "Exploration":
        return Exploration(self.draw, self.controls, self.figsize, (), self.grid_title)

    def show_static(self) -> None:
        import matplotlib.pyplot as plt

        try:
            from IPython.display import display
        except ImportError:  # plain Python: show through pyplot
            display = None
        for fig in self.static_figures():
            if display is None:
                plt.show()
            else:
                display(fig)
            plt.close(fig)

    # -- live ----------------------------------------------------------------------------------------------
    def widget(self):
        """The ipywidgets UI: the controls, a status line with the last redraw time, and the figure as an image."""
        import ipywidgets as w

        image = w.Image(value=self.update(), format="png")
        image.add_class("facekit-exploration-figure")
        status = w.HTML()
        boxes = []
        for name, c in self.controls.items():
            label = c.description or name
            if isinstance(c, Slider):
                cls = w.IntSlider if c.integer else w.FloatSlider
                kw = {} if c.integer else {"readout_format": ".3g"}
                box = cls(value=c.default, min=c.lo, max=c.hi, step=c.step, description=label,
                          continuous_update=True, style={"description_width": "initial"}, **kw)
            elif len(c.options) <= 4 and all(len(str(o)) <= 12 for o in c.options):
                box = w.ToggleButtons(options=list(c.options), value=c.default, description=label,
                                      style={"description_width": "initial", "button_width": "auto"})
            else:
                box = w.Dropdown(options=list(c.options), value=c.default, description=label,
                                 style={"description_width": "initial"})

            def changed(event, name=name):
                t0 = time.perf_counter()
                image.value = self.update(**{name: event["new"]})
                status.value = f"<small>redrawn in {1000 * (time.perf_counter() - t0):.0f} ms</small>"

            box.observe(changed, names="value")
            box.add_class(f"facekit-control-{name}")
            boxes.append(box)
        ui = w.VBox([w.HBox(boxes, layout=w.Layout(flex_flow="row wrap")), status, image])
        ui.add_class("facekit-exploration")
        return ui

    def _ipython_display_(self):
        from IPython.display import display

        mode, _ = frontend()
        if mode == "widget":
            display(self.widget())
        else:
            self.show_static()


def update_times(exploration: Exploration, name: str, n: int = 20) -> list[tuple[float, float]]:
    """``n`` redraws moving control ``name`` through its values (cycling): (wall, CPU) seconds of each.

    The CPU time (``time.process_time``, this process's threads) is what a redraw costs the machine; on a
    busy machine the wall time also counts the waits for a core.
    """
    control = exploration.controls[name]
    values = control.values()
    if len(values) > n:
        idx = [round(i * (len(values) - 1) / (n - 1)) for i in range(n)]
        values = [values[i] for i in idx]
    times = []
    exploration.update()  # the figure exists: what a moved control costs, not the first draw
    for i in range(n):
        value = values[(i + 1) % len(values)]
        t0, c0 = time.perf_counter(), time.process_time()
        exploration.update(**{name: value})
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    exploration.update(**{name: control.default})
    return times
