"""LFW's pairs with FaceNet's pipeline (:mod:`facekit.pretrained.crops`) through the one LFW evaluator.

The protocol (:func:`facekit.data.lfw.lfw_pair_subset`, :func:`facekit.data.lfw.evaluate_pairs`) lives in
:mod:`facekit.data.lfw`; :func:`evaluate_facenet_lfw` is that evaluator with FaceNet's embeddings, the
counterpart of ``facekit.pretrained.evaluate_lfw_pairs`` for dlib's model. Measured on all 6,000 pairs
of ``pairs.txt`` (deep-funneled LFW): 98.70 +- 0.57% with ``select="center"``, 96.00 +- 0.32% with
``"confident"``.

>>> result = evaluate_facenet_lfw(settings=CropSettings(select="center"))  # doctest: +SKIP
>>> round(result.kfold.mean, 3), result.num_multi_face  # doctest: +SKIP
(0.987, 1176)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from facekit.data.lfw import PairSubset, evaluate_pairs, lfw_pair_subset
from facekit.metrics.verification import KFoldResult
from facekit.pretrained.crops import DEFAULT_BATCH, CropSettings, image_embeddings


def pair_kfold(embeddings: dict, subset: PairSubset) -> tuple[KFoldResult, np.ndarray]:
    """k-fold accuracy (score = -Euclidean distance) of ``subset`` from ``{path: embedding}``; also the distances.

    The same rule as :func:`facekit.data.lfw.evaluate_pairs`, for embeddings already computed.
    """
    result = evaluate_pairs(subset, lambda paths: np.stack([np.asarray(embeddings[p]) for p in paths]))
    return result.kfold, result.distances


@dataclass(frozen=True)
class FacenetLFWResult:
    kfold: KFoldResult  # k-fold accuracy, score = -distance, threshold chosen on the other folds
    distances: np.ndarray  # (P,) Euclidean distance of each pair's embeddings
    is_same: np.ndarray  # (P,) bool
    num_images: int  # distinct images embedded
    num_without_face: int  # images where MTCNN found no face (centre crop used)
    num_multi_face: int  # images where MTCNN found more than one face (``select`` decided)
    settings: CropSettings


def evaluate_facenet_lfw(lfw_root=None, *, split: str = "pairs", settings: CropSettings = CropSettings(),
                         folds: Sequence[int] | None = None, pairs_per_fold: int | None = None, model=None,
                         batch_size: int = DEFAULT_BATCH, device="cpu", cache: bool = True) -> FacenetLFWResult:
    """LFW verification with FaceNet, MTCNN crops and :func:`facekit.data.lfw.evaluate_pairs`.

    Args:
        lfw_root: the LFW folder (default: found by :func:`facekit.data.registry.find_data_root`).
        split: "pairs" (10 folds), "dev_train" or "dev_test".
        settings: detection, face selection and crop settings.
        folds, pairs_per_fold: a fixed subset (see :func:`facekit.data.lfw.lfw_pair_subset`); None = all.
        model, batch_size, device, cache: see :func:`image_embeddings`.

    >>> r = evaluate_facenet_lfw(settings=CropSettings(select="confident"))  # doctest: +SKIP
    >>> r.num_multi_face, round(r.kfold.mean, 3)  # doctest: +SKIP
    """
    subset = lfw_pair_subset(lfw_root, split=split, folds=folds, pairs_per_fold=pairs_per_fold)
    counts = {}

    def embed(paths):
        emb, found, num_faces = image_embeddings(paths, settings, model=model, batch_size=batch_size, device=device,
                                                 cache=cache)
        counts["multi"] = int((num_faces > 1).sum())
        return emb, found

    result = evaluate_pairs(subset, embed)
    return FacenetLFWResult(result.kfold, result.distances, subset.is_same, result.num_images,
                            result.num_without_face, counts["multi"], settings)


__all__ = ["PairSubset", "lfw_pair_subset", "pair_kfold", "FacenetLFWResult", "evaluate_facenet_lfw",
           "pair_distances", "kfold_accuracy"]
