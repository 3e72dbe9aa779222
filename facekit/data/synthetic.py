"""Procedural synthetic faces: the course's offline default dataset.

An :class:`Identity` is a fixed set of face parameters drawn from ``(seed, index)``; an image
renders it under a :class:`Nuisance` (pose, light, expression, occlusion, blur, noise,
background) drawn from ``(seed, identity, image)``. Both are random-access: image 7 of
identity 3 is the same whatever else is drawn. :class:`Difficulty` sets the nuisance ranges.

>>> ds = SyntheticFaces(num_identities=3, images_per_identity=2, image_size=32)
>>> image, label = ds[5]
>>> tuple(image.shape), image.dtype, label
((3, 32, 32), torch.float32, 2)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from facekit.config import ConfigError
from facekit.data import _draw
from facekit.data._face import draw_face as _draw_face
from facekit.data._identity import (GLASSES, FACIAL_HAIR, HAIR_COLORS, HAIR_STYLES, SKIN_TONES,
                                    Identity, sample_identity)

__all__ = ["Difficulty", "Identity", "Nuisance", "SyntheticFaces", "sample_identity", "sample_nuisance",
           "render_face", "draw_face", "resolve_difficulty", "SKIN_TONES", "HAIR_STYLES", "HAIR_COLORS",
           "GLASSES", "FACIAL_HAIR", "OCCLUDERS"]

NUISANCE_TAG = 0x6E75  # separates nuisance streams from identity and scene streams
FACE_SCALE = 0.32  # pixels per face unit, as a fraction of the image size (head half height)
FACE_CENTRE_Y = 0.52  # head centre, as a fraction of the image height
OCCLUDERS = ("bar", "patch", "mask", "hand")
MIN_IMAGE_SIZE = 16


_DIFFICULTY_MAX = {"occlusion_prob": 1, "clutter": 1, "expression": 1, "lighting": 1, "scale_jitter": 0.5,
                   "yaw": 60, "shift": 0.5, "color_jitter": 0.5, "blur_sigma": 0.1, "noise_std": 0.5,
                   "identity_spread": 1}


@dataclass(frozen=True)
class Difficulty:
    """Nuisance ranges of the synthetic faces; each image draws uniformly within them.

    The defaults are the ``"medium"`` preset. ``Difficulty.preset("easy" | "medium" | "hard")``.
    """

    rotation_deg: float = 12.0  # in-plane rotation, uniform in +-rotation_deg degrees
    scale_jitter: float = 0.1  # face scale multiplied by 1 +- scale_jitter
    shift: float = 0.05  # translation, +-shift of the image size on each axis
    yaw: float = 30.0  # head turn, uniform in +-yaw degrees (features slide, far side squeezes)
    lighting: float = 0.5  # brightness gradient across the image, up to 1 +- lighting
    color_jitter: float = 0.08  # per-channel gain 1 +- color_jitter (white balance, exposure)
    expression: float = 0.7  # amplitude (0..1) of smile/frown, eye closing, brow raise, open mouth
    occlusion_prob: float = 0.25  # probability of an occluder (bar, patch, mask or hand)
    blur_sigma: float = 0.012  # Gaussian blur sigma up to this fraction of the image size
    noise_std: float = 0.04  # pixel noise std up to this (image in [0, 1])
    clutter: float = 0.7  # background clutter (0 plain gradient .. 1 many shapes, strong texture)
    identity_spread: float = 0.8  # how different identities are (geometry/colour jitter, 0..1); lower = harder

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"Difficulty.{f.name}={value!r} must be a finite number >= 0")
        for name, top in _DIFFICULTY_MAX.items():
            if getattr(self, name) > top:
                raise ConfigError(f"Difficulty.{name}={getattr(self, name)!r} must be in [0, {top}]")

    @classmethod
    def preset(cls, name: str) -> "Difficulty":
        """The named preset: ``"easy"``, ``"medium"`` (the defaults) or ``"hard"``.

        >>> Difficulty.preset("hard").rotation_deg > Difficulty.preset("easy").rotation_deg
        True
        """
        if name not in PRESETS:
            raise ConfigError(f"difficulty={name!r} is not accepted; use one of: {', '.join(map(repr, PRESETS))}")
        return PRESETS[name]


PRESETS = {
    "easy": Difficulty(rotation_deg=5.0, scale_jitter=0.05, shift=0.03, yaw=12.0, lighting=0.2, color_jitter=0.03,
                       expression=0.3, occlusion_prob=0.0, blur_sigma=0.006, noise_std=0.015, clutter=0.3,
                       identity_spread=1.0),
    "medium": Difficulty(),
    "hard": Difficulty(rotation_deg=25.0, scale_jitter=0.18, shift=0.08, yaw=45.0, lighting=0.8, color_jitter=0.15,
                       expression=1.0, occlusion_prob=0.5, blur_sigma=0.02, noise_std=0.08, clutter=1.0,
                       identity_spread=0.6),
}


def resolve_difficulty(difficulty: "str | Difficulty") -> Difficulty:
    """A preset name or a :class:`Difficulty` -> a :class:`Difficulty`."""
    if isinstance(difficulty, Difficulty):
        return difficulty
    if isinstance(difficulty, str):
        return Difficulty.preset(difficulty)
    raise ConfigError(f"difficulty={difficulty!r} must be a Difficulty or one of: {', '.join(map(repr, PRESETS))}")


@dataclass(frozen=True)
class Nuisance:
    """What changes from one image of an identity to the next (drawn by :func:`sample_nuisance`)."""

    rotation: float = 0.0  # in-plane rotation, degrees (positive: clockwise on screen)
    scale: float = 1.0  # face scale multiplier
    shift: tuple = (0.0, 0.0)  # (dx, dy) translation, fractions of the image size
    yaw: float = 0.0  # head turn, degrees (positive: features slide to the viewer's right)
    light_angle: float = 0.0  # direction of the brightness gradient, radians
    light_strength: float = 0.0  # gradient amplitude: brightness from 1 - s to 1 + s
    color_gain: tuple = (1.0, 1.0, 1.0)  # per-channel gain
    smile: float = 0.0  # -1 frown .. 1 smile
    eye_open: float = 1.0  # 0.1 nearly closed .. 1.2 wide open
    brow_raise: float = 0.0  # -1 lowered .. 1 raised
    mouth_open: float = 0.0  # 0 closed .. 1 open
    occluder: str = "none"  # "none" or one of OCCLUDERS
    occluder_params: tuple = (0.0, 0.0, 0.4, 0.0, 0.5, 0.5, 0.5)  # u, v, size (face units), angle, r, g, b
    blur: float = 0.0  # blur sigma, fraction of the image size
    noise: float = 0.0  # pixel noise std
    clutter: float = 0.0  # background clutter 0..1
    clothing_color: tuple = (0.3, 0.35, 0.5)
    seed: int = 0  # seeds the background and the pixel noise


def _nuisance_from_rng(rng, d: Difficulty) -> Nuisance:
    u = rng.uniform(-1.0, 1.0, 16).tolist()  # fixed draw order: same stream for every difficulty
    occluded = rng.uniform() < d.occlusion_prob
    kind = OCCLUDERS[rng.integers(len(OCCLUDERS))]
    occ = (0.55 * u[12], 0.4 * u[13] + 0.1, 0.4 + 0.1 * u[14], math.pi * u[15], *rng.uniform(0.05, 0.95, 3).tolist())
    e = d.expression
    return Nuisance(
        rotation=d.rotation_deg * u[0], scale=1.0 + d.scale_jitter * u[1], shift=(d.shift * u[2], d.shift * u[3]),
        yaw=d.yaw * u[4], light_angle=math.pi * u[5], light_strength=d.lighting * abs(u[6]),
        color_gain=tuple((1.0 + d.color_jitter * rng.uniform(-1.0, 1.0, 3)).tolist()),
        smile=e * u[7], eye_open=1.0 - e * 0.45 * (1 - u[8]) + 0.1 * e * max(u[8], 0),
        brow_raise=e * u[9], mouth_open=e * max(u[10], 0.0) ** 2,
        occluder=kind if occluded else "none", occluder_params=tuple(float(x) for x in occ),
        blur=d.blur_sigma * (0.5 + 0.5 * u[11]), noise=d.noise_std * float(rng.uniform(0.3, 1.0)), clutter=d.clutter,
        clothing_color=tuple(float(x) for x in rng.uniform(0.05, 0.9, 3)),
        seed=int(rng.integers(2**31)))


def sample_nuisance(seed: int, identity_index: int, image_index: int,
                    difficulty: "str | Difficulty" = "medium") -> Nuisance:
    """The nuisance of image ``image_index`` of identity ``identity_index``; deterministic.

    >>> sample_nuisance(0, 1, 2) == sample_nuisance(0, 1, 2)
    True
    """
    rng = np.random.default_rng([seed, identity_index, image_index, NUISANCE_TAG])
    return _nuisance_from_rng(rng, resolve_difficulty(difficulty))


def draw_face(canvas: np.ndarray, identity: Identity, nuisance: Nuisance, center, scale: float, *,
              body: bool = True):
    """Paint a face into ``canvas`` (H, W, 3 float32, in place) at ``center`` (x, y) pixels.

    ``scale`` is pixels per face unit (half the head height); the nuisance's rotation, yaw,
    expression and occluder apply, its image-level fields (scale, shift, light, blur, noise,
    background) do not. Returns ``(landmarks (5, 2), box (4,))`` in pixels, see :func:`render_face`.
    """
    return _draw_face(canvas, identity, nuisance, float(center[0]), float(center[1]), float(scale), body=body)


def render_face(identity: Identity, nuisance: Nuisance, size: int = 64):
    """Render one face image.

    Args:
        identity: who. nuisance: how (see :class:`Nuisance`). size: image side in pixels.

    Returns:
        image: float32 (size, size, 3) RGB in [0, 1].
        landmarks: float32 (5, 2) pixel (x, y): left eye, right eye, nose tip, left and right
            mouth corner, viewer's left first (InsightFace order).
        box: float32 (4,) x1, y1, x2, y2 of the face (forehead to chin), pixels; may leave the image.

    >>> img, lm, box = render_face(sample_identity(0, 0), Nuisance(), 32)
    >>> img.shape, lm.shape, bool(lm[0, 1] < lm[3, 1])
    ((32, 32, 3), (5, 2), True)
    """
    size = _check_int("size", size, 1, " (pixels)")
    n = nuisance
    rng = np.random.default_rng(n.seed)  # background and noise: the image is a function of its arguments
    img = _draw.background(rng, size, size, n.clutter)  # (size, size, 3)
    scale = FACE_SCALE * size * n.scale
    cx, cy = size * (0.5 + n.shift[0]), size * (FACE_CENTRE_Y + n.shift[1])
    lm, box = _draw_face(img, identity, n, cx, cy, scale)
    _draw.lighting(img, n.light_angle, n.light_strength, n.color_gain)
    img = _draw.gaussian_blur(img, n.blur * size)
    if n.noise > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(n.noise)
    np.clip(img, 0.0, 1.0, out=img)
    return img, lm.astype(np.float32), box.astype(np.float32)


def _check_int(name, value, minimum, what=""):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be an int >= {minimum}{what}")
    return int(value)


class SyntheticFaces(Dataset):
    """Images of procedural identities: item ``i`` -> ``(image (C, H, W) float32 in [0, 1], label)``.

    Items are identity-major: item ``i`` is image ``image_offset + i % images_per_identity`` of
    identity ``i // images_per_identity``. A held-out set of new images of the same people:
    ``SyntheticFaces(n, 5, image_offset=20)`` next to ``SyntheticFaces(n, 20)``.

    Args:
        num_identities: number of people (labels 0..num_identities-1).
        images_per_identity: images per person.
        image_size: side in pixels (>= 16; 32..160 look good).
        seed: the same seed gives the same people and images.
        difficulty: a preset name ("easy", "medium", "hard") or a :class:`Difficulty`.
        channels: 3 for RGB, 1 for grey (luminance).
        transform: applied to the image tensor in ``__getitem__``.
        image_offset: index of the first image of each identity.

    >>> ds = SyntheticFaces(4, 2, 32, difficulty="easy")
    >>> len(ds), ds.classes[:2], ds.targets[:4]
    (8, ['id000', 'id001'], [0, 0, 1, 1])
    >>> X, y = ds.tensors(); tuple(X.shape), y.dtype
    ((8, 3, 32, 32), torch.int64)
    """

    def __init__(self, num_identities: int = 10, images_per_identity: int = 10, image_size: int = 64, *,
                 seed: int = 0, difficulty: "str | Difficulty" = "medium", channels: int = 3, transform=None,
                 image_offset: int = 0):
        self.num_identities = _check_int("num_identities", num_identities, 1)
        self.images_per_identity = _check_int("images_per_identity", images_per_identity, 1)
        self.image_size = _check_int("image_size", image_size, MIN_IMAGE_SIZE, " (pixels)")
        self.seed = _check_int("seed", seed, 0)
        self.image_offset = _check_int("image_offset", image_offset, 0)
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ConfigError(f"channels={channels!r} is not accepted; use 1 (grey) or 3 (RGB)")
        if transform is not None and not callable(transform):
            raise ConfigError(f"transform={transform!r} must be callable or None")
        self.channels, self.transform = channels, transform
        self.difficulty = resolve_difficulty(difficulty)
        width = len(str(self.num_identities - 1))
        self.classes = [f"id{i:0{max(3, width)}d}" for i in range(self.num_identities)]
        self.targets = [i // self.images_per_identity for i in range(len(self))]
        self.identities = [sample_identity(self.seed, i, self.difficulty.identity_spread)
                           for i in range(self.num_identities)]
        self._cache = None

    def __len__(self) -> int:
        return self.num_identities * self.images_per_identity

    def attributes(self, label: int) -> dict:
        """Categorical attributes of identity ``label`` (skin_tone 0..5, hair_style, glasses, ...)."""
        return self.identities[label].attributes()

    def nuisance(self, index: int) -> Nuisance:
        """The :class:`Nuisance` of item ``index``."""
        label, j = divmod(index, self.images_per_identity)
        return sample_nuisance(self.seed, label, self.image_offset + j, self.difficulty)

    def render(self, index: int):
        """Item ``index`` as :func:`render_face` returns it: (image HxWx3, landmarks, box), numpy."""
        return render_face(self.identities[self.targets[index]], self.nuisance(index), self.image_size)

    def _image(self, index: int) -> torch.Tensor:
        img = torch.from_numpy(self.render(index)[0]).permute(2, 0, 1)  # (3, H, W)
        if self.channels == 1:
            w = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
            img = (img * w).sum(0, keepdim=True)
        return img.contiguous()

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        img = self._cache[0][index] if self._cache is not None else self._image(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]

    def tensors(self):
        """Render every item once (cached); returns ``X`` (N, C, H, W) float32 and ``y`` (N,) int64.

        ``transform`` is not applied.
        """
        if self._cache is None:
            X = torch.stack([self._image(i) for i in range(len(self))])
            self._cache = (X, torch.tensor(self.targets, dtype=torch.int64))
        return self._cache
