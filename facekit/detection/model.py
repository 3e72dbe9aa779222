"""A small one-stage face detector in the style of SSD / RetinaFace, sized for a CPU at 128-192 px.

A stride-2 convolutional backbone gives feature maps of strides 8, 16 and 32; a light FPN adds
each coarser map (upsampled) to the finer one; per level, one head predicts for every anchor a
face logit, four box deltas and ten landmark offsets (see :mod:`facekit.detection.boxes`).

>>> model = FaceDetector()
>>> out = model(torch.rand(2, 3, 128, 128))
>>> out.logits.shape, out.boxes.shape, out.landmarks.shape
(torch.Size([2, 672]), torch.Size([2, 672, 4]), torch.Size([2, 672, 5, 2]))
>>> [len(d.boxes) for d in model.detect(torch.rand(2, 3, 128, 128), score_threshold=0.99)]
[0, 0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from facekit.config import ConfigError, config_from
from facekit.detection.anchors import NUM_LANDMARKS, AnchorConfig, _feature_size, make_anchors
from facekit.detection.boxes import decode_boxes, decode_landmarks, nms
from facekit.detection.interface import Detections

__all__ = ["DetectorConfig", "DetectorOutput", "FaceDetector"]

PRIOR_PROBABILITY = 0.01  # initial face probability of every anchor (RetinaNet's bias init for focal loss)
OUTPUTS_PER_ANCHOR = 1 + 4 + 2 * NUM_LANDMARKS  # logit, box deltas, landmark offsets
INPUT_MEAN = 0.5  # images in [0, 1] are centred by this before the backbone


@dataclass(frozen=True)
class DetectorConfig:
    widths: tuple[int, ...] = (16, 32, 48, 64, 96)  # channels after each stride-2 stage (strides 2, 4, ..., 32)
    neck_width: int = 48  # channels of the FPN maps and the heads
    anchors: AnchorConfig = field(default_factory=AnchorConfig)  # strides, sizes and IoU thresholds

    def __post_init__(self):
        stage_strides = [2 ** (i + 1) for i in range(len(self.widths))]
        missing = [s for s in self.anchors.strides if s not in stage_strides]
        if missing:
            raise ConfigError(f"DetectorConfig: anchor strides {missing} have no backbone stage; with "
                              f"{len(self.widths)} widths the strides are {stage_strides}")


class DetectorOutput(NamedTuple):
    logits: torch.Tensor  # (B, A) face logit of each anchor
    boxes: torch.Tensor  # (B, A, 4) encoded box deltas
    landmarks: torch.Tensor  # (B, A, 5, 2) encoded landmark offsets


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class FaceDetector(nn.Module):
    """Anchors on several levels; a face logit, box deltas and five landmarks per anchor.

    Args:
        config: a :class:`DetectorConfig` or a mapping of its fields; None: the defaults.
        **overrides: fields of :class:`DetectorConfig` (a typo is a ConfigError naming it).

    Input: ``(B, 3, H, W)`` float images in [0, 1]; output: a :class:`DetectorOutput` whose anchors
    are :meth:`anchors` ``((H, W))``. Train with :class:`~facekit.detection.loss.DetectionLoss` on
    :class:`~facekit.detection.anchors.AnchorTargets`; predict with :meth:`detect`.
    """

    def __init__(self, config: DetectorConfig | Mapping | None = None, **overrides):
        super().__init__()
        self.config = config = config_from(DetectorConfig, config, **overrides)
        widths = (3,) + tuple(config.widths)
        self.stages = nn.ModuleList(nn.Sequential(_conv_bn(c_in, c_out, 2), _conv_bn(c_out, c_out))
                                    for c_in, c_out in zip(widths[:-1], widths[1:]))
        self.level_stages = [int(math.log2(s)) - 1 for s in config.anchors.strides]  # stage index of each level
        neck, k = config.neck_width, config.anchors.anchors_per_cell
        self.lateral = nn.ModuleList(nn.Conv2d(config.widths[i], neck, 1) for i in self.level_stages)
        self.smooth = nn.ModuleList(_conv_bn(neck, neck) for _ in self.level_stages)
        self.heads = nn.ModuleList(nn.Conv2d(neck, k * OUTPUTS_PER_ANCHOR, 3, padding=1) for _ in self.level_stages)
        for head in self.heads:
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
            head.bias.data.view(k, OUTPUTS_PER_ANCHOR)[:, 0] = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        self._anchor_cache: dict[tuple[int, int], torch.Tensor] = {}

    def feature_sizes(self, image_size) -> list[tuple[int, int]]:
        """``(h, w)`` of each level's feature map for an ``(H, W)`` input."""
        return [(_feature_size(image_size[0], i + 1), _feature_size(image_size[1], i + 1)) for i in self.level_stages]

    def anchors(self, image_size) -> torch.Tensor:
        """``(A, 4)`` xyxy anchors (pixels, on the CPU) for an ``(H, W)`` input, in the order of the outputs."""
        key = (int(image_size[0]), int(image_size[1]))
        if key not in self._anchor_cache:
            a = self.config.anchors
            self._anchor_cache[key] = make_anchors(self.feature_sizes(key), a.strides, a.sizes)
        return self._anchor_cache[key]

    def forward(self, images: torch.Tensor) -> DetectorOutput:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(images.shape)}")
        x, features = images - INPUT_MEAN, []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        maps = [lat(features[i]) for lat, i in zip(self.lateral, self.level_stages)]
        for j in range(len(maps) - 2, -1, -1):  # top-down: coarse context into finer maps
            maps[j] = maps[j] + F.interpolate(maps[j + 1], size=maps[j].shape[-2:], mode="nearest")
        outputs = []
        for m, smooth, head in zip(maps, self.smooth, self.heads):
            y = head(smooth(m))  # (B, k * 15, h, w)
            b, _, h, w = y.shape
            outputs.append(y.permute(0, 2, 3, 1).reshape(b, h * w * self.config.anchors.anchors_per_cell,
                                                         OUTPUTS_PER_ANCHOR))
        out = torch.cat(outputs, dim=1)  # (B, A, 15)
        return DetectorOutput(out[..., 0], out[..., 1:5], out[..., 5:].reshape(*out.shape[:2], NUM_LANDMARKS, 2))

    @torch.no_grad()
    def detect(self, images, score_threshold: float = 0.5, iou_threshold: float = 0.4, max_detections: int = 100,
               pre_nms_top_k: int = 1000) -> list[Detections]:
        """Faces in each image, after a score threshold and NMS.

        Args:
            images: ``(B, 3, H, W)`` float in [0, 1], or a list of ``(3, H, W)`` (sizes may differ).
            score_threshold: minimum face probability.
            iou_threshold: NMS threshold.
            max_detections: at most this many faces per image, best first.
            pre_nms_top_k: candidates per image kept before NMS.

        Returns:
            One :class:`~facekit.detection.interface.Detections` per image: boxes ``(N, 4)`` xyxy pixels
            (clipped to the image), scores ``(N,)``, landmarks ``(N, 5, 2)``, on the CPU.
        """
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            groups = [images]
        else:
            groups = [im[None] for im in images]
        results = []
        for batch in groups:
            h, w = batch.shape[-2:]
            out = self(batch.to(device).float())
            anchors = self.anchors((h, w)).to(device)
            scores = out.logits.sigmoid()  # (B, A)
            for i in range(len(batch)):
                results.append(self._postprocess(scores[i], out.boxes[i], out.landmarks[i], anchors, (h, w),
                                                 score_threshold, iou_threshold, max_detections, pre_nms_top_k))
        self.train(was_training)
        return results

    @staticmethod
    def _postprocess(scores, deltas, offsets, anchors, size, score_threshold, iou_threshold, max_detections, top_k):
        keep = torch.nonzero(scores >= score_threshold).squeeze(1)
        keep = keep[scores[keep].topk(min(top_k, len(keep))).indices]
        boxes = decode_boxes(deltas[keep], anchors[keep])
        h, w = size
        boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                             boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], dim=1)
        kept = nms(boxes, scores[keep], iou_threshold)[:max_detections]
        landmarks = decode_landmarks(offsets[keep[kept]], anchors[keep[kept]])
        return Detections(boxes[kept].cpu(), scores[keep][kept].cpu(), landmarks.cpu())
