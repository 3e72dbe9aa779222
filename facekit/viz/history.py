"""Learning curves of a training history (what :func:`facekit.train.fit` returns)."""

from __future__ import annotations


def plot_history(history, metrics=("loss", "accuracy"), *, title=None, axes=None, label_prefix=""):
    """Learning curves: one panel per metric, train and val curves against the epoch."""
    import matplotlib.pyplot as plt

    records = history.records if hasattr(history, "records") else history
    if axes is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
        axes = axes[0]
    else:
        fig = axes[0].figure
    epochs = [r["epoch"] for r in records]
    for ax, m in zip(axes, metrics):
        for split, style in (("train", "-"), ("val", "--")):
            key = f"{split}_{m}"
            if any(key in r for r in records):
                ax.plot(epochs, [r.get(key, float("nan")) for r in records], style, label=f"{label_prefix}{split}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = ["plot_history"]
