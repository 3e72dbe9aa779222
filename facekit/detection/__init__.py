"""Face detection and alignment: box geometry, a small anchor detector, baselines and 5-point alignment.

Importing this package loads no detector library and no weights; the baselines import OpenCV,
facenet-pytorch or dlib when one is built.
"""

from facekit.detection.alignment import ARCFACE_TEMPLATE, AlignedFaces, align, detect_and_align, umeyama
from facekit.detection.anchors import AnchorConfig, AnchorTargets, encode_targets, make_anchors, match_anchors
from facekit.detection.baselines import DETECTORS, DlibHogDetector, HaarCascadeDetector, MTCNNDetector, create_detector
from facekit.detection.boxes import (batched_nms, box_iou, decode_boxes, decode_landmarks, encode_boxes,
                                     encode_landmarks, generalized_box_iou, giou_loss, nms)
from facekit.detection.interface import Detections, Detector, ModelDetector, to_rgb_uint8
from facekit.detection.loss import DetectionLoss, focal_loss
from facekit.detection.model import DetectorConfig, DetectorOutput, FaceDetector

__all__ = ["ARCFACE_TEMPLATE", "AlignedFaces", "align", "detect_and_align", "umeyama", "AnchorConfig",
           "AnchorTargets", "encode_targets", "make_anchors", "match_anchors", "DETECTORS", "DlibHogDetector",
           "HaarCascadeDetector", "MTCNNDetector", "create_detector", "batched_nms", "box_iou", "decode_boxes",
           "decode_landmarks", "encode_boxes", "encode_landmarks", "generalized_box_iou", "giou_loss", "nms",
           "Detections", "Detector", "ModelDetector", "to_rgb_uint8", "DetectionLoss", "focal_loss",
           "DetectorConfig", "DetectorOutput", "FaceDetector"]
