"""Metrics as pure functions that return small dataclasses."""

from facekit.metrics.classification import ClassificationResult, classification_result, plot_confusion
from facekit.metrics.detection import (COCO_IOU_THRESHOLDS, DetectionAP, ImageMatches, PrecisionRecall,
                                       average_precision, detection_ap, match_detections, precision_recall,
                                       recall_at_fppi)
from facekit.metrics.verification import (FAR_TARGETS, IdentificationResult, KFoldResult, RocCurve, TarAtFar,
                                          VerificationReport, auc, best_accuracy_threshold, cosine_scores, eer,
                                          identification, kfold_accuracy, min_impostor_pairs, roc, tar_at_far,
                                          verification_report)

__all__ = ["ClassificationResult", "classification_result", "plot_confusion", "FAR_TARGETS",
           "IdentificationResult", "KFoldResult", "RocCurve", "TarAtFar", "VerificationReport", "auc",
           "best_accuracy_threshold", "cosine_scores", "eer", "identification", "kfold_accuracy",
           "min_impostor_pairs", "roc", "tar_at_far", "verification_report", "COCO_IOU_THRESHOLDS", "DetectionAP",
           "ImageMatches", "PrecisionRecall", "average_precision", "detection_ap", "match_detections",
           "precision_recall", "recall_at_fppi"]
