"""The one interface of every face detector here: ``detect(image) -> Detections``.

A detector takes one image -- ``uint8`` numpy ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``, a PIL image
of any mode, or a float tensor ``(3, H, W)`` in [0, 1] -- and returns float32 tensors on the CPU:
boxes ``(N, 4)`` xyxy pixels, scores ``(N,)`` (higher = more face-like; the scale depends on the
detector) and landmarks ``(N, 5, 2)`` in InsightFace order, or ``None`` when it gives none.

>>> image = to_rgb_uint8(np.zeros((4, 6), np.uint8))
>>> image.shape, image.dtype
((4, 6, 3), dtype('uint8'))
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["Detections", "Detector", "ModelDetector", "to_rgb_uint8", "empty_detections"]

UINT8_MAX = 255


class Detections(NamedTuple):
    boxes: torch.Tensor  # (N, 4) float32 xyxy pixels
    scores: torch.Tensor  # (N,) float32
    landmarks: Optional[torch.Tensor]  # (N, 5, 2) float32 pixel (x, y), InsightFace order; None if not predicted


def empty_detections(with_landmarks: bool = True) -> Detections:
    return Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2) if with_landmarks else None)


@runtime_checkable
class Detector(Protocol):
    def detect(self, image) -> Detections: ...


def to_rgb_uint8(image) -> np.ndarray:
    """Any supported image -> contiguous ``(H, W, 3)`` uint8 RGB numpy (alpha composited on black, grey repeated).

    Accepts a PIL image, a numpy array ``(H, W)``, ``(H, W, 1|3|4)`` (uint8, or float in [0, 1]) or a
    torch tensor ``(C, H, W)`` (uint8, or float in [0, 1]).
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
        elif image.mode != "RGB":
            image = image.convert("RGB")
        image = np.asarray(image)
    elif isinstance(image, torch.Tensor):
        if image.ndim == 3:
            image = image.permute(1, 2, 0)
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise TypeError(f"image dtype {image.dtype} is not supported; give uint8, or float in [0, 1]")
        image = (np.clip(image, 0, 1) * UINT8_MAX + 0.5).astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an image (H, W), (H, W, 1|3|4) or (C, H, W), got shape {image.shape}")
    if image.shape[-1] == 4:  # composite on black, as facekit.data.images.read_image does
        alpha = image[..., 3:].astype(np.uint16)
        image = (image[..., :3].astype(np.uint16) * alpha // UINT8_MAX).astype(np.uint8)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    image = np.ascontiguousarray(image)
    return image if image.flags.writeable else image.copy()  # PIL's arrays are read-only


class ModelDetector:
    """A :class:`~facekit.detection.model.FaceDetector` behind the one-image :class:`Detector` interface.

    Args:
        model: the trained detector.
        score_threshold, iou_threshold: as in ``FaceDetector.detect``.
        device: where to run it.
    """

    def __init__(self, model, score_threshold: float = 0.5, iou_threshold: float = 0.4, device="cpu"):
        self.model = model.to(device)  # detect() switches to eval mode and back
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold

    def detect(self, image) -> Detections:
        x = torch.from_numpy(to_rgb_uint8(image)).permute(2, 0, 1).float() / UINT8_MAX
        return self.model.detect([x], score_threshold=self.score_threshold, iou_threshold=self.iou_threshold)[0]
