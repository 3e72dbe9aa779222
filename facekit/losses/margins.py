"""Margin heads: callables that turn the (B, K) cosines of a classifier into logits for cross-entropy.

As in insightface ``arcface_torch/losses.py``, the head is an object passed to the classifier
(:class:`facekit.losses.MarginClassifier`): the classifier normalises embeddings and class
weights, so ``cos[i, k] = cos(theta_ik)`` is the cosine of the angle between embedding ``i``
and the weight of class ``k``; the head penalises the *target* column (``k = y_i``) and scales
everything by ``s``:

    logits[i, k] = s * cos(theta_ik)            for k != y_i
    logits[i, y_i] = s * psi(theta_{i, y_i})    psi: the margin of each head

    NormSoftmax     psi(theta) = cos(theta)                          (Wang et al. 2017, NormFace)
    SphereFace      psi(theta) = cos(m * theta), made monotonic      (Liu et al. 2017, A-Softmax)
    CosFace         psi(theta) = cos(theta) - m                      (Wang et al. 2018, CosFace / AM-Softmax)
    ArcFace         psi(theta) = cos(theta + m)                      (Deng et al. 2019)
    CombinedMargin  psi(theta) = cos(m1 * theta + m2) - m3           (insightface's combined loss)

Angles and angular margins are in radians (``margin_rad``); ``s`` is the scale (radius of the
hypersphere the logits live on). Near cos = +-1 the derivative of acos is infinite: the heads
clamp cos to ``[-1 + COS_EPS, 1 - COS_EPS]`` before ``acos``, or use the expansion
``cos(theta + m) = cos(theta) cos(m) - sin(theta) sin(m)`` with
``sin(theta) = sqrt(max(1 - cos^2, COS_EPS))``, so gradients stay finite everywhere.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from facekit.config import ConfigError

COS_EPS = 1e-7  # cos is clamped to [-1 + COS_EPS, 1 - COS_EPS] before acos; sin^2 = 1 - cos^2 to >= COS_EPS


def _check(name: str, value: float, ok: bool, rule: str) -> float:
    if not ok:
        raise ConfigError(f"{name}={value} is not accepted: it must be {rule}")
    return float(value)


def _angle(cos: torch.Tensor) -> torch.Tensor:
    """theta = acos(cos) in [0, pi] radians, with cos clamped away from +-1 (finite gradient)."""
    return torch.acos(cos.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS))


class MarginHead(nn.Module):
    """Base class: ``logits = s * cos`` with the target column replaced by ``s * target_logit(cos_target)``.

    Subclasses override one hook, :meth:`target_logit`. Computation is at least float32 (an fp16
    or bf16 cosine is promoted), so the margins are not lost to rounding under autocast.

    Args:
        s: scale of the logits (> 0).

    Attributes:
        normalized: True when the classifier must feed cosines (all heads but ``PlainSoftmax``).
    """

    normalized: ClassVar[bool] = True

    def __init__(self, s: float = 64.0):
        super().__init__()
        self.s = _check("s", s, s > 0, "> 0")

    def target_logit(self, cos_target: torch.Tensor) -> torch.Tensor:
        """(B,) cosines of the target classes -> (B,) penalised cosines psi(theta) (unscaled)."""
        return cos_target

    def forward(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, K) cosines, (B,) integer labels in [0, K) -> (B, K) logits."""
        if cosine.ndim != 2 or labels.shape != cosine.shape[:1]:
            raise ValueError(f"expected (B, K) cosines and (B,) labels, got {tuple(cosine.shape)} "
                             f"and {tuple(labels.shape)}")
        cos = cosine.to(torch.promote_types(cosine.dtype, torch.float32)).clamp(-1.0, 1.0)  # (B, K)
        index = labels.long()[:, None]  # (B, 1)
        target = self.target_logit(cos.gather(1, index).squeeze(1))  # (B,)
        return self.s * cos.scatter(1, index, target[:, None].to(cos.dtype))  # (B, K), out of place

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_") and k != "training")


class PlainSoftmax(MarginHead):
    """No normalisation, no margin: the classifier's raw ``W x + b`` logits pass through unchanged.

    The baseline "softmax" loss (DeepFace, DeepID): the classifier must be a plain linear layer,
    so ``normalized`` is False and ``s`` is 1.

    >>> PlainSoftmax()(torch.tensor([[3.0, -1.0]]), torch.tensor([0]))
    tensor([[ 3., -1.]])
    """

    normalized: ClassVar[bool] = False

    def __init__(self):
        super().__init__(s=1.0)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, K) logits, (B,) labels -> the same (B, K) logits."""
        if logits.ndim != 2 or labels.shape != logits.shape[:1]:
            raise ValueError(f"expected (B, K) logits and (B,) labels, got {tuple(logits.shape)} "
                             f"and {tuple(labels.shape)}")
        return logits


class NormSoftmax(MarginHead):
    """NormFace: ``logits = s * cos(theta)`` for every class, no margin.

    >>> NormSoftmax(s=10)(torch.tensor([[0.5, -0.5]]), torch.tensor([0]))
    tensor([[ 5., -5.]])
    """


class SphereFace(MarginHead):
    """Multiplicative angular margin: ``psi(theta) = cos(m * theta)`` for the target.

    The choice made here: ``m`` is any real >= 1 (insightface's combined margin uses ``m1 = 1.35``
    as a multiplicative factor on theta; the original A-Softmax used the integers 2, 3, 4), the
    features are normalised and scaled by ``s`` (as in insightface, unlike A-Softmax which kept
    ``||x||``), and there is no annealing with plain softmax.

    ``cos(m theta)`` is not monotonic on [0, pi] once ``m theta > pi`` (it rises again), so with
    ``monotonic=True`` (default) the target uses A-Softmax's

        psi(theta) = (-1)^k cos(m theta) - 2k,   k = floor(m theta / pi),

    which is continuous and decreasing on [0, pi] for every real m >= 1 (at theta = k pi / m both
    pieces equal 1 - 2k). It equals ``cos(m theta)`` for ``theta <= pi / m``. ``monotonic=False``
    gives the plain ``cos(m theta)`` of ``CombinedMargin(m1=m)``.

    Args:
        m: multiplicative angular margin (>= 1; 1 = NormSoftmax).
        s: scale.
        monotonic: use psi above instead of ``cos(m theta)``.

    >>> head = SphereFace(m=2.0, s=1.0)
    >>> round(head(torch.tensor([[0.5, 0.0]]), torch.tensor([0]))[0, 0].item(), 4)  # cos(2 * 60 deg)
    -0.5
    """

    def __init__(self, m: float = 1.35, s: float = 64.0, monotonic: bool = True):
        super().__init__(s)
        self.m = _check("m", m, m >= 1, ">= 1 (a multiplicative factor on the angle)")
        self.monotonic = bool(monotonic)

    def target_logit(self, cos_target):
        theta = _angle(cos_target)  # (B,) radians
        if not self.monotonic:
            return torch.cos(self.m * theta)
        with torch.no_grad():
            k = torch.floor(self.m * theta / math.pi)  # which piece of [0, pi]; a constant for autograd
            sign = 1.0 - 2.0 * torch.remainder(k, 2.0)  # (-1)^k
        return sign * torch.cos(self.m * theta) - 2.0 * k


class CosFace(MarginHead):
    """Additive cosine margin (CosFace / AM-Softmax): ``psi(theta) = cos(theta) - m``.

    Args:
        s: scale.
        margin: subtracted from the target cosine (unitless, in [0, 2)).

    >>> CosFace(s=1.0, margin=0.25)(torch.tensor([[0.5, 0.5]]), torch.tensor([1]))
    tensor([[0.5000, 0.2500]])
    """

    def __init__(self, s: float = 64.0, margin: float = 0.35):
        super().__init__(s)
        self.margin = _check("margin", margin, 0 <= margin < 2, "in [0, 2) (a cosine offset)")

    def target_logit(self, cos_target):
        return cos_target - self.margin


class ArcFace(MarginHead):
    """Additive angular margin: ``psi(theta) = cos(theta + m)``, m in radians.

    ``cos(theta + m)`` is computed as ``cos(theta) cos(m) - sin(theta) sin(m)`` with
    ``sin(theta) = sqrt(max(1 - cos^2, COS_EPS))`` (no acos, finite gradient at cos = +-1).

    Two fallbacks keep the target logit decreasing in theta (insightface's ``th`` / ``mm``):

    * default: where ``theta + m > pi`` (i.e. ``cos(theta) <= th = cos(pi - m)``), ``cos(theta + m)``
      would wrap around and rise again; there the target uses ``cos(theta) - mm`` with
      ``mm = sin(pi - m) * m = m sin(m)``, a CosFace-like margin. At ``theta = pi - m`` it jumps
      down from -1 to ``-cos(m) - m sin(m) <= -1`` (true for m in [0, pi/2]): still decreasing.
    * ``easy_margin=True``: the margin is applied only where ``cos(theta) > 0`` (theta < 90 deg);
      elsewhere the target logit is the plain ``cos(theta)``.

    Args:
        s: scale.
        margin_rad: angular margin m in radians, in [0, pi/2] (0.5 rad = 28.6 deg).
        easy_margin: see above.

    >>> head = ArcFace(s=1.0, margin_rad=math.pi / 6)
    >>> round(head(torch.tensor([[0.5]]), torch.tensor([0])).item(), 6)  # cos(60 deg + 30 deg)
    0.0
    """

    def __init__(self, s: float = 64.0, margin_rad: float = 0.5, easy_margin: bool = False):
        super().__init__(s)
        self.margin_rad = _check("margin_rad", margin_rad, 0 <= margin_rad <= math.pi / 2,
                                 "in [0, pi/2] radians (degrees? use math.radians)")
        self.easy_margin = bool(easy_margin)
        self._cos_m, self._sin_m = math.cos(self.margin_rad), math.sin(self.margin_rad)
        self._th = math.cos(math.pi - self.margin_rad)  # theta + m > pi  <=>  cos(theta) < th
        self._mm = math.sin(math.pi - self.margin_rad) * self.margin_rad  # = m sin(m)

    def target_logit(self, cos_target):
        sin = torch.sqrt((1.0 - cos_target * cos_target).clamp(min=COS_EPS))
        cos_theta_m = cos_target * self._cos_m - sin * self._sin_m  # cos(theta + m)
        if self.easy_margin:
            return torch.where(cos_target > 0, cos_theta_m, cos_target)
        return torch.where(cos_target > self._th, cos_theta_m, cos_target - self._mm)


class CombinedMargin(MarginHead):
    """insightface's combined margin: ``psi(theta) = cos(m1 * theta + m2) - m3``.

    One head for the three margins: ``(m1, 0, 0)`` is ``SphereFace(m1, monotonic=False)``,
    ``(1, m2, 0)`` is ``ArcFace(margin_rad=m2)`` wherever ``theta + m2 <= pi`` (this plain formula
    has no fallback: beyond that it wraps around and rises again), ``(1, 0, m3)`` is
    ``CosFace(margin=m3)``; insightface trains with e.g. ``(1.0, 0.3, 0.2)``.

    Args:
        s: scale.
        m1: multiplicative angular margin (>= 1).
        m2: additive angular margin in radians (>= 0).
        m3: additive cosine margin (>= 0).

    >>> head = CombinedMargin(s=1.0, m1=1.0, m2=0.0, m3=0.35)
    >>> round(head(torch.tensor([[0.5]]), torch.tensor([0])).item(), 6)
    0.15
    """

    def __init__(self, s: float = 64.0, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0):
        super().__init__(s)
        self.m1 = _check("m1", m1, m1 >= 1, ">= 1 (a multiplicative factor on the angle)")
        self.m2 = _check("m2", m2, 0 <= m2 <= math.pi, "in [0, pi] radians (degrees? use math.radians)")
        self.m3 = _check("m3", m3, 0 <= m3 < 2, "in [0, 2) (a cosine offset)")

    def target_logit(self, cos_target):
        return torch.cos(self.m1 * _angle(cos_target) + self.m2) - self.m3


__all__ = ["COS_EPS", "MarginHead", "PlainSoftmax", "NormSoftmax", "SphereFace", "CosFace", "ArcFace",
           "CombinedMargin"]
