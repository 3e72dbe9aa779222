"""MobileFaceNet (Chen et al. 2018): a ~1 M-parameter face-embedding backbone for phones and CPUs.

MobileNetV2 bottlenecks (1x1 expand - 3x3 depthwise - 1x1 linear project, residual when the
shape is kept) with PReLU, and a *global depthwise convolution* (GDConv) head instead of global
average pooling: a depthwise S x S conv over the last feature map gives every spatial position
its own learned weight (the face centre matters more than the corners), then a linear 1x1
projects to the embedding. At 112x112, three stride-2 bottlenecks and the stride-2 stem give a
7x7 map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from facekit.config import ConfigError, check_keys, config_from, make_config

CHANNEL_DIVISOR = 8  # scaled widths are rounded to a multiple of this (MobileNet convention)
DOWNSAMPLINGS = 4  # stem + three stride-2 bottlenecks: the last map is image_size / 16


@dataclass(frozen=True)
class MobileFaceNetConfig:
    image_size: int = 112  # side of the square input; divisible by 16 (112, 96, 64)
    in_channels: int = 3  # 3 for RGB, 1 for grey
    width_mult: float = 1.0  # scales the 64 / 128 / 512 channel widths (rounded to a multiple of 8)
    blocks: tuple[int, int, int] = (4, 6, 2)  # stride-1 residual bottlenecks after each stride-2 one (paper)
    embedding_dim: int = 128  # D, the embedding width (the paper's 128; insightface's "mbf" uses 512)
    normalize: bool = True  # forward returns unit-norm embeddings; forward_unnormalized the raw ones

    def __post_init__(self):
        if self.image_size % 2 ** DOWNSAMPLINGS:
            raise ConfigError(f"image_size={self.image_size} must be divisible by {2 ** DOWNSAMPLINGS}")
        if self.width_mult <= 0 or self.embedding_dim < 1:
            raise ConfigError(f"width_mult={self.width_mult} must be > 0 and embedding_dim={self.embedding_dim} >= 1")
        if len(self.blocks) != 3 or min(self.blocks) < 0:
            raise ConfigError(f"blocks={self.blocks} must be three counts >= 0")

    @classmethod
    def preset(cls, name: str, **overrides) -> MobileFaceNetConfig:
        """A named configuration of ``MOBILEFACENET_PRESETS`` with keyword overrides."""
        check_keys([name], MOBILEFACENET_PRESETS, what="MobileFaceNet preset")
        return make_config(cls, MOBILEFACENET_PRESETS[name], **overrides)


MOBILEFACENET_PRESETS: dict[str, dict] = {
    "mobilefacenet": dict(),  # the paper's network: ~1.0 M parameters, 0.44 GFLOPs (221 M MACs)
    "mobilefacenet_tiny": dict(width_mult=0.5, blocks=(1, 2, 1)),  # ~0.18 M: fast CPU experiments
}


def _scaled(channels: int, width_mult: float) -> int:
    return max(CHANNEL_DIVISOR, int(round(channels * width_mult / CHANNEL_DIVISOR)) * CHANNEL_DIVISOR)


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True,
            padding: int | None = None) -> nn.Sequential:
    """Conv (no bias) - BN [- PReLU]; padding ``kernel // 2`` ("same" for odd kernels) unless given."""
    padding = kernel // 2 if padding is None else padding
    layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False),
              nn.BatchNorm2d(out_ch)]
    if act:
        layers.append(nn.PReLU(out_ch))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """1x1 expand (x t) - 3x3 depthwise (stride) - 1x1 linear project; residual when stride 1 and in == out.

    >>> Bottleneck(16, 32, stride=2, expansion=2)(torch.zeros(2, 16, 8, 8)).shape
    torch.Size([2, 32, 4, 4])
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_ch * expansion
        self.block = nn.Sequential(conv_bn(in_ch, hidden, 1),  # (B, t C_in, H, W)
                                   conv_bn(hidden, hidden, 3, stride, groups=hidden),  # depthwise
                                   conv_bn(hidden, out_ch, 1, act=False))  # linear bottleneck
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    """MobileFaceNet: (B, C, S, S) crops -> (B, D) embeddings (unit norm by default).

    Args:
        config: a ``MobileFaceNetConfig``, a preset name of ``MOBILEFACENET_PRESETS`` or a mapping;
            None = the paper's network.
        **overrides: fields of ``MobileFaceNetConfig`` (a typo is a ConfigError naming it).

    >>> net = MobileFaceNet("mobilefacenet_tiny", image_size=64).eval()
    >>> net(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 128])
    """

    def __init__(self, config: MobileFaceNetConfig | str | Mapping | None = None, **overrides):
        super().__init__()
        self.config = c = config_from(MobileFaceNetConfig, config, **overrides)
        self.embedding_dim = c.embedding_dim
        c64, c128, c512 = (_scaled(n, c.width_mult) for n in (64, 128, 512))
        self.stem = nn.Sequential(conv_bn(c.in_channels, c64, 3, 2),  # (B, c64, S/2, S/2)
                                  conv_bn(c64, c64, 3, 1, groups=c64))  # depthwise 3x3
        stages = []
        # (in, out, expansion of the stride-2 bottleneck); the stride-1 ones after it expand x2 (paper, Table 1)
        for (in_ch, out_ch, t), n in zip([(c64, c64, 2), (c64, c128, 4), (c128, c128, 4)], c.blocks):
            stages.append(Bottleneck(in_ch, out_ch, 2, t))
            stages += [Bottleneck(out_ch, out_ch, 1, 2) for _ in range(n)]
        self.stages = nn.Sequential(*stages)  # (B, c128, S/16, S/16)
        side = c.image_size // 2 ** DOWNSAMPLINGS
        self.expand = conv_bn(c128, c512, 1)  # (B, c512, S/16, S/16)
        self.gdconv = conv_bn(c512, c512, side, groups=c512, act=False, padding=0)  # global depthwise conv: (B, c512, 1, 1)
        self.fc = nn.Linear(c512, c.embedding_dim, bias=False)  # the paper's linear 1x1 conv
        self.features = nn.BatchNorm1d(c.embedding_dim)

    def forward_unnormalized(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, D) embeddings before L2 normalisation (for losses on raw features)."""
        s = self.config.image_size
        if x.ndim != 4 or x.shape[-2:] != (s, s):
            raise ValueError(f"expected (B, {self.config.in_channels}, {s}, {s}) inputs, got {tuple(x.shape)}; "
                             f"build the model with image_size={x.shape[-1]}")
        x = self.gdconv(self.expand(self.stages(self.stem(x))))  # (B, c512, 1, 1)
        return self.features(self.fc(torch.flatten(x, 1)))  # (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, D) embeddings, unit norm unless ``config.normalize`` is False."""
        emb = self.forward_unnormalized(x)
        return F.normalize(emb, dim=1) if self.config.normalize else emb


__all__ = ["MobileFaceNetConfig", "MOBILEFACENET_PRESETS", "Bottleneck", "MobileFaceNet", "conv_bn"]
