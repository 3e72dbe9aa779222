"""The plots of a run's summary: each notebook's duration, and its numeric metrics (seaborn, PNG).

The figures are drawn on :class:`matplotlib.figure.Figure` objects (no pyplot state, no display
backend needed) and saved atomically into the run folder.
"""

from __future__ import annotations

import math
from pathlib import Path

from facekit.io import atomic_path

DURATIONS_PNG = "durations.png"
METRICS_PNG = "metrics.png"
DPI = 110
STATUS_COLOURS = {"ok": "#4c72b0", "failed": "#c44e52", "skipped": "#8c8c8c", "running": "#dd8452",
                  "pending": "#cccccc"}


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
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure

    rows = [{"notebook": e.name, "duration_s": e.duration_s, "status": e.status}
            for e in summary.entries if e.duration_s is not None]
    if not rows:
        return None
    df = pd.DataFrame(rows)
    fig = Figure(figsize=(7, 0.45 * len(df) + 1.2))
    ax = fig.subplots()
    palette = {s: STATUS_COLOURS.get(s, "#999999") for s in df["status"].unique()}
    sns.barplot(df, y="notebook", x="duration_s", hue="status", palette=palette, dodge=False, ax=ax)
    for i, seconds in enumerate(df["duration_s"]):  # categories sit at y = 0, 1, ... in row order
        ax.annotate(f" {seconds:.1f} s", (seconds, i), va="center", fontsize=8)
    ax.set_xlabel("duration (s)")
    ax.set_ylabel("")
    ax.set_title(f"{summary.name}: duration per notebook ({summary.profile} profile)")
    _save(fig, path)
    return path


def plot_metrics(summary, path: Path) -> Path | None:
    """One panel per notebook, one bar per numeric metric, value written beside each bar.

    Metrics of one notebook have different units and scales, so the x axis is symmetric-log
    (``symlog``): a 0.9 accuracy and 5,000 img/s are both readable; the written value is exact.
    """
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure

    rows = numeric_metrics(summary)
    if not rows:
        return None
    df = pd.DataFrame(rows)
    notebooks = list(dict.fromkeys(df["notebook"]))
    sizes = [int((df["notebook"] == n).sum()) for n in notebooks]
    fig = Figure(figsize=(8, 0.32 * sum(sizes) + 0.9 * len(notebooks) + 0.5), layout="constrained")
    axes = fig.subplots(len(notebooks), 1, squeeze=False, gridspec_kw={"height_ratios": sizes})[:, 0]
    for ax, name in zip(axes, notebooks):
        part = df[df["notebook"] == name]
        sns.barplot(part, y="metric", x="value", color=STATUS_COLOURS["ok"], ax=ax)
        for i, value in enumerate(part["value"]):
            ax.annotate(f" {value:.4g}", (value, i), va="center", fontsize=7)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_ylabel("")
        ax.set_xlabel("")
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("value (symlog scale)")
    fig.suptitle(f"{summary.name}: recorded metrics ({summary.profile} profile)", fontsize=10)
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
