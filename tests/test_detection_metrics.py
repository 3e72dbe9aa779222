"""facekit.metrics.detection: hand-computed tiny cases and pycocotools' COCOeval on random cases."""

import doctest
import importlib

import numpy as np
import pytest
import torch

from facekit.metrics.detection import (COCO_IOU_THRESHOLDS, average_precision, detection_ap, match_detections,
                                       precision_recall, recall_at_fppi)

detection_module = importlib.import_module("facekit.metrics.detection")


def test_doctests():
    result = doctest.testmod(detection_module)
    assert result.attempted > 0 and result.failed == 0


def box(x, y, s=10.0):
    return [x, y, x + s, y + s]


def test_hand_computed_curve_and_ap():
    # image 0: faces A, B; image 1: face C. Detections by score: A (TP), miss (FP), C (TP), A again (FP, duplicate)
    gt = [torch.tensor([box(0, 0), box(50, 50)]), torch.tensor([box(0, 0)])]
    det = [(torch.tensor([box(0, 0), box(100, 100), box(1, 0)]), torch.tensor([0.9, 0.8, 0.3])),
           (torch.tensor([box(0, 1)]), torch.tensor([0.6]))]
    pr = precision_recall(det, gt)
    np.testing.assert_allclose(pr.scores, [0.9, 0.8, 0.6, 0.3])
    np.testing.assert_allclose(pr.precision, [1, 1 / 2, 2 / 3, 2 / 4])
    np.testing.assert_allclose(pr.recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert pr.false_positives.tolist() == [0, 1, 1, 2] and pr.num_faces == 3 and pr.num_images == 2
    # interpolated precision: 1 for recall levels 0..0.33 (34 levels), 2/3 for 0.34..0.66 (33), 0 after
    assert average_precision(pr) == pytest.approx((34 * 1 + 33 * 2 / 3) / 101)
    assert recall_at_fppi(pr, 0.0) == pytest.approx(1 / 3)
    assert recall_at_fppi(pr, 0.5) == pytest.approx(2 / 3)  # one false positive over two images


def test_iou_threshold_is_inclusive_and_best_overlap_wins():
    gt = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 12]])
    # IoU with face 0: 50/100 = 0.5 exactly -> a match at threshold 0.5
    m = match_detections(torch.tensor([[0.0, 0, 10, 5]]), torch.tensor([1.0]), gt[:1], 0.5)
    assert m.true_positive.tolist() == [True]
    m = match_detections(torch.tensor([[0.0, 0, 10, 12]]), torch.tensor([1.0]), gt, 0.5)
    assert m.true_positive.tolist() == [True] and m.num_faces == 2


def test_ignore_regions_absorb_detections_and_are_not_misses():
    gt = {"boxes": torch.tensor([box(0, 0), [100.0, 100, 200, 200]]), "ignore": torch.tensor([False, True])}
    det = (torch.tensor([box(0, 0), box(110, 110), box(150, 150), box(300, 300)]), torch.tensor([0.9, 0.8, 0.7, 0.6]))
    pr = precision_recall([det], [gt])
    assert pr.num_faces == 1 and len(pr.scores) == 2  # two detections inside the ignore region are dropped
    np.testing.assert_allclose(pr.precision, [1, 0.5])
    assert average_precision(pr) == 1.0


def test_edge_cases():
    nothing = (torch.zeros(0, 4), torch.zeros(0))
    assert np.isnan(average_precision(precision_recall([nothing], [torch.zeros(0, 4)])))
    assert average_precision(precision_recall([nothing], [torch.tensor([box(0, 0)])])) == 0.0
    only_fp = precision_recall([(torch.tensor([box(0, 0)]), torch.tensor([1.0]))], [torch.zeros(0, 4)])
    assert np.isnan(average_precision(only_fp)) and only_fp.false_positives.tolist() == [1]
    with pytest.raises(ValueError, match="images"):
        precision_recall([nothing], [])
    perfect = detection_ap([(torch.tensor([box(0, 0)]), torch.tensor([1.0]))], [torch.tensor([box(0, 0)])])
    assert perfect.ap == perfect.ap50 == perfect.ap75 == 1.0 and len(perfect.per_threshold) == 10


def random_case(seed, num_images=6):
    """Faces, ignore regions and detections that are jittered faces, duplicates and clutter."""
    rng = np.random.default_rng(seed)
    dets, gts = [], []
    for _ in range(num_images):
        g = int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, (g, 2))
        wh = rng.uniform(10, 60, (g, 2))
        faces = np.concatenate([xy, xy + wh], 1)
        ignore = rng.random(g) < 0.15
        jitter = faces + rng.normal(0, 0.12, faces.shape) * np.tile(wh, 2)
        keep = rng.random(g) < 0.8
        dup = faces[rng.random(g) < 0.3] + rng.normal(0, 3, (1, 4))  # duplicates: false positives
        cxy = rng.uniform(0, 220, (int(rng.integers(0, 5)), 2))
        clutter = np.concatenate([cxy, cxy + rng.uniform(8, 50, (len(cxy), 2))], 1)
        boxes = np.concatenate([jitter[keep], dup, clutter])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        dets.append((torch.tensor(boxes), torch.tensor(rng.random(len(boxes)))))
        gts.append({"boxes": torch.tensor(faces), "ignore": torch.tensor(ignore)})
    return dets, gts


def coco_reference(dets, gts):
    """Per IoU threshold AP from pycocotools (area 'all', maxDets 100); ignore regions as iscrowd."""
    pytest.importorskip("pycocotools", reason="pycocotools is not installed (pip install pycocotools)")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for i, ((boxes, scores), gt) in enumerate(zip(dets, gts)):
        images.append({"id": i + 1})
        for b, crowd in zip(gt["boxes"].tolist(), gt["ignore"].tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1,
                                "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": int(crowd)})
        for b, s in zip(boxes.tolist(), scores.tolist()):
            results.append({"image_id": i + 1, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                            "score": s})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "face"}]}
    coco.createIndex()
    evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
    evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, 0, 0, -1]  # (T, 101) at maxDets=100
    return [float(p.mean()) if (p > -1).any() else float("nan") for p in precision]


@pytest.mark.parametrize("seed", range(6))
def test_ap_equals_pycocotools_on_random_cases(seed):
    dets, gts = random_case(seed)
    reference = coco_reference(dets, gts)
    ours = detection_ap(dets, gts)
    np.testing.assert_allclose([ours.per_threshold[float(t)] for t in COCO_IOU_THRESHOLDS], reference, atol=1e-12)
    assert ours.ap == pytest.approx(np.mean(reference))
