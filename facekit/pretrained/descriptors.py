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

from facekit.metrics.verification import KFoldResult
from facekit.pretrained.dlib_resnet import DESCRIPTOR_DIM, SAME_PERSON_DISTANCE, load_dlib_resnet
from facekit.pretrained.face_chip import face_chip
from facekit.pretrained.finding import (CACHE_VERSION, PROGRESS_FROM, FaceFinding, LandmarkSettings, _progress,
                                        _read_rgb, cache_dir, find_faces)
from facekit.pretrained.keyed_cache import image_key, load_entries, save_entries

DEFAULT_BATCH = 32
CHECKPOINT_EVERY = 1000  # images between two writes of a cache
BLOCK_BATCHES = 8  # chips made per block = batch_size * this: memory stays bounded on any number of photos


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
            crossed = start // CHECKPOINT_EVERY != (start + block) // CHECKPOINT_EVERY
            if cache and (crossed or start + block >= len(todo)):
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
           "evaluate_lfw_pairs", "dlib_embedder", "LandmarkSettings", "LFWDescriptorResult", "BACKENDS"]
