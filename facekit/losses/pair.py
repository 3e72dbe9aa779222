"""Metric-learning losses on embeddings: contrastive (pairs), triplet (with mining) and center loss.

Each loss takes a distance object (:mod:`facekit.losses.distances`) and works on "larger =
farther" values ``d = distance.as_distance(...)``: a Euclidean distance as is, a cosine
similarity ``s`` as ``1 - s``. Mining only picks indices (without gradients); the loss is then
computed on the picked entries of the distance matrix, so gradients reach exactly those pairs.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from facekit.config import ConfigError, choice
from facekit.losses.distances import EuclideanDistance

Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (anchor, positive, negative) index tensors, (T,) each


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) labels -> (B, B) positive mask (same label, not itself) and negative mask (other label)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def _check_batch(dist: torch.Tensor, labels: torch.Tensor) -> None:
    b = labels.shape[0]
    if labels.ndim != 1 or dist.shape != (b, b):
        raise ValueError(f"expected a (B, B) distance matrix and (B,) labels, got {tuple(dist.shape)} "
                         f"and {tuple(labels.shape)}")


@torch.no_grad()
def batch_hard_mining(dist: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hardest positive and hardest negative of every anchor (Hermans et al. 2017, "batch hard").

    Args:
        dist: (B, B) distances, larger = farther (pass ``1 - s`` for similarities).
        labels: (B,) identity labels.

    Returns:
        ``(pos_idx, neg_idx)``, (B,) each: ``argmax_p d[a, p]`` over the other samples of the
        anchor's identity and ``argmin_n d[a, n]`` over the other identities; -1 where the
        anchor has no positive (or no negative). Ties go to the lowest index.

    >>> x = torch.tensor([0.0, 1.0, 5.0, 6.0])  # points on a line, two identities
    >>> batch_hard_mining((x[:, None] - x[None, :]).abs(), torch.tensor([0, 0, 1, 1]))
    (tensor([1, 0, 3, 2]), tensor([2, 2, 1, 1]))
    """
    _check_batch(dist, labels)
    pos_mask, neg_mask = _masks(labels)
    pos_idx = dist.masked_fill(~pos_mask, float("-inf")).argmax(1)  # (B,) farthest same-identity sample
    neg_idx = dist.masked_fill(~neg_mask, float("inf")).argmin(1)  # (B,) closest other-identity sample
    pos_idx[~pos_mask.any(1)] = -1
    neg_idx[~neg_mask.any(1)] = -1
    return pos_idx, neg_idx


@torch.no_grad()
def semi_hard_mining(dist: torch.Tensor, labels: torch.Tensor, margin: float) -> Triplets:
    """One negative for every (anchor, positive) pair, FaceNet's "semi-hard" rule (Schroff et al. 2015).

    For each pair with ``d_ap = d[a, p]``, the semi-hard negatives are those farther than the
    positive but within the margin, ``d_ap < d[a, n] < d_ap + margin``; of these the closest
    (hardest) one is taken. When there is none, the fallback is the hardest negative overall,
    ``argmin_n d[a, n]`` (it gives zero loss if every negative is beyond the margin; TensorFlow
    Addons' ``triplet_semihard_loss`` instead falls back to the farthest negative).

    Args:
        dist: (B, B) distances, larger = farther.
        labels: (B,) identity labels.
        margin: the triplet margin, in the units of `dist`.

    Returns:
        ``(anchor_idx, pos_idx, neg_idx)``, (T,) each, T = number of (anchor, positive) pairs
        whose anchor has a negative, in row-major order of (anchor, positive).

    >>> x = torch.tensor([0.0, 1.0, 1.5, 3.0])
    >>> semi_hard_mining((x[:, None] - x[None, :]).abs(), torch.tensor([0, 0, 1, 1]), margin=1.0)
    (tensor([0, 1, 2, 3]), tensor([1, 0, 3, 2]), tensor([2, 2, 1, 1]))
    """
    _check_batch(dist, labels)
    pos_mask, neg_mask = _masks(labels)
    anchor, pos = torch.nonzero(pos_mask & neg_mask.any(1, keepdim=True), as_tuple=True)  # (T,) each
    d_an = dist[anchor]  # (T, B) distances from each pair's anchor
    d_ap = dist[anchor, pos][:, None]  # (T, 1)
    is_neg = neg_mask[anchor]  # (T, B)
    semi = is_neg & (d_an > d_ap) & (d_an < d_ap + margin)
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    hardest_semi = torch.where(semi, d_an, inf).argmin(1)
    hardest = torch.where(is_neg, d_an, inf).argmin(1)
    return anchor, pos, torch.where(semi.any(1), hardest_semi, hardest)


@torch.no_grad()
def all_triplets(labels: torch.Tensor) -> Triplets:
    """Every valid triplet ``(a, p, n)``: ``y_a = y_p``, ``a != p``, ``y_n != y_a``; (T,) index tensors.

    >>> [t.tolist() for t in all_triplets(torch.tensor([0, 0, 1]))]
    [[0, 1], [1, 0], [2, 2]]
    """
    pos_mask, neg_mask = _masks(labels)
    valid = pos_mask[:, :, None] & neg_mask[:, None, :]  # (B, B, B): [a, p, n]
    return torch.nonzero(valid, as_tuple=True)


def _batch_hard_triplets(dist, labels, margin) -> Triplets:
    pos, neg = batch_hard_mining(dist, labels)
    valid = (pos >= 0) & (neg >= 0)
    return torch.arange(labels.shape[0], device=labels.device)[valid], pos[valid], neg[valid]


def _mean(losses: torch.Tensor) -> torch.Tensor:
    return losses.mean()


def _mean_of_positive(losses: torch.Tensor) -> torch.Tensor:
    positive = losses > 0
    return losses.sum() / positive.sum().clamp(min=1)  # 0 when no triplet violates the margin


# mining -> (triplet picker (dist, labels, margin) -> (a, p, n), reduction of the per-triplet losses)
TRIPLET_MINING: dict[str, tuple[Callable[..., Triplets], Callable[[torch.Tensor], torch.Tensor]]] = {
    "batch_hard": (_batch_hard_triplets, _mean),  # one triplet per anchor, mean over anchors (Hermans et al.)
    "semi_hard": (lambda d, y, m: semi_hard_mining(d, y, m), _mean),  # one per (a, p) pair, mean (FaceNet)
    "all": (lambda d, y, m: all_triplets(y), _mean_of_positive),  # all, mean over the violating ones
}


class TripletLoss(nn.Module):
    """Triplet loss ``max(0, d(a, p) - d(a, n) + margin)`` on a batch of (embeddings, labels).

    Args:
        margin: in the units of the distance (for unit embeddings, Euclidean distances are in [0, 2]).
        distance: a distance object; ``EuclideanDistance()`` by default (similarities are used as ``1 - s``).
        mining: which triplets, one of ``TRIPLET_MINING``:

            * ``"batch_hard"``: per anchor, its hardest positive and hardest negative
              (:func:`batch_hard_mining`); the mean over anchors that have both.
            * ``"semi_hard"``: per (anchor, positive) pair, a semi-hard negative
              (:func:`semi_hard_mining`); the mean over pairs.
            * ``"all"``: every valid triplet; the mean over those with a positive loss.

    Returns a scalar; 0 (still attached to the graph) when the batch has no triplet.

    >>> loss = TripletLoss(margin=0.2, mining="batch_hard")
    >>> emb = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.5, 0.0], [0.5, 1.0]])
    >>> round(loss(emb, torch.tensor([0, 0, 1, 1])).item(), 4)  # d_ap = 1, d_an = 0.5 for every anchor
    0.7
    """

    def __init__(self, margin: float = 0.2, distance=None, mining: str = "batch_hard"):
        super().__init__()
        if margin < 0:
            raise ConfigError(f"margin={margin} must be >= 0")
        self.margin = float(margin)
        self.distance = EuclideanDistance() if distance is None else distance
        self.mining = choice(mining, TRIPLET_MINING, name="mining")

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings, (B,) labels -> scalar loss."""
        if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
            raise ValueError(f"expected (B, D) embeddings and (B,) labels, got {tuple(embeddings.shape)} "
                             f"and {tuple(labels.shape)}")
        dist = self.distance.as_distance(self.distance.pairwise(embeddings))  # (B, B), larger = farther
        pick, reduce = TRIPLET_MINING[self.mining]
        a, p, n = pick(dist.detach(), labels, self.margin)
        if a.numel() == 0:
            return dist.sum() * 0.0
        return reduce(F.relu(dist[a, p] - dist[a, n] + self.margin))

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance}, mining={self.mining!r}"


class ContrastiveLoss(nn.Module):
    """Contrastive loss of Hadsell, Chopra & LeCun (2006) on pairs of embeddings.

    For a pair at distance d with ``y = 1`` (same identity) or ``y = 0``:

        squared=True  (Hadsell):                  y d^2 + (1 - y) max(0, margin - d)^2
        squared=False (pytorch-metric-learning):  y d   + (1 - y) max(0, margin - d)

    averaged over the pairs (Hadsell's factor 1/2 is left out). Same pairs are pulled together,
    different pairs pushed apart until they are ``margin`` apart.

    Args:
        margin: distance beyond which a different pair costs nothing (units of the distance).
        distance: a distance object, ``EuclideanDistance()`` by default; a cosine similarity
            ``s`` is used as the cosine distance ``1 - s`` (then margin is in [0, 2]).
        squared: square the two terms (Hadsell) or not.

    >>> loss = ContrastiveLoss(margin=1.0)
    >>> a, b = torch.zeros(2, 2), torch.tensor([[0.0, 0.5], [0.0, 0.25]])
    >>> loss(a, b, torch.tensor([True, False]))  # (0.5^2 + (1 - 0.25)^2) / 2
    tensor(0.4062)
    """

    def __init__(self, margin: float = 1.0, distance=None, squared: bool = True):
        super().__init__()
        if margin < 0:
            raise ConfigError(f"margin={margin} must be >= 0")
        self.margin, self.squared = float(margin), bool(squared)
        self.distance = EuclideanDistance() if distance is None else distance

    def forward(self, emb_a: torch.Tensor, emb_b: torch.Tensor, is_same: torch.Tensor) -> torch.Tensor:
        """(N, D), (N, D) embeddings of the two sides of N pairs, (N,) bool or 0/1 -> scalar loss."""
        if emb_a.shape != emb_b.shape or emb_a.ndim != 2 or is_same.shape != emb_a.shape[:1]:
            raise ValueError(f"expected (N, D), (N, D) embeddings and (N,) is_same, got {tuple(emb_a.shape)}, "
                             f"{tuple(emb_b.shape)} and {tuple(is_same.shape)}")
        d = self.distance.as_distance(self.distance.paired(emb_a, emb_b))  # (N,)
        y = is_same.to(d.dtype)
        pull, push = d, F.relu(self.margin - d)
        if self.squared:
            pull, push = pull ** 2, push ** 2
        return (y * pull + (1.0 - y) * push).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance}, squared={self.squared}"


class CenterLoss(nn.Module):
    """Center loss of Wen et al. (2016): ``1/2 ||x_i - c_{y_i}||^2``, averaged over the batch.

    Used beside a softmax loss (``ce + lambda * center``) to make each identity compact. The
    paper sums over the batch; the mean here keeps ``lambda`` independent of the batch size.

    Centers, (K, D), are updated in one of two ways:

    * ``alpha`` a float (default 0.5, the paper's rule): centers are a buffer, not trained by the
      optimiser; after computing the loss, in training mode, each center of the batch moves
      ``c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)``, n_j = its count in the batch.
    * ``alpha=None``: centers are an ``nn.Parameter`` learned by the optimiser with the rest
      (put the loss inside the model so ``fit`` optimises them).

    Args:
        num_classes: K.
        dim: D, the embedding width.
        alpha: the center learning rate in (0, 1], or None.

    >>> loss = CenterLoss(num_classes=2, dim=2, alpha=0.5)
    >>> with torch.no_grad():
    ...     _ = loss.centers.zero_()
    >>> loss(torch.tensor([[2.0, 0.0]]), torch.tensor([1]))  # 1/2 * 2^2
    tensor(2.)
    >>> loss.centers[1]  # 0 - 0.5 * (0 - 2) / (1 + 1)
    tensor([0.5000, 0.0000])
    """

    def __init__(self, num_classes: int, dim: int, alpha: float | None = 0.5):
        super().__init__()
        if alpha is not None and not 0 < alpha <= 1:
            raise ConfigError(f"alpha={alpha} must be in (0, 1] (or None: centers learned by the optimiser)")
        self.num_classes, self.dim, self.alpha = num_classes, dim, alpha
        centers = torch.randn(num_classes, dim)
        if alpha is None:
            self.centers = nn.Parameter(centers)
        else:
            self.register_buffer("centers", centers)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings, (B,) labels -> scalar loss (and, with alpha in training, the center update)."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim or labels.shape != embeddings.shape[:1]:
            raise ValueError(f"expected (B, {self.dim}) embeddings and (B,) labels, got {tuple(embeddings.shape)} "
                             f"and {tuple(labels.shape)}")
        labels = labels.long()
        centers = self.centers.to(embeddings.dtype)
        loss = 0.5 * ((embeddings - centers[labels]) ** 2).sum(1).mean()
        if self.alpha is not None and self.training:
            self._update_centers(embeddings.detach(), labels)
        return loss

    @torch.no_grad()
    def _update_centers(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        c = self.centers
        diff = torch.zeros_like(c).index_add_(0, labels, (c[labels] - x.to(c.dtype)))  # (K, D): sum_i (c_j - x_i)
        count = torch.zeros(c.shape[0], dtype=c.dtype, device=c.device).index_add_(
            0, labels, torch.ones_like(labels, dtype=c.dtype))  # (K,) n_j
        c -= self.alpha * diff / (1.0 + count)[:, None]

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dim={self.dim}, alpha={self.alpha}"


__all__ = ["batch_hard_mining", "semi_hard_mining", "all_triplets", "TRIPLET_MINING", "TripletLoss",
           "ContrastiveLoss", "CenterLoss"]
