"""Finding *the* face of a photo for dlib's chip: a chain of detectors, the choice among several faces, a record.

dlib's HOG detector (the face recognition example's) finds frontal faces and misses most profiles.
:class:`FaceFinder` tries the detectors of ``detectors`` in order and stops at the first that finds a
face, so a photo's outcome (its *stage*) says which one did:

- ``"hog"``: dlib's HOG + linear SVM (``get_frontal_face_detector``), landmarks from dlib's 5-point
  shape predictor on its box (the reference pipeline);
- ``"cnn"``: dlib's CNN face detector (MMOD, ``mmod_human_face_detector.dat`` of
  ``face_recognition_models``), trained on faces in more poses, landmarks from the same predictor;
- ``"mtcnn"``: MTCNN (facenet-pytorch), whose five points (eyes, nose tip, mouth corners) are turned
  into dlib's five by the least-squares similarity from ArcFace's template (:func:`dlib_points_from_five`);
- ``"center"``: nothing found, ``fallback="center"``: the predictor on a centred square (LFW's photos
  are centred on their subject);
- ``"none"``: nothing found, ``fallback="none"``: no landmarks, the photo is left out downstream.

Large photos are detected on a copy whose longer side is at most ``max_side`` (as
:func:`facekit.detection.detect_and_align` does); boxes and points are mapped back and the predictor
runs on the full-resolution photo. Several faces: ``select`` picks one (see
:func:`facekit.pretrained.crops.select_face`): ``"center"`` wins on LFW, ``"largest"`` on photos
whose subject is not centred.

>>> FaceFinder(detectors=("hog", "mtcnn"), select="largest").tag()
'hog+mtcnn-up1-largest-center0.45-max1024'
>>> found = FaceFinder()(image)  # doctest: +SKIP
>>> found.stage, found.landmarks.shape  # doctest: +SKIP
('hog', (5, 2))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facekit.config import ConfigError
from facekit.detection.alignment import ARCFACE_TEMPLATE, MAX_DETECT_SIDE
from facekit.io import cache_dir as _cache_root
from facekit.pretrained.face_chip import CENTER_BOX_FRACTION, CHIP_PADDING, CHIP_SIZE, TEMPLATE_5, _as_rgb_uint8, _dlib
from facekit.pretrained.keyed_cache import image_key, load_entries, save_entries

DETECTOR_STAGES = ("hog", "cnn", "mtcnn")  # detectors a chain may hold, in any order
FALLBACKS = ("center", "none")  # what a photo without a detected face gets
STAGES = DETECTOR_STAGES + FALLBACKS  # every outcome a photo can have
FACE_SELECT = ("center", "confident", "largest")  # = facekit.pretrained.crops.SELECT_CHOICES
CACHE_SUBDIR = "dlib_resnet"
CACHE_VERSION = 2  # part of the file names: 2 = entries keyed by image content, stage recorded
DEFAULT_UPSAMPLE = 1
CHECKPOINT_EVERY = 1000  # images between two writes of the cache
PROGRESS_FROM = 64  # progress=None shows a bar when at least this many images must be computed


def cache_dir() -> Path:
    """``facekit.io.cache_dir("dlib_resnet")``: ``$FACEKIT_CACHE/dlib_resnet``; created on first write only."""
    return _cache_root(CACHE_SUBDIR)


def _read_rgb(path) -> np.ndarray:
    from facekit.data.images import read_image

    return np.ascontiguousarray(read_image(path, channels=3).permute(1, 2, 0).numpy())  # (H, W, 3) uint8


def _check_settings(detectors, upsample, fallback, select, max_side) -> tuple:
    detectors = (detectors,) if isinstance(detectors, str) else tuple(detectors)
    if not detectors or any(d not in DETECTOR_STAGES for d in detectors) or len(set(detectors)) != len(detectors):
        raise ConfigError(f"detectors={detectors!r}: give a non-empty sequence of distinct names from "
                          f"{', '.join(DETECTOR_STAGES)} (tried in order)")
    if fallback not in FALLBACKS:
        raise ConfigError(f"fallback={fallback!r} is not accepted; use one of {', '.join(map(repr, FALLBACKS))}")
    if select not in FACE_SELECT:
        raise ConfigError(f"select={select!r} is not accepted; use one of {', '.join(map(repr, FACE_SELECT))}")
    if int(upsample) != upsample or upsample < 0:
        raise ConfigError(f"upsample={upsample!r} must be an integer >= 0")
    if max_side is not None and (int(max_side) != max_side or max_side < 32):
        raise ConfigError(f"max_side={max_side!r} must be an integer >= 32 (pixels), or None for full resolution")
    return detectors


@dataclass(frozen=True)
class FaceFound:
    """What :class:`FaceFinder` found in one photo."""

    landmarks: np.ndarray | None  # (5, 2) float64 x, y in dlib's 5-point order; None when stage == "none"
    stage: str  # one of STAGES: the detector that found the face, or the fallback
    num_faces: int  # faces that stage's detector found (0 for a fallback)

    @property
    def found(self) -> bool:
        return self.stage in DETECTOR_STAGES


def _dlib_eye_centres() -> np.ndarray:
    """dlib's template eye centres, image-left then image-right (the means of each eye's two corners)."""
    return np.stack([TEMPLATE_5[2:4].mean(0), TEMPLATE_5[0:2].mean(0)])


def dlib_points_from_five(points) -> np.ndarray:
    """dlib's 5 landmarks (eye corners, nose base) from ArcFace-order points (eyes, nose tip, mouth corners).

    dlib's template is placed in ArcFace's frame by the similarity that maps its eye centres onto
    ArcFace's; the least-squares similarity from ArcFace's template to ``points`` then carries it
    onto the photo. All five points take part, so a turned head is placed better than from the
    eyes alone.

    Args:
        points: (5, 2) x, y: image-left eye, image-right eye, nose tip, left and right mouth corner
            (MTCNN's and :data:`facekit.detection.ARCFACE_TEMPLATE`'s order).

    >>> arc = ARCFACE_TEMPLATE.numpy()
    >>> eyes = dlib_points_from_five(arc)[[2, 3, 0, 1]].reshape(2, 2, 2).mean(1)
    >>> np.allclose(eyes, arc[:2])
    True
    """
    from facekit.detection.alignment import umeyama

    pts = np.asarray(points, np.float64)
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        raise ValueError(f"expected (5, 2) finite points in ArcFace order, got shape {pts.shape}")
    arc = ARCFACE_TEMPLATE.numpy()
    to_arc = umeyama(_dlib_eye_centres(), arc[:2]).numpy()  # (2, 3) unit template -> ArcFace pixels
    dlib_in_arc = TEMPLATE_5 @ to_arc[:, :2].T + to_arc[:, 2]  # (5, 2)
    to_photo = umeyama(arc, pts).numpy()  # (2, 3)
    return dlib_in_arc @ to_photo[:, :2].T + to_photo[:, 2]


class FaceFinder:
    """A detector chain with a recorded outcome: ``finder(image) -> FaceFound``.

    Args:
        detectors: names from :data:`DETECTOR_STAGES`, tried in order until one finds a face.
        upsample: times dlib's detectors (HOG, CNN) double the image (1 finds faces down to ~40 px / 2).
        fallback: "center" (the predictor on a centred square) or "none" (no landmarks).
        select: several faces: "center", "confident" or "largest".
        max_side: detect on a copy whose longer side is at most this (None: full resolution).
        predictor_path: dlib's 5-point model; default: the one of ``face_recognition_models``.
        device: where MTCNN runs.

    Every detector is built on first use; building the finder loads nothing.
    """

    def __init__(self, detectors: Sequence[str] = ("hog",), *, upsample: int = 1, fallback: str = "center",
                 select: str = "center", max_side: int | None = MAX_DETECT_SIDE, predictor_path=None, device="cpu"):
        self.detectors = _check_settings(detectors, upsample, fallback, select, max_side)
        self.upsample, self.fallback, self.select = int(upsample), fallback, select
        self.max_side = None if max_side is None else int(max_side)
        self.predictor_path, self.device = predictor_path, device
        self._tools: dict = {}

    def tag(self) -> str:
        """The settings as a short name (part of the cache key)."""
        return (f"{'+'.join(self.detectors)}-up{self.upsample}-{self.select}-{self.fallback}{CENTER_BOX_FRACTION}-"
                f"max{self.max_side or 'full'}")

    def _predictor(self):
        if "predictor" not in self._tools:
            from facekit.pretrained.face_chip import _landmark_tools

            self._tools["hog"], self._tools["predictor"] = _landmark_tools(self.predictor_path)
        return self._tools["predictor"]

    def _detect(self, stage: str, img: np.ndarray):
        """(boxes (k, 4) left, top, right, bottom as dlib gives them, scores (k,), points (k, 5, 2) or None)."""
        if stage == "hog":
            self._predictor()
            rects, scores, _ = self._tools["hog"].run(img, self.upsample, 0.0)
            boxes = [[r.left(), r.top(), r.right(), r.bottom()] for r in rects]
            return np.array(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64), None
        if stage == "cnn":
            if "cnn" not in self._tools:
                from facekit.pretrained.dlib_dat import dlib_model_path

                self._tools["cnn"] = _dlib().cnn_face_detection_model_v1(str(dlib_model_path("cnn_detector")))
            found = self._tools["cnn"](img, self.upsample)
            boxes = [[d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()] for d in found]
            return (np.array(boxes, np.float64).reshape(-1, 4), np.array([d.confidence for d in found], np.float64),
                    None)
        if "mtcnn" not in self._tools:
            from facekit.detection.baselines import MTCNNDetector

            self._tools["mtcnn"] = MTCNNDetector(device=self.device)
        det = self._tools["mtcnn"].detect(img)
        return (det.boxes.numpy().astype(np.float64).reshape(-1, 4), det.scores.numpy().astype(np.float64),
                det.landmarks.numpy().astype(np.float64).reshape(-1, 5, 2))

    def _shape(self, img: np.ndarray, box) -> np.ndarray:
        dlib = _dlib()
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        return np.array([[p.x, p.y] for p in self._predictor()(img, rect).parts()], np.float64)

    def __call__(self, image) -> FaceFound:
        from facekit.detection.alignment import _resize_for_detection
        from facekit.pretrained.crops import FaceBoxes, select_face

        img = np.ascontiguousarray(_as_rgb_uint8(image))
        height, width = img.shape[:2]
        small, factor = (img, 1.0) if self.max_side is None else _resize_for_detection(img, self.max_side, 1)
        small = np.ascontiguousarray(small)
        for stage in self.detectors:
            boxes, scores, points = self._detect(stage, small)
            if len(boxes) == 0:
                continue
            pick = select_face(FaceBoxes(boxes, scores, None), small.shape[1], small.shape[0], self.select)
            if points is not None:
                return FaceFound(dlib_points_from_five(points[pick] / factor), stage, len(boxes))
            return FaceFound(self._shape(img, boxes[pick] / factor), stage, len(boxes))
        if self.fallback == "none":
            return FaceFound(None, "none", 0)
        half = CENTER_BOX_FRACTION * min(width, height) / 2
        cx, cy = width / 2, height / 2
        box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
        return FaceFound(self._shape(img, box), "center", 0)


@dataclass(frozen=True)
class LandmarkSettings:
    """How the dlib pipeline finds the face and cuts the chip; validated when built."""

    upsample: int = DEFAULT_UPSAMPLE  # times dlib's detectors double the image
    fallback: str = "center"  # no face found: "center" (a centred box) or "none" (the image is left out)
    size: int = CHIP_SIZE  # chip side
    padding: float = CHIP_PADDING  # chip padding
    detectors: tuple = ("hog",)  # tried in order: "hog", "cnn" (dlib's MMOD), "mtcnn" (see facekit.pretrained.finding)
    select: str = "center"  # several faces: "center" (LFW), "largest" (subject not centred), "confident"
    max_side: int | None = MAX_DETECT_SIDE  # detect on a copy at most this long (None: full resolution)

    def __post_init__(self):
        object.__setattr__(self, "detectors",
                           _check_settings(self.detectors, self.upsample, self.fallback, self.select, self.max_side))
        if int(self.size) != self.size or self.size < 1 or not self.padding >= 0:
            raise ConfigError(f"size={self.size!r} must be an integer >= 1 and padding={self.padding!r} >= 0")

    def finder(self, device="cpu") -> FaceFinder:
        """The :class:`FaceFinder` of these settings (nothing is loaded until it runs)."""
        return FaceFinder(self.detectors, upsample=self.upsample, fallback=self.fallback, select=self.select,
                          max_side=self.max_side, device=device)

    def tag(self) -> str:
        return f"{self.finder().tag()}-chip{self.size}-pad{self.padding}"


@dataclass(frozen=True)
class FaceFinding:
    """Where the face of each image is and which stage of the chain found it."""

    landmarks: np.ndarray  # (N, 5, 2) float64 in dlib's order; NaN rows where stage == "none"
    stages: np.ndarray  # (N,) str, each one of facekit.pretrained.finding.STAGES
    num_faces: np.ndarray  # (N,) int faces the successful detector found (0 for a fallback)

    @property
    def found(self) -> np.ndarray:
        """(N,) bool: a detector found the face (not a fallback)."""
        return np.isin(self.stages, DETECTOR_STAGES)

    @property
    def usable(self) -> np.ndarray:
        """(N,) bool: the image has landmarks (found, or the centred fallback)."""
        return self.stages != "none"

    def counts(self) -> dict[str, int]:
        """``{stage: images}`` for every detector and each fallback."""
        return {s: int((self.stages == s).sum()) for s in STAGES}


def _progress(items, total: int, desc: str, progress):
    if progress is False or (progress is None and total < PROGRESS_FROM):
        return items
    from facekit.progress import tqdm

    return tqdm(items, total=total, desc=desc)


def find_faces(paths: Sequence, settings: LandmarkSettings = LandmarkSettings(), *, cache: bool = True,
               progress: bool | None = None, device="cpu") -> FaceFinding:
    """The face of each image through the detector chain of ``settings``, cached by image content.

    Args:
        paths: image files.
        settings: the chain, fallback, face choice and detection size.
        cache: read/write ``cache_dir()/landmarks-v2-<settings>.npz``.
        progress: a tqdm bar (None: only when at least ``PROGRESS_FROM`` images are new).
        device: where MTCNN runs, when it is in the chain.

    Raises:
        facekit.data.images.ImageReadError: a missing, unreadable or corrupt image (named).

    >>> finding = find_faces(["a.jpg", "b.jpg"], LandmarkSettings(detectors=("hog", "cnn")))  # doctest: +SKIP
    >>> finding.counts()  # doctest: +SKIP
    {'hog': 1, 'cnn': 1, 'mtcnn': 0, 'center': 0, 'none': 0}
    """
    paths = [Path(p) for p in paths]
    keys = [image_key(p) for p in paths]  # a missing file: ImageReadError naming it
    where = cache_dir() / f"landmarks-v{CACHE_VERSION}-{settings.tag()}.npz"
    entries = load_entries(where) if cache and paths else {}
    todo = list({k: p for k, p in zip(keys, paths) if k not in entries}.items())
    if todo:
        finder = settings.finder(device)
        for n, (key, path) in enumerate(_progress(todo, len(todo), "finding faces", progress), 1):
            face = finder(_read_rgb(path))
            points = np.full((5, 2), np.nan) if face.landmarks is None else face.landmarks
            entries[key] = {"landmarks": points, "stage": np.array(face.stage), "num_faces": np.array(face.num_faces)}
            if cache and (n % CHECKPOINT_EVERY == 0 or n == len(todo)):  # an interrupted run keeps its work
                save_entries(where, entries)
    if not paths:
        return FaceFinding(np.zeros((0, 5, 2)), np.zeros(0, dtype="<U6"), np.zeros(0, dtype=np.int64))
    return FaceFinding(np.stack([entries[k]["landmarks"] for k in keys]).astype(np.float64),
                       np.array([str(entries[k]["stage"]) for k in keys]),
                       np.array([int(entries[k]["num_faces"]) for k in keys], dtype=np.int64))


__all__ = ["FaceFinder", "FaceFound", "DETECTOR_STAGES", "FALLBACKS", "STAGES", "FACE_SELECT",
           "dlib_points_from_five", "LandmarkSettings", "FaceFinding", "find_faces", "cache_dir"]
