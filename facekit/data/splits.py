"""Splits: per identity (closed set: every person on both sides) and by person (open set), and an
in-memory image dataset."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from facekit.data.synthetic import SyntheticFaces


def split_per_identity(targets: Sequence[int], n_test: int | float, *, n_val: int | float = 0,
                       seed: int = 0) -> tuple[list[int], list[int], list[int]]:
    """Indices (train, val, test): from each identity `n_val` images to val and `n_test` to test.

    Counts may be ints (images per identity) or fractions of each identity's images. Every
    identity keeps at least one training image, or a ValueError names the identity.

    >>> train, val, test = split_per_identity([0, 0, 0, 1, 1, 1], n_test=1, seed=0)
    >>> len(train), len(val), len(test)
    (4, 0, 2)
    """
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for label in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == label))
        k_test = int(round(n_test * len(idx))) if isinstance(n_test, float) else n_test
        k_val = int(round(n_val * len(idx))) if isinstance(n_val, float) else n_val
        if k_test + k_val >= len(idx):
            raise ValueError(f"identity {label} has {len(idx)} images: too few for n_test={n_test}, n_val={n_val}"
                             " and at least one training image")
        test += idx[:k_test].tolist()
        val += idx[k_test:k_test + k_val].tolist()
        train += idx[k_test + k_val:].tolist()
    return sorted(train), sorted(val), sorted(test)


class TensorImages(Dataset):
    """Images held in memory, (N, C, H, W) float in [0, 1], with labels and an optional transform.

    >>> ds = TensorImages(torch.zeros(4, 3, 8, 8), torch.tensor([0, 1, 0, 1]))
    >>> ds[1][0].shape, ds[1][1]
    (torch.Size([3, 8, 8]), 1)
    """

    def __init__(self, images: torch.Tensor, labels, transform=None):
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        labels = torch.as_tensor(labels, dtype=torch.long)
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform = images, labels, transform
        self.targets = labels.tolist()

    @classmethod
    def from_dataset(cls, dataset, indices=None, transform=None) -> "TensorImages":
        """Load `dataset[i]` for every index once (decode/render once, augment every epoch)."""
        indices = range(len(dataset)) if indices is None else indices
        items = [dataset[i] for i in indices]
        return cls(torch.stack([x for x, _ in items]), [int(y) for _, y in items], transform)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])


def split_people(people, n_train: int, n_test: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, test) arrays of people drawn at random: the open-set split.

    A set with fewer than ``n_train + n_test`` people is split in the same proportion, keeping at least
    two test people (a verification test needs impostor pairs).

    >>> train, test = split_people(range(10), 6, 3, seed=0)
    >>> len(train), len(test), set(train) & set(test)
    (6, 3, set())
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train={n_train} and n_test={n_test} must both be >= 1")
    people = np.random.default_rng(seed).permutation(np.asarray(list(people)))
    if len(people) < 3:
        raise ValueError(f"{len(people)} people cannot be split into training and >= 2 test people")
    if len(people) < n_train + n_test:  # keep the proportion, at least 2 test people
        n_test = min(len(people) - 1, max(2, round(len(people) * n_test / (n_train + n_test))))
        n_train = len(people) - n_test
    return people[n_test:n_test + n_train], people[:n_test]


class OpenSet(NamedTuple):
    x_train: torch.Tensor  # (N_train, C, S, S) images of the training people
    y_train: torch.Tensor  # (N_train,) their labels, 0..n_train-1
    x_test: torch.Tensor  # (N_test, C, S, S) images of other people
    y_test: torch.Tensor  # (N_test,) their labels, n_train..n_train+n_test-1


def synthetic_open_set(n_train: int, train_per_id: int, n_test: int, test_per_id: int, image_size: int, *,
                       seed: int = 0, **faces) -> OpenSet:
    """Synthetic faces split by person: identities ``0..n_train-1`` to train, the next ``n_test`` to test.

    Identity ``i`` is the same person in every :class:`~facekit.data.SyntheticFaces` with one seed, so
    the test people are rendered from a generator of ``n_train + n_test`` people, keeping those
    ``>= n_train``; no test person is a training person. ``faces`` go to SyntheticFaces (``difficulty``,
    ``channels``).

    >>> s = synthetic_open_set(3, 2, 2, 2, 32, difficulty="easy")
    >>> s.y_train.tolist(), s.y_test.tolist()
    ([0, 0, 1, 1, 2, 2], [3, 3, 4, 4])
    """
    x_train, y_train = SyntheticFaces(n_train, train_per_id, image_size, seed=seed, **faces).tensors()
    everyone = SyntheticFaces(n_train + n_test, test_per_id, image_size, seed=seed, **faces)
    test = TensorImages.from_dataset(everyone, range(n_train * test_per_id, len(everyone)))  # identity-major
    return OpenSet(x_train, y_train, test.images, test.labels)
