"""Labeled Faces in the Wild: the verification protocol files and the people as classes.

Protocol files (Huang et al., 2007): the first line is ``folds<TAB>n`` (``pairs.txt``: ``10 300``)
or ``n`` (``pairsDevTrain.txt``: 1100, ``pairsDevTest.txt``: 500, one fold). Each fold is ``n``
same-person lines ``name i j`` then ``n`` different-person lines ``name1 i name2 j``; image ``i``
of ``name`` is ``<images_dir>/<name>/<name>_%04d.jpg``.

The parser of those files is :mod:`facekit.data.lfw_pairs_file` (its names are re-exported here).
The protocol itself lives here too: :func:`lfw_pair_subset` (a fixed subset of the folds, the same for
every model), :func:`people_outside_folds` (people a model may train on without seeing an evaluated
person) and :func:`evaluate_pairs`, the one evaluator, which takes any embedding function
(``facekit.pretrained.dlib_embedder``, FaceNet's ``image_embeddings``, a course model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from facekit.config import choice
from facekit.data.folders import ImageFolderFaces
from facekit.data.images import check_channels, check_size, load_float
from facekit.data.lfw_pairs_file import (  # the parser's names, re-exported
    DIFFERENT_FIELDS, IMAGE_NAME, ON_MISSING_CHOICES, PAIRS_FILES, SAME_FIELDS, Pair, PairImageMissing,
    PairsFile, PairsFileError, find_pairs_file, lfw_image_path, read_pairs)
from facekit.data.registry import find_data_root


class LFWPairs(Dataset):
    """LFW verification pairs; item ``i`` is ``(img_a, img_b, is_same)`` with float32 ``(C, H, W)`` images.

    Args:
        root: the LFW folder (person folders, pairs files beside them) or a parent holding
            ``lfw/``, ``lfw-deepfunneled/``, ``lfw_funneled/`` or ``lfw-funneled/``; default: searched.
        split: "pairs" (10 folds x 600), "dev_train" (2,200) or "dev_test" (1,000).
        image_size, channels, transform: as in :class:`ImageFolderFaces`.
        on_missing: see :func:`read_pairs`.

    Attributes:
        pairs (list of :class:`Pair`), folds (list of lists of indices into the dataset), skipped.

    >>> ds = LFWPairs(split="dev_test", image_size=112)  # doctest: +SKIP
    >>> len(ds), ds[0][0].shape, ds[0][2]  # doctest: +SKIP
    (1000, torch.Size([3, 112, 112]), True)
    """

    def __init__(
        self, root=None, *, split="pairs", image_size=None, channels=3, transform=None, on_missing="raise"
    ):
        self.split = choice(split, PAIRS_FILES, name="split")
        self.image_size = check_size(image_size)
        self.channels = check_channels(channels)
        self.transform = transform
        self.images_dir = find_data_root("lfw", root)
        parsed = read_pairs(find_pairs_file(split, root), self.images_dir, on_missing=on_missing)
        self.pairs_file = parsed.path
        self.pairs: list[Pair] = parsed.pairs
        self.skipped = parsed.skipped
        self.folds: list[list[int]] = []
        start = 0
        for fold in parsed.folds:
            self.folds.append(list(range(start, start + len(fold))))
            start += len(fold)

    def _load(self, path: Path) -> torch.Tensor:
        img = load_float(path, channels=self.channels, image_size=self.image_size)
        return self.transform(img) if self.transform is not None else img

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        pair = self.pairs[index]
        return self._load(pair.path_a), self._load(pair.path_b), pair.is_same

    def __repr__(self) -> str:
        return f"LFWPairs(split={self.split!r}, pairs={len(self.pairs)}, folds={len(self.folds)})"


def lfw_people(root=None, min_images: int = 2, **kwargs) -> ImageFolderFaces:
    """LFW as classes: people with at least ``min_images`` images (1,680 people for 2).

    >>> ds = lfw_people(min_images=2, image_size=112)  # doctest: +SKIP
    >>> ds.num_classes  # doctest: +SKIP
    1680
    """
    return ImageFolderFaces(find_data_root("lfw", root), min_images=min_images, **kwargs)


# ---------------------------------------------------------------- the protocol: subsets, people, one evaluator
@dataclass(frozen=True)
class PairSubset:
    """Pairs chosen for an evaluation, with the fold of each (LFW: same-person ones first in every fold)."""

    paths_a: list  # (P,) image paths
    paths_b: list  # (P,)
    is_same: np.ndarray  # (P,) bool
    folds: list  # k index arrays into the P pairs
    images_dir: Path

    @property
    def images(self) -> list:
        """The distinct images, in first-use order."""
        return list(dict.fromkeys(p for pair in zip(self.paths_a, self.paths_b) for p in pair))

    @property
    def people(self) -> set:
        """The people (LFW: each image's folder name) of every pair."""
        return {Path(p).parent.name for p in self.images}


def lfw_pair_subset(lfw_root=None, *, split: str = "pairs", folds: Sequence[int] | None = None,
                    pairs_per_fold: int | None = None) -> PairSubset:
    """LFW's protocol pairs, optionally the first ``pairs_per_fold // 2`` same and different pairs of each fold.

    The subset is fixed (the file's order), so two models or two settings see the same pairs.
    """
    if pairs_per_fold is not None and pairs_per_fold < 2:
        raise ValueError(f"pairs_per_fold={pairs_per_fold} must be >= 2 (one same and one different pair) or None")
    images_dir = find_data_root("lfw", lfw_root)
    parsed = read_pairs(find_pairs_file(split, lfw_root), images_dir)
    chosen = range(len(parsed.folds)) if folds is None else list(folds)
    bad = [k for k in chosen if not 0 <= k < len(parsed.folds)]
    if bad:
        raise ValueError(f"folds={list(chosen)}: {bad} not in [0, {len(parsed.folds)}) for split {split!r}")
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


def people_outside_folds(lfw_root=None, *, split: str = "pairs", folds: Sequence[int] | None = None,
                         min_images: int = 1) -> dict[str, list[Path]]:
    """``{person: sorted images}`` of the LFW people in no pair of the given folds (all pairs of each fold).

    A model trained on them never sees a person it is evaluated on (LFW's folds are disjoint in people).

    Args:
        folds: the evaluated folds (default: all of ``split``).
        min_images: keep people with at least this many images (2 for a loss that needs pairs).
    """
    if min_images < 1:
        raise ValueError(f"min_images={min_images} must be >= 1")
    evaluated = lfw_pair_subset(lfw_root, split=split, folds=folds).people
    images_dir = find_data_root("lfw", lfw_root)
    out = {}
    for folder in sorted(d for d in images_dir.iterdir() if d.is_dir() and d.name not in evaluated):
        images = sorted(folder.glob("*.jpg"))
        if len(images) >= min_images:
            out[folder.name] = images
    return out


DISTANCES = ("euclidean", "cosine")


@dataclass(frozen=True)
class PairEvaluation:
    """The k-fold verification of a pair subset with one embedding function."""

    kfold: "KFoldResult"  # k-fold accuracy of score = -distance; threshold chosen on the other folds
    distances: np.ndarray  # (P,) distance of each pair's embeddings (NaN where a side has no embedding)
    is_same: np.ndarray  # (P,) bool
    num_images: int  # distinct images embedded
    num_without_face: int  # images the embedding function reported as not found (0 if it reports nothing)
    kept: np.ndarray  # (P,) bool: both sides have an embedding (the pairs the k-fold rule used)
    distance: str  # "euclidean" or "cosine" (1 - cosine similarity)

    @property
    def scores(self) -> np.ndarray:
        """(P,) similarity scores (higher = more alike): ``-distances``."""
        return -self.distances


def pair_distances(emb_a, emb_b, distance: str = "euclidean") -> np.ndarray:
    """(P,) float64 distances of (P, D) embeddings: Euclidean, or ``1 - cosine similarity``."""
    from facekit.metrics.verification import cosine_scores

    choice(distance, DISTANCES, name="distance")
    a, b = np.asarray(emb_a, np.float64), np.asarray(emb_b, np.float64)
    if distance == "cosine":
        return 1.0 - cosine_scores(a, b)
    return np.linalg.norm(a - b, axis=1)


def _split_embed_output(out, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    emb, found = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
    emb = np.asarray(emb.detach().cpu() if isinstance(emb, torch.Tensor) else emb, dtype=np.float64)
    if emb.ndim != 2 or len(emb) != n:
        raise ValueError(f"the embedding function returned shape {emb.shape} for {n} images; expected ({n}, D)")
    return emb, None if found is None else np.asarray(found, bool).reshape(-1)


def evaluate_pairs(subset: PairSubset, embed: Callable, *, distance: str = "euclidean") -> PairEvaluation:
    """The verification protocol on ``subset`` with any embedding function: the one evaluator.

    Each distinct image is embedded once; a pair's score is minus the distance of its two
    embeddings; the k-fold rule (:func:`facekit.metrics.kfold_accuracy`) picks each fold's threshold
    on the other folds (``subset.folds``; one fold: 10 contiguous splits). Images whose embedding is
    NaN (a pipeline told to skip faceless photos) drop their pairs from the k-fold rule (``kept``).

    Args:
        subset: the pairs (:func:`lfw_pair_subset`, or ``facekit.verify.read_pair_list`` for any list).
        embed: ``paths -> (N, D) array`` or ``(array, found (N,) bool)``.
        distance: "euclidean" or "cosine".

    >>> sub = PairSubset(["a", "a", "b", "c"], ["b", "c", "c", "d"], np.array([1, 0, 1, 0], bool),
    ...                  [np.arange(2), np.arange(2, 4)], Path("."))
    >>> table = {"a": [0.0, 1.0], "b": [0.1, 1.0], "c": [1.0, 0.0], "d": [0.0, -1.0]}
    >>> r = evaluate_pairs(sub, lambda paths: np.array([table[p] for p in paths]))
    >>> r.kfold.mean, r.num_images
    (0.75, 4)
    """
    from facekit.metrics.verification import kfold_accuracy

    images = subset.images
    emb, found = _split_embed_output(embed(images), len(images))
    row = {p: i for i, p in enumerate(images)}
    a = emb[[row[p] for p in subset.paths_a]]
    b = emb[[row[p] for p in subset.paths_b]]
    distances = pair_distances(a, b, distance)  # (P,)
    kept = np.isfinite(distances)
    new_index = np.cumsum(kept) - 1
    folds = [new_index[f[kept[f]]] for f in subset.folds]
    folds = [f for f in folds if len(f)]
    kfold = kfold_accuracy(-distances[kept], subset.is_same[kept], folds=folds if len(folds) > 1 else 10)
    without = 0 if found is None else int((~found).sum())
    return PairEvaluation(kfold, distances, subset.is_same, len(images), without, kept, distance)
