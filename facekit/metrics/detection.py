"""Face detection metrics: precision-recall, average precision (VOC AP@0.5, COCO AP@[.5:.95]), recall at FPPI.

The rules are COCO's (``pycocotools.cocoeval``), written out for one class:

1. per image, detections are sorted by score and the best ``max_detections`` kept;
2. greedily, each detection takes the unmatched ground-truth box it overlaps most, if that IoU
   is >= the threshold; a true positive if that box counts, *ignored* if it is an ignore region;
3. ignore regions (COCO's ``iscrowd``, dlib's ``ignore='1'``) never count as misses, may absorb
   any number of detections, and their overlap is measured as intersection / detection area;
4. all images' detections are pooled and sorted by score: precision and recall after each one;
5. AP is the mean over 101 recall levels 0, 0.01, ..., 1 of the interpolated precision (the
   best precision at that recall or beyond; 0 where the recall is never reached).

COCO's AP is the mean of AP over IoU thresholds 0.5, 0.55, ..., 0.95. The tests compare with
pycocotools on random cases.

>>> gt = [torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.]])]
>>> det = [(torch.tensor([[0., 0., 10., 10.], [50., 50., 60., 60.]]), torch.tensor([0.9, 0.8]))]
>>> pr = precision_recall(det, gt)
>>> pr.precision.tolist(), pr.recall.tolist()
([1.0, 0.5], [0.5, 0.5])
>>> round(average_precision(pr), 4)  # precision 1 for recall levels 0..0.5 (51 of 101), then 0
0.505
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

__all__ = ["COCO_IOU_THRESHOLDS", "RECALL_LEVELS", "ImageMatches", "PrecisionRecall", "DetectionAP",
           "match_detections", "precision_recall", "average_precision", "detection_ap", "recall_at_fppi"]

COCO_IOU_THRESHOLDS = tuple(np.round(np.linspace(0.5, 0.95, 10), 2))  # 0.5, 0.55, ..., 0.95
RECALL_LEVELS = np.linspace(0.0, 1.0, 101)  # COCO's 101-point interpolation
MAX_DETECTIONS = 100  # COCO's maxDets for AP


def _numpy(x, shape_tail=()) -> np.ndarray:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return x.astype(np.float64).reshape(-1, *shape_tail)


@dataclass(frozen=True)
class ImageMatches:
    scores: np.ndarray  # (D,) kept detections, by decreasing score
    true_positive: np.ndarray  # (D,) bool: matched a counted face
    ignored: np.ndarray  # (D,) bool: matched an ignore region (neither TP nor FP)
    num_faces: int  # counted (not ignored) ground-truth faces


def _overlaps(det: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """(D, G) IoU; for ignore regions (``crowd``) intersection over the detection's area, as COCO."""
    lt = np.maximum(det[:, None, :2], gt[None, :, :2])
    rb = np.minimum(det[:, None, 2:], gt[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_d = np.prod(det[:, 2:] - det[:, :2], axis=-1)[:, None]
    area_g = np.prod(gt[:, 2:] - gt[:, :2], axis=-1)[None, :]
    union = np.where(crowd[None, :], area_d, area_d + area_g - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_detections(boxes, scores, gt_boxes, iou_threshold: float = 0.5, gt_ignore=None,
                     max_detections: int = MAX_DETECTIONS) -> ImageMatches:
    """COCO's greedy matching of one image's detections to its faces.

    Args:
        boxes: ``(D, 4)`` xyxy detections; scores ``(D,)``.
        gt_boxes: ``(G, 4)`` xyxy faces; ``gt_ignore`` optional ``(G,)`` bool ignore regions.
        iou_threshold: a match needs IoU >= this.
        max_detections: only the best this many detections are evaluated.
    """
    det, s = _numpy(boxes, (4,)), _numpy(scores)
    gt = _numpy(gt_boxes, (4,))
    ignore = np.zeros(len(gt), bool) if gt_ignore is None else _numpy(gt_ignore).astype(bool)
    if len(det) != len(s) or len(gt) != len(ignore):
        raise ValueError(f"got {len(det)} boxes for {len(s)} scores and {len(gt)} faces for {len(ignore)} ignore flags")
    order = np.argsort(-s, kind="mergesort")[:max_detections]
    det, s = det[order], s[order]
    gt_order = np.argsort(ignore, kind="mergesort")  # counted faces first, ignore regions last
    gt, ignore = gt[gt_order], ignore[gt_order]
    iou = _overlaps(det, gt, ignore)  # (D, G)
    taken = np.zeros(len(gt), bool)
    tp, ignored = np.zeros(len(det), bool), np.zeros(len(det), bool)
    for d in range(len(det)):
        best, match = min(iou_threshold, 1 - 1e-10), -1
        for g in range(len(gt)):
            if taken[g] and not ignore[g]:
                continue
            if match > -1 and not ignore[match] and ignore[g]:
                break  # a counted face is matched: do not trade it for an ignore region
            if iou[d, g] < best:
                continue
            best, match = iou[d, g], g
        if match > -1:
            taken[match] = True
            ignored[d], tp[d] = ignore[match], not ignore[match]
    return ImageMatches(s, tp, ignored, int((~ignore).sum()))


@dataclass(frozen=True)
class PrecisionRecall:
    scores: np.ndarray  # (D,) decreasing: the thresholds, one per counted detection of all images
    precision: np.ndarray  # (D,) precision when accepting detections with score >= scores[i]
    recall: np.ndarray  # (D,) recall at the same thresholds (non-decreasing)
    false_positives: np.ndarray  # (D,) cumulative false positives
    num_faces: int  # counted faces of all images
    num_images: int


def _targets(target) -> tuple:
    if isinstance(target, Mapping):
        return target["boxes"], target.get("ignore")
    return target, None


def precision_recall(detections: Sequence, ground_truth: Sequence, iou_threshold: float = 0.5,
                     max_detections: int = MAX_DETECTIONS) -> PrecisionRecall:
    """The precision-recall curve of a detector over a set of images.

    Args:
        detections: per image ``(boxes (D, 4), scores (D,), ...)`` -- e.g. a ``Detections`` tuple.
        ground_truth: per image a ``(G, 4)`` box tensor, or a dict with ``boxes`` and optional ``ignore``.
        iou_threshold, max_detections: see :func:`match_detections`.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} images of detections but {len(ground_truth)} of ground truth")
    matches = []
    for det, target in zip(detections, ground_truth):
        gt_boxes, gt_ignore = _targets(target)
        matches.append(match_detections(det[0], det[1], gt_boxes, iou_threshold, gt_ignore, max_detections))
    scores = np.concatenate([m.scores for m in matches]) if matches else np.zeros(0)
    tp = np.concatenate([m.true_positive for m in matches]) if matches else np.zeros(0, bool)
    counted = ~np.concatenate([m.ignored for m in matches]) if matches else np.zeros(0, bool)
    order = np.argsort(-scores, kind="mergesort")
    scores, tp, counted = scores[order], tp[order], counted[order]
    scores, tp = scores[counted], tp[counted]
    num_faces = sum(m.num_faces for m in matches)
    tp_sum, fp_sum = np.cumsum(tp), np.cumsum(~tp)
    precision = tp_sum / np.maximum(tp_sum + fp_sum, 1)  # pycocotools adds eps instead: 1 - 1e-16
    recall = tp_sum / num_faces if num_faces else np.full(len(tp), np.nan)
    return PrecisionRecall(scores, precision, recall, fp_sum, num_faces, len(matches))


def average_precision(pr: PrecisionRecall, recall_levels: np.ndarray = RECALL_LEVELS) -> float:
    """COCO's interpolated AP: mean over ``recall_levels`` of the best precision at that recall or beyond.

    Returns NaN when there are no faces to find (COCO's -1).
    """
    if pr.num_faces == 0:
        return float("nan")
    if len(pr.precision) == 0:
        return 0.0
    envelope = np.maximum.accumulate(pr.precision[::-1])[::-1]  # best precision at this recall or beyond
    index = np.searchsorted(pr.recall, recall_levels, side="left")  # first detection reaching each level
    reached = index < len(envelope)
    return float(np.where(reached, envelope[np.minimum(index, len(envelope) - 1)], 0.0).mean())


def recall_at_fppi(pr: PrecisionRecall, fp_per_image: float) -> float:
    """Recall at the lowest threshold that makes at most ``fp_per_image * num_images`` false positives."""
    if pr.num_faces == 0:
        return float("nan")
    allowed = pr.false_positives <= fp_per_image * pr.num_images
    return float(pr.recall[allowed].max()) if allowed.any() else 0.0


@dataclass(frozen=True)
class DetectionAP:
    ap50: float  # AP at IoU 0.5 (101-point, as COCO; the usual face-detection number)
    ap75: float  # AP at IoU 0.75
    ap: float  # COCO AP: mean over IoU 0.5, 0.55, ..., 0.95
    per_threshold: dict  # IoU threshold -> AP
    recall_at_fppi: dict  # false positives per image -> recall, at IoU 0.5
    num_faces: int
    num_images: int


def detection_ap(detections: Sequence, ground_truth: Sequence, iou_thresholds=COCO_IOU_THRESHOLDS,
                 fppi=(0.1, 1.0), max_detections: int = MAX_DETECTIONS) -> DetectionAP:
    """AP@0.5, AP@0.75, COCO AP@[.5:.95] and recall at a few false positives per image.

    >>> gt = [torch.tensor([[0., 0., 10., 10.]])]
    >>> detection_ap([(torch.tensor([[0., 0., 10., 9.]]), torch.tensor([1.]))], gt).ap50
    1.0
    """
    per = {float(t): average_precision(precision_recall(detections, ground_truth, float(t), max_detections))
           for t in iou_thresholds}
    pr50 = precision_recall(detections, ground_truth, 0.5, max_detections)
    return DetectionAP(ap50=per.get(0.5, average_precision(pr50)), ap75=per.get(0.75, float("nan")),
                       ap=float(np.mean(list(per.values()))), per_threshold=per,
                       recall_at_fppi={f: recall_at_fppi(pr50, f) for f in fppi},
                       num_faces=pr50.num_faces, num_images=pr50.num_images)
