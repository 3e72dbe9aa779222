"""FaceNet's photo pipeline, first half: MTCNN detections (cached), the choice of face, the 160x160 crop.

See :mod:`facekit.pretrained.crops` (which re-exports these names) for the whole pipeline and its caches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from facekit.config import ConfigError
from facekit.io import atomic_path, cache_dir, file_sha256

SELECT_CHOICES = ("center", "confident", "largest")
CACHE_SUBDIR = "facenet_lfw"
CHECKPOINT_EVERY = 500  # images between two writes of the detection cache


@dataclass(frozen=True)
class CropSettings:
    size: int = 160  # crop side in pixels (FaceNet's input)
    margin: int = 32  # pixels of the *final* crop added around the MTCNN box (facenet-pytorch's convention)
    select: str = "center"  # several faces: "center" | "confident" | "largest" (see the module docstring)
    min_face_size: int = 20  # MTCNN's smallest face in pixels
    thresholds: tuple = (0.6, 0.7, 0.7)  # MTCNN's P-, R-, O-Net probability thresholds

    def __post_init__(self):
        if self.select not in SELECT_CHOICES:
            raise ConfigError(f"select={self.select!r} is not accepted; use one of {', '.join(SELECT_CHOICES)}")
        if not 0 <= self.margin < self.size:
            raise ConfigError(f"margin={self.margin} must be in [0, size={self.size})")
        if len(self.thresholds) != 3:
            raise ConfigError(f"thresholds={self.thresholds!r}: give MTCNN's three probability thresholds")
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))

    def detector_tag(self) -> str:
        return f"mtcnn{self.min_face_size}-" + "-".join(f"{t:g}" for t in self.thresholds)

    def tag(self) -> str:
        return f"{self.detector_tag()}-s{self.size}-m{self.margin}-{self.select}"


@dataclass(frozen=True)
class FaceBoxes:
    """Every face MTCNN found in one image (k may be 0)."""

    boxes: np.ndarray  # (k, 4) float32 x1, y1, x2, y2 in pixels
    probs: np.ndarray  # (k,) float32 O-Net face probability
    points: np.ndarray = field(repr=False)  # (k, 5, 2) float32 eyes, nose, mouth corners


def file_digest(path) -> str:
    """First 16 hex digits of the sha256 of a file's bytes (the cache key of an image; ``facekit.io.file_sha256``)."""
    return file_sha256(path)[:16]


def _read_rgb(path):
    """The photo as a PIL RGB image; a missing or unreadable file raises ImageReadError (as the dlib pipeline)."""
    from PIL import Image

    from facekit.data.images import read_image

    return Image.fromarray(read_image(path, channels=3).permute(1, 2, 0).numpy())


def select_face(faces: FaceBoxes, width: int, height: int, select: str = "center") -> int | None:
    """Index of the face ``select`` picks among ``faces`` of a ``width`` x ``height`` image (None: no face).

    >>> f = FaceBoxes(np.array([[0, 0, 50, 50], [90, 90, 110, 110]], np.float32), np.array([0.99, 0.9]), None)
    >>> select_face(f, 200, 200, "center"), select_face(f, 200, 200, "confident"), select_face(f, 200, 200, "largest")
    (1, 0, 0)
    """
    if select not in SELECT_CHOICES:
        raise ValueError(f"select={select!r} is not accepted; use one of {', '.join(SELECT_CHOICES)}")
    boxes = np.asarray(faces.boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return None
    if select == "center":
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        return int(np.argmin(np.linalg.norm(centres - np.array([width / 2, height / 2]), axis=1)))
    if select == "confident":
        return int(np.argmax(np.asarray(faces.probs, dtype=np.float64)))
    return int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))


def crop_face(image, box, size: int = 160, margin: int = 32) -> np.ndarray:
    """The ``size`` x ``size`` crop of ``box`` plus ``margin`` final-image pixels (facenet-pytorch's ``extract_face``).

    Args:
        image: a PIL image or an (H, W, 3) uint8 array.
        box: (4,) x1, y1, x2, y2 in pixels, or None: the centred ``size`` x ``size`` square (an image smaller
            than that: its centred square of the shorter side, resized).

    Returns:
        (size, size, 3) uint8 RGB.
    """
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    if box is None:  # the centred square of side min(size, width, height), resized to size if smaller
        side = min(size, img.width, img.height)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        crop = img.crop((left, top, left + side, top + side))
        return np.asarray(crop if side == size else crop.resize((size, size), Image.BILINEAR), dtype=np.uint8).copy()
    box = np.asarray(box, dtype=np.float64)
    mx, my = margin * (box[2] - box[0]) / (size - margin), margin * (box[3] - box[1]) / (size - margin)
    ltrb = (int(max(box[0] - mx / 2, 0)), int(max(box[1] - my / 2, 0)),
            int(min(box[2] + mx / 2, img.width)), int(min(box[3] + my / 2, img.height)))
    return np.asarray(img.crop(ltrb).resize((size, size), Image.BILINEAR), dtype=np.uint8).copy()


def _load_detections(path: Path) -> dict[str, FaceBoxes]:
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as d:
            keys, counts = d["keys"].tolist(), d["counts"]
            boxes, probs, points = d["boxes"], d["probs"], d["points"]
    except (OSError, ValueError, KeyError):  # a damaged cache is recomputed, never trusted
        return {}
    ends = np.cumsum(counts)
    return {k: FaceBoxes(boxes[e - c:e], probs[e - c:e], points[e - c:e]) for k, c, e in zip(keys, counts, ends)}


def _save_detections(path: Path, entries: dict[str, FaceBoxes]) -> None:
    keys = sorted(entries)
    def cat(name, shape):
        parts = [getattr(entries[k], name) for k in keys]
        return np.concatenate(parts).astype(np.float32) if keys else np.zeros((0, *shape), np.float32)

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, keys=np.array(keys), counts=np.array([len(entries[k].boxes) for k in keys], np.int64),
                 boxes=cat("boxes", (4,)), probs=cat("probs", ()), points=cat("points", (5, 2)))


def _image_key(path) -> str:
    from facekit.pretrained.keyed_cache import image_key

    return image_key(path)


def detect_faces(paths: Sequence, settings: CropSettings = CropSettings(), *, cache: bool = True,
                 detector=None, progress: bool | None = None) -> list[FaceBoxes]:
    """Every MTCNN face of each image, cached by file digest and detector settings.

    Args:
        paths: image files.
        settings: only ``min_face_size`` and ``thresholds`` matter here.
        cache: read/write ``cache_dir("facenet_lfw")/detections-<detector tag>.npz``.
        detector: an object with ``detect(image) -> facekit.detection.Detections`` (default: a CPU
            :class:`facekit.detection.MTCNNDetector` with ``settings``); a custom one is not cached.
        progress: show a tqdm bar over the images to detect (None: when at least ``PROGRESS_FROM`` are new).

    Raises:
        facekit.data.images.ImageReadError: a missing, unreadable or corrupt image (named).
    """
    paths = [Path(p) for p in paths]
    cache = cache and detector is None
    where = cache_dir(CACHE_SUBDIR, f"detections-{settings.detector_tag()}.npz")
    entries = _load_detections(where) if cache else {}
    keys = [_image_key(p) for p in paths]
    todo = [(k, p) for k, p in dict(zip(keys, paths)).items() if k not in entries]
    if todo:
        if detector is None:
            from facekit.detection.baselines import MTCNNDetector

            detector = MTCNNDetector(min_face_size=settings.min_face_size, thresholds=settings.thresholds)
        if progress:
            from facekit.progress import tqdm

            todo = tqdm(todo, desc="MTCNN")
        for n, (key, path) in enumerate(todo, 1):
            det = detector.detect(np.asarray(_read_rgb(path)))
            pts = det.landmarks if det.landmarks is not None else torch.zeros(len(det.boxes), 5, 2)
            entries[key] = FaceBoxes(det.boxes.numpy().astype(np.float32).reshape(-1, 4),
                                     det.scores.numpy().astype(np.float32).reshape(-1),
                                     pts.numpy().astype(np.float32).reshape(-1, 5, 2))
            if cache and (n % CHECKPOINT_EVERY == 0 or n == len(todo)):  # an interrupted run keeps its work
                _save_detections(where, entries)
    return [entries[k] for k in keys]
