"""The figures of a report run's summary: each notebook's duration, and its numeric metrics (seaborn).

Drawn on :class:`matplotlib.figure.Figure` objects (no pyplot state, no display backend needed);
:mod:`facekit.reports.plots` saves them atomically into the run folder. ``summary`` is a
:class:`facekit.reports.summary.RunSummary` (read through its attributes only).
"""

from __future__ import annotations

STATUS_COLOURS = {"ok": "#4c72b0", "failed": "#c44e52", "skipped": "#8c8c8c", "running": "#dd8452",
                  "pending": "#cccccc"}


def durations_figure(summary):
    """A horizontal bar per notebook of ``summary`` that ran: its duration in seconds, coloured by status (None: none ran)."""
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
    return fig


def metrics_figure(summary, rows: list[dict]):
    """One panel per notebook, one bar per numeric metric (``rows``: ``[{notebook, metric, value}]``), value written
    beside each bar; None without rows.

    Metrics of one notebook have different units and scales, so the x axis is symmetric-log
    (``symlog``): a 0.9 accuracy and 5,000 img/s are both readable; the written value is exact.
    """
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure

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
    return fig


__all__ = ["durations_figure", "metrics_figure", "STATUS_COLOURS"]
