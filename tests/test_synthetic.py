"""The procedural synthetic faces: determinism, shapes, geometry, difficulty, argument checks."""

import dataclasses

import numpy as np
import pytest
import torch

from facekit.config import ConfigError
from facekit.data.synthetic import (HAIR_STYLES, OCCLUDERS, SKIN_TONES, Difficulty, Nuisance, SyntheticFaces,
                                    draw_face, render_face, sample_identity, sample_nuisance)


def test_same_seed_same_tensors_and_other_seed_differs():
    a = SyntheticFaces(3, 2, 32, seed=5).tensors()[0]
    b = SyntheticFaces(3, 2, 32, seed=5).tensors()[0]
    c = SyntheticFaces(3, 2, 32, seed=6).tensors()[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_identity_and_image_are_random_access():
    small, big = SyntheticFaces(2, 3, 32, seed=1), SyntheticFaces(6, 5, 32, seed=1)
    assert small.identities[1] == big.identities[1] == sample_identity(1, 1, small.difficulty.identity_spread)
    assert torch.equal(small[1 * 3 + 2][0], big[1 * 5 + 2][0])  # image 2 of person 1 in both sets


def test_image_offset_gives_new_images_of_the_same_people():
    train = SyntheticFaces(3, 4, 32, seed=2)
    held = SyntheticFaces(3, 2, 32, seed=2, image_offset=4)
    more = SyntheticFaces(3, 6, 32, seed=2)
    assert held.identities == train.identities and held.targets == [0, 0, 1, 1, 2, 2]
    assert torch.equal(held[2][0], more[6 + 4][0])  # held image 0 of person 1 = image 4 of person 1
    assert not any(torch.equal(held[2][0], train[4 + j][0]) for j in range(4))


@pytest.mark.parametrize("size", [16, 32, 64, 112])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_dtypes_ranges(size, channels):
    ds = SyntheticFaces(2, 2, size, channels=channels, difficulty="hard")
    image, label = ds[3]
    assert image.shape == (channels, size, size) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.02
    assert isinstance(label, int) and label == 1
    X, y = ds.tensors()
    assert X.shape == (4, channels, size, size) and X.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == ds.targets
    assert torch.equal(X[3], image)


def test_dataset_metadata_and_transform():
    ds = SyntheticFaces(3, 2, 32, transform=lambda t: t * 0 + 1)
    assert len(ds) == 6 and ds.classes == ["id000", "id001", "id002"] and ds.targets == [0, 0, 1, 1, 2, 2]
    assert torch.all(ds[0][0] == 1) and ds[-1][1] == 2
    attrs = ds.attributes(2)
    assert attrs["skin_tone"] in range(len(SKIN_TONES)) and attrs["hair_style"] in HAIR_STYLES
    assert {"glasses", "facial_hair", "hair_color"} <= set(attrs)
    with pytest.raises(IndexError):
        ds[6]


def test_grey_is_luminance_of_rgb():
    rgb = SyntheticFaces(1, 1, 32)[0][0]
    grey = SyntheticFaces(1, 1, 32, channels=1)[0][0]
    expected = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    assert torch.allclose(grey[0], expected, atol=1e-5)


@pytest.mark.parametrize("size", [32, 64, 160])
def test_landmarks_inside_box_and_image_without_rotation(size):
    for i in range(12):
        n = dataclasses.replace(sample_nuisance(0, i, 0, "medium"), rotation=0.0)
        img, lm, box = render_face(sample_identity(0, i), n, size)
        assert img.shape == (size, size, 3) and img.dtype == np.float32 and lm.shape == (5, 2) and box.shape == (4,)
        assert np.all((lm >= 0) & (lm <= size))
        assert np.all(lm[:, 0] >= box[0]) and np.all(lm[:, 0] <= box[2])
        assert np.all(lm[:, 1] >= box[1]) and np.all(lm[:, 1] <= box[3])
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # viewer's left first
        assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])  # eyes above nose above mouth


def test_landmarks_follow_the_pose():
    ident = sample_identity(0, 0)
    _, lm0, box0 = render_face(ident, Nuisance(), 64)
    _, lm1, _ = render_face(ident, Nuisance(shift=(0.1, 0.0)), 64)
    assert np.allclose(lm1 - lm0, [6.4, 0.0], atol=1e-3)
    _, lm2, _ = render_face(ident, Nuisance(rotation=90.0), 64)
    eyes = lm2[1] - lm2[0]  # rotated a quarter turn clockwise: left-to-right eyes now go top-to-bottom
    assert abs(eyes[0]) < 0.5 and eyes[1] > 5
    box_w, box_h = box0[2] - box0[0], box0[3] - box0[1]
    assert 0.3 * 64 < box_w < box_h < 0.8 * 64


def test_resolution_independence():
    """A face at 64 px looks like the same face at 128 px, downsampled."""
    ident, n = sample_identity(0, 2), Nuisance(clutter=0.0, seed=3)
    small, lm_s, _ = render_face(ident, n, 64)
    big, lm_b, _ = render_face(ident, n, 128)
    down = big.reshape(64, 2, 64, 2, 3).mean((1, 3))
    assert np.abs(down - small).mean() < 0.02
    assert np.allclose(lm_b / 2, lm_s, atol=1e-4)


def test_draw_face_into_a_canvas():
    canvas = np.zeros((50, 80, 3), np.float32)
    lm, box = draw_face(canvas, sample_identity(0, 1), Nuisance(), (40, 25), 10.0)
    assert canvas.max() > 0.2 and canvas[:, :15].max() == 0  # painted, but only around the face
    assert 30 < lm[:, 0].mean() < 50 and box[0] < 40 < box[2]


def test_nuisance_is_deterministic_and_scaled_by_difficulty():
    assert sample_nuisance(3, 1, 4) == sample_nuisance(3, 1, 4) != sample_nuisance(3, 1, 5)
    easy, hard = sample_nuisance(0, 0, 0, "easy"), sample_nuisance(0, 0, 0, "hard")
    assert abs(hard.rotation) >= abs(easy.rotation) and abs(hard.yaw) >= abs(easy.yaw)
    kinds = {sample_nuisance(0, 0, j, "hard").occluder for j in range(60)}
    assert kinds == {"none", *OCCLUDERS}
    assert all(sample_nuisance(0, 0, j, "easy").occluder == "none" for j in range(20))


def test_presets_are_ordered_by_within_identity_variation():
    def spread(name):
        X = SyntheticFaces(4, 6, 32, difficulty=name).tensors()[0].view(4, 6, -1)
        return (X - X.mean(1, keepdim=True)).pow(2).sum(-1).sqrt().mean().item()
    easy, medium, hard = spread("easy"), spread("medium"), spread("hard")
    assert easy < medium < hard


def test_difficulty_presets_and_errors():
    assert Difficulty() == Difficulty.preset("medium")
    assert SyntheticFaces(1, 1, 16, difficulty=Difficulty.preset("hard")).difficulty.rotation_deg > 20
    with pytest.raises(ValueError, match="'easy', 'medium', 'hard'"):
        Difficulty.preset("impossible")
    with pytest.raises(ValueError, match="noise_std"):
        Difficulty(noise_std=-1.0)
    with pytest.raises(ValueError, match="occlusion_prob"):
        Difficulty(occlusion_prob=2.0)
    with pytest.raises(ValueError, match="difficulty"):
        SyntheticFaces(difficulty=3)


@pytest.mark.parametrize("kwargs, name", [
    (dict(image_size=8), "image_size"), (dict(image_size=64.0), "image_size"), (dict(channels=2), "channels"),
    (dict(num_identities=0), "num_identities"), (dict(images_per_identity=-1), "images_per_identity"),
    (dict(seed=-3), "seed"), (dict(image_offset=-1), "image_offset"), (dict(transform=5), "transform"),
])
def test_bad_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        SyntheticFaces(**kwargs)


def test_identity_spread_shrinks_differences():
    far = [sample_identity(0, i, 1.0) for i in range(20)]
    near = [sample_identity(0, i, 0.2) for i in range(20)]
    assert np.std([p.face_width for p in near]) < 0.3 * np.std([p.face_width for p in far])
    assert [p.hair_style for p in near] == [p.hair_style for p in far]  # categories stay


def test_easy_identities_are_separable_by_nearest_class_mean():
    kw = dict(num_identities=10, image_size=32, seed=0, difficulty="easy")
    Xtr, ytr = SyntheticFaces(images_per_identity=6, **kw).tensors()
    Xte, yte = SyntheticFaces(images_per_identity=4, image_offset=6, **kw).tensors()
    means = torch.stack([Xtr[ytr == k].mean(0) for k in range(10)]).flatten(1)
    accuracy = (torch.cdist(Xte.flatten(1), means).argmin(1) == yte).float().mean().item()
    assert accuracy > 0.5  # chance is 0.1
