"""The baseline detectors (OpenCV Haar, dlib HOG, MTCNN): one interface, lazy imports, a real photo.

Each test skips, with the reason, when its library or the dlib_faces photos are absent.
"""

import doctest
import importlib
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from facekit.config import ConfigError
from facekit.data.registry import DatasetNotFound
from facekit.detection.alignment import detect_and_align
from facekit.detection.baselines import DETECTORS, create_detector, require
from facekit.detection.boxes import box_iou

LIBRARIES = {"haar": ("cv2", "opencv-python-headless"), "dlib_hog": ("dlib", "dlib-bin"),
             "mtcnn": ("facenet_pytorch", "facenet-pytorch")}
GIVES_LANDMARKS = {"haar": False, "dlib_hog": True, "mtcnn": True}


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def detector(request):
    module, pip_name = LIBRARIES[request.param]
    pytest.importorskip(module, reason=f"{module} is not installed (pip install {pip_name})")
    if request.param == "dlib_hog":
        pytest.importorskip("face_recognition_models", reason="face_recognition_models is not installed")
    return request.param, create_detector(request.param)


@pytest.fixture(scope="module")
def photo():
    """The first test photo of dlib's examples (6 faces) as uint8 (H, W, 3), and its boxes."""
    from facekit.data.detection import DlibFaceBoxes

    try:
        ds = DlibFaceBoxes(split="testing")
    except DatasetNotFound as err:
        pytest.skip(f"dlib_faces not found: {err}")
    image, target = ds[0]
    return (image.permute(1, 2, 0) * 255).round().byte().numpy(), target["boxes"].as_subclass(torch.Tensor)


def check_output(name, found):
    n = len(found.boxes)
    assert found.boxes.shape == (n, 4) and found.boxes.dtype == torch.float32
    assert found.scores.shape == (n,) and found.scores.dtype == torch.float32
    if GIVES_LANDMARKS[name]:
        assert found.landmarks.shape == (n, 5, 2) and found.landmarks.dtype == torch.float32
    else:
        assert found.landmarks is None


def test_blank_image_gives_no_face(detector):
    name, det = detector
    found = det.detect(np.zeros((120, 160, 3), np.uint8))
    check_output(name, found)
    assert len(found.boxes) == 0


@pytest.mark.realdata
def test_finds_the_faces_of_a_real_photo(detector, photo):
    name, det = detector
    image, truth = photo
    found = det.detect(image)
    check_output(name, found)
    hits = (box_iou(truth, found.boxes).max(dim=1).values >= 0.4).sum() if len(found.boxes) else 0
    assert hits >= 5, f"{name} found {hits} of {len(truth)} faces"
    if found.landmarks is not None:  # eyes above the mouth, inside their box
        x, y = found.landmarks[..., 0], found.landmarks[..., 1]
        assert ((x >= found.boxes[:, :1] - 5) & (x <= found.boxes[:, 2:3] + 5)).all()
        assert (y[:, :2].mean(1) < y[:, 3:].mean(1)).all()


@pytest.mark.realdata
def test_grey_pil_and_rgba_inputs(detector, photo):
    name, det = detector
    image, _ = photo
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
    for variant in (Image.fromarray(image).convert("L"), rgba, Image.fromarray(image)):
        found = det.detect(variant)
        check_output(name, found)
        assert len(found.boxes) >= 3


@pytest.mark.realdata
def test_detect_and_align_with_a_baseline(detector, photo):
    name, det = detector
    result = detect_and_align(photo[0], det)
    assert len(result) >= 5 and result.crops.shape[1:] == (3, 112, 112)
    assert result.from_boxes == (not GIVES_LANDMARKS[name])


def test_missing_library_names_the_pip_package(monkeypatch):
    for name, (module, pip_name) in LIBRARIES.items():
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
        with pytest.raises(ImportError, match=f"pip install .*{pip_name}"):
            create_detector(name)
    with pytest.raises(ImportError, match="pip install some-package"):
        require("no_such_module_here", "some-package", "this test")


def test_doctests():
    result = doctest.testmod(importlib.import_module("facekit.detection.baselines"))
    assert result.attempted > 0 and result.failed == 0


def test_unknown_detector_is_a_config_error():
    with pytest.raises(ConfigError, match="registered: dlib_hog, haar, mtcnn"):
        create_detector("yolo")
