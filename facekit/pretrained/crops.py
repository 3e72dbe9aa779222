"""FaceNet's photo pipeline: MTCNN detection -> the choice of face -> one 160x160 crop -> 512-d embedding.

The pipeline of facenet-pytorch's examples: MTCNN (:class:`facekit.detection.MTCNNDetector`) finds
every face with a probability; when it finds several, ``select`` decides which one is *the* face of
the image: ``"center"`` (box centre nearest the image centre: LFW's subject is centred by
construction), ``"confident"`` (highest MTCNN probability) or ``"largest"`` (largest box area). The
box grows by ``margin`` pixels *of the final crop* (facenet-pytorch's ``extract_face`` convention) and
is resized to ``size`` x ``size`` (PIL bilinear). No face: the centred ``size`` x ``size`` square.

Cached in ``facekit.io.cache_dir("facenet_lfw")``, written atomically, keyed by the content digest
of each image file (so moving the data keeps the cache) and the settings: the MTCNN detections (all
faces, a few numbers per image: every ``select`` reuses them) and the embeddings of the default model
(keyed by image and chosen face, so another ``select`` recomputes only the images where it picks another face).
The crops themselves are not stored (590 MB for LFW); they are remade from the detections in ~2 ms.

>>> settings = CropSettings(select="confident")
>>> settings.tag()
'mtcnn20-0.6-0.7-0.7-s160-m32-confident'
>>> embeddings, found, num_faces = image_embeddings(["photo.jpg"], settings)  # doctest: +SKIP
>>> embeddings.shape  # doctest: +SKIP
(1, 512)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from facekit.io import cache_dir, file_sha256
from facekit.pretrained.crop_faces import (  # re-exported: detection, the choice of face and the crop
    CACHE_SUBDIR, CHECKPOINT_EVERY, SELECT_CHOICES, CropSettings, FaceBoxes, _image_key, _read_rgb, crop_face,
    detect_faces, file_digest, select_face)

DEFAULT_BATCH = 32
BLOCK_BATCHES = 8  # crops made per block = batch_size * this: memory stays bounded on any number of photos
PROGRESS_FROM = 64  # progress=None shows a bar when at least this many images must be computed


def face_crops(paths: Sequence, settings: CropSettings = CropSettings(), *, cache: bool = True,
               detector=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One crop per image through the whole pipeline (detect, select, crop).

    Returns:
        ``(crops (N, size, size, 3) uint8, found (N,) bool, num_faces (N,) int)``; ``found`` is False
        where MTCNN saw no face and the centre crop was used.

    >>> crops, found, num_faces = face_crops(["Aaron_Peirsol_0001.jpg"])  # doctest: +SKIP
    >>> crops.shape, crops.dtype  # doctest: +SKIP
    ((1, 160, 160, 3), dtype('uint8'))
    """
    faces = detect_faces(paths, settings, cache=cache, detector=detector)
    crops = np.zeros((len(faces), settings.size, settings.size, 3), np.uint8)
    for i, (path, f) in enumerate(zip(paths, faces)):
        img = _read_rgb(path)
        pick = select_face(f, img.width, img.height, settings.select)
        crops[i] = crop_face(img, None if pick is None else f.boxes[pick], settings.size, settings.margin)
    counts = np.array([len(f.boxes) for f in faces], dtype=np.int64)
    return crops, counts > 0, counts


def embed_crops(model: torch.nn.Module, crops, *, batch_size: int = DEFAULT_BATCH, device="cpu") -> np.ndarray:
    """(N, 512) float32 embeddings of (N, H, W, 3) uint8 crops, ``batch_size`` at a time (standardised here)."""
    from facekit.pretrained.facenet import standardize_faces

    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"expected crops (N, H, W, 3), got shape {crops.shape}")
    model = model.to(device).eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(crops), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[s:s + batch_size])).permute(0, 3, 1, 2)  # (b, 3, H, W)
            out.append(model(standardize_faces(x).to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 512), np.float32)


def _picks(paths: list, faces: list, select: str) -> list[int]:
    """The face ``select`` picks in each image (-1: no face, the centred square)."""
    from PIL import Image

    picks = []
    for path, f in zip(paths, faces):
        if len(f.boxes) < 2:
            picks.append(0 if len(f.boxes) else -1)
        else:
            with Image.open(path) as im:
                picks.append(select_face(f, im.width, im.height, select))
    return picks


def _embedding_cache(settings: CropSettings) -> Path:
    """The embeddings' cache file of the default model (keyed by its graph's digest) and these crop settings."""
    from facekit.pretrained.facenet_graph import facenet_graph_path

    crop_tag = f"{settings.detector_tag()}-s{settings.size}-m{settings.margin}"
    return cache_dir(CACHE_SUBDIR, f"embeddings-{file_sha256(facenet_graph_path())[:16]}-{crop_tag}.npz")


def _embed_blocks(net, todo: list[int], paths: list, faces: list, picks: list[int], settings: CropSettings,
                  batch_size: int, device, progress: bool | None):
    """``(rows, embeddings)`` of the images ``todo``, ``batch_size * BLOCK_BATCHES`` crops made at a time."""
    block = batch_size * BLOCK_BATCHES
    starts = range(0, len(todo), block)
    if progress or (progress is None and len(todo) >= PROGRESS_FROM):
        from facekit.progress import tqdm

        starts = tqdm(starts, desc="FaceNet embeddings")
    for start in starts:
        rows = todo[start:start + block]
        crops = np.stack([crop_face(_read_rgb(paths[i]), None if picks[i] < 0 else faces[i].boxes[picks[i]],
                                    settings.size, settings.margin) for i in rows])  # (b, 160, 160, 3)
        yield rows, embed_crops(net, crops, batch_size=batch_size, device=device)


def image_embeddings(paths: Sequence, settings: CropSettings = CropSettings(), *, model=None,
                     batch_size: int = DEFAULT_BATCH, device="cpu", cache: bool = True, progress: bool | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FaceNet embeddings of images through the whole pipeline, cached (default model only).

    Crops are made ``batch_size * BLOCK_BATCHES`` at a time, so memory stays bounded on any number of
    photos; a tqdm bar shows the progress.

    Args:
        paths: image files.
        settings: crop settings (see :class:`CropSettings`).
        model: a FaceNet module (default: :func:`facekit.pretrained.load_facenet`); a custom one is not cached.
        batch_size, device: as in :func:`embed_crops`.
        cache: detections and embeddings under ``cache_dir("facenet_lfw")``.
        progress: tqdm bars (None: when at least ``PROGRESS_FROM`` images are new).

    Returns:
        ``(embeddings (N, 512) float32, found (N,) bool, num_faces (N,) int)``.

    Raises:
        facekit.data.images.ImageReadError: a missing, unreadable or corrupt image (named).
    """
    from facekit.pretrained.facenet import load_facenet
    from facekit.pretrained.keyed_cache import load_entries, save_entries

    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    paths = [Path(p) for p in paths]
    if not paths:
        return np.zeros((0, 512), np.float32), np.zeros(0, bool), np.zeros(0, np.int64)
    faces = detect_faces(paths, settings, cache=cache, progress=progress)
    counts = np.array([len(f.boxes) for f in faces], dtype=np.int64)
    picks = _picks(paths, faces, settings.select)
    # the key names the face, not the rule: another `select` recomputes only the images where it picks another face
    keys = [f"{_image_key(p)}#{i}" for p, i in zip(paths, picks)]
    where = _embedding_cache(settings) if cache and model is None else None
    entries: dict[str, dict] = load_entries(where) if where is not None else {}
    first = {k: i for i, k in reversed(list(enumerate(keys)))}  # one computation per distinct face
    todo = sorted(i for k, i in first.items() if k not in entries)
    if todo:
        net = load_facenet() if model is None else model
        for rows, emb in _embed_blocks(net, todo, paths, faces, picks, settings, batch_size, device, progress):
            entries.update({keys[i]: {"embeddings": e} for i, e in zip(rows, emb)})
        if where is not None:
            save_entries(where, entries)
    out = np.stack([entries[k]["embeddings"] for k in keys])
    return out, counts > 0, counts


__all__ = ["CropSettings", "FaceBoxes", "SELECT_CHOICES", "select_face", "crop_face", "detect_faces", "face_crops",
           "embed_crops", "image_embeddings", "file_digest"]
