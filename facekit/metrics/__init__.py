"""Metrics as pure functions that return small dataclasses."""

from facekit.metrics.classification import ClassificationResult, classification_result, plot_confusion

__all__ = ["ClassificationResult", "classification_result", "plot_confusion"]
