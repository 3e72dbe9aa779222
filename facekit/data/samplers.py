"""Batches of P identities x K images each, as pair and triplet losses need ("P-K sampling").

A random batch of 64 images from 200 people holds about ten same-person pairs; a triplet or
contrastive loss needs many. :class:`IdentityBatchSampler` picks P identities and K images of
each (Hermans, Beyer & Leibe 2017, "In defense of the triplet loss"), so every batch has
P * K * (K - 1) / 2 genuine pairs. Pass it to a ``DataLoader`` as ``batch_sampler``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class IdentityBatchSampler(Sampler[list[int]]):
    """Yield batches of ``identities_per_batch`` distinct identities x ``images_per_identity`` images.

    Within a batch, each identity's K images are drawn without replacement when it has at least
    K images, with replacement otherwise (then the batch repeats some images). Each pass over the
    sampler (an epoch) draws new batches from ``(seed, epoch)``, the epoch counting the passes
    (or set with :meth:`set_epoch`), so runs are reproducible.

    Args:
        labels: (N,) identity of each dataset item.
        identities_per_batch: P (at most the number of identities).
        images_per_identity: K (>= 1; >= 2 for positives).
        num_batches: batches per epoch; default ``N // (P * K)``, about one pass over the images.
        seed: seeds the draws.

    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> labels = torch.arange(6).repeat_interleave(3)  # 6 people x 3 images
    >>> sampler = IdentityBatchSampler(labels, identities_per_batch=2, images_per_identity=3)
    >>> batch = next(iter(sampler))
    >>> len(sampler), len(batch), len(set(labels[batch].tolist()))
    (3, 6, 2)
    >>> loader = DataLoader(TensorDataset(torch.zeros(18, 1), labels), batch_sampler=sampler)
    """

    def __init__(self, labels, identities_per_batch: int, images_per_identity: int,
                 num_batches: int | None = None, seed: int = 0):
        y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        if y.ndim != 1 or len(y) == 0:
            raise ValueError(f"labels must be a non-empty (N,) array, got shape {y.shape}")
        self.identities, inverse = np.unique(y, return_inverse=True)
        self._members = [np.flatnonzero(inverse == i) for i in range(len(self.identities))]
        p, k = identities_per_batch, images_per_identity
        if not 1 <= p <= len(self.identities):
            raise ValueError(f"identities_per_batch={p} must be between 1 and the number of identities "
                             f"({len(self.identities)})")
        if k < 1:
            raise ValueError(f"images_per_identity={k} must be >= 1")
        self.p, self.k, self.seed, self.epoch = int(p), int(k), int(seed), 0
        self.num_batches = max(1, len(y) // (p * k)) if num_batches is None else int(num_batches)
        if self.num_batches < 1:
            raise ValueError(f"num_batches={num_batches} must be >= 1")

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of `epoch` on the next pass (as DistributedSampler.set_epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        for _ in range(self.num_batches):
            chosen = rng.choice(len(self._members), size=self.p, replace=False)  # (P,) identities
            batch = []
            for c in chosen:
                members = self._members[c]
                batch += rng.choice(members, size=self.k, replace=len(members) < self.k).tolist()
            yield batch  # (P * K,) dataset indices, identity-major


__all__ = ["IdentityBatchSampler"]
