"""The detector's loss: focal loss on face/background, box regression and landmarks on the positives.

Both arguments are dense per-anchor tensors, so the loss plugs into :func:`facekit.train.fit`
(``loss_fn(outputs, targets)``): ``outputs`` a :class:`~facekit.detection.model.DetectorOutput`,
``targets`` ``(B, A, TARGET_WIDTH)`` from :class:`~facekit.detection.anchors.AnchorTargets`.

>>> from facekit.detection.model import DetectorOutput
>>> out = DetectorOutput(torch.zeros(1, 3), torch.zeros(1, 3, 4), torch.zeros(1, 3, 5, 2))
>>> targets = torch.zeros(1, 3, TARGET_WIDTH); targets[0, 0, LABEL] = 1
>>> sorted(DetectionLoss().parts(out, targets))
['box', 'classification', 'landmarks']
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from facekit.config import ConfigError
from facekit.detection.anchors import BOX, LABEL, LANDMARK_VALID, LANDMARKS, TARGET_WIDTH
from facekit.detection.boxes import decode_boxes, giou_loss

__all__ = ["focal_loss", "smooth_l1_box_loss", "giou_box_loss", "BOX_LOSSES", "DetectionLoss"]

UNIT_ANCHOR = torch.tensor([0.0, 0.0, 1.0, 1.0])  # IoU is invariant to the anchor's shift and per-axis scale


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017) per element, as ``torchvision.ops.sigmoid_focal_loss``.

    ``-alpha_t (1 - p_t)^gamma log(p_t)``: easy, well-classified anchors (most of the background)
    contribute almost nothing, which replaces SSD's hard negative mining.
    """
    ce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    p = logits.sigmoid()
    p_t = p * labels + (1 - p) * (1 - labels)
    alpha_t = alpha * labels + (1 - alpha) * (1 - labels)
    return alpha_t * (1 - p_t) ** gamma * ce


def smooth_l1_box_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(P, 4)`` encoded deltas -> ``(P,)`` smooth-L1 summed over the four coordinates."""
    return F.smooth_l1_loss(pred, target, reduction="none", beta=1.0).sum(-1)


def giou_box_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(P, 4)`` encoded deltas -> ``(P,)`` ``1 - GIoU`` of the decoded boxes (decoded on a unit anchor)."""
    anchor = UNIT_ANCHOR.to(pred)
    return giou_loss(decode_boxes(pred, anchor), decode_boxes(target, anchor))


BOX_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "smooth_l1": smooth_l1_box_loss,
    "giou": giou_box_loss,
}


class DetectionLoss:
    """``classification + box_weight * box + landmark_weight * landmarks``, each normalised by the positives.

    Args:
        box_loss: a name in :data:`BOX_LOSSES` or a callable ``(pred (P, 4), target (P, 4)) -> (P,)``.
        box_weight, landmark_weight: weights of the regression terms.
        alpha, gamma: focal loss parameters.
    """

    def __init__(self, box_loss="smooth_l1", box_weight: float = 1.0, landmark_weight: float = 0.5,
                 alpha: float = 0.25, gamma: float = 2.0):
        if isinstance(box_loss, str):
            if box_loss not in BOX_LOSSES:
                raise ConfigError(f"box_loss={box_loss!r} is not accepted; use one of {sorted(BOX_LOSSES)}")
            box_loss = BOX_LOSSES[box_loss]
        self.box_loss, self.box_weight, self.landmark_weight = box_loss, box_weight, landmark_weight
        self.alpha, self.gamma = alpha, gamma

    def parts(self, outputs, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three terms, each a scalar."""
        if targets.shape[-1] != TARGET_WIDTH or targets.shape[:2] != outputs.logits.shape:
            raise ValueError(f"targets {tuple(targets.shape)} do not fit outputs {tuple(outputs.logits.shape)}; "
                             f"expected (B, A, {TARGET_WIDTH}) from AnchorTargets with the model's anchors")
        labels = targets[..., LABEL]  # (B, A): 1 face, 0 background, -1 ignore
        positive, counted = labels > 0, labels >= 0
        num_positive = positive.sum().clamp(min=1).float()
        cls = focal_loss(outputs.logits[counted], labels[counted], self.alpha, self.gamma).sum() / num_positive
        box = self.box_loss(outputs.boxes[positive], targets[..., BOX][positive]).sum() / num_positive
        with_points = positive & (targets[..., LANDMARK_VALID] > 0)
        pred_points = outputs.landmarks.flatten(-2)[with_points]  # (P, 10)
        points = F.smooth_l1_loss(pred_points, targets[..., LANDMARKS][with_points], reduction="sum")
        return {"classification": cls, "box": box, "landmarks": points / with_points.sum().clamp(min=1).float()}

    def __call__(self, outputs, targets: torch.Tensor) -> torch.Tensor:
        p = self.parts(outputs, targets)
        return p["classification"] + self.box_weight * p["box"] + self.landmark_weight * p["landmarks"]
