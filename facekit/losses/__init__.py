"""Losses of the verification chapter: margin heads, their classifier, pair losses, distances.

A margin head is created by name through ``HEADS`` and passed to a ``MarginClassifier``:

>>> import torch
>>> from facekit.losses import MarginClassifier, create_head
>>> clf = MarginClassifier(16, 10, create_head("arcface", s=32.0, margin_rad=0.5))
>>> clf(torch.randn(4, 16), torch.tensor([0, 1, 2, 3])).shape
torch.Size([4, 10])
"""

from __future__ import annotations

from typing import Callable

from facekit.config import check_keys
from facekit.losses.classifier import MarginClassifier, MarginModel, margin_forward, softmax_cross_entropy
from facekit.losses.distances import DISTANCES, CosineSimilarity, EuclideanDistance
from facekit.losses.margins import (COS_EPS, ArcFace, CombinedMargin, CosFace, MarginHead, NormSoftmax,
                                    PlainSoftmax, SphereFace)
from facekit.losses.pair import (TRIPLET_MINING, CenterLoss, ContrastiveLoss, TripletLoss, all_triplets,
                                 batch_hard_mining, semi_hard_mining)

HEADS: dict[str, Callable[..., MarginHead]] = {
    "softmax": PlainSoftmax,  # W x + b, no normalisation (the baseline)
    "normface": NormSoftmax,  # s cos(theta)
    "sphereface": SphereFace,  # s psi(m theta), multiplicative angular margin
    "cosface": CosFace,  # s (cos(theta) - m)
    "arcface": ArcFace,  # s cos(theta + m)
    "combined": CombinedMargin,  # s (cos(m1 theta + m2) - m3)
}


def create_head(name: str, **kwargs) -> MarginHead:
    """Build the margin head registered as `name` (see ``HEADS``) with keyword arguments.

    >>> create_head("cosface", s=30.0, margin=0.4)
    CosFace(s=30.0, margin=0.4)
    >>> create_head("arcfce")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    facekit.config.ConfigError: unknown margin head: 'arcfce' (did you mean 'arcface'?); accepted: arcface, ...
    """
    check_keys([name], HEADS, what="margin head")
    return HEADS[name](**kwargs)


__all__ = ["HEADS", "create_head", "MarginHead", "PlainSoftmax", "NormSoftmax", "SphereFace", "CosFace", "ArcFace",
           "CombinedMargin", "COS_EPS", "MarginClassifier", "MarginModel", "margin_forward", "softmax_cross_entropy",
           "CosineSimilarity", "EuclideanDistance", "DISTANCES", "ContrastiveLoss", "TripletLoss", "CenterLoss",
           "TRIPLET_MINING", "batch_hard_mining", "semi_hard_mining", "all_triplets"]
