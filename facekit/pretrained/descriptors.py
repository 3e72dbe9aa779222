"""Descriptors of many images with dlib's face model (ours in torch, or dlib itself), and LFW with them.

The pipeline of dlib's face recognition example: HOG face detection -> 5 landmarks -> 150x150
chip with padding 0.25 -> 128-d descriptor; two faces are the same person when the Euclidean
distance of their descriptors is below 0.6. Landmarks and descriptors are cached in
``$FACEKIT_CACHE`` (default ``~/.cache/facekit``), never in the repository, one ``.npz`` per
(LFW folder, pipeline settings[, model file]) written atomically.

>>> result = evaluate_lfw_pairs(backend="torch")  # doctest: +SKIP
>>> round(result.kfold.mean, 3), round(result.fixed_threshold_accuracy, 3)  # doctest: +SKIP
(0.98..., 0.98...)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from facekit.io import atomic_path
from facekit.metrics.verification import KFoldResult, kfold_accuracy
from facekit.pretrained.dlib_resnet import CHIP_SIZE, DESCRIPTOR_DIM, SAME_PERSON_DISTANCE, load_dlib_resnet
from facekit.pretrained.face_chip import CENTER_BOX_FRACTION, CHIP_PADDING, dlib_landmarks, face_chip

CACHE_ENV = "FACEKIT_CACHE"
DEFAULT_CACHE = Path("~/.cache/facekit")
CACHE_SUBDIR = "dlib_resnet"
DEFAULT_BATCH = 32
DEFAULT_UPSAMPLE = 1
CHECKPOINT_EVERY = 1000  # images between two writes of the landmark cache


def cache_dir() -> Path:
    """``$FACEKIT_CACHE/dlib_resnet`` (default ``~/.cache/facekit/dlib_resnet``); created on first write only."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser() / CACHE_SUBDIR


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


@dataclass(frozen=True)
class LandmarkSettings:
    upsample: int = DEFAULT_UPSAMPLE  # HOG detector upsampling
    fallback: str = "center"  # no face found: a centred box (see face_chip.dlib_landmarks)
    size: int = CHIP_SIZE  # chip side
    padding: float = CHIP_PADDING  # chip padding

    def tag(self) -> str:
        return f"hog{self.upsample}-{self.fallback}{CENTER_BOX_FRACTION}-chip{self.size}-pad{self.padding}"


def _key(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _load_cache(path: Path) -> dict[str, dict[str, np.ndarray]]:
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            names = data["names"].tolist()
            fields = {k: data[k] for k in data.files if k != "names"}
    except (OSError, ValueError, KeyError):  # a damaged cache is recomputed, never trusted
        return {}
    return {name: {k: v[i] for k, v in fields.items()} for i, name in enumerate(names)}


def _save_cache(path: Path, entries: dict[str, dict[str, np.ndarray]]) -> None:
    names = sorted(entries)
    fields = {k: np.stack([entries[n][k] for n in names]) for k in entries[names[0]]} if names else {}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, names=np.array(names), **fields)


def _read_rgb(path: Path) -> np.ndarray:
    from facekit.data.images import read_image

    return np.ascontiguousarray(read_image(path, channels=3).permute(1, 2, 0).numpy())  # (H, W, 3) uint8


def image_landmarks(paths: Sequence, *, root=None, settings: LandmarkSettings = LandmarkSettings(),
                    cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """5 landmarks of each image (dlib HOG + 5-point predictor), cached.

    Returns:
        ``(landmarks (N, 5, 2) float64, found (N,) bool)``; ``found`` is False where HOG saw no face
        and the centred fallback box was used.
    """
    paths = [Path(p) for p in paths]
    root = Path(root) if root is not None else Path(os.path.commonpath([str(p.parent) for p in paths]) or ".")
    names = [os.path.relpath(p, root) for p in paths]
    where = cache_dir() / f"landmarks-{settings.tag()}-{_key(root.resolve())}.npz"
    entries = _load_cache(where) if cache else {}
    todo = [(n, p) for n, p in zip(names, paths) if n not in entries]
    for k, (name, path) in enumerate(todo, 1):
        points, found = dlib_landmarks(_read_rgb(path), upsample=settings.upsample, fallback=settings.fallback)
        entries[name] = {"landmarks": points, "found": np.array(found)}
        if cache and (k % CHECKPOINT_EVERY == 0 or k == len(todo)):  # an interrupted run keeps its work
            _save_cache(where, entries)
    return (np.stack([entries[n]["landmarks"] for n in names]) if names else np.zeros((0, 5, 2)),
            np.array([bool(entries[n]["found"]) for n in names], dtype=bool))


def image_descriptors(paths: Sequence, *, root=None, backend: str = "torch", model=None,
                      batch_size: int = DEFAULT_BATCH, device="cpu", settings: LandmarkSettings = LandmarkSettings(),
                      cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of images through the whole dlib pipeline (landmarks, chip, network), cached.

    Args:
        paths: image files (e.g. LFW's ``Name/Name_0001.jpg``).
        root: the folder the cache names are relative to (default: their common folder).
        backend: "torch" (facekit's :class:`DlibFaceResNet`) or "dlib" (dlib's own, as a reference).
        model: the backend's model (a module for "torch", a .dat path for "dlib"); default: dlib's file.
            A custom model is not cached.
        batch_size, device: as in :func:`compute_descriptors` (device is ignored by "dlib").
        settings: landmark and chip settings.

    Returns:
        ``(descriptors (N, 128) float32, found (N,) bool)``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    paths = [Path(p) for p in paths]
    root = Path(root) if root is not None else Path(os.path.commonpath([str(p.parent) for p in paths]) or ".")
    landmarks, found = image_landmarks(paths, root=root, settings=settings, cache=cache)
    names = [os.path.relpath(p, root) for p in paths]
    cache = cache and model is None
    from facekit.pretrained.dlib_dat import dlib_model_path

    where = cache_dir() / (f"descriptors-{backend}-{_file_digest(dlib_model_path('face_recognition'))}-"
                           f"{settings.tag()}-{_key(root.resolve())}.npz")
    entries = _load_cache(where) if cache else {}
    todo = [i for i, n in enumerate(names) if n not in entries]
    if todo:
        run = BACKENDS[backend](model, batch_size, device)
        for start in range(0, len(todo), batch_size * 8):  # bounded memory: chips made per block
            block = todo[start:start + batch_size * 8]
            chips = np.stack([face_chip(_read_rgb(paths[i]), landmarks[i], settings.size, settings.padding)
                              for i in block])  # (b, 150, 150, 3)
            for i, d in zip(block, run(chips)):
                entries[names[i]] = {"descriptor": d.astype(np.float32)}
        if cache:
            _save_cache(where, entries)
    out = np.stack([entries[n]["descriptor"] for n in names]) if names else np.zeros((0, DESCRIPTOR_DIM), np.float32)
    return out, found


@dataclass(frozen=True)
class LFWDescriptorResult:
    kfold: KFoldResult  # 10-fold accuracy, score = -distance, threshold chosen on the other 9 folds
    fixed_threshold_accuracy: float  # accuracy of "same person iff distance < 0.6" (dlib's rule)
    distances: np.ndarray  # (P,) Euclidean distance of each pair's descriptors
    is_same: np.ndarray  # (P,) bool
    num_images: int  # distinct images described
    num_without_face: int  # images where HOG found no face (the fallback box was used)


def evaluate_lfw_pairs(lfw_root=None, *, split: str = "pairs", backend: str = "torch", model=None,
                       batch_size: int = DEFAULT_BATCH, device="cpu", settings: LandmarkSettings = LandmarkSettings(),
                       cache: bool = True, folds: Sequence[int] | None = None) -> LFWDescriptorResult:
    """LFW verification with dlib's pipeline and facekit's protocol code.

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
    from facekit.data.lfw import find_pairs_file, read_pairs
    from facekit.data.registry import find_data_root

    images_dir = find_data_root("lfw", lfw_root)
    parsed = read_pairs(find_pairs_file(split, lfw_root), images_dir)
    chosen = range(len(parsed.folds)) if folds is None else list(folds)
    pairs = [p for k in chosen for p in parsed.folds[k]]
    fold_index, start = [], 0
    for k in chosen:
        fold_index.append(np.arange(start, start + len(parsed.folds[k])))
        start += len(parsed.folds[k])
    images = sorted({p for pair in pairs for p in (pair.path_a, pair.path_b)})
    desc, found = image_descriptors(images, root=images_dir, backend=backend, model=model, batch_size=batch_size,
                                    device=device, settings=settings, cache=cache)
    row = {p: i for i, p in enumerate(images)}
    a = desc[[row[p.path_a] for p in pairs]]
    b = desc[[row[p.path_b] for p in pairs]]
    distances = np.linalg.norm(a.astype(np.float64) - b, axis=1)  # (P,)
    is_same = np.array([p.is_same for p in pairs])
    kfold = kfold_accuracy(-distances, is_same, folds=fold_index if len(fold_index) > 1 else 10)
    fixed = float(np.mean((distances < SAME_PERSON_DISTANCE) == is_same))
    return LFWDescriptorResult(kfold, fixed, distances, is_same, len(images), int((~found).sum()))


__all__ = ["compute_descriptors", "image_landmarks", "image_descriptors", "evaluate_lfw_pairs", "LandmarkSettings",
           "LFWDescriptorResult", "BACKENDS", "cache_dir"]
