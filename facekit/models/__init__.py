"""Models of the course, created by name through a registry.

>>> from facekit.models import create
>>> create("article_cnn", num_classes=5).fc2.out_features
5
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from facekit.config import ConfigError
from facekit.models.attention import (CBAM, AttentionPool2d, MultiHeadSelfAttention, SpatialAttention,
                                      SqueezeExcitation, scaled_dot_product_attention)
from facekit.models.cnn import ArticleCNN, ResidualBlock, SmallResNet
from facekit.models.cnn_attention import AttentionResidualBlock, AttentionResNet
from facekit.models.embedding import (EMBEDDINGS, IResNet, IResNetConfig, MobileFaceNet, MobileFaceNetConfig,
                                      create_embedding)
from facekit.models.flops import count_flops, flops_by_module
from facekit.models.inference import embed
from facekit.models.vit import VIT_PRESETS, VisionTransformer, ViTConfig, attention_rollout, cls_attention_map

MODELS: dict[str, Callable[..., nn.Module]] = {
    "article_cnn": ArticleCNN,
    "small_resnet": SmallResNet,
    "attention_resnet": AttentionResNet,
    "vit": VisionTransformer,
}


def create(name: str, **kwargs) -> nn.Module:
    """Build the model registered as `name` with keyword arguments."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["ArticleCNN", "SmallResNet", "ResidualBlock", "MODELS", "create", "count_parameters",
           "scaled_dot_product_attention", "MultiHeadSelfAttention", "SqueezeExcitation", "SpatialAttention",
           "CBAM", "AttentionPool2d", "AttentionResidualBlock", "AttentionResNet", "ViTConfig", "VIT_PRESETS",
           "VisionTransformer", "attention_rollout", "cls_attention_map", "count_flops", "flops_by_module",
           "EMBEDDINGS", "IResNet", "IResNetConfig", "MobileFaceNet", "MobileFaceNetConfig", "create_embedding", "embed"]
