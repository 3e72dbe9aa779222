"""IResNet: the "improved" ResNet of insightface (Deng et al. 2019, ArcFace), a face-embedding backbone.

Compared with a ResNet for ImageNet: a stride-1 3x3 stem (112x112 crops are small), residual
units ``BN-Conv3x3-BN-PReLU-Conv3x3(stride)-BN`` with the stride on the second conv, and the
"E" output block ``BN-Dropout-FC-BN``: the last (C, S, S) feature map is flattened, so the FC
sees *where* on the face each feature is (no global average pooling), and the final batch
norm (scale fixed to 1) gives the embedding. Depth = 2 + 2 * (number of residual units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from facekit.config import ConfigError, check_keys, config_from, make_config


@dataclass(frozen=True)
class IResNetConfig:
    image_size: int = 112  # side of the square input; the last feature map is image_size / 2^len(widths)
    in_channels: int = 3  # 3 for RGB, 1 for grey
    widths: tuple[int, ...] = (64, 128, 256, 512)  # channels of each stage; every stage halves H and W
    layers: tuple[int, ...] = (2, 2, 2, 2)  # residual units per stage: (2, 2, 2, 2) = iresnet18
    embedding_dim: int = 512  # D, the embedding width
    dropout: float = 0.0  # before the FC (insightface uses 0, or 0.4 on small data sets)
    normalize: bool = True  # forward returns unit-norm embeddings; forward_unnormalized the raw ones
    zero_init_residual: bool = False  # last BN of each unit starts at 0: every unit starts as the identity

    def __post_init__(self):
        if len(self.widths) != len(self.layers) or not self.widths:
            raise ConfigError(f"widths={self.widths} and layers={self.layers} must be non-empty and of equal length")
        if min(self.widths) < 1 or min(self.layers) < 1:
            raise ConfigError(f"widths={self.widths} and layers={self.layers} must be >= 1")
        if self.image_size % 2 ** len(self.widths):
            raise ConfigError(f"image_size={self.image_size} must be divisible by 2^{len(self.widths)} "
                              f"(one halving per stage); 112, 96 and 64 are for 4 stages")
        if self.embedding_dim < 1 or not 0 <= self.dropout < 1:
            raise ConfigError(f"embedding_dim={self.embedding_dim} must be >= 1 and dropout={self.dropout} in [0, 1)")

    @property
    def depth(self) -> int:
        """Number of weight layers: stem + 2 per unit + FC."""
        return 2 + 2 * sum(self.layers)

    @property
    def feature_size(self) -> int:
        """Side S of the last feature map (7 at 112x112 with 4 stages)."""
        return self.image_size // 2 ** len(self.widths)

    @classmethod
    def preset(cls, name: str, **overrides) -> IResNetConfig:
        """A named configuration of ``IRESNET_PRESETS`` with keyword overrides.

        >>> IResNetConfig.preset("iresnet50").depth
        50
        """
        check_keys([name], IRESNET_PRESETS, what="IResNet preset")
        return make_config(cls, IRESNET_PRESETS[name], **overrides)


IRESNET_PRESETS: dict[str, dict] = {  # parameters, FLOPs (2 per MAC) at 112x112
    "iresnet_tiny": dict(widths=(16, 32, 64, 128), layers=(1, 1, 1, 1), embedding_dim=128),  # ~1.1 M, 0.22 G: CPU
    "iresnet18": dict(layers=(2, 2, 2, 2)),  # ~24 M, 5.2 GFLOPs
    "iresnet34": dict(layers=(3, 4, 6, 3)),  # ~34 M, 8.9 GFLOPs
    "iresnet50": dict(layers=(3, 4, 14, 3)),  # ~44 M, 12.6 GFLOPs: insightface's usual baseline
    "iresnet100": dict(layers=(3, 13, 30, 3)),  # ~65 M, 24 GFLOPs: a GPU model
}


class IBasicBlock(nn.Module):
    """insightface's residual unit: BN-Conv3x3-BN-PReLU-Conv3x3(stride)-BN plus a (projected) shortcut.

    >>> IBasicBlock(16, 32, stride=2)(torch.zeros(2, 16, 8, 8)).shape
    torch.Size([2, 32, 4, 4])
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        y = self.prelu(self.bn2(self.conv1(self.bn1(x))))  # (B, out, H, W)
        y = self.bn3(self.conv2(y))  # (B, out, H / stride, W / stride)
        return y + self.shortcut(x)  # no activation after the sum


class IResNet(nn.Module):
    """IResNet face-embedding backbone: (B, C, S, S) crops -> (B, D) embeddings (unit norm by default).

    Args:
        config: an ``IResNetConfig``, a preset name of ``IRESNET_PRESETS`` ("iresnet_tiny",
            "iresnet18", "iresnet50", ...) or a mapping; None = the defaults (iresnet18).
        **overrides: fields of ``IResNetConfig`` (a typo is a ConfigError naming it).

    >>> net = IResNet("iresnet_tiny", image_size=64).eval()
    >>> emb = net(torch.rand(2, 3, 64, 64))
    >>> emb.shape, torch.allclose(emb.norm(dim=1), torch.ones(2))
    (torch.Size([2, 128]), True)
    """

    def __init__(self, config: IResNetConfig | str | Mapping | None = None, **overrides):
        super().__init__()
        self.config = c = config_from(IResNetConfig, config, **overrides)
        self.embedding_dim = c.embedding_dim
        self.stem = nn.Sequential(nn.Conv2d(c.in_channels, c.widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(c.widths[0]), nn.PReLU(c.widths[0]))
        units, ch = [], c.widths[0]
        for width, n in zip(c.widths, c.layers):
            for i in range(n):  # the first unit of each stage halves H, W
                units.append(IBasicBlock(ch, width, stride=2 if i == 0 else 1))
                ch = width
        self.stages = nn.Sequential(*units)
        self.bn = nn.BatchNorm2d(ch)
        self.dropout = nn.Dropout(c.dropout)
        self.fc = nn.Linear(ch * c.feature_size ** 2, c.embedding_dim)
        self.features = nn.BatchNorm1d(c.embedding_dim)
        self.reset_parameters()

    def reset_parameters(self):
        """insightface's init: conv weights normal(0, 0.1), BN scale 1 and shift 0; the final BN's scale is
        fixed to 1 (not trained); with ``zero_init_residual`` the last BN of every unit starts at 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.1)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.features.weight.requires_grad_(False)
        if self.config.zero_init_residual:
            for m in self.modules():
                if isinstance(m, IBasicBlock):
                    nn.init.zeros_(m.bn3.weight)

    def forward_unnormalized(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, D) embeddings before L2 normalisation (for losses on raw features)."""
        s = self.config.image_size
        if x.ndim != 4 or x.shape[-2:] != (s, s):
            raise ValueError(f"expected (B, {self.config.in_channels}, {s}, {s}) inputs, got {tuple(x.shape)}; "
                             f"build the model with image_size={x.shape[-1]}")
        x = self.stages(self.stem(x))  # (B, C_last, S/2^n, S/2^n)
        x = torch.flatten(self.bn(x), 1)  # (B, C_last * (S/2^n)^2): position-aware, no pooling
        return self.features(self.fc(self.dropout(x)))  # (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, D) embeddings, unit norm unless ``config.normalize`` is False."""
        emb = self.forward_unnormalized(x)
        return F.normalize(emb, dim=1) if self.config.normalize else emb


__all__ = ["IResNetConfig", "IRESNET_PRESETS", "IBasicBlock", "IResNet"]
