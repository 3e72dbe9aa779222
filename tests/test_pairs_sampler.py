"""facekit.data.pairs (make_pairs, count_pairs) and facekit.data.samplers (IdentityBatchSampler)."""

import doctest
import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import facekit.data.pairs as pairs_module
import facekit.data.samplers as samplers_module
from facekit.data import IdentityBatchSampler, count_pairs, make_pairs


@pytest.mark.parametrize("module", [pairs_module, samplers_module], ids=lambda m: m.__name__)
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def naive_counts(labels):
    same = diff = 0
    for i, j in itertools.combinations(range(len(labels)), 2):
        if labels[i] == labels[j]:
            same += 1
        else:
            diff += 1
    return same, diff


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 1, 2], [5, 3, 5, 3, 3, 9, 9, 9, 9], [0, 1, 2]])
def test_count_pairs_matches_a_naive_loop(labels):
    assert count_pairs(labels) == naive_counts(labels)


def check_pairs(p, labels, num_same, num_diff):
    labels = np.asarray(labels)
    assert len(p) == num_same + num_diff and p.num_genuine == num_same and p.num_impostor == num_diff
    assert p.a.dtype == np.int64 and p.b.dtype == np.int64 and p.is_same.dtype == bool
    assert (p.a < p.b).all(), "pairs are unordered, stored with a < b (never an image with itself)"
    assert np.array_equal(labels[p.a] == labels[p.b], p.is_same)
    assert len(set(zip(p.a.tolist(), p.b.tolist()))) == len(p), "each pair at most once"


@pytest.mark.parametrize("num_same,num_diff", [(10, 10), (45, 30), (0, 5), (3, 0), (120, 2000)])
def test_make_pairs_is_valid_on_sparse_and_dense_requests(num_same, num_diff):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 12, size=80)  # ~ 250 genuine, ~ 2900 impostor pairs available
    total_same, total_diff = count_pairs(labels)
    assert num_same <= total_same and num_diff <= total_diff
    check_pairs(make_pairs(labels, num_same, num_diff, seed=3), labels, num_same, num_diff)


def test_make_pairs_can_take_every_pair():
    labels = [0, 0, 0, 1, 1, 2]
    total_same, total_diff = count_pairs(labels)
    p = make_pairs(labels, total_same, total_diff, seed=0)
    check_pairs(p, labels, total_same, total_diff)
    assert set(zip(p.a.tolist(), p.b.tolist())) == set(itertools.combinations(range(6), 2))


def test_make_pairs_accepts_tensors_and_is_reproducible():
    labels = torch.arange(20).repeat_interleave(4)
    p1, p2 = make_pairs(labels, 30, 30, seed=7), make_pairs(labels.numpy(), 30, 30, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip((p1.a, p1.b, p1.is_same), (p2.a, p2.b, p2.is_same)))
    p3 = make_pairs(labels, 30, 30, seed=8)
    assert not np.array_equal(p1.a, p3.a)


def test_make_pairs_mixes_genuine_and_impostor_in_every_contiguous_fold():
    labels = np.arange(50).repeat(6)
    p = make_pairs(labels, 300, 300, seed=0)
    folds = np.array_split(np.arange(len(p)), 10)
    assert all(0.25 < p.is_same[f].mean() < 0.75 for f in folds)


def test_make_pairs_is_uniform_over_genuine_pairs():
    # identity 0 has 2 images (1 pair), identity 1 has 4 (6 pairs): one genuine pair is identity 0's with p = 1/7
    labels = [0, 0, 1, 1, 1, 1]
    draws = 2100
    hits = Counter()
    for s in range(draws):
        p = make_pairs(labels, 1, 0, seed=s)
        hits[(int(p.a[0]), int(p.b[0]))] += 1
    assert set(hits) == set(itertools.combinations(range(6), 2)) - {(i, j) for i in (0, 1) for j in range(2, 6)}
    expected = draws / 7
    assert all(abs(n - expected) < 5 * np.sqrt(expected) for n in hits.values()), hits


def test_make_pairs_is_uniform_over_impostor_pairs():
    labels = [0, 0, 0, 1, 2]  # impostor pairs: 3 + 3 + 1 = 7, each with p = 1/7
    draws = 2100
    hits = Counter()
    for s in range(draws):
        p = make_pairs(labels, 0, 1, seed=s)
        hits[(int(p.a[0]), int(p.b[0]))] += 1
    assert len(hits) == 7
    expected = draws / 7
    assert all(abs(n - expected) < 5 * np.sqrt(expected) for n in hits.values()), hits


def test_make_pairs_errors_name_the_problem():
    with pytest.raises(ValueError, match="num_same=5 but these labels allow only 4"):
        make_pairs([0, 0, 0, 1, 1], 5, 1)
    with pytest.raises(ValueError, match="num_diff=7"):
        make_pairs([0, 0, 0, 1, 1], 1, 7)
    with pytest.raises(ValueError, match="num_same=-1"):
        make_pairs([0, 0, 1], -1, 1)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        make_pairs(np.zeros((2, 2)), 1, 1)


# ----------------------------------------------------------------------------- IdentityBatchSampler

def test_sampler_batches_hold_p_identities_of_k_images():
    labels = np.repeat(np.arange(10), 5)  # 10 people x 5 images
    sampler = IdentityBatchSampler(labels, identities_per_batch=4, images_per_identity=3, seed=0)
    assert len(sampler) == 50 // 12 and sampler.batch_size == 12
    for batch in sampler:
        assert len(batch) == 12 and len(set(batch)) == 12, "K <= images: no image twice"
        ids = labels[batch]
        assert len(set(ids.tolist())) == 4
        assert all(v == 3 for v in Counter(ids.tolist()).values())
        assert (ids.reshape(4, 3) == ids.reshape(4, 3)[:, :1]).all(), "identity-major order"


def test_sampler_reproducible_and_new_batches_each_epoch():
    labels = np.repeat(np.arange(8), 4)
    a = IdentityBatchSampler(labels, 2, 2, seed=1)
    b = IdentityBatchSampler(labels, 2, 2, seed=1)
    epoch0, epoch1 = list(a), list(a)
    assert epoch0 == list(b) and epoch1 == list(b)
    assert epoch0 != epoch1
    b.set_epoch(0)
    assert list(b) == epoch0


def test_sampler_repeats_images_only_when_an_identity_has_fewer_than_k():
    labels = [0, 1, 1, 1, 1]
    sampler = IdentityBatchSampler(labels, 2, 3, num_batches=20, seed=0)
    for batch in sampler:
        counts = Counter(batch)
        assert counts[0] == 3  # the single image of identity 0, three times
        assert all(counts[i] <= 1 for i in range(1, 5))


def test_sampler_works_with_a_dataloader_and_tensor_labels():
    labels = torch.arange(6).repeat_interleave(4)
    x = torch.arange(24, dtype=torch.float32)[:, None]
    loader = DataLoader(TensorDataset(x, labels), batch_sampler=IdentityBatchSampler(labels, 3, 2, num_batches=5))
    batches = list(loader)
    assert len(batches) == 5 and all(xb.shape == (6, 1) and yb.shape == (6,) for xb, yb in batches)
    assert all(torch.equal(labels[xb[:, 0].long()], yb) for xb, yb in batches)


def test_sampler_errors_name_the_parameter():
    with pytest.raises(ValueError, match="identities_per_batch=3"):
        IdentityBatchSampler([0, 0, 1, 1], 3, 2)
    with pytest.raises(ValueError, match="images_per_identity=0"):
        IdentityBatchSampler([0, 0, 1, 1], 2, 0)
    with pytest.raises(ValueError, match="non-empty"):
        IdentityBatchSampler([], 1, 1)
