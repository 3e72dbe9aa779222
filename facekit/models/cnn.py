"""Convolutional face classifiers for chapter 1.

``ArticleCNN`` is the network of the first source article (section 4), corrected so
that it runs: the article forgot ``import torch.nn.functional as F``, hard-coded 10
classes and 3x64x64 inputs in ``fc1`` and ``view``. ``SmallResNet`` is the stronger
small CNN: batch norm and residual blocks, global average pooling, any input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class ArticleCNN(nn.Module):
    """Two conv+ReLU+max-pool blocks and two fully connected layers.

    Args:
        num_classes: number of identities (the article hard-coded 10).
        in_channels: 3 for RGB, 1 for grey.
        image_size: side of the square input; the article used 64.
        hidden: width of the first fully connected layer (the article's 128).
        dropout: dropout before the last layer (0 = the article's network).

    >>> model = ArticleCNN(num_classes=40)
    >>> model(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 40])
    """

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 64,
                 hidden: int = 128, dropout: float = 0.0):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size={image_size} must be divisible by 4 (two 2x2 poolings)")
        self.image_size = image_size
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        side = image_size // 4
        self.fc1 = nn.Linear(64 * side * side, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) images -> (B, hidden) features before the classifier."""
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(f"expected {self.image_size}x{self.image_size} inputs, got {tuple(x.shape)}")
        x = self.pool(F.relu(self.conv1(x)))  # (B, 32, S/2, S/2)
        x = self.pool(F.relu(self.conv2(x)))  # (B, 64, S/4, S/4)
        x = torch.flatten(x, 1)  # the article's x.view(-1, 64*16*16), without the hard-coded size
        return F.relu(self.fc1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.features(x)))  # (B, num_classes) logits


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a (projected) shortcut, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


@dataclass(frozen=True)
class SmallResNetConfig:
    widths: tuple[int, ...] = (32, 64, 128)  # channels of each stage; each stage after the first halves H, W
    blocks_per_stage: int = 1  # residual blocks per stage
    dropout: float = 0.0  # before the classifier


class SmallResNet(nn.Module):
    """A small residual CNN with batch norm and global average pooling.

    >>> model = SmallResNet(num_classes=10, in_channels=1)
    >>> model(torch.zeros(2, 1, 48, 48)).shape
    torch.Size([2, 10])
    """

    def __init__(self, num_classes: int, in_channels: int = 3, widths=(32, 64, 128),
                 blocks_per_stage: int = 1, dropout: float = 0.0):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        layers, ch = [], widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks_per_stage):
                layers.append(ResidualBlock(ch, w, stride=2 if (i > 0 and b == 0) else 1))
                ch = w
        self.stages = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(ch, num_classes)
        self.feature_dim = ch

    def features(self, x):
        x = self.stages(self.stem(x))  # (B, C_last, H/2^k, W/2^k)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, C_last)

    def forward(self, x):
        return self.fc(self.drop(self.features(x)))
