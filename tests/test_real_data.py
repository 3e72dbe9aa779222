"""The loaders on the real datasets in ../shared/datasets (skipped, with the reason, when absent).

Counts (checked against the folder's README): LFW pairs.txt 10 folds x (300 + 300), dev train
1,100 + 1,100, dev test 500 + 500, 1,680 people with >= 2 images; ORL 40 x 10 of 112x92;
dlib training 4 images / 18 boxes, testing 5 / 25 (no box there is marked ignore).
"""

from pathlib import Path

import pytest
import torch

from facekit.data.detection import DlibFaceBoxes
from facekit.data.lfw import LFWPairs, lfw_people, read_pairs
from facekit.data.orl import load_orl
from facekit.data.registry import REPO_ROOT, available_datasets

SHARED = REPO_ROOT.parent / "shared" / "datasets"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"real datasets not found at {SHARED}"),
]


@pytest.fixture(scope="module")
def roots():
    return available_datasets(SHARED)


def _need(roots, name) -> Path:
    if roots[name] is None:
        pytest.skip(f"{name} not found in {SHARED}")
    return roots[name]


def test_lfw_pairs_txt(roots):
    parsed = read_pairs(_need(roots, "lfw") / "pairs.txt")  # checks that every image exists
    assert len(parsed.folds) == 10 and all(len(f) == 600 for f in parsed.folds)
    assert len(parsed) == 6000 and sum(p.is_same for p in parsed.pairs) == 3000 and parsed.skipped == []


@pytest.mark.parametrize(("split", "count"), [("dev_train", 2200), ("dev_test", 1000)])
def test_lfw_dev_splits(roots, split, count):
    ds = LFWPairs(_need(roots, "lfw"), split=split, image_size=64)
    assert len(ds) == count and len(ds.folds) == 1 and sum(p.is_same for p in ds.pairs) == count // 2
    img_a, img_b, same = ds[0]
    assert img_a.shape == img_b.shape == (3, 64, 64) and same is True


def test_lfw_people(roots):
    ds = lfw_people(_need(roots, "lfw"), min_images=2)
    assert ds.num_classes == 1680 and len(ds) == 9164
    image, _ = ds[0]
    assert image.shape == (3, 250, 250) and image.dtype == torch.float32


def test_orl(roots):
    ds = load_orl(_need(roots, "orl"))
    assert len(ds) == 400 and ds.num_classes == 40 and ds.classes[:3] == ["s1", "s2", "s3"]
    image, label = ds[399]
    assert image.shape[0] in (1, 3) and image.shape[1:] == (112, 92) and label == 39


@pytest.mark.parametrize(("split", "images", "boxes"), [("training", 4, 18), ("testing", 5, 25)])
def test_dlib(roots, split, images, boxes):
    ds = DlibFaceBoxes(_need(roots, "dlib"), split, landmarks=True)
    assert len(ds) == images and ds.num_boxes == boxes
    assert not any(a.ignore.any() for a in ds.annotations)
    image, target = ds[0]
    assert image.shape[0] == 3 and target["landmarks5"].shape == (len(target["boxes"]), 5, 2)
    x1, y1, x2, y2 = target["boxes"].unbind(-1)
    eyes = target["landmarks5"][:, :2]  # eye centres lie inside their face box, viewer-left first
    assert ((eyes[..., 0] >= x1[:, None]) & (eyes[..., 0] <= x2[:, None])).all()
    assert (eyes[:, 0, 0] < eyes[:, 1, 0]).all()
