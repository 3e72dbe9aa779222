"""Knowledge distillation of embeddings: a small student learns to reproduce a large teacher's embeddings.

The student sees the teacher's input (a face chip), and its L2-normalised embedding is pulled towards the
teacher's: ``loss = cosine_weight * (1 - cos(s, t)) + mse_weight * |s_hat - t_hat|^2`` with ``s_hat``,
``t_hat`` unit vectors. Only the direction matters for cosine scoring, so no identity labels are needed:
any face the teacher can embed is a training example (the teacher's embeddings are computed once).
:class:`ChipInput` lets a student built for a smaller size take the teacher's chips, so both have the
same input convention and latencies compare like with like.

>>> loss = EmbeddingDistillLoss()
>>> float(loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]])))
0.0
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DistillConfig:
    cosine_weight: float = 1.0  # weight of 1 - cos(student, teacher)
    mse_weight: float = 0.0  # weight of the squared distance of the unit vectors (= 2 (1 - cos): same gradient dir)

    def __post_init__(self):
        if self.cosine_weight < 0 or self.mse_weight < 0 or self.cosine_weight + self.mse_weight == 0:
            raise ValueError(f"weights must be >= 0 and not both 0, got cosine_weight={self.cosine_weight}, "
                             f"mse_weight={self.mse_weight}")


class EmbeddingDistillLoss(nn.Module):
    """``loss(student (B, D), teacher (B, D))``: mean over the batch of the weighted cosine and MSE terms."""

    def __init__(self, config: DistillConfig | None = None, **overrides):
        super().__init__()
        base = config or DistillConfig()
        self.config = DistillConfig(**{**base.__dict__, **overrides})

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if student.shape != teacher.shape or student.ndim != 2:
            raise ValueError(f"expected two (B, D) tensors of one shape, got {tuple(student.shape)} and "
                             f"{tuple(teacher.shape)}; build the student with the teacher's embedding_dim")
        s, t = F.normalize(student.float(), dim=1), F.normalize(teacher.float(), dim=1)
        cos = (s * t).sum(1)  # (B,)
        loss = self.config.cosine_weight * (1 - cos).mean()
        if self.config.mse_weight:
            loss = loss + self.config.mse_weight * ((s - t) ** 2).sum(1).mean()
        return loss


def mean_cosine(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """Mean cosine similarity of matching rows (a metric for ``fit``)."""
    return float(F.cosine_similarity(student.float(), teacher.float(), dim=1).mean())


class ChipInput(nn.Module):
    """Wrap a network built for ``size`` x ``size`` inputs in [-1, 1] so it takes RGB chips in [0, 255] of any size.

    >>> net = ChipInput(nn.Flatten(), 4)
    >>> net(torch.full((1, 3, 8, 8), 255.0)).shape
    torch.Size([1, 48])
    """

    def __init__(self, model: nn.Module, size: int):
        super().__init__()
        self.model, self.size = model, int(size)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in [0, 255]
        x = chips.float() / 127.5 - 1.0
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return self.model(x)  # (B, D)


__all__ = ["DistillConfig", "EmbeddingDistillLoss", "mean_cosine", "ChipInput"]
