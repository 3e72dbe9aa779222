"""Box geometry from scratch: IoU, generalized IoU loss, NMS and the anchor box/landmark codec.

Boxes are ``xyxy`` = ``(x1, y1, x2, y2)`` in pixels, ``x2 >= x1``, ``y2 >= y1``, with no ``+1``
(a box ``(0, 0, 10, 10)`` has area 100), as in ``torchvision.ops``. These functions are written
out for teaching; the tests check them against ``torchvision.ops``.

The codec is the SSD / Faster R-CNN parameterisation with *variances* (SSD's ``(0.1, 0.2)``):
a box is stored relative to its anchor as

    dx = (cx - cx_a) / (v0 * w_a)     dw = log(w / w_a) / v1
    dy = (cy - cy_a) / (v0 * h_a)     dh = log(h / h_a) / v1

and a landmark ``(x, y)`` as ``((x - cx_a) / (v0 * w_a), (y - cy_a) / (v0 * h_a))`` (RetinaFace).

>>> a = torch.tensor([[0., 0., 10., 10.]]); b = torch.tensor([[5., 0., 15., 10.]])
>>> box_iou(a, b)
tensor([[0.3333]])
"""

from __future__ import annotations

import math

import torch

__all__ = ["VARIANCES", "box_area", "box_iou", "generalized_box_iou", "giou_loss", "nms", "batched_nms",
           "encode_boxes", "decode_boxes", "encode_landmarks", "decode_landmarks", "xywh_to_xyxy", "xyxy_to_cxcywh"]

VARIANCES = (0.1, 0.2)  # SSD's scaling of centre offsets and log size ratios (unit-variance targets)
MAX_LOG_RATIO = math.log(1000.0 / 16)  # clamp of decoded log size ratios (torchvision's bbox_xform_clip)


def _check_boxes(boxes: torch.Tensor, name: str) -> None:
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) xyxy, got {tuple(boxes.shape)}")


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` xyxy -> ``(N,)`` areas (zero for degenerate boxes)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def _inter_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise intersection and union areas, each ``(N, M)``."""
    top_left = torch.max(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (N, M, 2)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter, union


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union.

    Args:
        a: ``(N, 4)`` xyxy boxes.
        b: ``(M, 4)`` xyxy boxes.

    Returns:
        ``(N, M)`` IoU in [0, 1]; 0 where both boxes are empty.

    >>> box_iou(torch.tensor([[0., 0., 2., 2.]]), torch.tensor([[1., 1., 3., 3.], [0., 0., 2., 2.]]))
    tensor([[0.1429, 1.0000]])
    """
    _check_boxes(a, "a")
    _check_boxes(b, "b")
    inter, union = _inter_union(a, b)
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union))


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise GIoU = IoU - (enclosing area - union) / enclosing area, in [-1, 1]; ``(N, M)``.

    >>> generalized_box_iou(torch.tensor([[0., 0., 1., 1.]]), torch.tensor([[2., 0., 3., 1.]]))  # 0 - (3 - 2) / 3
    tensor([[-0.3333]])
    """
    _check_boxes(a, "a")
    _check_boxes(b, "b")
    inter, union = _inter_union(a, b)
    iou = inter / union
    top_left = torch.min(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.max(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


def giou_loss(pred: torch.Tensor, target: torch.Tensor, reduction: str = "none", eps: float = 1e-7) -> torch.Tensor:
    """``1 - GIoU`` of matched box pairs (Rezatofighi et al. 2019), as ``torchvision.ops.generalized_box_iou_loss``.

    Args:
        pred, target: ``(..., 4)`` xyxy boxes, paired element by element.
        reduction: "none" (shape ``(...)``), "mean" or "sum".
        eps: added to the union and enclosing areas so that degenerate boxes give no NaN.

    >>> giou_loss(torch.tensor([[0., 0., 2., 2.]]), torch.tensor([[0., 0., 2., 2.]]))
    tensor([0.])
    """
    x1, y1, x2, y2 = pred.unbind(-1)
    u1, v1, u2, v2 = target.unbind(-1)
    inter = (torch.min(x2, u2) - torch.max(x1, u1)).clamp(min=0) * (torch.min(y2, v2) - torch.max(y1, v1)).clamp(min=0)
    union = (x2 - x1) * (y2 - y1) + (u2 - u1) * (v2 - v1) - inter
    iou = inter / (union + eps)
    enclosing = (torch.max(x2, u2) - torch.min(x1, u1)) * (torch.max(y2, v2) - torch.min(y1, v1))
    loss = 1 - (iou - (enclosing - union) / (enclosing + eps))
    if reduction == "mean":
        return loss.mean() if loss.numel() else loss.sum() * 0.0
    if reduction == "sum":
        return loss.sum()
    if reduction != "none":
        raise ValueError(f"reduction={reduction!r} is not accepted; use 'none', 'mean' or 'sum'")
    return loss


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: keep the best box, drop those overlapping it by IoU > threshold, repeat.

    Args:
        boxes: ``(N, 4)`` xyxy.
        scores: ``(N,)``.
        iou_threshold: boxes with IoU strictly above it are suppressed.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, by decreasing score.

    >>> nms(torch.tensor([[0., 0., 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]]), torch.tensor([0.9, 0.8, 0.7]), 0.5)
    tensor([0, 2])
    """
    _check_boxes(boxes, "boxes")
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = box_iou(boxes[order], boxes[order])  # (N, N) in score order
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=iou.device)
    keep = []
    for i in range(len(order)):  # O(N^2) memory: fine for the few thousand candidates of one image
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each group (class or image) independently; boxes of different groups never suppress each other.

    The trick of ``torchvision.ops.batched_nms``: shift each group's boxes by ``group * (max coordinate + 1)``
    so groups cannot overlap, then run one :func:`nms`.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, by decreasing score.

    >>> boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
    >>> batched_nms(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5)  # different groups: both kept
    tensor([0, 1])
    """
    _check_boxes(boxes, "boxes")
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    offsets = groups.to(boxes) * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` ``(x, y, w, h)`` -> ``(x1, y1, x2, y2)``."""
    xy, wh = boxes[..., :2], boxes[..., 2:]
    return torch.cat([xy, xy + wh], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` xyxy -> ``(cx, cy, w, h)``."""
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], dim=-1)


def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor, variances=VARIANCES) -> torch.Tensor:
    """Regression targets ``(..., 4)`` = ``(dx, dy, dw, dh)`` of xyxy ``boxes`` relative to xyxy ``anchors``.

    >>> anchors = torch.tensor([[0., 0., 10., 10.]])
    >>> encode_boxes(torch.tensor([[1., 0., 11., 10.]]), anchors)
    tensor([[1., 0., 0., 0.]])
    """
    b, a = xyxy_to_cxcywh(boxes), xyxy_to_cxcywh(anchors)
    dxy = (b[..., :2] - a[..., :2]) / (variances[0] * a[..., 2:])
    dwh = torch.log(b[..., 2:] / a[..., 2:]) / variances[1]
    return torch.cat([dxy, dwh], dim=-1)


def decode_boxes(deltas: torch.Tensor, anchors: torch.Tensor, variances=VARIANCES) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`: ``(..., 4)`` deltas and anchors -> xyxy boxes.

    >>> decode_boxes(torch.tensor([[1., 0., 0., 0.]]), torch.tensor([[0., 0., 10., 10.]]))
    tensor([[ 1.,  0., 11., 10.]])
    """
    a = xyxy_to_cxcywh(anchors)
    cxy = a[..., :2] + deltas[..., :2] * variances[0] * a[..., 2:]
    wh = a[..., 2:] * torch.exp((deltas[..., 2:] * variances[1]).clamp(max=MAX_LOG_RATIO))
    return torch.cat([cxy - wh / 2, cxy + wh / 2], dim=-1)


def encode_landmarks(points: torch.Tensor, anchors: torch.Tensor, variances=VARIANCES) -> torch.Tensor:
    """``(..., P, 2)`` pixel points -> ``(..., P, 2)`` offsets from the anchor centre in units of ``v0 * size``."""
    a = xyxy_to_cxcywh(anchors)[..., None, :]  # (..., 1, 4)
    return (points - a[..., :2]) / (variances[0] * a[..., 2:])


def decode_landmarks(offsets: torch.Tensor, anchors: torch.Tensor, variances=VARIANCES) -> torch.Tensor:
    """Inverse of :func:`encode_landmarks`."""
    a = xyxy_to_cxcywh(anchors)[..., None, :]
    return a[..., :2] + offsets * variances[0] * a[..., 2:]
