"""Face-embedding backbones for aligned crops (112x112, also 96 or 64), created by preset name.

``IResNet`` (insightface, :mod:`facekit.models.embedding_iresnet`) and ``MobileFaceNet``
(:mod:`facekit.models.embedding_mobilefacenet`) both map (B, C, S, S) crops to (B, D)
embeddings, L2-normalised by default (``forward_unnormalized`` gives the raw ones). Train them
with a margin head (:class:`facekit.losses.MarginModel`) or a pair loss; compare faces by the
cosine of their embeddings.

>>> net = create_embedding("iresnet_tiny", image_size=64)
>>> net.eval()(torch.rand(2, 3, 64, 64)).shape
torch.Size([2, 128])
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch  # noqa: F401  (used by the doctest)
from torch import nn

from facekit.config import check_keys
from facekit.models.embedding_iresnet import IRESNET_PRESETS, IBasicBlock, IResNet, IResNetConfig
from facekit.models.embedding_mobilefacenet import (MOBILEFACENET_PRESETS, Bottleneck, MobileFaceNet,
                                                    MobileFaceNetConfig)
from facekit.models.registry import create_model

# The embedding presets: a view of the one registry (facekit.models.create_model).
EMBEDDINGS: dict[str, Callable[..., nn.Module]] = {
    name: partial(create_model, name) for name in (*IRESNET_PRESETS, *MOBILEFACENET_PRESETS)}


def create_embedding(name: str, **overrides) -> nn.Module:
    """Build the embedding network of preset `name` (see ``EMBEDDINGS``) with config overrides.

    Args:
        name: "iresnet_tiny", "iresnet18", "iresnet34", "iresnet50", "iresnet100",
            "mobilefacenet" or "mobilefacenet_tiny".
        **overrides: fields of the family's config (``image_size``, ``embedding_dim``, ...).

    >>> create_embedding("mobilefacenet", embedding_dim=512).embedding_dim
    512
    >>> create_embedding("iresnet5")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    facekit.config.ConfigError: unknown embedding model: 'iresnet5' (did you mean 'iresnet50'?); accepted: ...
    """
    check_keys([name], EMBEDDINGS, what="embedding model")
    return EMBEDDINGS[name](**overrides)


__all__ = ["EMBEDDINGS", "create_embedding", "IResNet", "IResNetConfig", "IRESNET_PRESETS", "IBasicBlock",
           "MobileFaceNet", "MobileFaceNetConfig", "MOBILEFACENET_PRESETS", "Bottleneck"]
