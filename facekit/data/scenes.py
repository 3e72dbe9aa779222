"""Detection scenes: several synthetic faces of varied size on a cluttered background.

Targets follow the torchvision detection convention (``boxes`` xyxy pixels, ``labels``), plus
five ``landmarks`` per face and the ``identities`` drawn (the people of
:class:`~facekit.data.synthetic.SyntheticFaces` with the same seed and difficulty).

>>> ds = SyntheticScenes(num_scenes=2, image_size=96, faces_per_scene=(1, 2))
>>> image, target = ds[0]
>>> tuple(image.shape), sorted(target)
((3, 96, 96), ['boxes', 'identities', 'labels', 'landmarks'])
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from facekit.config import ConfigError
from facekit.data import _draw
from facekit.data._face import BOX_TOP
from facekit.data.synthetic import (MIN_IMAGE_SIZE, Difficulty, _check_int, _nuisance_from_rng, draw_face,
                                    resolve_difficulty, sample_identity)

__all__ = ["SyntheticScenes"]

SCENE_TAG = 0x5C3E  # the scene-level stream (background, light, blur, noise, layout)
SCENE_FACE_TAG = 0x5CFA  # one stream per face of a scene (identity nuisance)
MAX_COVERED = 0.3  # a face box may be covered at most this much by faces drawn over it
PLACEMENT_TRIES = 40
BLUR_REFERENCE = 0.25  # scene blur sigma = nuisance blur * this * shorter side (about a face's size)


def _pair(value, name, kind, what):
    """``value`` or ``(value, value)`` as a pair of ``kind``; else a ConfigError naming ``name``."""
    pair = (value, value) if isinstance(value, (int, float, np.integer, np.floating)) else value
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(isinstance(v, kind) and not isinstance(v, bool) for v in pair)):
        raise ConfigError(f"{name}={value!r} is not accepted; use {what}")
    return tuple(pair)


def _rect(cx, cy, s, c, sn, u0, v0, u1, v1):
    """Pixel AABB (x0, y0, x1, y1) of a face-unit rectangle under the pose (c, sn = cos, sin)."""
    mu, mv, hu, hv = (u0 + u1) / 2, (v0 + v1) / 2, (u1 - u0) / 2, (v1 - v0) / 2
    mx, my = cx + s * (c * mu - sn * mv), cy + s * (sn * mu + c * mv)
    ex, ey = s * (abs(c) * hu + abs(sn) * hv), s * (abs(sn) * hu + abs(c) * hv)
    return np.array([mx - ex, my - ey, mx + ex, my + ey])


def _covered(box, rects) -> float:
    """Fraction of ``box`` area inside the union bound (sum) of ``rects``."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    total = 0.0
    for r in rects:
        w = min(box[2], r[2]) - max(box[0], r[0])
        h = min(box[3], r[3]) - max(box[1], r[1])
        total += max(w, 0.0) * max(h, 0.0)
    return total / area


class SyntheticScenes(Dataset):
    """Item ``i`` -> ``(image (3, H, W) float32 in [0, 1], target dict)``; deterministic from ``seed``.

    Args:
        num_scenes: number of images.
        image_size: int (square) or (H, W) in pixels, each >= 16.
        faces_per_scene: (low, high) inclusive range of faces per scene, or an int; 0 allowed.
        face_size: (low, high) face box height (forehead to chin) as a fraction of the shorter side,
            drawn log-uniformly.
        seed, difficulty: as in :class:`~facekit.data.synthetic.SyntheticFaces` (same seed, same people).
        num_identities: faces are drawn from identities ``0..num_identities-1``.

    Target: ``boxes`` float32 (N, 4) x1, y1, x2, y2 pixels; ``labels`` int64 (N,) all 1 (face);
    ``landmarks`` float32 (N, 5, 2) pixel (x, y) in InsightFace order; ``identities`` int64 (N,).
    """

    def __init__(self, num_scenes: int = 100, image_size=256, *, faces_per_scene=(0, 4), face_size=(0.08, 0.45),
                 seed: int = 0, difficulty: "str | Difficulty" = "medium", num_identities: int = 50):
        self.num_scenes = _check_int("num_scenes", num_scenes, 1)
        size = _pair(image_size, "image_size", (int, np.integer), "an int or a pair (H, W) of ints")
        self.image_size = tuple(_check_int("image_size", s, MIN_IMAGE_SIZE, " (pixels)") for s in size)
        lo, hi = _pair(faces_per_scene, "faces_per_scene", (int, np.integer), "an int or a pair (low, high) of ints")
        if not 0 <= lo <= hi:
            raise ConfigError(f"faces_per_scene={faces_per_scene!r} must satisfy 0 <= low <= high")
        self.faces_per_scene = (int(lo), int(hi))
        flo, fhi = _pair(face_size, "face_size", (int, float), "a fraction or a pair (low, high) of fractions")
        if not 0 < flo <= fhi <= 0.9:
            raise ConfigError(f"face_size={face_size!r} must satisfy 0 < low <= high <= 0.9 (fractions)")
        self.face_size = (float(flo), float(fhi))
        self.seed = _check_int("seed", seed, 0)
        self.difficulty = resolve_difficulty(difficulty)
        self.num_identities = _check_int("num_identities", num_identities, 1)
        self.identities = [sample_identity(self.seed, i, self.difficulty.identity_spread)
                           for i in range(self.num_identities)]

    def __len__(self) -> int:
        return self.num_scenes

    @staticmethod
    def collate(batch):
        """For a DataLoader: a batch of ``(image, target)`` -> ``(list of images, list of targets)``."""
        images, targets = zip(*batch)
        return list(images), list(targets)

    def render(self, index: int):
        """Scene ``index`` as numpy: image (H, W, 3) float32 and the target dict of numpy arrays."""
        H, W = self.image_size
        short = min(H, W)
        rng = np.random.default_rng([self.seed, index, SCENE_TAG])
        d = self.difficulty
        scene = _nuisance_from_rng(rng, d)  # image-level light, blur, noise
        k = int(rng.integers(self.faces_per_scene[0], self.faces_per_scene[1] + 1))
        lo, hi = np.log(self.face_size)
        sizes = np.sort(np.exp(rng.uniform(lo, hi, k)))[::-1]  # largest first: placed first, drawn last
        placed = []  # (size order) dicts with pose and the rectangles that cover what is behind
        for j, frac in enumerate(sizes):
            frng = np.random.default_rng([self.seed, index, j, SCENE_FACE_TAG])
            who = int(frng.integers(self.num_identities))
            ident, nuis = self.identities[who], _nuisance_from_rng(frng, d)
            s = frac * short / ((1 - BOX_TOP) * ident.face_height)  # pixels per face unit
            a = math.radians(nuis.rotation)
            c, sn = math.cos(a), math.sin(a)
            hw, fh = ident.face_width, ident.face_height
            face = _rect(0, 0, s, c, sn, -hw, BOX_TOP * fh, hw, fh)  # conservative face box about the centre
            best = None
            for _ in range(PLACEMENT_TRIES):
                cx = rng.uniform(-face[0], W - face[2]) if face[2] - face[0] < W else W / 2
                cy = rng.uniform(-face[1], H - face[3]) if face[3] - face[1] < H else H / 2
                box = face + np.array([cx, cy, cx, cy])
                cover = _covered(box, [r for p in placed for r in p["covers"]])
                if best is None or cover < best[0]:
                    best = (cover, cx, cy)
                if cover <= MAX_COVERED:
                    break
            _, cx, cy = best
            covers = [_rect(cx, cy, s, c, sn, -hw - 0.35, -1.35 * fh, hw + 0.35, fh),  # head and hair
                      _rect(cx, cy, s, c, sn, -1.5, 1.25 * fh, 1.5, 2.7 * fh)]  # shoulders
            placed.append(dict(who=who, ident=ident, nuis=nuis, cx=cx, cy=cy, s=s, covers=covers))

        img = _draw.background(rng, H, W, d.clutter)  # (H, W, 3)
        boxes, landmarks, who = [], [], []
        for p in reversed(placed):  # smallest (farthest) first
            lm, box = draw_face(img, p["ident"], p["nuis"], (p["cx"], p["cy"]), p["s"])
            boxes.append(box)
            landmarks.append(lm)
            who.append(p["who"])
        _draw.lighting(img, scene.light_angle, scene.light_strength, scene.color_gain)
        img = _draw.gaussian_blur(img, scene.blur * BLUR_REFERENCE * short)
        if scene.noise > 0:
            img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(scene.noise)
        np.clip(img, 0.0, 1.0, out=img)
        target = {
            "boxes": np.clip(np.array(boxes, np.float32).reshape(-1, 4), 0, [W, H, W, H]).astype(np.float32),
            "labels": np.ones(len(boxes), np.int64),
            "landmarks": np.array(landmarks, np.float32).reshape(-1, 5, 2),
            "identities": np.array(who, np.int64),
        }
        return img, target

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} scenes")
        img, target = self.render(index % len(self))
        return torch.from_numpy(img).permute(2, 0, 1).contiguous(), {k: torch.from_numpy(v) for k, v in target.items()}
