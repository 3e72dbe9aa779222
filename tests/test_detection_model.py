"""The anchor detector: anchors, target assignment, loss terms, a tiny training run through fit, detect()."""

import doctest
import importlib

import pytest
import torch
from torchvision import ops

import facekit.detection.anchors as anchors_module
import facekit.detection.boxes as boxes_module
import facekit.detection.interface as interface_module
import facekit.detection.loss as loss_module
import facekit.detection.model as model_module
from facekit.config import ConfigError
from facekit.data.scenes import SyntheticScenes
from facekit.detection.anchors import (BOX, IGNORE, LABEL, LANDMARK_VALID, LANDMARKS, TARGET_WIDTH, AnchorConfig,
                                       AnchorTargets, encode_targets, make_anchors, match_anchors)
from facekit.detection.boxes import decode_boxes, decode_landmarks
from facekit.detection.interface import ModelDetector
from facekit.detection.loss import DetectionLoss, focal_loss
from facekit.detection.model import DetectorConfig, DetectorOutput, FaceDetector
from facekit.train import fit

align_module = importlib.import_module("facekit.detection.alignment")
MODULES = [align_module, anchors_module, boxes_module, interface_module, loss_module, model_module]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_anchors_match_the_outputs_for_odd_sizes():
    model = FaceDetector()
    for size in [(128, 128), (150, 97), (33, 20)]:
        out = model(torch.rand(1, 3, *size))
        anchors = model.anchors(size)
        assert out.logits.shape == (1, len(anchors)) and out.landmarks.shape == (1, len(anchors), 5, 2)
    # anchor centres of the first level step by the stride
    a = make_anchors([(2, 3)], (8,), ((8.0, 16.0),))
    assert a.shape == (12, 4)
    torch.testing.assert_close((a[:, :2] + a[:, 2:])[::2] / 2,
                               torch.tensor([[4.0, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]))


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="size lists"):
        AnchorConfig(strides=(8, 16), sizes=((8.0,),))
    with pytest.raises(ConfigError, match="no backbone stage"):
        DetectorConfig(widths=(8, 8), anchors=AnchorConfig(strides=(8,), sizes=((8.0,),)))


def test_match_anchors_thresholds_best_anchor_and_ignore():
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 20, 20], [50, 50, 60, 60], [100, 100, 110, 110]])
    boxes = torch.tensor([[0.0, 0, 10, 10], [51, 51, 70, 70]])
    # IoUs: a0-b0 1, a1-b0 .25, a2-b1 81/361 = .224 (below .35 but b1's best anchor), a3 nothing
    assert match_anchors(anchors, boxes, 0.35, 0.2).tolist() == [0, IGNORE, 1, -1]
    assert match_anchors(anchors, boxes, 0.35, 0.35).tolist() == [0, -1, 1, -1]
    ignored = match_anchors(anchors, boxes, 0.35, 0.35, ignore=torch.tensor([False, True]))
    assert ignored.tolist() == [0, -1, IGNORE, -1]
    assert match_anchors(anchors, torch.zeros(0, 4)).tolist() == [-1] * 4


def test_encode_targets_decode_back():
    anchors = make_anchors([(8, 8)], (8,), ((16.0, 24.0),))
    boxes = torch.tensor([[10.0, 12, 30, 34], [40, 40, 60, 64]])
    points = torch.rand(2, 5, 2) * 20 + boxes[:, None, :2]
    points[1] = float("nan")  # second face without landmarks
    t = encode_targets(anchors, boxes, points)
    assert t.shape == (len(anchors), TARGET_WIDTH)
    pos = t[:, LABEL] == 1
    matched = match_anchors(anchors, boxes)
    torch.testing.assert_close(decode_boxes(t[pos, BOX], anchors[pos]), boxes[matched[pos]])
    valid = t[:, LANDMARK_VALID] == 1
    assert valid.any() and (matched[valid] == 0).all() and (matched[pos & ~valid] == 1).all()
    torch.testing.assert_close(decode_landmarks(t[valid, LANDMARKS].reshape(-1, 5, 2), anchors[valid]),
                               points[0].expand(int(valid.sum()), 5, 2))
    assert torch.isfinite(t).all()


def test_focal_loss_equals_torchvision():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(200, generator=g) * 3, (torch.rand(200, generator=g) > 0.8).float()
    torch.testing.assert_close(focal_loss(logits, labels), ops.sigmoid_focal_loss(logits, labels))


def test_loss_terms_vanish_on_perfect_regression_and_ignore_is_ignored():
    targets = torch.zeros(1, 4, TARGET_WIDTH)
    targets[0, 0, LABEL], targets[0, 0, LANDMARK_VALID] = 1, 1
    targets[0, 0, BOX] = torch.tensor([0.5, -0.2, 0.1, 0.3])
    targets[0, 0, LANDMARKS] = torch.arange(10.0) / 10
    targets[0, 3, LABEL] = -1
    out = DetectorOutput(torch.tensor([[20.0, -20, -20, 50]]), targets[..., BOX].clone(),
                         targets[..., LANDMARKS].reshape(1, 4, 5, 2).clone())
    for box_loss in ("smooth_l1", "giou"):
        parts = DetectionLoss(box_loss=box_loss).parts(out, targets)
        assert parts["classification"] < 1e-6  # anchor 3 (a confident "face") is ignored
        assert parts["box"].abs() < 1e-5 and parts["landmarks"] == 0
    with pytest.raises(ConfigError, match="box_loss"):
        DetectionLoss(box_loss="l3")


@pytest.fixture(scope="module")
def trained():
    """A few seconds of training on easy synthetic scenes, through the course's fit."""
    torch.manual_seed(0)
    scenes = SyntheticScenes(num_scenes=8, image_size=96, faces_per_scene=(1, 2), face_size=(0.25, 0.5),
                             difficulty="easy", seed=1)
    model = FaceDetector()
    data = AnchorTargets(scenes, model.anchors((96, 96)))
    history = fit(model, data, loss_fn=DetectionLoss(), metrics={}, epochs=6, batch_size=4, lr=5e-3,
                  progress=False, device="cpu")
    return model, scenes, history


def test_tiny_training_run_reduces_the_loss(trained):
    _, _, history = trained
    losses = history["train_loss"]
    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    assert losses[-1] < 0.6 * losses[0], losses


def test_detect_returns_thresholded_nms_output(trained):
    model, scenes, _ = trained
    images = torch.stack([scenes[i][0] for i in range(2)])
    for low in (0.0, 0.05):
        results = model.detect(images, score_threshold=low, iou_threshold=0.4, max_detections=20)
        assert len(results) == 2
        for det in results:
            n = len(det.boxes)
            assert det.scores.shape == (n,) and det.landmarks.shape == (n, 5, 2) and n <= 20
            assert (det.scores >= low).all() and (det.scores[:-1] >= det.scores[1:]).all()
            assert (det.boxes >= 0).all() and (det.boxes <= 96).all()
            if n > 1:
                assert ops.box_iou(det.boxes, det.boxes).fill_diagonal_(0).max() <= 0.4 + 1e-6
    assert [len(d.boxes) for d in model.detect(images, score_threshold=1.01)] == [0, 0]
    # a list of images of different sizes, and the one-image Detector interface
    assert len(model.detect([images[0], torch.rand(3, 70, 50)], score_threshold=0.01)) == 2
    uint8 = (images[0].permute(1, 2, 0) * 255).byte().numpy()
    det = ModelDetector(model, score_threshold=0.01).detect(uint8)
    assert det.boxes.shape[1:] == (4,) and det.landmarks.shape[1:] == (5, 2)


def test_detect_keeps_the_training_mode():
    model = FaceDetector().train()
    model.detect(torch.rand(1, 3, 64, 64))
    assert model.training


def test_config_from_a_mapping_or_overrides_and_typos_are_named():
    from facekit.config import ConfigError
    from facekit.detection import DetectorConfig, FaceDetector

    small = FaceDetector(neck_width=16)
    assert small.config.neck_width == 16 and small.config.widths == DetectorConfig().widths
    assert FaceDetector({"neck_width": 24}).config.neck_width == 24
    assert FaceDetector(DetectorConfig(neck_width=32), neck_width=8).config.neck_width == 8
    with pytest.raises(ConfigError, match="neck_widht"):
        FaceDetector(neck_widht=16)
