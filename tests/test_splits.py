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


# ---------------------------------------------------------------- open set: split by person

def _split_people_by_hand(people, n_train, n_test, seed):
    """The split chapter 4 wrote in its own cell (the oracle)."""
    import numpy as np

    people = np.random.default_rng(seed).permutation(np.asarray(people))
    if len(people) < n_train + n_test:
        n_test = max(2, round(len(people) * n_test / (n_train + n_test)))
        n_train = len(people) - n_test
    return people[n_test:n_test + n_train], people[:n_test]


@pytest.mark.parametrize("n_people, n_train, n_test", [(30, 10, 5), (12, 20, 10), (7, 5, 5), (40, 39, 1)])
def test_split_people_is_disjoint_scaled_and_matches_the_chapter(n_people, n_train, n_test):
    from facekit.data.splits import split_people

    people = list(range(100, 100 + n_people))
    train, test = split_people(people, n_train, n_test, seed=4)
    assert not set(train.tolist()) & set(test.tolist()) and set(train.tolist()) | set(test.tolist()) <= set(people)
    want_train, want_test = _split_people_by_hand(people, n_train, n_test, 4)
    assert train.tolist() == want_train.tolist() and test.tolist() == want_test.tolist()
    assert len(test) >= min(2, n_test) and len(train) >= 1
    other = split_people(people, n_train, n_test, seed=5)
    assert other[1].tolist() != test.tolist()


def test_split_people_rejects_what_cannot_be_split():
    from facekit.data.splits import split_people

    with pytest.raises(ValueError, match="n_train=0"):
        split_people(range(10), 0, 3)
    with pytest.raises(ValueError, match="2 people"):
        split_people([1, 2], 1, 1)
    train, test = split_people(range(3), 1, 30, seed=0)  # the proportion would leave nobody to train
    assert len(train) == 1 and len(test) == 2


def test_synthetic_open_set_keeps_test_people_out_and_matches_rendering_everyone():
    from facekit.data.splits import synthetic_open_set
    from facekit.data.synthetic import SyntheticFaces

    s = synthetic_open_set(3, 2, 2, 3, 32, seed=7, difficulty="easy")
    assert tuple(s.x_train.shape) == (6, 3, 32, 32) and tuple(s.x_test.shape) == (6, 3, 32, 32)
    assert not set(s.y_train.tolist()) & set(s.y_test.tolist())
    x_all, y_all = SyntheticFaces(5, 3, 32, seed=7, difficulty="easy").tensors()  # chapter 9's way: render all
    is_test = y_all >= 3
    torch.testing.assert_close(s.x_test, x_all[is_test], rtol=0, atol=0)
    assert s.y_test.tolist() == y_all[is_test].tolist()
    x_train, y_train = SyntheticFaces(3, 2, 32, seed=7, difficulty="easy").tensors()
    torch.testing.assert_close(s.x_train, x_train, rtol=0, atol=0)
