"""Distances and similarities between embeddings, passed as objects to the pair losses.

As in pytorch-metric-learning (``distances/``), a distance object knows two things the
losses need: how to compare every row of ``a`` with every row of ``b`` (``pairwise``,
``(N, D), (M, D) -> (N, M)``) or row ``i`` of ``a`` with row ``i`` of ``b`` (``paired``,
``(N, D), (N, D) -> (N,)``), and whether a larger value means closer (``is_similarity``).
``as_distance`` turns either kind into "larger = farther" values, so a loss is written once:
cosine similarity ``s`` becomes the cosine distance ``1 - s`` in [0, 2].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F


def _safe_sqrt(squared: torch.Tensor) -> torch.Tensor:
    """sqrt of non-negative values whose gradient at 0 is 0 instead of inf (d sqrt(x)/dx = 1 / (2 sqrt(x)))."""
    positive = squared > 0
    root = torch.sqrt(torch.where(positive, squared, torch.ones_like(squared)))  # no sqrt(0) in the graph
    return torch.where(positive, root, torch.zeros_like(squared))


@dataclass(frozen=True)
class CosineSimilarity:
    """Cosine of the angle between embeddings, in [-1, 1]; larger = more alike.

    >>> a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> CosineSimilarity().pairwise(a, a)
    tensor([[1., 0.],
            [0., 1.]])
    >>> CosineSimilarity().paired(a, torch.tensor([[3.0, 0.0], [0.0, -1.0]]))
    tensor([ 1., -1.])
    """

    is_similarity: ClassVar[bool] = True

    def pairwise(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        """(N, D), (M, D) -> (N, M) cosines; `b` defaults to `a`."""
        b = a if b is None else b
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T

    def paired(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(N, D), (N, D) -> (N,) cosines of the rows of equal index."""
        return (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1)

    def as_distance(self, values: torch.Tensor) -> torch.Tensor:
        """Cosine similarities -> cosine distances ``1 - s`` (larger = farther)."""
        return 1.0 - values

    __call__ = pairwise


@dataclass(frozen=True)
class EuclideanDistance:
    """L2 distance ``||a - b||`` (or its square with ``squared=True``); smaller = more alike.

    The square root has an infinite derivative at 0, so where two embeddings coincide the
    gradient is taken as 0 (the distance's subgradient) instead of NaN.

    >>> a = torch.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True)
    >>> d = EuclideanDistance().pairwise(a)
    >>> d.detach()
    tensor([[0., 5.],
            [5., 0.]])
    >>> d.sum().backward(); bool(torch.isfinite(a.grad).all())
    True
    """

    squared: bool = False  # True: ||a - b||^2, no square root
    is_similarity: ClassVar[bool] = False

    def pairwise(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        """(N, D), (M, D) -> (N, M) distances; `b` defaults to `a`."""
        b = a if b is None else b
        # ||a||^2 + ||b||^2 - 2 a.b: no (N, M, D) difference tensor; clamp the rounding below 0
        sq = (a * a).sum(-1)[:, None] + (b * b).sum(-1)[None, :] - 2.0 * (a @ b.T)  # (N, M)
        sq = sq.clamp(min=0.0)
        return sq if self.squared else _safe_sqrt(sq)

    def paired(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(N, D), (N, D) -> (N,) distances of the rows of equal index."""
        sq = ((a - b) ** 2).sum(-1)
        return sq if self.squared else _safe_sqrt(sq)

    def as_distance(self, values: torch.Tensor) -> torch.Tensor:
        """Already a distance: returned unchanged."""
        return values

    __call__ = pairwise


DISTANCES = {"cosine": CosineSimilarity, "euclidean": EuclideanDistance}

__all__ = ["CosineSimilarity", "EuclideanDistance", "DISTANCES"]
