"""A closed set of faces in memory: every image of every person, preprocessed once.

Closed-set classification (chapters 1 and 2) trains and tests on the *same* people; the split into
train/val/test is per person afterwards (:func:`facekit.data.split_per_identity`).

>>> cs = load_closed_set("synthetic", identities=3, per_identity=2, image_size=32)
>>> tuple(cs.images.shape), cs.labels.tolist(), cs.classes
((6, 3, 32, 32), [0, 0, 1, 1, 2, 2], ['id000', 'id001', 'id002'])
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from facekit.data.registry import load_dataset
from facekit.data.splits import TensorImages
from facekit.data.synthetic import SyntheticFaces
from facekit.data.transforms import preprocess

LFW_CROP = 0.5  # LFW's faces fill about the central half of each 250-pixel photo
PHOTO_CROP = 0.9  # other photo sets (ORL, folders): trim the border a little


class ClosedSet(NamedTuple):
    images: torch.Tensor  # (N, C, S, S) float32 in [0, 1]
    labels: torch.Tensor  # (N,) int64, 0..K-1
    classes: list  # K names, classes[label]
    source: object  # the dataset the images came from (SyntheticFaces, ImageFolderFaces, ...)


def load_closed_set(name, *, identities: int, per_identity: int, image_size: int, seed: int = 0,
                    channels: int = 3, root=None, lfw_min_images: int = 20, difficulty="medium") -> ClosedSet:
    """Every image of a closed set as (N, C, S, S) floats in [0, 1], with labels, class names and the source.

    Args:
        name: "synthetic", a registered real dataset ("orl", "lfw") or a folder ``root/<person>/<image>``
            (see :func:`facekit.data.load_dataset`).
        identities, per_identity: people and images per person of the synthetic set (real sets keep
            all their people and images).
        image_size: side ``S`` in pixels after preprocessing.
        seed, difficulty: of the synthetic faces.
        channels: 3 (RGB) or 1 (grey).
        root: where to look for a real dataset.
        lfw_min_images: LFW keeps only people with at least this many images.

    Real photos are centre-cropped (LFW to its central half, others to 90%) and resized by
    :func:`facekit.data.transforms.preprocess`.
    """
    if name == "synthetic":
        ds = SyntheticFaces(identities, per_identity, image_size, seed=seed, channels=channels, difficulty=difficulty)
        images, labels = ds.tensors()
        return ClosedSet(images, labels, ds.classes, ds)
    kwargs = {"min_images": lfw_min_images} if name == "lfw" else {}
    ds = load_dataset(name, root=root, channels=channels, **kwargs)
    prep = preprocess(image_size, channels=channels, crop=LFW_CROP if name == "lfw" else PHOTO_CROP)
    data = TensorImages.from_dataset(ds)
    return ClosedSet(torch.stack([prep(x) for x in data.images]), data.labels, ds.classes, ds)


__all__ = ["ClosedSet", "load_closed_set", "LFW_CROP", "PHOTO_CROP"]
