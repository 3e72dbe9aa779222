"""Classic face detectors behind the one interface ``detect(image) -> Detections``.

* :class:`HaarCascadeDetector` -- Viola-Jones (2001) boosted Haar cascade, OpenCV; boxes only.
* :class:`DlibHogDetector` -- HOG + linear SVM (Dalal-Triggs), dlib; optional five landmarks from
  dlib's 68-point shape predictor (``face_recognition_models``).
* :class:`MTCNNDetector` -- the three-stage CNN cascade of Zhang et al. (2016), facenet-pytorch,
  whose weights ship inside the package; boxes, probabilities and five landmarks.

Each library is imported when a detector is built, never at ``import facekit``; a missing one
raises an ImportError that names the pip package.

>>> sorted(DETECTORS)
['dlib_hog', 'haar', 'mtcnn']
>>> detector = create_detector("haar")  # doctest: +SKIP
>>> detector.detect(np.zeros((64, 64, 3), np.uint8)).boxes.shape  # doctest: +SKIP
torch.Size([0, 4])
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from facekit.config import ConfigError
from facekit.detection.interface import Detections, empty_detections, to_rgb_uint8

__all__ = ["HaarCascadeDetector", "DlibHogDetector", "MTCNNDetector", "DETECTORS", "create_detector",
           "require"]


def require(module: str, pip_name: str, what: str):
    """Import ``module`` or raise an ImportError saying which pip package ``what`` needs."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{what} needs the Python module {module!r}; "
                          f"install it with: pip install {pip_name}") from err


def _tensor(array, shape_tail) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float32)).reshape(-1, *shape_tail)


class HaarCascadeDetector:
    """OpenCV's Viola-Jones cascade; the score is the cascade's last-stage weight (``detectMultiScale3``).

    Args:
        cascade: a file name in ``cv2.data.haarcascades`` or a path to a cascade XML.
        scale_factor: image pyramid step (> 1).
        min_neighbors: overlapping raw detections needed to keep a face (higher = fewer false positives).
        min_size: smallest face ``(w, h)`` in pixels.
    """

    def __init__(self, cascade: str = "haarcascade_frontalface_default.xml", scale_factor: float = 1.1,
                 min_neighbors: int = 3, min_size=(20, 20)):
        self.cv2 = require("cv2", "'opencv-python-headless<5'", "HaarCascadeDetector")
        path = Path(cascade) if Path(cascade).is_file() else Path(self.cv2.data.haarcascades) / cascade
        self.classifier = self.cv2.CascadeClassifier(str(path))
        if self.classifier.empty():
            raise FileNotFoundError(f"cascade {cascade!r} could not be loaded (looked at {path}); give a file in "
                                    f"{self.cv2.data.haarcascades} or a path to a cascade XML")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, tuple(min_size)

    def detect(self, image) -> Detections:
        grey = self.cv2.cvtColor(to_rgb_uint8(image), self.cv2.COLOR_RGB2GRAY)
        rects, _, weights = self.classifier.detectMultiScale3(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=self.min_size,
            outputRejectLevels=True)
        if len(rects) == 0:
            return empty_detections(with_landmarks=False)
        xywh = _tensor(rects, (4,))
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        return Detections(boxes, _tensor(weights, ()), None)


class DlibHogDetector:
    """dlib's HOG face detector; the score is the SVM margin (``detector.run``).

    Args:
        upsample: times the image is doubled first (finds faces down to ~40 px / 2^upsample).
        adjust_threshold: added to the SVM threshold; negative values return more, weaker faces.
        landmarks: also fit dlib's 68-point model (from ``face_recognition_models``) and return the
            five InsightFace points (eye centres, nose tip, mouth corners).
    """

    def __init__(self, upsample: int = 1, adjust_threshold: float = 0.0, landmarks: bool = True):
        self.dlib = require("dlib", "dlib-bin", "DlibHogDetector")
        self.detector = self.dlib.get_frontal_face_detector()
        self.upsample, self.adjust_threshold = int(upsample), float(adjust_threshold)
        self.predictor = None
        if landmarks:
            models = require("face_recognition_models", "face_recognition_models",
                             "DlibHogDetector(landmarks=True)")
            self.predictor = self.dlib.shape_predictor(models.pose_predictor_model_location())

    def detect(self, image) -> Detections:
        from facekit.data.detection import five_points

        rgb = to_rgb_uint8(image)
        rects, scores, _ = self.detector.run(rgb, self.upsample, self.adjust_threshold)
        if len(rects) == 0:
            return empty_detections(with_landmarks=self.predictor is not None)
        boxes = _tensor([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], (4,))
        landmarks = None
        if self.predictor is not None:
            parts = [[(p.x, p.y) for p in self.predictor(rgb, r).parts()] for r in rects]
            landmarks = five_points(_tensor(parts, (68, 2)))
        return Detections(boxes, _tensor(scores, ()), landmarks)


class MTCNNDetector:
    """facenet-pytorch's MTCNN (P-, R- and O-Net); the score is O-Net's face probability.

    Args:
        device: "cpu", "cuda", ... (passed to ``facenet_pytorch.MTCNN``).
        min_face_size: smallest face in pixels.
        thresholds: the three networks' face probability thresholds.
    """

    def __init__(self, device="cpu", min_face_size: int = 20, thresholds=(0.6, 0.7, 0.7)):
        facenet = require("facenet_pytorch", "--no-deps facenet-pytorch", "MTCNNDetector")
        self.mtcnn = facenet.MTCNN(keep_all=True, device=torch.device(device), min_face_size=min_face_size,
                                   thresholds=list(thresholds), post_process=False)

    def detect(self, image) -> Detections:
        boxes, probs, points = self.mtcnn.detect(to_rgb_uint8(image), landmarks=True)
        if boxes is None:
            return empty_detections()
        return Detections(_tensor(boxes, (4,)), _tensor(probs, ()), _tensor(points, (5, 2)))


DETECTORS: dict[str, Callable[..., object]] = {
    "haar": HaarCascadeDetector,
    "dlib_hog": DlibHogDetector,
    "mtcnn": MTCNNDetector,
}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def create_detector(name: str, **kwargs):
    """The baseline registered as ``name`` (see :data:`DETECTORS`), built with ``kwargs``.

    An unknown keyword is a :class:`~facekit.config.ConfigError` naming the accepted ones (and the
    snake_case spelling of an OpenCV-style name such as ``minNeighbors``).

    >>> create_detector("haar", minNeighbors=5)
    Traceback (most recent call last):
    ...
    facekit.config.ConfigError: create_detector('haar'): unknown keyword 'minNeighbors' (did you mean 'min_neighbors'?); accepted: cascade, scale_factor, min_neighbors, min_size
    """
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; registered: {', '.join(sorted(DETECTORS))}")
    accepted = [p for p in inspect.signature(DETECTORS[name]).parameters if p != "self"]
    for key in kwargs:
        if key not in accepted:
            close = [_snake(key)] if _snake(key) in accepted else difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"create_detector({name!r}): unknown keyword {key!r}{hint}; "
                              f"accepted: {', '.join(accepted)}")
    return DETECTORS[name](**kwargs)
