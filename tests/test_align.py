"""facekit.detection.alignment: Umeyama, warping (against OpenCV), align and detect_and_align on awkward images."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from facekit.detection.alignment import (ARCFACE_TEMPLATE, AlignedFaces, align, apply_transform, detect_and_align,
                                     landmarks_from_boxes, template, umeyama, warp_affine)
from facekit.detection.interface import Detections


def similarity(angle_deg, scale, tx, ty):
    a = math.radians(angle_deg)
    return torch.tensor([[scale * math.cos(a), -scale * math.sin(a), tx],
                         [scale * math.sin(a), scale * math.cos(a), ty]], dtype=torch.float64)


@pytest.mark.parametrize("angle, scale, tx, ty", [(0, 1, 0, 0), (25, 2.5, 40, -7), (-170, 0.4, 300, 12),
                                                  (90, 1.7, -20, 80)])
def test_umeyama_maps_transformed_template_back(angle, scale, tx, ty):
    points = apply_transform(similarity(angle, scale, tx, ty), ARCFACE_TEMPLATE)
    m = umeyama(points, ARCFACE_TEMPLATE)
    assert (apply_transform(m, points) - ARCFACE_TEMPLATE).norm(dim=1).max() < 1e-6
    noisy = points + torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3 * scale
    assert (apply_transform(umeyama(noisy, ARCFACE_TEMPLATE), noisy) - ARCFACE_TEMPLATE).norm(dim=1).max() < 1.0


def test_umeyama_never_reflects_and_checks_shapes():
    mirrored = ARCFACE_TEMPLATE * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    m = umeyama(mirrored, ARCFACE_TEMPLATE)
    assert torch.det(m[:, :2]) > 0
    with pytest.raises(ValueError, match=r"\(P, 2\)"):
        umeyama(torch.zeros(5, 3), torch.zeros(5, 3))


def test_warp_affine_agrees_with_opencv():
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (pip install 'opencv-python-headless<5')")
    rng = np.random.default_rng(0)
    image = rng.random((60, 80, 3)).astype(np.float32)
    image = cv2.GaussianBlur(image, (0, 0), 2)  # smooth: OpenCV's 1/32-pixel interpolation steps stay small
    m = similarity(20, 0.8, 10, 5)
    ours = warp_affine(torch.from_numpy(image).permute(2, 0, 1), m, (50, 70)).permute(1, 2, 0).numpy()
    ref = cv2.warpAffine(image, m.numpy(), (70, 50), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    inside = cv2.warpAffine(np.ones((60, 80), np.float32), m.numpy(), (70, 50)) == 1
    inside = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # away from the border
    assert inside.sum() > 1000
    assert np.abs(ours - ref)[inside].max() < 0.01


def dots_image(points, size=(240, 320)):
    """A black uint8 image with a small bright blob at each point."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w]
    image = np.zeros((h, w), np.float64)
    for x, y in np.asarray(points):
        image += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.5 ** 2))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def blob_centres(crop, points, radius=6):
    """Intensity-weighted centre of the crop near each expected point."""
    grey = crop.mean(0).numpy()
    ys, xs = np.mgrid[0:grey.shape[0], 0:grey.shape[1]]
    found = []
    for x, y in np.asarray(points):
        near = (np.abs(xs - x) <= radius) & (np.abs(ys - y) <= radius)
        weight = grey * near
        found.append([(weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()])
    return np.array(found)


@pytest.mark.parametrize("size", [112, 96])
def test_align_puts_the_landmarks_on_the_template(size):
    points = apply_transform(similarity(-30, 1.6, 120, 40), ARCFACE_TEMPLATE)
    crops = align(dots_image(points), points, size=size)  # a grey image
    assert crops.shape == (1, 3, size, size) and crops.dtype == torch.float32
    found = blob_centres(crops[0], template(size))
    assert np.abs(found - template(size).numpy()).max() < 1.0


class FixedDetector:
    """One face in the middle half of whatever image it is given; records the sizes it saw."""

    def __init__(self, landmarks=True, box=(0.25, 0.25, 0.75, 0.75)):
        self.landmarks, self.box, self.seen = landmarks, box, []

    def detect(self, image):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        h, w = image.shape[:2]
        self.seen.append((h, w))
        boxes = torch.tensor([self.box]) * torch.tensor([w, h, w, h])
        points = landmarks_from_boxes(boxes).float() if self.landmarks else None
        return Detections(boxes, torch.tensor([0.9]), points)


class Nobody:
    def detect(self, image):
        return Detections(torch.zeros(0, 4), torch.zeros(0), None)


def test_no_face_gives_an_empty_result():
    result = detect_and_align(np.zeros((50, 60, 3), np.uint8), Nobody())
    assert isinstance(result, AlignedFaces) and len(result) == 0
    assert result.crops.shape == (0, 3, 112, 112) and result.boxes.shape == (0, 4)
    assert result.landmarks.shape == (0, 5, 2) and result.matrices.shape == (0, 2, 3)


@pytest.mark.parametrize("image", [
    np.full((100, 80), 128, np.uint8),  # grey
    np.full((100, 80, 4), 200, np.uint8),  # RGBA
    Image.new("LA", (80, 100), (90, 255)),  # PIL grey with alpha
    Image.new("P", (80, 100)),  # PIL palette
    torch.rand(3, 100, 80),  # float tensor
], ids=["grey", "rgba", "pil-la", "pil-p", "tensor"])
def test_any_image_kind(image):
    result = detect_and_align(image, FixedDetector(), size=64)
    assert result.crops.shape == (1, 3, 64, 64)
    torch.testing.assert_close(result.boxes, torch.tensor([[20.0, 25, 60, 75]]))


def test_rgba_alpha_is_composited_on_black():
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[..., :3] = 255  # white but fully transparent -> black
    assert detect_and_align(rgba, FixedDetector()).crops.max() == 0


@pytest.mark.parametrize("shape", [(6, 9), (3000, 2000)], ids=["tiny", "huge"])
def test_tiny_and_huge_images_are_detected_rescaled_and_mapped_back(shape):
    detector = FixedDetector()
    result = detect_and_align(np.full(shape + (3,), 77, np.uint8), detector)
    seen = detector.seen[0]
    assert min(seen) >= 64 or max(seen) == 1024
    assert max(seen) <= 1024
    h, w = shape
    torch.testing.assert_close(result.boxes, torch.tensor([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]]), rtol=0.02, atol=0.1)
    assert result.crops.shape == (1, 3, 112, 112) and torch.isfinite(result.crops).all()


def test_boxes_partly_outside_are_padded_black():
    image = np.full((100, 100, 3), 255, np.uint8)
    result = detect_and_align(image, FixedDetector(landmarks=False, box=(0.7, -0.2, 1.3, 0.4)))
    assert result.from_boxes and len(result) == 1
    crop = result.crops[0]
    assert crop.max() == 1 and crop.min() == 0  # part image (white), part outside (black)
    assert result.boxes[0, 2] > 100 and result.boxes[0, 1] < 0  # the box is reported as found


def test_max_faces_keeps_the_best():
    class Two:
        def detect(self, image):
            boxes = torch.tensor([[0.0, 0, 20, 20], [30, 30, 50, 50]])
            return Detections(boxes, torch.tensor([0.2, 0.8]), landmarks_from_boxes(boxes).float())

    result = detect_and_align(np.zeros((64, 64, 3), np.uint8), Two(), max_faces=1)
    assert len(result) == 1 and result.scores.tolist() == [pytest.approx(0.8)]
