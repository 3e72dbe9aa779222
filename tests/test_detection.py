"""DlibFaceBoxes on a tiny imglab XML made in tmp_path."""

import pytest
import torch

from facekit.data.detection import DlibFaceBoxes, collate_detection, five_points, read_imglab
from facekit.data.registry import DatasetNotFound

XML = """<?xml version='1.0' encoding='ISO-8859-1'?>
<dataset><name>tiny</name><images>
  <image file='a.jpg'>
    <box top='2' left='3' width='10' height='12'/>
    <box top='1' left='1' width='5' height='5' ignore='1'/>
  </image>
  <image file='b.png'/>
</images></dataset>
"""


def _part(i, x, y):
    return f"<part name='{i:02d}' x='{x}' y='{y}'/>"


@pytest.fixture
def dlib_dir(tmp_path, make_image):
    root = tmp_path / "dlib_faces"
    make_image(root / "a.jpg", size=(40, 30))
    make_image(root / "b.png", size=(16, 16))
    (root / "training.xml").write_text(XML)
    parts = "".join(_part(i, i, 2 * i) for i in range(68))
    (root / "training_with_face_landmarks.xml").write_text(
        "<dataset><images><image file='a.jpg'>"
        f"<box top='2' left='3' width='10' height='12'>{parts}</box></image></images></dataset>"
    )
    return root


def test_boxes_labels_and_ignore(dlib_dir):
    ds = DlibFaceBoxes(dlib_dir.parent)  # the parent holding dlib_faces/ works too
    assert len(ds) == 2 and ds.num_boxes == 2
    image, target = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 30, 40)
    assert target["boxes"].dtype == torch.float32 and target["boxes"].tolist() == [[3, 2, 13, 14], [1, 1, 6, 6]]
    assert target["labels"].tolist() == [1, 1] and target["labels"].dtype == torch.int64
    assert target["ignore"].tolist() == [False, True]
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["ignore"].shape == (0,)
    images, targets = collate_detection([ds[0], ds[1]])
    assert len(images) == len(targets) == 2


def test_landmarks_five_points(dlib_dir):
    _, target = DlibFaceBoxes(dlib_dir, landmarks=True)[0]
    assert target["landmarks"].shape == (1, 68, 2)
    five = target["landmarks5"][0]
    assert five[0].tolist() == [38.5, 77.0]  # mean of points 36..41
    assert five[1].tolist() == [44.5, 89.0]
    assert five[2:].tolist() == [[30, 60], [48, 96], [54, 108]]
    assert five_points(torch.zeros(3, 68, 2)).shape == (3, 5, 2)


def test_missing_files_are_clear(dlib_dir):
    with pytest.raises(DatasetNotFound, match="testing.xml"):
        DlibFaceBoxes(dlib_dir, split="testing")
    (dlib_dir / "b.png").unlink()
    with pytest.raises(DatasetNotFound, match="b.png"):
        read_imglab(dlib_dir / "training.xml")


def test_malformed_box(dlib_dir):
    (dlib_dir / "training.xml").write_text("<dataset><images><image file='a.jpg'><box top='x'/></image></images></dataset>")
    with pytest.raises(ValueError, match="top='x'"):
        DlibFaceBoxes(dlib_dir)
