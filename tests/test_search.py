"""facekit.search: faiss and the exact torch search agree, threshold-from-FAR and open-set rates on hand cases."""

import doctest
import importlib

import numpy as np
import pytest
import torch

from facekit.config import ConfigError
from facekit.search import FaceIndex, dir_at_far, faiss_available, open_set_rates, threshold_at_far

pytestmark = pytest.mark.usefixtures("one_thread")
needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")


@pytest.mark.parametrize("name", ["facekit.search.index", "facekit.search.openset"])
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0


def random_gallery(seed=0, n=200, d=32, q=50):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, 40, n), rng.normal(size=(q, d))


def naive_topk(gallery, queries, k):
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    out = []
    for q in queries:
        sims = g @ (q / np.linalg.norm(q))
        out.append(sorted(range(len(g)), key=lambda i: -sims[i])[:k])
    return np.array(out)


def test_torch_search_matches_naive_loop():
    gallery, labels, queries = random_gallery()
    index = FaceIndex(32, backend="torch")
    index.add(gallery[:120], labels[:120])
    index.add(torch.from_numpy(gallery[120:]), labels[120:])  # enrolment in two steps, tensors accepted
    hits = index.search(queries, k=5)
    assert np.array_equal(hits.indices, naive_topk(gallery, queries, 5))
    assert np.array_equal(hits.labels, labels[hits.indices])
    assert np.all(np.diff(hits.scores, axis=1) <= 0)
    assert len(index) == 200


@needs_faiss
def test_faiss_and_torch_identical_topk():
    gallery, labels, queries = random_gallery(seed=1)
    results = {}
    for backend in ("faiss", "torch"):
        index = FaceIndex(32, backend=backend)
        index.add(gallery, labels)
        results[backend] = index.search(queries, k=10)
    assert np.array_equal(results["faiss"].indices, results["torch"].indices)
    assert np.array_equal(results["faiss"].labels, results["torch"].labels)
    np.testing.assert_allclose(results["faiss"].scores, results["torch"].scores, atol=1e-5)
    assert FaceIndex(32).backend == "faiss"


def test_index_errors():
    with pytest.raises(ConfigError):
        FaceIndex(4, backend="annoy")
    index = FaceIndex(4, backend="torch")
    with pytest.raises(ValueError, match="empty"):
        index.search(np.ones((1, 4)))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        index.add(np.ones((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="labels"):
        index.add(np.ones((2, 4)), [0])
    index.add(np.eye(4), list("abcd"))
    with pytest.raises(ValueError, match="k=5"):
        index.search(np.ones((1, 4)), k=5)


def test_threshold_at_far_hand_case():
    s = [0.1, 0.5, 0.3, 0.9, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0]  # 10 impostor scores
    assert threshold_at_far(s, 0.0) == np.nextafter(0.9, np.inf)  # accept nothing
    assert threshold_at_far(s, 0.1) == np.nextafter(0.8, np.inf)  # accept 0.9 only
    assert threshold_at_far(s, 0.25) == np.nextafter(0.7, np.inf)  # floor(2.5) = 2 accepted
    assert threshold_at_far(s, 1.0) == -np.inf
    ties = [0.5, 0.5, 0.5, 0.1]
    t = threshold_at_far(ties, 0.5)  # 2 may be accepted, but the three 0.5s go together: none of them is
    assert np.mean(np.array(ties) >= t) == 0.0
    s32 = np.array(s, np.float32)  # float32 scores (faiss) compare in float32: the step above must survive that
    assert np.mean(s32 >= threshold_at_far(s32, 0.1)) == 0.1
    with pytest.raises(ValueError, match="far"):
        threshold_at_far(s, 1.5)
    with pytest.raises(ValueError, match="impostor_scores"):
        threshold_at_far([], 0.1)


def test_threshold_far_never_exceeds_target_on_random_scores():
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = rng.normal(size=rng.integers(1, 300))
        far = rng.uniform(0, 1)
        assert np.mean(s >= threshold_at_far(s, far)) <= far + 1e-12


def test_open_set_rates_hand_case():
    known = [0.95, 0.85, 0.75, 0.65, 0.55]
    correct = [True, True, False, True, False]
    unknown = [0.9, 0.6, 0.5, 0.4]
    r = open_set_rates(known, correct, unknown, threshold=0.7)
    # accepted known probes: 0.95 (right), 0.85 (right), 0.75 (wrong) -> DIR = 2/5; unknown accepted: 0.9 -> 1/4
    assert (r.dir, r.false_alarm_rate, r.rank1) == (0.4, 0.25, 0.6)
    assert (r.num_known, r.num_unknown) == (5, 4)
    # FAR target 0.25 on calibration unknowns [0.8, 0.7, 0.3, 0.2]: accept 1 -> threshold just above 0.7
    r = dir_at_far(known, correct, unknown, 0.25, calibration_scores=[0.8, 0.7, 0.3, 0.2])
    assert r.threshold == np.nextafter(0.7, np.inf)
    assert (r.dir, r.false_alarm_rate) == (0.4, 0.25)  # 0.75 is still accepted (wrong identity)
    with pytest.raises(ValueError, match="flags"):
        open_set_rates(known, correct[:3], unknown, 0.5)
