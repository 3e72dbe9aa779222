import pytest
import torch

from facekit.data.splits import TensorImages, split_per_identity


def test_split_per_identity_counts_and_disjoint():
    targets = [i // 10 for i in range(50)]  # 5 people x 10 images
    train, val, test = split_per_identity(targets, n_test=3, n_val=2, seed=1)
    assert (len(train), len(val), len(test)) == (25, 10, 15)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    for part, k in ((train, 5), (val, 2), (test, 3)):
        for person in range(5):
            assert sum(targets[i] == person for i in part) == k


def test_fractions_and_determinism():
    targets = [i % 4 for i in range(40)]
    a = split_per_identity(targets, n_test=0.2, n_val=0.1, seed=3)
    assert a == split_per_identity(targets, n_test=0.2, n_val=0.1, seed=3)
    assert a != split_per_identity(targets, n_test=0.2, n_val=0.1, seed=4)
    assert len(a[2]) == 8 and len(a[1]) == 4


def test_too_few_images_names_the_identity():
    with pytest.raises(ValueError, match="identity 1 has 2 images"):
        split_per_identity([0, 0, 0, 0, 1, 1], n_test=1, n_val=1)


def test_tensor_images():
    ds = TensorImages(torch.rand(6, 1, 4, 4), [0, 1, 2, 0, 1, 2], transform=lambda x: x * 0)
    x, y = ds[4]
    assert y == 1 and x.abs().sum() == 0 and len(ds) == 6
    with pytest.raises(ValueError, match="3 labels"):
        TensorImages(torch.rand(6, 1, 4, 4), [0, 1, 2])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        TensorImages(torch.rand(6, 4, 4), [0] * 6)
