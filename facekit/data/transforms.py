"""Preprocessing and augmentation with ``torchvision.transforms.v2`` on float (C, H, W) tensors in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from facekit.config import ConfigError


@dataclass(frozen=True)
class AugmentStrength:
    crop_scale: float  # RandomResizedCrop keeps at least this fraction of the area
    rotation_deg: float  # RandomRotation range, +-degrees
    brightness: float  # ColorJitter strengths
    contrast: float
    saturation: float
    erase_p: float  # probability of RandomErasing a patch (a synthetic occlusion)


STRENGTHS = {
    "light": AugmentStrength(0.90, 5.0, 0.15, 0.15, 0.10, 0.0),
    "medium": AugmentStrength(0.75, 10.0, 0.30, 0.30, 0.20, 0.25),
    "strong": AugmentStrength(0.60, 15.0, 0.40, 0.40, 0.30, 0.50),
}


def _size(image_size) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def preprocess(image_size, *, channels: int = 3, crop: float | None = None) -> v2.Compose:
    """Deterministic preprocessing: optional centre crop (fraction of the shorter side), resize, grey.

    >>> preprocess(64, channels=1, crop=0.9)(torch.rand(3, 112, 92)).shape
    torch.Size([1, 64, 64])
    """
    if channels not in (1, 3):
        raise ConfigError(f"channels={channels} is not accepted; use 1 (grey) or 3 (RGB)")
    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if crop is not None:
        if not 0 < crop <= 1:
            raise ConfigError(f"crop={crop} must be a fraction in (0, 1]")
        steps.append(_CentreSquareCrop(crop))
    steps.append(v2.Resize(_size(image_size), antialias=True))
    steps.append(_Channels(channels))
    return v2.Compose(steps)


def train_transform(image_size, *, channels: int = 3, strength: str = "medium", flip: bool = True) -> v2.Compose:
    """Random crop-and-resize, horizontal flip, small rotation, colour jitter and erasing.

    >>> train_transform(64)(torch.rand(3, 64, 64)).shape
    torch.Size([3, 64, 64])
    """
    if strength not in STRENGTHS:
        raise ConfigError(f"strength={strength!r} is not accepted; use one of: {', '.join(STRENGTHS)}")
    s = STRENGTHS[strength]
    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
             v2.RandomResizedCrop(_size(image_size), scale=(s.crop_scale, 1.0), ratio=(0.9, 1.1), antialias=True)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.RandomRotation(s.rotation_deg))
    steps.append(v2.ColorJitter(brightness=s.brightness, contrast=s.contrast,
                                saturation=s.saturation if channels == 3 else 0.0))
    steps.append(_Channels(channels))
    if s.erase_p > 0:
        steps.append(v2.RandomErasing(p=s.erase_p, scale=(0.02, 0.12), value=0.5))
    steps.append(v2.Lambda(lambda t: t.clamp_(0, 1)))
    return v2.Compose(steps)


class _CentreSquareCrop(torch.nn.Module):
    def __init__(self, fraction: float):
        super().__init__()
        self.fraction = fraction

    def forward(self, img):
        side = int(round(min(img.shape[-2:]) * self.fraction))
        return v2.functional.center_crop(img, [side, side])


class _Channels(torch.nn.Module):
    """Grey <-> RGB so every image leaves with the requested number of channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, img):
        if img.shape[-3] == self.channels:
            return img
        if self.channels == 1:
            return v2.functional.rgb_to_grayscale(img[..., :3, :, :])
        return img.expand(*img.shape[:-3], 3, *img.shape[-2:]).clone()
