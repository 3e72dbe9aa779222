"""Measurements of models beyond accuracy: throughput (images per second) in inference and training."""

from facekit.bench.throughput import inference_throughput, train_throughput

__all__ = ["inference_throughput", "train_throughput"]
