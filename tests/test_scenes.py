"""Detection scenes: target format, geometry, counts, determinism, argument checks."""

import numpy as np
import pytest
import torch

from facekit.config import ConfigError
from facekit.data.scenes import SyntheticScenes

TOL = 1.0  # pixels


@pytest.fixture(scope="module")
def scenes():
    ds = SyntheticScenes(24, (96, 128), faces_per_scene=(0, 4), seed=3)
    return ds, [ds[i] for i in range(len(ds))]


def test_target_format(scenes):
    ds, items = scenes
    for image, t in items:
        n = len(t["boxes"])
        assert image.shape == (3, 96, 128) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1
        assert t["boxes"].shape == (n, 4) and t["boxes"].dtype == torch.float32
        assert t["labels"].dtype == torch.int64 and torch.all(t["labels"] == 1) and len(t["labels"]) == n
        assert t["landmarks"].shape == (n, 5, 2) and t["landmarks"].dtype == torch.float32
        assert t["identities"].dtype == torch.int64 and len(t["identities"]) == n
        assert torch.all((t["identities"] >= 0) & (t["identities"] < ds.num_identities))


def test_counts_in_range_and_empty_scenes_occur(scenes):
    counts = [len(t["boxes"]) for _, t in scenes[1]]
    assert min(counts) >= 0 and max(counts) <= 4
    assert 0 in counts and max(counts) >= 3
    exact = SyntheticScenes(5, 64, faces_per_scene=2, seed=1)
    assert all(len(exact[i][1]["boxes"]) == 2 for i in range(5))


def test_boxes_inside_image_and_landmarks_inside_boxes(scenes):
    for _, t in scenes[1]:
        b, lm = t["boxes"], t["landmarks"]
        assert torch.all(b[:, 0] >= 0) and torch.all(b[:, 1] >= 0)
        assert torch.all(b[:, 2] <= 128) and torch.all(b[:, 3] <= 96)
        assert torch.all(b[:, 2] > b[:, 0]) and torch.all(b[:, 3] > b[:, 1])
        assert torch.all(lm[..., 0] >= b[:, None, 0] - TOL) and torch.all(lm[..., 0] <= b[:, None, 2] + TOL)
        assert torch.all(lm[..., 1] >= b[:, None, 1] - TOL) and torch.all(lm[..., 1] <= b[:, None, 3] + TOL)


def test_face_sizes_follow_face_size():
    ds = SyntheticScenes(10, 200, faces_per_scene=(2, 3), face_size=(0.2, 0.3), seed=0)
    heights = torch.cat([ds[i][1]["boxes"] for i in range(10)])
    heights = heights[:, 3] - heights[:, 1]
    assert 0.12 * 200 < heights.min() and heights.max() < 0.45 * 200  # rotation and yaw change boxes a bit


def test_no_near_total_overlap(scenes):
    for _, t in scenes[1]:
        b = t["boxes"].numpy()
        for i in range(len(b)):
            for j in range(i + 1, len(b)):
                w = min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0])
                h = min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1])
                inter = max(w, 0) * max(h, 0)
                smaller = min((b[k, 2] - b[k, 0]) * (b[k, 3] - b[k, 1]) for k in (i, j))
                assert inter / smaller < 0.6


def test_deterministic():
    a = SyntheticScenes(3, 64, seed=7)
    b = SyntheticScenes(3, 64, seed=7)
    c = SyntheticScenes(3, 64, seed=8)
    for i in range(3):
        (ia, ta), (ib, tb) = a[i], b[i]
        assert torch.equal(ia, ib) and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert any(not torch.equal(a[i][0], c[i][0]) for i in range(3))


def test_collate_for_a_dataloader():
    loader = torch.utils.data.DataLoader(SyntheticScenes(4, 48), batch_size=2, collate_fn=SyntheticScenes.collate)
    images, targets = next(iter(loader))
    assert len(images) == len(targets) == 2 and images[0].shape == (3, 48, 48)


@pytest.mark.parametrize("kwargs, name", [
    (dict(num_scenes=0), "num_scenes"), (dict(image_size=8), "image_size"),
    (dict(image_size=(64, 64, 3)), "image_size"),
    (dict(faces_per_scene=(3, 1)), "faces_per_scene"), (dict(faces_per_scene=(-1, 2)), "faces_per_scene"),
    (dict(face_size=(0.5, 0.2)), "face_size"), (dict(face_size=(0.0, 0.2)), "face_size"),
    (dict(num_identities=0), "num_identities"), (dict(difficulty="brutal"), "difficulty"),
])
def test_bad_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        SyntheticScenes(**kwargs)
