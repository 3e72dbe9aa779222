"""The classifier that margin heads plug into, and the glue to train an embedding net with ``fit``.

``MarginClassifier`` holds one weight vector per identity, ``W`` of shape (K, D). With a
normalised head (NormFace, SphereFace, CosFace, ArcFace, combined) it computes

    cos = normalize(x) @ normalize(W).T          (B, K), cos[i, k] = cos(theta_ik)

and hands ``cos`` and the labels to the head, which returns the logits for cross-entropy; at
evaluation (no labels) the logits are ``s * cos``. With :class:`PlainSoftmax` it is a plain
``nn.Linear`` (``W x + b``): the softmax baseline. Training the embedding net means training
``MarginModel(backbone, classifier)``; after training only the backbone's embeddings are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facekit.losses.margins import MarginHead, PlainSoftmax

WEIGHT_INIT_STD = 0.01  # insightface's normal(0, 0.01) init of the class centres of normalised heads


class MarginClassifier(nn.Module):
    """Class weights + a margin head: (B, D) embeddings [+ (B,) labels] -> (B, K) logits.

    Args:
        embedding_dim: D, the width of the embeddings.
        num_classes: K, the number of training identities.
        head: a :class:`MarginHead` (e.g. ``ArcFace()``); it defines the logits.

    >>> from facekit.losses import ArcFace
    >>> clf = MarginClassifier(8, 5, ArcFace(s=64.0, margin_rad=0.5))
    >>> x, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    >>> loss = F.cross_entropy(clf(x, y), y)  # with the margin: training
    >>> clf(x).shape  # s * cos without the margin: evaluation
    torch.Size([4, 5])
    """

    def __init__(self, embedding_dim: int, num_classes: int, head: MarginHead):
        super().__init__()
        if not isinstance(head, MarginHead):
            raise TypeError(f"head must be a MarginHead (e.g. facekit.losses.ArcFace()), got {type(head).__name__}")
        self.embedding_dim, self.num_classes, self.head = embedding_dim, num_classes, head
        if head.normalized:
            self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim).normal_(0.0, WEIGHT_INIT_STD))
            self.register_parameter("bias", None)
        else:  # the softmax baseline: nn.Linear's parameters and initialisation
            linear = nn.Linear(embedding_dim, num_classes)
            self.weight, self.bias = linear.weight, linear.bias  # (K, D), (K,)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, K): cosines for a normalised head, raw ``W x + b`` for ``PlainSoftmax``."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"expected (B, {self.embedding_dim}) embeddings, got {tuple(embeddings.shape)}")
        if not self.head.normalized:
            return F.linear(embeddings, self.weight, self.bias)
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))  # (B, K)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) embeddings [, (B,) labels] -> (B, K) logits: head(cos, labels), or ``s * cos`` without labels."""
        cos = self.cosine(embeddings)
        if labels is None:
            return self.head.s * cos
        return self.head(cos, labels)


def softmax_cross_entropy(embedding_dim: int, num_classes: int) -> MarginClassifier:
    """The softmax baseline: a ``MarginClassifier`` with ``PlainSoftmax``, i.e. an ``nn.Linear`` for cross-entropy.

    >>> clf = softmax_cross_entropy(8, 3)
    >>> torch.equal(clf(torch.ones(1, 8)), F.linear(torch.ones(1, 8), clf.weight, clf.bias))
    True
    """
    return MarginClassifier(embedding_dim, num_classes, PlainSoftmax())


class MarginModel(nn.Module):
    """An embedding backbone and its training classifier, so ``fit`` optimises both.

    ``forward(x, labels)`` returns the margin logits (training), ``forward(x)`` the
    margin-free ``s * cos`` logits (evaluation, accuracy); ``embed(x)`` the embeddings.
    The backbone should return *unnormalised* or normalised (B, D) embeddings: the classifier
    normalises them anyway.

    >>> from facekit.losses import CosFace
    >>> model = MarginModel(nn.Linear(6, 4), MarginClassifier(4, 3, CosFace()))
    >>> model(torch.randn(2, 6), torch.tensor([0, 2])).shape, model.embed(torch.randn(2, 6)).shape
    (torch.Size([2, 3]), torch.Size([2, 4]))
    """

    def __init__(self, backbone: nn.Module, classifier: MarginClassifier):
        super().__init__()
        self.backbone, self.classifier = backbone, classifier

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.backbone(x), labels)


def margin_forward(model: MarginModel, batch, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``forward`` for :func:`facekit.train.fit`: margin logits in training, ``s * cos`` in evaluation.

    So the training loss is the margin loss, while ``val_loss`` / ``val_accuracy`` are measured
    without the margin (the accuracy a nearest-class-centre classifier would have).
    """
    x, y = batch[0].to(device), batch[1].to(device)
    return model(x, y if model.training else None), y


__all__ = ["MarginClassifier", "softmax_cross_entropy", "MarginModel", "margin_forward", "WEIGHT_INIT_STD"]
