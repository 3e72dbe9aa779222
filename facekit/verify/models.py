"""The embedding models a verification report can use, each as ``paths -> Embedded``.

- ``"dlib"``: facekit's port of dlib's ResNet through dlib's pipeline, with the face found by a detector
  chain (:class:`facekit.pretrained.LandmarkSettings`, default ``DLIB_CHAIN``) and a stage per photo;
- ``"facenet"``: the FaceNet port with MTCNN crops (stage ``"mtcnn"``, or ``"center"`` when MTCNN found
  nothing and the centred square was used);
- any callable ``paths -> (N, D) embeddings`` (a course checkpoint wrapped by the caller: its own
  preprocessing, no face finding of its own: stage ``"given"``).

Embeddings of the two built-in models are cached by image content (``facekit.io.cache_dir``).

>>> sorted(MODELS)
['dlib', 'facenet']
>>> e = make_embedder(lambda paths: np.ones((len(paths), 3)))(["a.jpg", "b.jpg"])
>>> e.embeddings.shape, e.stages.tolist()
((2, 3), ['given', 'given'])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from facekit.config import ConfigError

DLIB_CHAIN = ("hog", "mtcnn")  # HOG first (dlib's reference), MTCNN for the faces HOG misses (profiles)
GIVEN_STAGE = "given"  # the stage of every photo embedded by a user's callable


@dataclass(frozen=True)
class Embedded:
    """Embeddings of N photos and how each photo's face was found."""

    embeddings: np.ndarray  # (N, D) float; NaN rows for photos left out (no face with fallback "none")
    stages: np.ndarray  # (N,) str: the detector that found the face, "center", "none" or "given"
    num_faces: np.ndarray  # (N,) int faces the detector found (0 for a fallback, -1 unknown)


def _dlib(detectors=DLIB_CHAIN, select: str = "center", fallback: str = "center", batch_size: int = 32,
          device="cpu", cache: bool = True, progress=None, max_side=None, upsample: int = 1) -> Callable:
    from facekit.detection.alignment import MAX_DETECT_SIDE
    from facekit.pretrained.descriptors import LandmarkSettings, find_faces, image_descriptors

    settings = LandmarkSettings(upsample=upsample, fallback=fallback, detectors=tuple(detectors), select=select,
                                max_side=MAX_DETECT_SIDE if max_side is None else max_side)

    def embed(paths) -> Embedded:
        desc, _ = image_descriptors(paths, settings=settings, batch_size=batch_size, device=device, cache=cache,
                                    progress=progress)
        finding = find_faces(paths, settings, cache=cache, progress=False, device=device)
        return Embedded(desc, finding.stages, finding.num_faces)

    return embed


def _facenet(select: str = "center", batch_size: int = 32, device="cpu", cache: bool = True, progress=None,
             **ignored) -> Callable:
    from facekit.pretrained.crops import CropSettings, image_embeddings

    settings = CropSettings(select=select)

    def embed(paths) -> Embedded:
        emb, found, counts = image_embeddings(paths, settings, batch_size=batch_size, device=device, cache=cache,
                                              progress=progress)
        return Embedded(emb, np.where(found, "mtcnn", "center"), counts)

    return embed


MODELS: dict[str, Callable[..., Callable]] = {"dlib": _dlib, "facenet": _facenet}
MODEL_OPTIONS = {"dlib": ("detectors", "select", "fallback", "batch_size", "device", "cache", "progress", "max_side",
                          "upsample"),
                 "facenet": ("select", "batch_size", "device", "cache", "progress")}


def make_embedder(model, **options) -> Callable[[list], Embedded]:
    """``paths -> Embedded`` for a model name of :data:`MODELS` (with its options) or a callable.

    Args:
        model: "dlib", "facenet", or a callable ``paths -> (N, D)`` array (or ``(array, found)``).
        options: the model's options (``MODEL_OPTIONS``); a name it does not take is an error naming the
            accepted ones. A callable takes none.
    """
    if callable(model):
        if options:
            raise ConfigError(f"options {sorted(options)} are for the built-in models; a callable model takes none")

        def embed(paths) -> Embedded:
            out = model(list(paths))
            emb = np.asarray(out[0] if isinstance(out, tuple) else out, dtype=np.float64)
            if emb.ndim != 2 or len(emb) != len(paths):
                raise ValueError(f"the model returned shape {emb.shape} for {len(paths)} images; expected "
                                 f"({len(paths)}, D)")
            return Embedded(emb, np.full(len(paths), GIVEN_STAGE), np.full(len(paths), -1))

        return embed
    if model not in MODELS:
        raise ConfigError(f"model={model!r} is not accepted; use one of {', '.join(sorted(MODELS))} or a callable "
                          f"paths -> (N, D) embeddings (e.g. a course checkpoint)")
    unknown = sorted(set(options) - set(MODEL_OPTIONS[model]))
    if unknown:
        raise ConfigError(f"model {model!r} does not take {', '.join(unknown)}; accepted: "
                          f"{', '.join(MODEL_OPTIONS[model])}")
    return MODELS[model](**options)


__all__ = ["Embedded", "MODELS", "MODEL_OPTIONS", "DLIB_CHAIN", "make_embedder"]
