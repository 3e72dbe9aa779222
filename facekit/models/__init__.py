"""Models of the course, created by name through one registry (:func:`create_model`).

>>> from facekit.models import create_model
>>> create_model("article_cnn", num_classes=5).fc2.out_features
5
"""

from __future__ import annotations

from functools import partial
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
from facekit.models.registry import MODEL_SPECS, ModelSpec, create_model, model_config, model_names
from facekit.models.vit import VIT_PRESETS, VisionTransformer, ViTConfig, attention_rollout, cls_attention_map

# The chapters' classifiers: a view of the one registry (create_model) kept for existing code.
MODELS: dict[str, Callable[..., nn.Module]] = {
    name: partial(create_model, name) for name in ("article_cnn", "small_resnet", "attention_resnet", "vit")}


def create(name: str, **kwargs) -> nn.Module:
    """A chapter classifier by name (see ``MODELS``); :func:`create_model` builds every registered network."""
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
           "EMBEDDINGS", "IResNet", "IResNetConfig", "MobileFaceNet", "MobileFaceNetConfig", "create_embedding", "embed",
           "ModelSpec", "MODEL_SPECS", "create_model", "model_config", "model_names"]
