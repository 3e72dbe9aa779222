"""SimCLR (Chen et al. 2020): two augmented views of each image, a projection head, and the NT-Xent loss.

For a batch of B images, two random augmentations give 2B views; view ``i`` and view ``i + B`` are a
positive pair and the other 2B - 2 views are negatives. With cosine similarities ``s`` and
temperature ``tau`` the loss of anchor ``i`` with positive ``j`` is

    l(i, j) = -log( exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau) )

averaged over all 2B anchors (the normalised temperature-scaled cross-entropy, NT-Xent). The
augmentations decide what the features learn to ignore: for faces, crops, flips and mild lighting
changes, but not strong colour changes (skin and hair colour are identity cues).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from facekit.config import ConfigError, config_from


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent of two (B, D) batches of projections, row i of `z1` and row i of `z2` being a positive pair.

    >>> z = torch.randn(4, 8)
    >>> bool(nt_xent_loss(z, z, 0.1) < nt_xent_loss(z, torch.randn(4, 8), 0.1))
    True
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ConfigError(f"temperature={temperature} must be > 0")
    B = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D) unit vectors
    logits = z @ z.T / temperature  # (2B, 2B) cosine / tau
    logits = logits.masked_fill(torch.eye(2 * B, dtype=torch.bool, device=z.device), float("-inf"))  # k != i
    positives = torch.cat([torch.arange(B, 2 * B), torch.arange(B)]).to(z.device)  # i <-> i + B
    return F.cross_entropy(logits, positives)


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent_loss` with a fixed temperature."""

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"temperature={temperature} must be > 0")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return nt_xent_loss(z1, z2, self.temperature)


class ProjectionHead(nn.Module):
    """SimCLR's head g: Linear-BN-ReLU-Linear, (B, in_dim) -> (B, out_dim); thrown away after pretraining."""

    def __init__(self, in_dim: int, hidden_dim: int = 256, out_dim: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                                 nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


@dataclass(frozen=True)
class SimCLRConfig:
    temperature: float = 0.2  # tau of NT-Xent (SimCLR: 0.1-0.5; smaller = harder negatives weigh more)
    hidden_dim: int = 256  # width of the projection head's hidden layer
    projection_dim: int = 64  # the space where NT-Xent is computed

    def __post_init__(self):
        if self.temperature <= 0:
            raise ConfigError(f"temperature={self.temperature} must be > 0")
        if self.hidden_dim < 1 or self.projection_dim < 1:
            raise ConfigError(f"hidden_dim={self.hidden_dim} and projection_dim={self.projection_dim} must be >= 1")


def backbone_features(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, D) features of a backbone: ``forward_unnormalized`` for facekit's embedding nets, else
    ``features`` when it is a method (SmallResNet, ViT), else ``forward``."""
    if hasattr(backbone, "forward_unnormalized"):
        return backbone.forward_unnormalized(x)
    features = getattr(backbone, "features", None)
    if callable(features) and not isinstance(features, nn.Module):
        return features(x)
    return backbone(x)


class SimCLR(nn.Module):
    """A backbone f and a projection head g trained with NT-Xent on two views; keep ``simclr.backbone``.

    >>> from facekit.models import create_embedding
    >>> model = SimCLR(create_embedding("iresnet_tiny", image_size=32), feature_dim=128)
    >>> x1, x2 = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    >>> model(x1, x2).ndim
    0
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, config: SimCLRConfig | Mapping | None = None,
                 **overrides):
        super().__init__()
        self.config = c = config_from(SimCLRConfig, config, **overrides)
        self.backbone = backbone
        self.head = ProjectionHead(feature_dim, c.hidden_dim, c.projection_dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, projection_dim) z = g(f(x))."""
        return self.head(backbone_features(self.backbone, x))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """NT-Xent of the two views (one forward pass over the 2B images, so batch norm sees both)."""
        z = self.project(torch.cat([x1, x2]))  # (2B, projection_dim)
        z1, z2 = z.chunk(2)
        return nt_xent_loss(z1, z2, self.config.temperature)


def simclr_augment(image_size: int, *, crop_scale: float = 0.35, brightness: float = 0.4, contrast: float = 0.4,
                   saturation: float = 0.2, hue: float = 0.0, jitter_p: float = 0.8, grayscale_p: float = 0.0,
                   blur_p: float = 0.0) -> v2.Compose:
    """SimCLR's augmentation for one float (C, H, W) face in [0, 1]: random resized crop (at least
    `crop_scale` of the area), horizontal flip, colour jitter with probability `jitter_p`, optional
    grey and blur. Defaults are milder than SimCLR's ImageNet ones (hue 0.1, saturation 0.8, grey 0.2):
    colour is part of a face's identity.

    >>> simclr_augment(32)(torch.rand(3, 32, 32)).shape
    torch.Size([3, 32, 32])
    """
    if not 0 < crop_scale <= 1:
        raise ConfigError(f"crop_scale={crop_scale} must be in (0, 1]")
    for name, p in (("jitter_p", jitter_p), ("grayscale_p", grayscale_p), ("blur_p", blur_p)):
        if not 0 <= p <= 1:
            raise ConfigError(f"{name}={p} must be a probability in [0, 1]")
    steps = [v2.RandomResizedCrop(image_size, scale=(crop_scale, 1.0), ratio=(0.8, 1.25), antialias=True),
             v2.RandomHorizontalFlip(),
             v2.RandomApply([v2.ColorJitter(brightness, contrast, saturation, hue)], p=jitter_p)]
    if grayscale_p:
        steps.append(v2.RandomGrayscale(grayscale_p))
    if blur_p:
        steps.append(v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.5))], p=blur_p))
    steps.append(v2.Lambda(lambda t: t.clamp(0.0, 1.0)))
    return v2.Compose(steps)


def two_views(images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independently augmented views of every image of a (B, C, H, W) batch.

    The transform is applied image by image: a torchvision transform called on a batch draws one set of
    random parameters for the whole batch, which would make every pair share the same crop.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    v1 = torch.stack([transform(img) for img in images])
    v2_ = torch.stack([transform(img) for img in images])
    return v1, v2_


class TwoViews:
    """Transform that returns two independent augmentations of one (C, H, W) image, stacked: (2, C, H, W).

    Use it as the transform of a dataset (``TensorImages(X, y, transform=TwoViews(simclr_augment(32)))``);
    a batch is then (B, 2, C, H, W) and ``SimCLR(batch[:, 0], batch[:, 1])`` is the loss.
    """

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor]):
        if not callable(transform):
            raise ConfigError(f"transform={transform!r} must be callable")
        self.transform = transform

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform(image), self.transform(image)])


__all__ = ["TwoViews", "nt_xent_loss", "NTXentLoss", "ProjectionHead", "SimCLRConfig", "SimCLR", "backbone_features",
           "simclr_augment", "two_views"]
