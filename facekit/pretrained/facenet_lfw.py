"""LFW's pairs with FaceNet's pipeline (:mod:`facekit.pretrained.crops`) and facekit's protocol code.

A fixed subset of pairs (:func:`lfw_pair_subset`, the same for every model and setting), the k-fold rule
on any ``{path: embedding}`` (:func:`pair_kfold`), and :func:`evaluate_facenet_lfw`, the counterpart of
``facekit.pretrained.evaluate_lfw_pairs`` for dlib's model. Measured on all 6,000 pairs of ``pairs.txt``
(deep-funneled LFW): 98.70 +- 0.57% with ``select="center"``, 96.00 +- 0.32% with ``"confident"``.

>>> result = evaluate_facenet_lfw(settings=CropSettings(select="center"))  # doctest: +SKIP
>>> round(result.kfold.mean, 3), result.num_multi_face  # doctest: +SKIP
(0.987, 1176)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facekit.metrics.verification import KFoldResult, kfold_accuracy
from facekit.pretrained.crops import DEFAULT_BATCH, CropSettings, image_embeddings


@dataclass(frozen=True)
class PairSubset:
    """LFW pairs chosen for an evaluation, with the fold of each (same-person ones first in every fold)."""

    paths_a: list  # (P,) image paths
    paths_b: list  # (P,)
    is_same: np.ndarray  # (P,) bool
    folds: list  # k index arrays into the P pairs
    images_dir: Path

    @property
    def images(self) -> list:
        """The distinct images, in first-use order."""
        return list(dict.fromkeys(p for pair in zip(self.paths_a, self.paths_b) for p in pair))


def lfw_pair_subset(lfw_root=None, *, split: str = "pairs", folds: Sequence[int] | None = None,
                    pairs_per_fold: int | None = None) -> PairSubset:
    """LFW's protocol pairs, optionally the first ``pairs_per_fold // 2`` same and different pairs of each fold.

    The subset is fixed (the file's order), so two models or two settings see the same pairs.
    """
    from facekit.data.lfw import find_pairs_file, read_pairs
    from facekit.data.registry import find_data_root

    if pairs_per_fold is not None and pairs_per_fold < 2:
        raise ValueError(f"pairs_per_fold={pairs_per_fold} must be >= 2 (one same and one different pair) or None")
    images_dir = find_data_root("lfw", lfw_root)
    parsed = read_pairs(find_pairs_file(split, lfw_root), images_dir)
    chosen = range(len(parsed.folds)) if folds is None else list(folds)
    a, b, same, fold_index = [], [], [], []
    for k in chosen:
        fold = parsed.folds[k]
        if pairs_per_fold is not None:
            half = pairs_per_fold // 2
            fold = [p for p in fold if p.is_same][:half] + [p for p in fold if not p.is_same][:half]
        fold_index.append(np.arange(len(a), len(a) + len(fold)))
        a += [p.path_a for p in fold]
        b += [p.path_b for p in fold]
        same += [p.is_same for p in fold]
    return PairSubset(a, b, np.array(same, dtype=bool), fold_index, images_dir)


def pair_kfold(embeddings: dict, subset: PairSubset) -> tuple[KFoldResult, np.ndarray]:
    """k-fold accuracy (score = -Euclidean distance) of ``subset`` from ``{path: embedding}``; also the distances."""
    a = np.stack([embeddings[p] for p in subset.paths_a]).astype(np.float64)
    b = np.stack([embeddings[p] for p in subset.paths_b]).astype(np.float64)
    distances = np.linalg.norm(a - b, axis=1)  # (P,)
    folds = subset.folds if len(subset.folds) > 1 else 10
    return kfold_accuracy(-distances, subset.is_same, folds=folds), distances


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
    """LFW verification with FaceNet, MTCNN crops and facekit's protocol code (like ``evaluate_lfw_pairs``).

    Args:
        lfw_root: the LFW folder (default: found by :func:`facekit.data.registry.find_data_root`).
        split: "pairs" (10 folds), "dev_train" or "dev_test".
        settings: detection, face selection and crop settings.
        folds, pairs_per_fold: a fixed subset (see :func:`lfw_pair_subset`); None = all.
        model, batch_size, device, cache: see :func:`image_embeddings`.

    >>> r = evaluate_facenet_lfw(settings=CropSettings(select="confident"))  # doctest: +SKIP
    >>> r.num_multi_face, round(r.kfold.mean, 3)  # doctest: +SKIP
    """
    subset = lfw_pair_subset(lfw_root, split=split, folds=folds, pairs_per_fold=pairs_per_fold)
    images = subset.images
    emb, found, counts = image_embeddings(images, settings, model=model, batch_size=batch_size, device=device,
                                          cache=cache)
    kfold, distances = pair_kfold(dict(zip(images, emb)), subset)
    return FacenetLFWResult(kfold, distances, subset.is_same, len(images), int((~found).sum()),
                            int((counts > 1).sum()), settings)


__all__ = ["PairSubset", "lfw_pair_subset", "pair_kfold", "FacenetLFWResult", "evaluate_facenet_lfw"]
