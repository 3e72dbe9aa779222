"""Five-point face alignment: a similarity transform onto ArcFace's 112 x 112 template.

Recognition models are trained on crops where the eyes, nose and mouth corners sit at fixed
places. :func:`umeyama` finds the rotation, uniform scale and translation that maps a face's
five landmarks closest (least squares) to :data:`ARCFACE_TEMPLATE`; :func:`warp_affine` resamples
the image through it. Pixel coordinates put pixel ``(i, j)``'s centre at ``x = j, y = i``, as
OpenCV and the template do.

>>> points = ARCFACE_TEMPLATE * 2 + 10  # the template, twice as large and shifted
>>> m = umeyama(points, ARCFACE_TEMPLATE)
>>> m.round(decimals=4) + 0  # + 0 turns -0. into 0.
tensor([[ 0.5000,  0.0000, -5.0000],
        [ 0.0000,  0.5000, -5.0000]], dtype=torch.float64)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from facekit.detection.interface import UINT8_MAX, Detector, to_rgb_uint8

__all__ = ["ARCFACE_TEMPLATE", "ARCFACE_SIZE", "template", "umeyama", "apply_transform", "warp_affine",
           "landmarks_from_boxes", "align", "AlignedFaces", "detect_and_align"]

ARCFACE_SIZE = 112  # side of the crop the template is given for
ARCFACE_TEMPLATE = torch.tensor([  # (5, 2) pixel (x, y): left eye, right eye, nose tip, left and right mouth corner
    [38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=torch.float64)
MAX_DETECT_SIDE = 1024  # detect_and_align: larger images are shrunk to this longer side for detection
MIN_DETECT_SIDE = 64  # ... and smaller ones enlarged to this shorter side


def template(size: int = ARCFACE_SIZE) -> torch.Tensor:
    """ArcFace's template scaled to a ``size x size`` crop, ``(5, 2)`` float64."""
    return ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)


def umeyama(src, dst) -> torch.Tensor:
    """Least-squares similarity transform (Umeyama 1991) taking points ``src`` onto ``dst``.

    Args:
        src, dst: ``(P, 2)`` corresponding points, P >= 2.

    Returns:
        ``(2, 3)`` float64 ``M`` with ``dst ~= src @ M[:, :2].T + M[:, 2]``: rotation times scale, and
        translation (no reflection, no shear).

    >>> src = torch.tensor([[0., 0.], [1., 0.]]); dst = torch.tensor([[5., 5.], [5., 7.]])  # turn 90 deg, scale 2
    >>> umeyama(src, dst).round(decimals=6) + 0
    tensor([[ 0., -2.,  5.],
            [ 2.,  0.,  5.]], dtype=torch.float64)
    """
    src, dst = torch.as_tensor(src, dtype=torch.float64), torch.as_tensor(dst, dtype=torch.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"expected two (P, 2) point sets with P >= 2, got {tuple(src.shape)} and {tuple(dst.shape)}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)  # (2, 2)
    u, sigma, vt = torch.linalg.svd(cov)
    sign = torch.ones(2, dtype=torch.float64)
    if torch.det(u) * torch.det(vt) < 0:  # a reflection would fit better; take the best rotation instead
        sign[1] = -1
    rotation = u @ torch.diag(sign) @ vt
    variance = (s ** 2).sum() / len(src)
    scale = (sigma * sign).sum() / variance if variance > 0 else torch.tensor(1.0, dtype=torch.float64)
    translation = mu_d - scale * rotation @ mu_s
    return torch.cat([scale * rotation, translation[:, None]], dim=1)


def apply_transform(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``(2, 3)`` affine ``matrix`` applied to ``(..., 2)`` points."""
    m = torch.as_tensor(matrix, dtype=torch.float64)
    p = torch.as_tensor(points, dtype=torch.float64)
    return p @ m[:, :2].T + m[:, 2]


def warp_affine(image: torch.Tensor, matrix: torch.Tensor, size) -> torch.Tensor:
    """Resample ``image`` so that output pixel ``q`` shows input point ``M^-1 q`` (bilinear, black outside).

    Args:
        image: ``(C, H, W)`` float.
        matrix: ``(2, 3)`` affine map from input to output pixel coordinates (``cv2.warpAffine``'s ``M``).
        size: ``(h, w)`` of the output.

    Returns:
        ``(C, h, w)`` float, as ``cv2.warpAffine(image, M, (w, h))`` up to interpolation rounding.
    """
    h_out, w_out = size
    _, h_in, w_in = image.shape
    full = torch.eye(3, dtype=torch.float64)
    full[:2] = torch.as_tensor(matrix, dtype=torch.float64)
    inverse = torch.linalg.inv(full)[:2]  # output pixel -> input pixel
    ys, xs = torch.meshgrid(torch.arange(h_out, dtype=torch.float64), torch.arange(w_out, dtype=torch.float64),
                            indexing="ij")
    src = apply_transform(inverse, torch.stack([xs, ys], dim=-1))  # (h, w, 2) input pixel coordinates
    # pixel centre x -> normalised (2x + 1) / W - 1, the convention of align_corners=False
    grid = torch.stack([(2 * src[..., 0] + 1) / w_in - 1, (2 * src[..., 1] + 1) / h_in - 1], dim=-1)
    out = F.grid_sample(image[None].float(), grid[None].to(image.device, torch.float32), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out[0]


def landmarks_from_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Stand-in landmarks for detectors without them: the template placed on the square around each box.

    ``(N, 4)`` xyxy -> ``(N, 5, 2)``; the crop then is the box's square, resized.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float64)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (N, 2)
    side = (boxes[:, 2:] - boxes[:, :2]).max(dim=1).values  # (N,)
    unit = (ARCFACE_TEMPLATE - ARCFACE_SIZE / 2) / ARCFACE_SIZE  # (5, 2) in [-0.5, 0.5]
    return centre[:, None, :] + side[:, None, None] * unit[None]


def _as_float_chw(image) -> torch.Tensor:
    return torch.from_numpy(to_rgb_uint8(image)).permute(2, 0, 1).float() / UINT8_MAX


def align(image, landmarks, size: int = ARCFACE_SIZE) -> torch.Tensor:
    """Aligned crops of the faces whose five landmarks are given.

    Args:
        image: any image :func:`~facekit.detection.interface.to_rgb_uint8` accepts.
        landmarks: ``(5, 2)`` or ``(N, 5, 2)`` pixel (x, y) in InsightFace order.
        size: side of the square crop; the template is scaled by ``size / 112``.

    Returns:
        ``(N, 3, size, size)`` float32 in [0, 1] (``N = 1`` for a single ``(5, 2)``).

    >>> crops = align(np.zeros((200, 300, 3), np.uint8), ARCFACE_TEMPLATE + 40)
    >>> crops.shape
    torch.Size([1, 3, 112, 112])
    """
    points = torch.as_tensor(landmarks, dtype=torch.float64).reshape(-1, 5, 2)
    chw = _as_float_chw(image)
    dst = template(size)
    crops = [warp_affine(chw, umeyama(p, dst), (size, size)) for p in points]
    return torch.stack(crops) if crops else torch.zeros(0, 3, size, size)


@dataclass(frozen=True)
class AlignedFaces:
    crops: torch.Tensor  # (N, 3, size, size) float32 in [0, 1]
    boxes: torch.Tensor  # (N, 4) xyxy pixels of the input image (as detected; may reach outside it)
    scores: torch.Tensor  # (N,)
    landmarks: torch.Tensor  # (N, 5, 2) the points aligned on (from the box when the detector gives none)
    matrices: torch.Tensor  # (N, 2, 3) float64 image -> crop transforms
    from_boxes: bool  # True when the detector gave no landmarks and the box stood in for them

    def __len__(self) -> int:
        return len(self.crops)


def _resize_for_detection(rgb: np.ndarray, max_side: int, min_side: int) -> tuple[np.ndarray, float]:
    from PIL import Image

    h, w = rgb.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    if min(h, w) < min_side:  # enlarge tiny images, never past max_side
        factor = max(factor, min(min_side / min(h, w), max_side / max(h, w)))
    if factor == 1.0:
        return rgb, 1.0
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR)), factor


def detect_and_align(image, detector: Detector, size: int = ARCFACE_SIZE, *, max_side: int = MAX_DETECT_SIDE,
                     min_side: int = MIN_DETECT_SIDE, max_faces: Optional[int] = None) -> AlignedFaces:
    """Detect the faces of one image and return their aligned crops with what was found.

    Args:
        image: uint8 numpy (grey, RGB or RGBA), PIL image of any mode, or float tensor ``(3, H, W)``.
        detector: anything with ``detect(image (H, W, 3) uint8) -> Detections``.
        size: crop side in pixels.
        max_side, min_side: the image is detected on at most ``max_side`` (longer side) and at least
            ``min_side`` (shorter side) pixels; results are mapped back and crops cut from the original.
        max_faces: keep only the highest-scoring faces.

    Returns:
        :class:`AlignedFaces`; no face gives empty tensors, never an error.

    >>> class Nobody:
    ...     def detect(self, image): return Detections(torch.zeros(0, 4), torch.zeros(0), None)
    >>> from facekit.detection.interface import Detections
    >>> len(detect_and_align(np.zeros((10, 10), np.uint8), Nobody()))
    0
    """
    rgb = to_rgb_uint8(image)
    small, factor = _resize_for_detection(rgb, max_side, min_side)
    found = detector.detect(small)
    order = torch.argsort(torch.as_tensor(found.scores).float(), descending=True, stable=True)[:max_faces]
    boxes = torch.as_tensor(found.boxes).float().reshape(-1, 4)[order] / factor
    scores = torch.as_tensor(found.scores).float().reshape(-1)[order]
    from_boxes = found.landmarks is None
    if from_boxes:
        points = landmarks_from_boxes(boxes)
    else:
        points = torch.as_tensor(found.landmarks, dtype=torch.float64).reshape(-1, 5, 2)[order] / factor
    chw = torch.from_numpy(rgb).permute(2, 0, 1).float() / UINT8_MAX
    dst = template(size)
    matrices = [umeyama(p, dst) for p in points]
    crops = [warp_affine(chw, m, (size, size)) for m in matrices]
    return AlignedFaces(
        crops=torch.stack(crops) if crops else torch.zeros(0, 3, size, size),
        boxes=boxes, scores=scores, landmarks=points.float(),
        matrices=torch.stack(matrices) if matrices else torch.zeros(0, 2, 3, dtype=torch.float64),
        from_boxes=from_boxes)
