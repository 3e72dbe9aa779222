"""Descriptors of many images with dlib's face model (ours in torch, or dlib itself), and LFW with them.

The pipeline of dlib's face recognition example: HOG face detection -> 5 landmarks -> 150x150
chip with padding 0.25 -> 128-d descriptor; two faces are the same person when the Euclidean
distance of their descriptors is below 0.6. Finding the face is a chain of detectors with a recorded
outcome per photo (:mod:`facekit.pretrained.finding`). Landmarks and descriptors are cached in
``facekit.io.cache_dir("dlib_resnet")``, never in the repository: one ``.npz`` per pipeline setting
(and model file), written atomically, whose entries are keyed by each image's *content digest*, so a
photo replaced under the same name is computed anew.

>>> result = evaluate_lfw_pairs(backend="torch")  # doctest: +SKIP
>>> round(result.kfold.mean, 3), round(result.fixed_threshold_accuracy, 3)  # doctest: +SKIP
(0.98..., 0.98...)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from facekit.config import ConfigError
from facekit.detection.alignment import MAX_DETECT_SIDE
from facekit.io import cache_dir as _cache_root
from facekit.metrics.verification import KFoldResult
from facekit.pretrained.dlib_resnet import CHIP_SIZE, DESCRIPTOR_DIM, SAME_PERSON_DISTANCE, load_dlib_resnet
from facekit.pretrained.face_chip import CHIP_PADDING, face_chip
from facekit.pretrained.finding import DETECTOR_STAGES, STAGES, FaceFinder, _check_settings
from facekit.pretrained.keyed_cache import image_key, load_entries, save_entries

CACHE_SUBDIR = "dlib_resnet"
CACHE_VERSION = 2  # part of the file names: 2 = entries keyed by image content, stage recorded
DEFAULT_BATCH = 32
DEFAULT_UPSAMPLE = 1
CHECKPOINT_EVERY = 1000  # images between two writes of a cache
BLOCK_BATCHES = 8  # chips made per block = batch_size * this: memory stays bounded on any number of photos
PROGRESS_FROM = 64  # progress=None shows a bar when at least this many images must be computed


def cache_dir() -> Path:
    """``facekit.io.cache_dir("dlib_resnet")``: ``$FACEKIT_CACHE/dlib_resnet``; created on first write only."""
    return _cache_root(CACHE_SUBDIR)


def _as_chip_batch(chips) -> torch.Tensor:
    """(N, 3, H, W) tensor from a (N, 3, H, W) tensor, a (N, H, W, 3) uint8 array or a list of (H, W, 3) arrays."""
    if isinstance(chips, torch.Tensor):
        batch = chips
    else:
        arr = np.stack([np.asarray(c) for c in chips]) if isinstance(chips, (list, tuple)) else np.asarray(chips)
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"expected chips (N, H, W, 3), got shape {arr.shape}")
        batch = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected chips (N, 3, H, W), got shape {tuple(batch.shape)}")
    return batch


def compute_descriptors(model: torch.nn.Module, chips, *, batch_size: int = DEFAULT_BATCH,
                        device="cpu") -> torch.Tensor:
    """Descriptors of many chips, ``batch_size`` at a time, on ``device``.

    Args:
        model: e.g. :func:`facekit.pretrained.load_dlib_resnet` (moved to ``device`` here).
        chips: (N, 3, 150, 150) tensor or (N, 150, 150, 3) uint8 array / list of chips, RGB in [0, 255].
        batch_size: chips per forward pass.
        device: "cpu", "cuda", torch.device, ...

    Returns:
        (N, 128) float32 on the CPU.

    >>> net = load_dlib_resnet()  # doctest: +SKIP
    >>> compute_descriptors(net, np.zeros((3, 150, 150, 3), np.uint8)).shape  # doctest: +SKIP
    torch.Size([3, 128])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    batch = _as_chip_batch(chips)
    model = model.to(device).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(batch), batch_size):
            x = batch[start:start + batch_size].to(device, torch.float32)  # (b, 3, 150, 150)
            out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, DESCRIPTOR_DIM)


def _torch_backend(model=None, batch_size: int = DEFAULT_BATCH, device="cpu") -> Callable[[np.ndarray], np.ndarray]:
    net = load_dlib_resnet() if model is None else model
    return lambda chips: compute_descriptors(net, chips, batch_size=batch_size, device=device).numpy()


def _dlib_backend(model=None, batch_size: int = DEFAULT_BATCH, device="cpu") -> Callable[[np.ndarray], np.ndarray]:
    from facekit.pretrained.dlib_dat import dlib_model_path
    from facekit.pretrained.face_chip import _dlib

    rec = _dlib().face_recognition_model_v1(str(dlib_model_path("face_recognition") if model is None else model))

    def run(chips: np.ndarray) -> np.ndarray:
        out = [np.asarray(rec.compute_face_descriptor(list(chips[i:i + batch_size])))
               for i in range(0, len(chips), batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, DESCRIPTOR_DIM), np.float32)

    return run


BACKENDS: dict[str, Callable[..., Callable[[np.ndarray], np.ndarray]]] = {
    "torch": _torch_backend,  # facekit's DlibFaceResNet (model: a DlibFaceResNet or None)
    "dlib": _dlib_backend,  # dlib.face_recognition_model_v1 (model: a .dat path or None); the reference
}


def _read_rgb(path: Path) -> np.ndarray:
    from facekit.data.images import read_image

    return np.ascontiguousarray(read_image(path, channels=3).permute(1, 2, 0).numpy())  # (H, W, 3) uint8


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


def image_landmarks(paths: Sequence, *, root=None, settings: LandmarkSettings = LandmarkSettings(),
                    cache: bool = True, progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """5 landmarks of each image (dlib HOG + 5-point predictor by default), cached; see :func:`find_faces`.

    Args:
        root: accepted for older callers and unused (the cache is keyed by image content).

    Returns:
        ``(landmarks (N, 5, 2) float64, found (N,) bool)``; ``found`` is False where no detector of the
        chain found a face (the centred fallback box was used or, with ``fallback="none"``, the
        landmarks are NaN).
    """
    finding = find_faces(paths, settings, cache=cache, progress=progress)
    return finding.landmarks, finding.found


def image_descriptors(paths: Sequence, *, root=None, backend: str = "torch", model=None,
                      batch_size: int = DEFAULT_BATCH, device="cpu", settings: LandmarkSettings = LandmarkSettings(),
                      cache: bool = True, progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of images through the whole dlib pipeline (face, landmarks, chip, network), cached.

    Chips are made ``batch_size * BLOCK_BATCHES`` at a time, so memory stays bounded on any number of
    photos; a tqdm bar shows the progress (see :func:`find_faces`).

    Args:
        paths: image files (e.g. LFW's ``Name/Name_0001.jpg``).
        root: accepted for older callers and unused (the cache is keyed by image content).
        backend: "torch" (facekit's :class:`DlibFaceResNet`) or "dlib" (dlib's own, as a reference).
        model: the backend's model (a module for "torch", a .dat path for "dlib"); default: dlib's file.
            A custom model is not cached.
        batch_size, device: as in :func:`compute_descriptors` (device is ignored by "dlib").
        settings: face finding and chip settings.

    Returns:
        ``(descriptors (N, 128) float32, found (N,) bool)``; with ``fallback="none"`` the rows of images
        without a face are NaN (``found`` False there).

    Raises:
        facekit.data.images.ImageReadError: a missing, unreadable or corrupt image (named).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    paths = [Path(p) for p in paths]
    finding = find_faces(paths, settings, cache=cache, progress=progress, device=device)
    keys = [image_key(p) for p in paths]
    cache = cache and model is None
    from facekit.pretrained.dlib_dat import dlib_model_path

    model_key = image_key(dlib_model_path("face_recognition")) if model is None else "custom"
    where = cache_dir() / f"descriptors-v{CACHE_VERSION}-{backend}-{model_key}-{settings.tag()}.npz"
    entries = load_entries(where) if cache and paths else {}
    first = {k: i for i, k in reversed(list(enumerate(keys)))}  # one computation per distinct image
    todo = sorted(i for k, i in first.items() if k not in entries and finding.usable[i])
    if todo:
        run = BACKENDS[backend](model, batch_size, device)
        block = batch_size * BLOCK_BATCHES
        starts = range(0, len(todo), block)
        shown = progress if progress is not None else len(todo) >= PROGRESS_FROM
        for start in _progress(starts, len(starts), "descriptors", shown):
            rows = todo[start:start + block]
            chips = np.stack([face_chip(_read_rgb(paths[i]), finding.landmarks[i], settings.size, settings.padding)
                              for i in rows])  # (b, 150, 150, 3)
            for i, d in zip(rows, run(chips)):
                entries[keys[i]] = {"descriptor": d.astype(np.float32)}
            if cache and (start // CHECKPOINT_EVERY != (start + block) // CHECKPOINT_EVERY or start + block >= len(todo)):
                save_entries(where, entries)  # an interrupted run keeps its work
    nan = np.full(DESCRIPTOR_DIM, np.nan, np.float32)
    if not keys:
        return np.zeros((0, DESCRIPTOR_DIM), np.float32), np.zeros(0, bool)
    out = np.stack([entries[k]["descriptor"] if finding.usable[i] else nan for i, k in enumerate(keys)])
    return out, finding.found


@dataclass(frozen=True)
class LFWDescriptorResult:
    kfold: KFoldResult  # 10-fold accuracy, score = -distance, threshold chosen on the other 9 folds
    fixed_threshold_accuracy: float  # accuracy of "same person iff distance < 0.6" (dlib's rule)
    distances: np.ndarray  # (P,) Euclidean distance of each pair's descriptors
    is_same: np.ndarray  # (P,) bool
    num_images: int  # distinct images described
    num_without_face: int  # images where no detector found a face (the fallback was used)


def dlib_embedder(**kwargs) -> Callable[[list], tuple[np.ndarray, np.ndarray]]:
    """An embedding function for :func:`facekit.data.lfw.evaluate_pairs`: ``paths -> (descriptors, found)``.

    ``kwargs`` go to :func:`image_descriptors` (backend, model, batch_size, device, settings, cache, progress).
    """
    return lambda paths: image_descriptors(paths, **kwargs)


def evaluate_lfw_pairs(lfw_root=None, *, split: str = "pairs", backend: str = "torch", model=None,
                       batch_size: int = DEFAULT_BATCH, device="cpu", settings: LandmarkSettings = LandmarkSettings(),
                       cache: bool = True, folds: Sequence[int] | None = None) -> LFWDescriptorResult:
    """LFW verification with dlib's pipeline: :func:`facekit.data.lfw.evaluate_pairs` with its descriptors.

    Args:
        lfw_root: the LFW folder (default: found by :func:`facekit.data.registry.find_data_root`).
        split: "pairs" (10 folds), "dev_train" or "dev_test".
        backend, model, batch_size, device, settings, cache: see :func:`image_descriptors`.
        folds: keep only these folds (e.g. ``[0]`` for a quick look); the k-fold rule then runs on
            them (at least 2 are needed).

    >>> r = evaluate_lfw_pairs(backend="dlib")  # doctest: +SKIP
    >>> r.kfold.mean  # doctest: +SKIP
    0.98...
    """
    from facekit.data.lfw import evaluate_pairs, lfw_pair_subset

    subset = lfw_pair_subset(lfw_root, split=split, folds=folds)
    result = evaluate_pairs(subset, dlib_embedder(backend=backend, model=model, batch_size=batch_size, device=device,
                                                  settings=settings, cache=cache))
    fixed = float(np.mean((result.distances < SAME_PERSON_DISTANCE) == result.is_same))
    return LFWDescriptorResult(result.kfold, fixed, result.distances, result.is_same, result.num_images,
                               result.num_without_face)


__all__ = ["compute_descriptors", "find_faces", "FaceFinding", "image_landmarks", "image_descriptors",
           "evaluate_lfw_pairs", "dlib_embedder", "LandmarkSettings", "LFWDescriptorResult", "BACKENDS", "cache_dir"]
