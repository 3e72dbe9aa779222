"""Chapter 1's ``SmallResNet`` with attention: SE / spatial / CBAM inside the residual blocks,
and optionally attention pooling instead of global average pooling.

The attention module rescales the residual branch before the shortcut is added, as in
SE-ResNet (Hu et al. 2018) and CBAM (Woo et al. 2018). Nothing of ``SmallResNet`` is copied:
``AttentionResNet`` builds it, then swaps each ``ResidualBlock`` for an
``AttentionResidualBlock`` (a subclass) of the same shape.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from facekit.config import choice
from facekit.models.attention import CBAM, AttentionPool2d, SpatialAttention, SqueezeExcitation
from facekit.models.cnn import ResidualBlock, SmallResNet

BLOCK_ATTENTIONS: dict[str, Callable[[int, int], nn.Module]] = {
    "none": lambda channels, reduction: nn.Identity(),
    "se": lambda channels, reduction: SqueezeExcitation(channels, reduction),
    "spatial": lambda channels, reduction: SpatialAttention(),
    "cbam": lambda channels, reduction: CBAM(channels, reduction),
}
POOLS = ("avg", "attention")


class AttentionResidualBlock(ResidualBlock):
    """``ResidualBlock`` whose residual branch goes through `attention` before the shortcut is added.

    >>> blk = AttentionResidualBlock(16, 32, stride=2, attention=SqueezeExcitation(32, 4))
    >>> blk(torch.zeros(1, 16, 8, 8)).shape
    torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, attention: nn.Module | None = None):
        super().__init__(in_ch, out_ch, stride)
        self.attention = attention if attention is not None else nn.Identity()

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.attention(self.bn2(self.conv2(y)))  # (B, out_ch, H', W') rescaled by channel / pixel
        return F.relu(y + self.shortcut(x))


class AttentionResNet(SmallResNet):
    """``SmallResNet`` with attention in every residual block and a choice of pooling.

    Args:
        num_classes, in_channels, widths, blocks_per_stage, dropout: as for ``SmallResNet``.
        attention: one of ``BLOCK_ATTENTIONS``: 'none', 'se', 'spatial', 'cbam'.
        pool: 'avg' (global average pooling) or 'attention' (``AttentionPool2d``).
        reduction: bottleneck ratio of the SE / CBAM channel attention.
        image_size: input side the attention pool's position embedding is sized for
            (other sizes resize it); the feature map is ``image_size / 2^len(widths)``.
        pool_heads: heads of the attention pool.

    >>> model = AttentionResNet(5, widths=(8, 16), attention="cbam", pool="attention", image_size=32)
    >>> model(torch.zeros(2, 3, 32, 32)).shape, model.features(torch.zeros(2, 3, 32, 32)).shape
    (torch.Size([2, 5]), torch.Size([2, 16]))
    """

    def __init__(self, num_classes: int, in_channels: int = 3, widths=(32, 64, 128), blocks_per_stage: int = 1,
                 dropout: float = 0.0, attention: str = "se", pool: str = "avg", reduction: int = 16,
                 image_size: int = 64, pool_heads: int = 1):
        choice(attention, BLOCK_ATTENTIONS, name="attention")
        choice(pool, POOLS, name="pool")
        super().__init__(num_classes, in_channels, widths, blocks_per_stage, dropout)
        self.attention_kind, self.pool_kind = attention, pool
        self.stages = nn.Sequential(*(  # same shapes as SmallResNet's blocks, plus the attention
            AttentionResidualBlock(b.conv1.in_channels, b.conv1.out_channels, b.conv1.stride[0],
                                   BLOCK_ATTENTIONS[attention](b.conv1.out_channels, reduction))
            for b in self.stages))
        self.pool = None
        if pool == "attention":
            grid = max(1, image_size // 2 ** len(widths))  # the stem and every stage after the first halve H, W
            self.pool = AttentionPool2d(self.feature_dim, grid_size=grid, num_heads=pool_heads)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C_last, H/2^k, W/2^k) before pooling."""
        return self.stages(self.stem(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_map(x)
        if self.pool is None:
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, C_last)
        return self.pool(x)  # (B, C_last)


__all__ = ["AttentionResidualBlock", "AttentionResNet", "BLOCK_ATTENTIONS"]
