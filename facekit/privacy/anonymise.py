"""Anonymisation of faces in images: Gaussian blur or pixelation inside face boxes.

Only pixels inside the boxes change. Strength is relative to each box so that a small and a large
face are hidden alike: ``blur`` takes the Gaussian sigma as a fraction of the box width,
``pixelate`` the number of blocks across the box. Boxes come from a detector
(``facekit.detection.create_detector(...)``, any object with ``detect(image) -> Detections``) or are
given.

>>> import numpy as np
>>> img = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
>>> out = anonymise(img, [[10, 10, 30, 30]], method="pixelate", strength=4)
>>> bool((out[:10] == img[:10]).all()), bool((out[10:30, 10:30] != img[10:30, 10:30]).any())
(True, True)
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from facekit.config import ConfigError, check_keys


def _as_image(image) -> np.ndarray:
    from facekit.detection.interface import to_rgb_uint8

    return to_rgb_uint8(image)  # (H, W, 3) uint8, a copy-safe contiguous array


def _boxes(boxes, height: int, width: int) -> np.ndarray:
    """(N, 4) int xyxy boxes clipped to the image; empty boxes dropped."""
    b = np.asarray(boxes.detach().cpu() if hasattr(boxes, "detach") else boxes, dtype=np.float64).reshape(-1, 4)
    b = np.round(b).astype(np.int64)
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    return b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]


def _blur_crop(crop: np.ndarray, strength: float) -> np.ndarray:
    from PIL import Image, ImageFilter

    sigma = strength * crop.shape[1]  # fraction of the box width -> pixels
    if sigma <= 0:
        return crop
    return np.asarray(Image.fromarray(crop).filter(ImageFilter.GaussianBlur(radius=sigma)))


def _pixelate_crop(crop: np.ndarray, strength: float) -> np.ndarray:
    from PIL import Image

    blocks = int(strength)
    if blocks < 1:
        raise ConfigError(f"pixelate strength={strength!r} is the number of blocks across a face, >= 1")
    h, w = crop.shape[:2]
    small = Image.fromarray(crop).resize((min(blocks, w), max(1, min(h, round(blocks * h / w)))), Image.BOX)
    return np.asarray(small.resize((w, h), Image.NEAREST))


METHODS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {"blur": _blur_crop, "pixelate": _pixelate_crop}


def anonymise(image, boxes, *, method: str = "blur", strength: float = 0.1) -> np.ndarray:
    """A copy of ``image`` (H, W, 3 uint8) with every box blurred or pixelated.

    Args:
        image: anything ``facekit.detection.interface.to_rgb_uint8`` accepts (numpy, PIL, tensor).
        boxes: (N, 4) xyxy pixel boxes (numpy, list or tensor); clipped to the image.
        method: "blur" (strength = Gaussian sigma / box width) or "pixelate" (strength = blocks across the box).
    """
    check_keys([method], METHODS, what="anonymisation method")
    img = _as_image(image).copy()
    for x1, y1, x2, y2 in _boxes(boxes, *img.shape[:2]):
        img[y1:y2, x1:x2] = METHODS[method](np.ascontiguousarray(img[y1:y2, x1:x2]), strength)
    return img


def anonymise_faces(image, detector, *, method: str = "blur", strength: float = 0.1, margin: float = 0.0):
    """Detect faces with ``detector`` and anonymise them; returns ``(image, boxes (N, 4))``.

    ``margin`` grows each box by that fraction of its size on every side (detector boxes are often tight).
    """
    rgb = _as_image(image)
    boxes = np.asarray(detector.detect(rgb).boxes, dtype=np.float64).reshape(-1, 4)
    if margin:
        size = boxes[:, 2:] - boxes[:, :2]
        boxes = np.concatenate([boxes[:, :2] - margin * size, boxes[:, 2:] + margin * size], axis=1)
    return anonymise(rgb, boxes, method=method, strength=strength), boxes


__all__ = ["METHODS", "anonymise", "anonymise_faces"]
