"""facekit.detection.boxes against torchvision.ops on random boxes, and the anchor codec round trip."""

import pytest
import torch
from torchvision import ops

from facekit.detection.boxes import (batched_nms, box_iou, decode_boxes, decode_landmarks, encode_boxes,
                                     encode_landmarks, generalized_box_iou, giou_loss, nms, xywh_to_xyxy)


def random_boxes(n, seed, size=100.0, quantise=False):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 1
    boxes = xywh_to_xyxy(torch.cat([xy, wh], dim=1))
    return boxes.round() if quantise else boxes


@pytest.mark.parametrize("seed", range(3))
def test_iou_and_giou_equal_torchvision(seed):
    a, b = random_boxes(30, seed), random_boxes(20, seed + 100)
    torch.testing.assert_close(box_iou(a, b), ops.box_iou(a, b))
    torch.testing.assert_close(generalized_box_iou(a, b), ops.generalized_box_iou(a, b))
    b2 = random_boxes(30, seed + 200)
    for reduction in ("none", "mean", "sum"):
        torch.testing.assert_close(giou_loss(a, b2, reduction), ops.generalized_box_iou_loss(a, b2, reduction))


def test_iou_hand_computed_and_empty():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[25 / 175, 0.0, 1.0]]))
    assert box_iou(a, torch.zeros(0, 4)).shape == (1, 0)
    assert box_iou(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0  # two empty boxes: 0, not NaN
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou(torch.zeros(3), b)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_equals_torchvision(seed, threshold):
    boxes = random_boxes(60, seed, size=60)  # crowded: many overlaps
    scores = torch.rand(60, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(nms(boxes, scores, threshold), ops.nms(boxes, scores, threshold))


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_equals_torchvision(seed):
    boxes = random_boxes(80, seed, size=60)
    g = torch.Generator().manual_seed(seed)
    scores, groups = torch.rand(80, generator=g), torch.randint(0, 4, (80,), generator=g)
    torch.testing.assert_close(batched_nms(boxes, scores, groups, 0.5), ops.batched_nms(boxes, scores, groups, 0.5))


def test_nms_edge_cases():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    same = torch.tensor([[0.0, 0, 10, 10]] * 3)
    assert nms(same, torch.tensor([0.1, 0.9, 0.5]), 0.5).tolist() == [1]
    assert batched_nms(same, torch.tensor([0.1, 0.9, 0.5]), torch.tensor([0, 1, 0]), 0.5).tolist() == [1, 2]


def test_box_codec_round_trip_and_known_values():
    anchors = random_boxes(50, 1)
    boxes = random_boxes(50, 2)
    deltas = encode_boxes(boxes, anchors)
    torch.testing.assert_close(decode_boxes(deltas, anchors), boxes, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(encode_boxes(anchors, anchors), torch.zeros(50, 4))
    # a box twice as wide, shifted by half an anchor width: dx = 0.5 / 0.1, dw = log 2 / 0.2
    d = encode_boxes(torch.tensor([[0.0, 0, 20, 10]]), torch.tensor([[0.0, 0, 10, 10]]))
    torch.testing.assert_close(d, torch.tensor([[5.0, 0.0, torch.log(torch.tensor(2.0)) / 0.2, 0.0]]))


def test_landmark_codec_round_trip():
    anchors = random_boxes(7, 3)
    points = torch.rand(7, 5, 2) * 100
    offsets = encode_landmarks(points, anchors)
    assert offsets.shape == (7, 5, 2)
    torch.testing.assert_close(decode_landmarks(offsets, anchors), points, atol=1e-4, rtol=1e-5)
