"""Chapter 3: the score threshold and the NMS IoU threshold on a real group photo, with the boxes and the
precision/recall point updating.

The detector runs once (its raw outputs for every anchor); a moved slider only re-applies the threshold and
non-maximum suppression, through the detector's own post-processing (:meth:`FaceDetector._postprocess`, the
code ``detect`` runs), then matches the kept boxes to the labelled faces with
:func:`facekit.metrics.detection.match_detections` (COCO's greedy rule at IoU 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facekit.config import ConfigError
from facekit.explore.core import Exploration, Slider

__all__ = ["RawDetections", "raw_detections", "detections_at", "detection_point", "draw_detection",
           "explore_detection"]

MATCH_IOU = 0.5  # a detection is a true positive at IoU >= 0.5 with a labelled face (PASCAL VOC, AP@0.5)
PRE_NMS_TOP_K = 1000
MAX_DETECTIONS = 100
SCORE_MIN = 0.05  # the score slider's lowest value


@dataclass(frozen=True)
class RawDetections:
    image: torch.Tensor  # (3, H, W) in [0, 1]
    scores: torch.Tensor  # (A,) face probability of every anchor
    deltas: torch.Tensor  # (A, 4) encoded boxes
    offsets: torch.Tensor  # (A, 5, 2) encoded landmarks
    anchors: torch.Tensor  # (A, 4)
    postprocess: object  # the detector's post-processing (threshold, decode, NMS)


@torch.no_grad()
def raw_detections(detector, image: torch.Tensor) -> RawDetections:
    """One forward pass of a :class:`facekit.detection.FaceDetector` on one (3, H, W) image, every anchor kept."""
    image = torch.as_tensor(image).detach().cpu().float()
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected one (3, H, W) image, got shape {tuple(image.shape)}")
    was_training = detector.training
    detector.eval()
    try:
        device = next(detector.parameters()).device
        out = detector(image[None].to(device))
    finally:
        detector.train(was_training)
    h, w = image.shape[-2:]
    return RawDetections(image, out.logits[0].sigmoid().cpu(), out.boxes[0].cpu(), out.landmarks[0].cpu(),
                         detector.anchors((h, w)).cpu(), type(detector)._postprocess)


def detections_at(raw: RawDetections, score_threshold: float, iou_threshold: float):
    """The :class:`~facekit.detection.interface.Detections` that ``detect`` would return at these thresholds."""
    if not (0 <= score_threshold <= 1 and 0 < iou_threshold <= 1):
        raise ConfigError(f"score_threshold={score_threshold} must be in [0, 1] and iou_threshold={iou_threshold} "
                          "in (0, 1]")
    h, w = raw.image.shape[-2:]
    return raw.postprocess(raw.scores, raw.deltas, raw.offsets, raw.anchors, (h, w), float(score_threshold),
                           float(iou_threshold), MAX_DETECTIONS, PRE_NMS_TOP_K)


@dataclass(frozen=True)
class DetectionPoint:
    kept: int  # detections after threshold and NMS
    true_positives: int
    faces: int  # labelled faces (not ignored)
    precision: float
    recall: float


def detection_point(detections, truth_boxes, ignore=None) -> DetectionPoint:
    """Precision and recall of one image's detections against its labelled faces (IoU >= 0.5)."""
    from facekit.metrics.detection import match_detections

    m = match_detections(detections[0], detections[1], truth_boxes, MATCH_IOU, ignore)
    counted = ~m.ignored
    tp, kept = int(m.true_positive.sum()), int(counted.sum())
    precision = tp / kept if kept else float("nan")
    recall = tp / m.num_faces if m.num_faces else float("nan")
    return DetectionPoint(kept, tp, m.num_faces, precision, recall)


def draw_detection(fig, raw: RawDetections, truth_boxes, ignore, curve, score_threshold: float,
                   iou_threshold: float) -> DetectionPoint:
    """The photo with the kept boxes (green: matched a face, red: not) and labelled faces (white, dashed); the
    precision-recall curve at this NMS threshold with the current point."""
    from matplotlib.patches import Rectangle

    found = detections_at(raw, score_threshold, iou_threshold)
    point = detection_point(found, truth_boxes, ignore)
    from facekit.metrics.detection import match_detections

    m = match_detections(found[0], found[1], truth_boxes, MATCH_IOU, ignore)
    order = np.argsort(-found[1].numpy(), kind="mergesort")  # match_detections' order
    ax_p, ax_c = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    ax_p.imshow(raw.image.permute(1, 2, 0).numpy())
    for b in np.asarray(truth_boxes, dtype=float).reshape(-1, 4):
        ax_p.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, color="white", lw=1, ls="--"))
    boxes = found[0].numpy()[order]
    for b, tp, ign in zip(boxes, m.true_positive, m.ignored):
        color = "grey" if ign else ("lime" if tp else "red")
        ax_p.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, color=color, lw=1.5))
    ax_p.set_axis_off()
    ax_p.set_title(f"score >= {score_threshold:.2f}, NMS IoU {iou_threshold:.2f}: {point.kept} kept, "
                   f"{point.true_positives} of {point.faces} faces found", fontsize=9)
    recall, precision = curve(iou_threshold)
    ax_c.plot(recall, precision, color="tab:blue", lw=1.2)
    if point.kept:
        ax_c.plot([point.recall], [point.precision], "o", color="k", ms=7)
    ax_c.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="recall", ylabel="precision",
             title=(f"precision {point.precision:.2f}, recall {point.recall:.2f}" if point.kept
                    else f"nothing kept: recall {point.recall:.2f}, precision undefined"))
    ax_c.title.set_fontsize(9)
    return point


def explore_detection(detector, image: torch.Tensor, truth_boxes, ignore=None, *, score_threshold: float = 0.5,
                      iou_threshold: float = 0.4) -> Exploration:
    """Score and NMS IoU thresholds of a trained ``FaceDetector`` on one photo with labelled faces.

    Args:
        detector: a :class:`facekit.detection.FaceDetector`; image: (3, H, W) in [0, 1].
        truth_boxes: (G, 4) xyxy labelled faces; ignore: optional (G,) bool ignore flags.
        score_threshold, iou_threshold: the starting thresholds (``detect``'s defaults).
    """
    from facekit.metrics.detection import precision_recall

    raw = raw_detections(detector, image)
    truth = torch.as_tensor(truth_boxes).detach().cpu().float().reshape(-1, 4)
    curves = {}

    def curve(iou: float):
        key = round(iou, 4)
        if key not in curves:  # one precision-recall curve per NMS threshold, down to the lowest score threshold
            pr = precision_recall([detections_at(raw, SCORE_MIN, iou)], [{"boxes": truth, "ignore": ignore}], MATCH_IOU)
            curves[key] = (np.r_[0.0, pr.recall], np.r_[1.0, pr.precision])
        return curves[key]

    iou_slider = Slider(0.05, 1.0, 0.05, iou_threshold, description="NMS IoU threshold")
    for v in iou_slider.values():  # every NMS setting's curve now, so a move only redraws
        curve(v)
    return Exploration(
        lambda fig, score_threshold, iou_threshold: draw_detection(fig, raw, truth, ignore, curve, score_threshold,
                                                                   iou_threshold),
        {"score_threshold": Slider(SCORE_MIN, 0.95, 0.05, score_threshold, description="score threshold"),
         "iou_threshold": iou_slider},
        figsize=(8.6, 3.4),
        static_grid=[{"score_threshold": 0.2}, {"score_threshold": 0.8}, {"iou_threshold": 1.0}],
        grid_title="score threshold 0.2 and 0.8; no NMS (IoU 1.0)",
    )
