"""Splits that keep every identity on both sides, and an in-memory image dataset."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


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
