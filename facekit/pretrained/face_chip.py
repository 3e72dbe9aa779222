"""Aligned face chips the way dlib makes them for its face recognition model, in numpy.

``dlib.get_face_chip(img, shape, size=150, padding=0.25)`` for a 5-point shape does:

1. put dlib's 5-point template (:data:`TEMPLATE_5`, unit square, same order as
   ``shape_predictor_5_face_landmarks``: left eye outer/inner, right eye outer/inner, nose base,
   "left" meaning the side on the image's right) in chip pixels: ``(padding + p) / (1 + 2 padding) * size``;
2. fit the least-squares similarity transform chip -> image (Umeyama's method) to the 5 pairs;
3. keep its rotation ``angle``, its scale, and the image point of the chip centre; the chip is the
   rotated rectangle ``rect`` of side ``size * scale`` around that point (dlib's ``drectangle`` is
   inclusive: ``right - left = width - 1``);
4. sample chip pixel ``(c, r)`` at the affine map sending the chip's top-left, top-right and
   bottom-left pixels to ``rect``'s rotated corners, bilinearly, truncating to uint8; samples whose
   2x2 neighbourhood is outside the image (or outside ``rect`` grown by 2 pixels) are black.

When the chip is more than ~2x smaller than ``rect`` dlib first builds an image pyramid; here the
image is shrunk by ``2**depth`` with PIL's antialiased resize instead (an approximation; faces in
LFW's 250x250 images never need it).

>>> chip = face_chip(image, landmarks)  # doctest: +SKIP
>>> chip.shape, chip.dtype  # doctest: +SKIP
((150, 150, 3), dtype('uint8'))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TEMPLATE_5 = np.array([  # dlib's get_face_chip_details, 5-point shapes (unit square, x right, y down)
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
])
CHIP_SIZE = 150
CHIP_PADDING = 0.25  # dlib's face recognition example and compute_face_descriptor use 0.25
NUM_LANDMARKS = 5
_BOUNDS_MARGIN = 2  # dlib grows the rotated rectangle by 2 pixels before cropping
_PYRAMID_FACTOR = 2


@dataclass(frozen=True)
class ChipDetails:
    """dlib's ``chip_details``: ``rect`` (left, top, right, bottom; inclusive, in image pixels), ``angle`` (rad)."""

    rect: tuple[float, float, float, float]
    angle: float
    rows: int
    cols: int

    @property
    def center(self) -> np.ndarray:
        left, top, right, bottom = self.rect
        return np.array([(left + right) / 2, (top + bottom) / 2])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ m @ src + b`` (Umeyama 1991), as dlib's ``find_similarity_transform``.

    Args:
        src, dst: (N, 2) points, N >= 2.

    Returns:
        ``m`` (2, 2) = scale * rotation, ``b`` (2,).

    >>> m, b = similarity_transform(np.array([[0., 0], [1, 0]]), np.array([[1., 1], [1, 3]]))
    >>> np.round(m, 6).tolist(), np.round(b, 6).tolist()
    ([[0.0, -2.0], [2.0, 0.0]], [1.0, 1.0])
    """
    from facekit.detection.alignment import umeyama  # the one least-squares similarity fit of facekit

    fit = umeyama(np.asarray(src, np.float64), np.asarray(dst, np.float64)).numpy()  # (2, 3)
    return fit[:, :2], fit[:, 2]


def chip_details(landmarks, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> ChipDetails:
    """dlib's ``get_face_chip_details`` for 5 landmarks ``(5, 2)`` (x, y), in the 5-point predictor's order."""
    points = np.asarray(landmarks, np.float64)
    if points.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected (5, 2) landmarks in dlib's 5-point order, got shape {points.shape}")
    if size < 1 or padding < 0:
        raise ValueError(f"size={size} must be >= 1 and padding={padding} >= 0")
    template = (padding + TEMPLATE_5) / (2 * padding + 1) * size
    m, b = similarity_transform(template, points)
    p = m @ np.array([1.0, 0.0])
    angle, scale = math.atan2(p[1], p[0]), math.hypot(p[0], p[1])
    cx, cy = m @ np.array([size / 2, size / 2]) + b
    half = (size * scale - 1) / 2  # dlib's centered_drect: an inclusive rectangle of that width
    return ChipDetails((cx - half, cy - half, cx + half, cy + half), angle, size, size)


def _rotate(center: np.ndarray, points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return (points - center) @ np.array([[c, s], [-s, c]]) + center


def _affine_from_3(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) matrix A with ``dst = A @ [src; 1]`` for 3 point pairs."""
    a = np.hstack([src, np.ones((3, 1))])  # (3, 3)
    return np.linalg.solve(a, dst).T


def _chip_to_image(details: ChipDetails) -> np.ndarray:
    """(2, 3) affine map from chip pixels (x, y) to image pixels."""
    left, top, right, bottom = details.rect
    corners = _rotate(details.center, np.array([[left, top], [right, top], [left, bottom]]), details.angle)
    chip = np.array([[0, 0], [details.cols - 1, 0], [0, details.rows - 1]], np.float64)
    return _affine_from_3(chip, corners)


def _bounds(details: ChipDetails, width: int, height: int) -> tuple[int, int, int, int]:
    """dlib's crop box: the rotated rectangle's bounding box grown by 2, clipped to the image, rounded."""
    left, top, right, bottom = details.rect
    corners = _rotate(details.center, np.array([[left, top], [right, top], [left, bottom], [right, bottom]]),
                      details.angle)
    lo = np.maximum(corners.min(0) - _BOUNDS_MARGIN, 0)
    hi = np.minimum(corners.max(0) + _BOUNDS_MARGIN, [width - 1, height - 1])
    x0, y0, x1, y1 = (int(math.floor(v + 0.5)) for v in (*lo, *hi))
    return x0, y0, x1, y1


def _pyramid_depth(details: ChipDetails) -> int:
    left, top, right, bottom = details.rect
    w, h, depth = right - left + 1, bottom - top + 1, 0
    while (w / _PYRAMID_FACTOR ** (depth + 1)) * (h / _PYRAMID_FACTOR ** (depth + 1)) > details.rows * details.cols:
        depth += 1
    return depth


def _as_rgb_uint8(image) -> np.ndarray:
    arr = np.asarray(image.permute(1, 2, 0).cpu() if hasattr(image, "permute") else image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3) array or (3, H, W) tensor, "
                         f"got shape {arr.shape} and dtype {arr.dtype}")
    return arr


def extract_chip(image, details: ChipDetails) -> np.ndarray:
    """dlib's ``extract_image_chip`` with bilinear interpolation: (H, W, 3) uint8 -> (rows, cols, 3) uint8."""
    img = _as_rgb_uint8(image)
    height, width = img.shape[:2]
    x0, y0, x1, y1 = _bounds(details, width, height)
    affine = _chip_to_image(details)
    depth = _pyramid_depth(details)
    if depth:  # approximate dlib's pyramid_down<2> levels with an antialiased resize
        from PIL import Image

        f = _PYRAMID_FACTOR ** depth
        crop = Image.fromarray(np.ascontiguousarray(img[y0:y1 + 1, x0:x1 + 1]))
        crop = crop.resize((max(1, round(crop.width / f)), max(1, round(crop.height / f))), Image.BILINEAR,
                           reducing_gap=None)
        img = np.asarray(crop)
        affine = affine.copy()
        affine[:, 2] -= (x0, y0)
        affine = affine / f
        height, width = img.shape[:2]
        x0, y0, x1, y1 = 0, 0, width - 1, height - 1
    cols, rows = np.meshgrid(np.arange(details.cols, dtype=np.float64), np.arange(details.rows, dtype=np.float64))
    x = affine[0, 0] * cols + affine[0, 1] * rows + affine[0, 2]  # (rows, cols) image x of each chip pixel
    y = affine[1, 0] * cols + affine[1, 1] * rows + affine[1, 2]
    left, top = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    inside = (left >= x0) & (top >= y0) & (left + 1 <= x1) & (top + 1 <= y1)
    lc, tc = np.clip(left, 0, width - 2), np.clip(top, 0, height - 2)
    lr, tb = (x - left)[..., None], (y - top)[..., None]
    im = img.astype(np.float64)
    tl, tr = im[tc, lc], im[tc, lc + 1]
    bl, br = im[tc + 1, lc], im[tc + 1, lc + 1]
    value = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    chip = np.clip(value, 0, 255).astype(np.uint8)  # dlib truncates when it assigns to uint8
    chip[~inside] = 0
    return chip


def face_chip(image, landmarks, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """The aligned chip ``dlib.get_face_chip(image, shape, size, padding)`` makes from 5 landmarks.

    Args:
        image: RGB uint8, (H, W, 3) numpy array or (3, H, W) tensor (facekit.data.images.read_image).
        landmarks: (5, 2) x, y in dlib's 5-point order (e.g. from :func:`dlib_landmarks`).
        size, padding: chip side in pixels and the border around the template (dlib's 150 and 0.25).

    Returns:
        (size, size, 3) uint8 RGB chip; feed ``torch.from_numpy(chip).permute(2, 0, 1)`` to the model.

    >>> face_chip(np.zeros((250, 250, 3), np.uint8), [[150, 110], [135, 110], [100, 110], [115, 110], [125, 145]]).shape
    (150, 150, 3)
    """
    return extract_chip(image, chip_details(landmarks, size, padding))


class DlibNotInstalled(ImportError):
    """dlib is needed as the reference landmark source; the message says how to install it."""


def _dlib():
    try:
        import dlib
    except ImportError as err:
        raise DlibNotInstalled("dlib_landmarks uses dlib's HOG detector and 5-point shape predictor as the "
                               "reference landmark source: pip install dlib-bin (or dlib)") from err
    return dlib


_DETECTORS: dict = {}  # lazily built dlib objects, keyed by model path (nothing is loaded at import)


def _landmark_tools(predictor_path):
    from facekit.pretrained.dlib_dat import dlib_model_path

    path = str(dlib_model_path("five_point") if predictor_path is None else predictor_path)
    if path not in _DETECTORS:
        dlib = _dlib()
        _DETECTORS[path] = (dlib.get_frontal_face_detector(), dlib.shape_predictor(path))
    return _DETECTORS[path]


CENTER_BOX_FRACTION = 0.45  # fallback box: a centred square of this fraction of the shorter side


__all__ = ["TEMPLATE_5", "CHIP_SIZE", "CHIP_PADDING", "ChipDetails", "similarity_transform", "chip_details",
           "extract_chip", "face_chip", "DlibNotInstalled"]
