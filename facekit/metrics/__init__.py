"""Metrics as pure functions that return small dataclasses: the one home of classification, detection,
verification, identification, open-set and per-group rates.

``verification`` (ROC, AUC, EER, TAR@FAR, the k-fold rule), ``identification`` (the one normalise/cosine
helper, rank-1/CMC, enrolment templates), ``openset`` (the one ``threshold_at_far`` and the one
``OpenSetResult``), ``groups`` (per-group FNMR/FMR and disparities).
"""

from facekit.metrics.classification import ClassificationResult, classification_result, plot_confusion
from facekit.metrics.detection import (COCO_IOU_THRESHOLDS, DetectionAP, ImageMatches, PrecisionRecall,
                                       average_precision, detection_ap, match_detections, precision_recall,
                                       recall_at_fppi)
from facekit.metrics.groups import (GroupRates, disparity, global_threshold, group_rates, per_group_thresholds,
                                    threshold_at_fmr)
from facekit.metrics.identification import (Gallery, IdentificationResult, cosine_scores, enrol, identification,
                                            identify, l2_normalize)
from facekit.metrics.openset import (OpenSetResult, choose_open_set_threshold, dir_at_far, open_set_metrics,
                                     open_set_rates, threshold_at_far)
from facekit.metrics.verification import (FAR_TARGETS, KFoldResult, RocCurve, TarAtFar, VerificationReport, auc,
                                          best_accuracy_threshold, eer, held_out_correct, kfold_accuracy,
                                          min_impostor_pairs, roc,
                                          tar_at_far, verification_report)

__all__ = ["ClassificationResult", "classification_result", "plot_confusion", "FAR_TARGETS",
           "IdentificationResult", "KFoldResult", "RocCurve", "TarAtFar", "VerificationReport", "auc",
           "best_accuracy_threshold", "cosine_scores", "eer", "held_out_correct", "identification", "kfold_accuracy",
           "min_impostor_pairs", "roc", "tar_at_far", "verification_report", "COCO_IOU_THRESHOLDS", "DetectionAP",
           "ImageMatches", "PrecisionRecall", "average_precision", "detection_ap", "match_detections",
           "precision_recall", "recall_at_fppi", "GroupRates", "disparity", "global_threshold", "group_rates",
           "per_group_thresholds", "threshold_at_fmr", "Gallery", "enrol", "identify", "l2_normalize",
           "OpenSetResult", "choose_open_set_threshold", "dir_at_far", "open_set_metrics", "open_set_rates",
           "threshold_at_far"]
