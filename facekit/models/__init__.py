"""Models of the course, created by name through a registry.

>>> from facekit.models import create
>>> create("article_cnn", num_classes=5).fc2.out_features
5
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from facekit.config import ConfigError
from facekit.models.cnn import ArticleCNN, ResidualBlock, SmallResNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "article_cnn": ArticleCNN,
    "small_resnet": SmallResNet,
}


def create(name: str, **kwargs) -> nn.Module:
    """Build the model registered as `name` with keyword arguments."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["ArticleCNN", "SmallResNet", "ResidualBlock", "MODELS", "create", "count_parameters"]
