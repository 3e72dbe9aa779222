"""The plots of a run's summary: each notebook's duration, and its numeric metrics (seaborn, PNG).

The figures are drawn by :mod:`facekit.viz.run_plots` (facekit's one home for figures) and saved here,
atomically, into the run folder.
"""

from __future__ import annotations

import math
from pathlib import Path

from facekit.io import atomic_path
from facekit.viz.run_plots import STATUS_COLOURS, durations_figure, metrics_figure  # STATUS_COLOURS re-exported

DURATIONS_PNG = "durations.png"
METRICS_PNG = "metrics.png"
DPI = 110


def numeric_metrics(summary) -> list[dict]:
    """``[{notebook, metric, value, unit}]`` of the finite numbers (bools and strings left out)."""
    rows = []
    for e in summary.entries:
        for name, value in e.metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            unit = e.units.get(name)
            rows.append({"notebook": e.name, "metric": name + (f" [{unit}]" if unit else ""),
                         "value": float(value), "unit": unit})
    return rows


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")


def plot_durations(summary, path: Path) -> Path | None:
    """A horizontal bar per notebook that ran: its duration in seconds, coloured by status."""
    fig = durations_figure(summary)
    if fig is None:
        return None
    _save(fig, path)
    return path


def plot_metrics(summary, path: Path) -> Path | None:
    """One panel per notebook, one bar per numeric metric, value written beside each bar.

    Metrics of one notebook have different units and scales, so the x axis is symmetric-log
    (``symlog``): a 0.9 accuracy and 5,000 img/s are both readable; the written value is exact.
    """
    fig = metrics_figure(summary, numeric_metrics(summary))
    if fig is None:
        return None
    _save(fig, path)
    return path


def write_plots(summary) -> list[str]:
    """Draw the run's plots into its folder; return their file names (those that had data)."""
    made = []
    for fn, name in ((plot_durations, DURATIONS_PNG), (plot_metrics, METRICS_PNG)):
        if fn(summary, Path(summary.run_dir) / name) is not None:
            made.append(name)
    return made


__all__ = ["numeric_metrics", "plot_durations", "plot_metrics", "write_plots", "DURATIONS_PNG", "METRICS_PNG"]
