"""Anchors on a few feature levels, their assignment to faces by IoU, and dense training targets.

An *anchor* is a fixed square box centred on a cell of a feature map of stride ``s``: cell
``(i, j)`` has centre ``((j + 0.5) s, (i + 0.5) s)``. Each anchor is matched to the face box it
overlaps most: IoU >= ``positive_iou`` is a face, < ``negative_iou`` background, in between
ignored; every face also claims its best anchor, so that no face is left without one (SSD,
RetinaFace). The targets of one image are a dense ``(A, TARGET_WIDTH)`` tensor, so that a
batch is one tensor and :func:`facekit.train.fit` can train a detector unchanged.

>>> anchors = make_anchors([(2, 2)], strides=(8,), sizes=((8.0,),))
>>> anchors
tensor([[ 0.,  0.,  8.,  8.],
        [ 8.,  0., 16.,  8.],
        [ 0.,  8.,  8., 16.],
        [ 8.,  8., 16., 16.]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from facekit.config import ConfigError
from facekit.detection.boxes import box_iou, encode_boxes, encode_landmarks

__all__ = ["AnchorConfig", "make_anchors", "match_anchors", "encode_targets", "AnchorTargets",
           "BACKGROUND", "IGNORE", "NUM_LANDMARKS", "TARGET_WIDTH", "LABEL", "BOX", "LANDMARKS", "LANDMARK_VALID"]

BACKGROUND = -1  # match_anchors: anchor is background
IGNORE = -2  # match_anchors: anchor neither rewarded nor penalised
NUM_LANDMARKS = 5  # InsightFace order: left eye, right eye, nose tip, left and right mouth corner
# Columns of one anchor's target row: label (1 face, 0 background, -1 ignore), box deltas, landmark offsets,
# landmark validity (1 when the matched face has all five landmarks).
LABEL, BOX, LANDMARKS, LANDMARK_VALID = 0, slice(1, 5), slice(5, 5 + 2 * NUM_LANDMARKS), 5 + 2 * NUM_LANDMARKS
TARGET_WIDTH = LANDMARK_VALID + 1


@dataclass(frozen=True)
class AnchorConfig:
    strides: tuple[int, ...] = (8, 16, 32)  # pixels per cell of each feature level
    sizes: tuple[tuple[float, ...], ...] = ((12.0, 20.0), (32.0, 48.0), (80.0, 128.0))  # anchor sides (px) per level
    positive_iou: float = 0.35  # IoU at or above which an anchor is a face (S3FD's 0.35; RetinaFace uses 0.5 and 0.3)
    negative_iou: float = 0.35  # IoU below which an anchor is background; between the two: ignored

    def __post_init__(self):
        if len(self.strides) != len(self.sizes) or not self.strides:
            raise ConfigError(f"AnchorConfig: {len(self.strides)} strides but {len(self.sizes)} size lists; "
                              "give one tuple of anchor sizes per stride")
        if len({len(s) for s in self.sizes}) != 1:
            raise ConfigError(f"AnchorConfig.sizes={self.sizes!r}: every level needs the same number of anchors")
        if not 0 < self.negative_iou <= self.positive_iou <= 1:
            raise ConfigError(f"AnchorConfig: need 0 < negative_iou={self.negative_iou} <= "
                              f"positive_iou={self.positive_iou} <= 1")

    @property
    def anchors_per_cell(self) -> int:
        return len(self.sizes[0])


def make_anchors(feature_sizes, strides, sizes) -> torch.Tensor:
    """Square anchors of every level, cell by cell (row-major), size by size within a cell.

    Args:
        feature_sizes: ``(h, w)`` of each level's feature map.
        strides: pixels per cell of each level.
        sizes: anchor sides in pixels, one tuple per level.

    Returns:
        ``(A, 4)`` float32 xyxy pixels, ``A = sum(h * w * len(sizes[l]))``, in the order of the detector's outputs.
    """
    out = []
    for (h, w), stride, level_sizes in zip(feature_sizes, strides, sizes):
        ys, xs = torch.meshgrid((torch.arange(h) + 0.5) * stride, (torch.arange(w) + 0.5) * stride, indexing="ij")
        centres = torch.stack([xs, ys], dim=-1).reshape(-1, 1, 2)  # (h*w, 1, 2)
        half = torch.tensor(level_sizes, dtype=torch.float32).reshape(1, -1, 1) / 2  # (1, k, 1)
        out.append(torch.cat([centres - half, centres + half], dim=-1).reshape(-1, 4))  # (h*w*k, 4)
    return torch.cat(out).float()


def match_anchors(anchors: torch.Tensor, boxes: torch.Tensor, positive_iou: float = 0.35,
                  negative_iou: float = 0.35, ignore: torch.Tensor | None = None) -> torch.Tensor:
    """Face index of each anchor, or :data:`BACKGROUND` / :data:`IGNORE`.

    Args:
        anchors: ``(A, 4)`` xyxy.
        boxes: ``(G, 4)`` xyxy face boxes.
        positive_iou, negative_iou: see :class:`AnchorConfig`.
        ignore: optional ``(G,)`` bool; anchors matched to such a face become :data:`IGNORE`.

    Returns:
        ``(A,)`` int64 in ``{IGNORE, BACKGROUND, 0..G-1}``.

    >>> match_anchors(torch.tensor([[0., 0, 10, 10], [20, 20, 30, 30]]), torch.tensor([[1., 1, 10, 10]])).tolist()
    [0, -1]
    """
    matched = torch.full((len(anchors),), BACKGROUND, dtype=torch.long, device=anchors.device)
    if len(boxes) == 0:
        return matched
    iou = box_iou(anchors, boxes)  # (A, G)
    best_iou, best_box = iou.max(dim=1)  # (A,)
    matched[best_iou >= negative_iou] = IGNORE
    positive = best_iou >= positive_iou
    matched[positive] = best_box[positive]
    best_anchor_iou, best_anchor = iou.max(dim=0)  # (G,): every face claims its best anchor
    has_anchor = best_anchor_iou > 0
    matched[best_anchor[has_anchor]] = torch.arange(len(boxes), device=anchors.device)[has_anchor]
    if ignore is not None and ignore.any():
        matched[(matched >= 0) & ignore.to(anchors.device)[matched.clamp(min=0)]] = IGNORE
    return matched


def encode_targets(anchors: torch.Tensor, boxes: torch.Tensor, landmarks: torch.Tensor | None = None,
                   ignore: torch.Tensor | None = None, config: AnchorConfig = AnchorConfig()) -> torch.Tensor:
    """Dense targets of one image: ``(A, TARGET_WIDTH)`` rows ``[label, dx, dy, dw, dh, 10 landmark offsets, valid]``.

    Args:
        anchors: ``(A, 4)`` xyxy.
        boxes: ``(G, 4)`` xyxy face boxes (pixels).
        landmarks: optional ``(G, 5, 2)`` pixel points; NaN (or absent) marks a face without landmarks.
        ignore: optional ``(G,)`` bool faces to ignore.

    >>> t = encode_targets(make_anchors([(4, 4)], (8,), ((16.0,),)), torch.tensor([[4., 4., 20., 20.]]))
    >>> t.shape, int((t[:, LABEL] == 1).sum())
    (torch.Size([16, 16]), 1)
    """
    matched = match_anchors(anchors, boxes, config.positive_iou, config.negative_iou, ignore)
    targets = torch.zeros(len(anchors), TARGET_WIDTH, dtype=torch.float32, device=anchors.device)
    targets[:, LABEL] = torch.where(matched >= 0, 1.0, torch.where(matched == IGNORE, -1.0, 0.0))
    positive = matched >= 0
    if positive.any():
        idx, pos_anchors = matched[positive], anchors[positive]
        targets[positive, BOX] = encode_boxes(boxes[idx].float(), pos_anchors)
        if landmarks is not None and len(landmarks):
            points = landmarks[idx].float()  # (P, 5, 2)
            valid = torch.isfinite(points).all(dim=(1, 2))
            offsets = encode_landmarks(torch.nan_to_num(points), pos_anchors).reshape(-1, 2 * NUM_LANDMARKS)
            targets[positive, LANDMARKS] = offsets * valid[:, None]
            targets[positive, LANDMARK_VALID] = valid.float()
    return targets


def _feature_size(n: int, num_halvings: int) -> int:
    for _ in range(num_halvings):
        n = math.ceil(n / 2)  # a 3x3 convolution of stride 2 and padding 1
    return n


class AnchorTargets(Dataset):
    """Wrap a detection dataset so that item ``i`` is ``(image (3, H, W), targets (A, TARGET_WIDTH))``.

    The default collate then stacks a batch, so ``fit(model, AnchorTargets(scenes, model.anchors((H, W))),
    loss_fn=DetectionLoss(), metrics={})`` trains a detector. Images must all have the size the anchors
    were made for (``SyntheticScenes`` with one ``image_size``).

    Args:
        dataset: items ``(image, target)`` with ``target["boxes"]`` ``(G, 4)`` xyxy and optional
            ``"landmarks"`` ``(G, 5, 2)`` (or ``"landmarks5"``) and ``"ignore"`` ``(G,)``.
        anchors: ``(A, 4)`` from :meth:`FaceDetector.anchors`.
        config: the matching thresholds.
    """

    def __init__(self, dataset, anchors: torch.Tensor, config: AnchorConfig = AnchorConfig()):
        self.dataset, self.anchors, self.config = dataset, anchors.cpu(), config

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        landmarks = target.get("landmarks5", target.get("landmarks"))
        if landmarks is not None and landmarks.shape[-2] != NUM_LANDMARKS:
            landmarks = None
        boxes = torch.as_tensor(target["boxes"]).float()
        return image, encode_targets(self.anchors, boxes, landmarks, target.get("ignore"), self.config)
