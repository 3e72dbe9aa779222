"""Closed-set classification metrics: pure functions of (predictions, labels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ClassificationResult:
    accuracy: float  # fraction of correct top-1 predictions
    per_class_accuracy: np.ndarray  # (K,) recall of each class, nan for absent classes
    confusion: np.ndarray  # (K, K) counts, rows = true class, columns = predicted
    n: int  # number of samples


def classification_result(outputs, labels, num_classes: int | None = None) -> ClassificationResult:
    """Accuracy, per-class accuracy and the confusion matrix from (N, K) scores or (N,) predictions.

    >>> r = classification_result(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
    >>> round(r.accuracy, 3), r.confusion.tolist()
    (0.667, [[1, 1], [0, 1]])
    """
    from sklearn.metrics import confusion_matrix

    outputs = torch.as_tensor(outputs)
    labels = torch.as_tensor(labels).cpu().numpy()
    preds = (outputs.argmax(dim=1) if outputs.ndim == 2 else outputs).cpu().numpy()
    if preds.shape != labels.shape:
        raise ValueError(f"predictions {preds.shape} and labels {labels.shape} differ in shape")
    k = num_classes or (outputs.shape[1] if outputs.ndim == 2 else int(max(preds.max(), labels.max())) + 1)
    cm = confusion_matrix(labels, preds, labels=np.arange(k))
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, np.diag(cm) / support, np.nan)
    return ClassificationResult(float((preds == labels).mean()), per_class, cm, int(labels.size))


def plot_confusion(cm: np.ndarray, labels=None, *, ax=None, normalize: bool = True, title: str | None = None):
    """Seaborn heatmap of a confusion matrix (row-normalised by default)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        size = min(8.0, 2.0 + 0.18 * cm.shape[0])
        _, ax = plt.subplots(figsize=(size, size * 0.85))
    data = cm / np.clip(cm.sum(axis=1, keepdims=True), 1, None) if normalize else cm
    show_labels = labels if labels is not None and len(labels) <= 40 else False
    sns.heatmap(data, ax=ax, cmap="viridis", vmin=0, vmax=1 if normalize else None, square=True,
                xticklabels=show_labels, yticklabels=show_labels, cbar_kws={"shrink": 0.7})
    ax.set_xlabel("predicted identity")
    ax.set_ylabel("true identity")
    if title:
        ax.set_title(title)
    return ax
