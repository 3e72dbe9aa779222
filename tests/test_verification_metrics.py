"""facekit.metrics.verification against sklearn, hand-computed cases and naive loops."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from facekit.metrics.verification import (auc, best_accuracy_threshold, cosine_scores, eer, identification,
                                          kfold_accuracy, min_impostor_pairs, roc, tar_at_far, verification_report)

# a hand-computed case: genuine 0.9, 0.8, 0.3; impostor 0.7, 0.2, 0.1
HAND_SCORES = [0.9, 0.8, 0.3, 0.7, 0.2, 0.1]
HAND_SAME = [1, 1, 1, 0, 0, 0]


def random_pairs(n=300, seed=0, decimals=None):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    scores = rng.normal(loc=np.where(same, 1.0, 0.0), scale=1.0)
    return (scores.round(decimals) if decimals is not None else scores), same


@pytest.mark.parametrize("decimals", [None, 1])  # 1 decimal: many ties
def test_roc_and_auc_match_sklearn(decimals):
    scores, same = random_pairs(decimals=decimals)
    far, tar, thr = roc_curve(same, scores, drop_intermediate=False)
    for s, y in [(scores, same), (torch.tensor(scores), torch.tensor(same)), (scores.tolist(), same.tolist())]:
        r = roc(s, y)
        np.testing.assert_array_equal(r.far, far)
        np.testing.assert_array_equal(r.tar, tar)
        np.testing.assert_array_equal(r.thresholds, thr)
        assert (r.num_genuine, r.num_impostor) == (same.sum(), (~same).sum())
        assert auc(s, y) == pytest.approx(roc_auc_score(same, scores), abs=1e-12)


def test_input_validation():
    with pytest.raises(ValueError, match="both genuine and impostor"):
        roc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="expected"):
        roc([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        eer([0.1, float("nan")], [1, 0])


def test_eer_hand_cases():
    assert eer(HAND_SCORES, HAND_SAME) == pytest.approx((1 / 3, 0.7))  # at 0.7: FAR = FRR = 1/3
    # genuine 0.5; impostors 0.8, 0.2: FAR stays 1/2 from 0.8 down to 0.5 while FRR falls 1 -> 0;
    # the crossing is half-way along that segment: EER 1/2 at threshold 0.65
    assert eer([0.5, 0.8, 0.2], [1, 0, 0]) == pytest.approx((0.5, 0.65))
    assert eer([0.9, 0.1], [1, 0]) == pytest.approx((0.0, 0.9))  # separable


def test_eer_against_root_finding():
    from scipy.optimize import brentq

    for seed in range(3):
        scores, same = random_pairs(n=200, seed=seed, decimals=1 if seed == 2 else None)
        far, tar, _ = roc_curve(same, scores, drop_intermediate=False)
        steps = np.arange(len(far))  # walk along the ROC polyline with a parameter u
        u = brentq(lambda t: np.interp(t, steps, far) - (1 - np.interp(t, steps, tar)), 0, len(far) - 1)
        rate, threshold = eer(scores, same)
        assert rate == pytest.approx(np.interp(u, steps, far), abs=1e-9)
        if seed < 2:  # without ties, the rates at the interpolated threshold are within one pair of the EER
            frr_at = np.mean(scores[same] < threshold)
            far_at = np.mean(scores[~same] >= threshold)
            assert abs(frr_at - rate) <= 1 / same.sum() + 1e-9 and abs(far_at - rate) <= 1 / (~same).sum() + 1e-9


def test_tar_at_far_hand_case():
    r = tar_at_far(HAND_SCORES, HAND_SAME, far_targets=(0.1, 1 / 3, 0.5, 1.0))
    # ROC points (FAR, TAR): (0, 1/3) at 0.9, (0, 2/3) at 0.8, (1/3, 2/3) at 0.7, (1/3, 1) at 0.3, ...
    assert [x.tar for x in r] == pytest.approx([2 / 3, 1.0, 1.0, 1.0])
    assert r[0].threshold == pytest.approx(0.8 + 0.3 * (0.7 - 0.8))  # 30 % of the way from 0.8 to 0.7
    assert r[1].threshold == pytest.approx(0.3)
    assert all(x.num_impostor_pairs == 3 for x in r)


def naive_tar_on_polyline(far, tar, target):
    """TAR where the ROC polyline (points joined in order) reaches FAR = target; the highest on a vertical step."""
    at = [t for f, t in zip(far, tar) if f == target]
    if at:
        return max(at)
    for (f0, t0), (f1, t1) in zip(zip(far, tar), zip(far[1:], tar[1:])):
        if f0 < target < f1:
            return t0 + (target - f0) / (f1 - f0) * (t1 - t0)


@pytest.mark.parametrize("decimals", [None, 2])
def test_tar_at_far_against_naive_polyline(decimals):
    scores, same = random_pairs(n=2000, seed=4, decimals=decimals)
    far, tar, _ = roc_curve(same, scores, drop_intermediate=False)
    targets = (0.3, 0.1, 0.05, 0.01, 0.0005, far[far > 0][3])  # the last one is a ROC point
    for target, r in zip(targets, tar_at_far(scores, same, targets)):
        assert r.far_target == target
        assert r.tar == pytest.approx(naive_tar_on_polyline(far.tolist(), tar.tolist(), target), abs=1e-12)
        # bounded by the conservative step value (best TAR with FAR <= target) and the next ROC point
        assert tar[far <= target].max() - 1e-12 <= r.tar <= tar[far > target].min() + 1e-12
        if decimals is None:  # no ties: the ROC is a staircase, the interpolated TAR is the step value
            assert r.tar == pytest.approx(tar[far <= target].max(), abs=1e-12)


def test_supported_flag():
    assert min_impostor_pairs(1e-4) == 10_000 and min_impostor_pairs(1e-3) == 1000 and min_impostor_pairs(0.1) == 10
    rng = np.random.default_rng(5)
    for n_impostor, expected in [(999, [True, True, False, False]), (1000, [True, True, True, False]),
                                 (9999, [True, True, True, False]), (10_000, [True, True, True, True])]:
        scores = np.concatenate([rng.normal(1, 1, 50), rng.normal(0, 1, n_impostor)])
        same = np.r_[np.ones(50, bool), np.zeros(n_impostor, bool)]
        r = tar_at_far(scores, same)
        assert [x.supported for x in r] == expected
        assert all(0 <= x.tar <= 1 for x in r)  # unsupported values are still given


def test_best_accuracy_threshold_by_hand():
    assert best_accuracy_threshold([0.9, 0.6, 0.4, 0.1], [1, 1, 0, 0]) == (0.5, 1.0)
    assert best_accuracy_threshold([0.2, 0.1], [1, 1]) == (-math.inf, 1.0)  # accept everything
    assert best_accuracy_threshold([0.2, 0.1], [0, 0]) == (math.inf, 1.0)  # reject everything
    # genuine 0.9, 0.3; impostor 0.5: -inf (accept all) and 0.7 (accept 0.9 only) both reach 2/3: the smaller
    assert best_accuracy_threshold([0.9, 0.3, 0.5], [1, 1, 0]) == (-math.inf, pytest.approx(2 / 3))


def naive_kfold(scores, same, folds):
    """The LFW protocol with a plain loop over candidate thresholds."""
    accs, thresholds = [], []
    for i, test in enumerate(folds):
        train = [j for k, f in enumerate(folds) if k != i for j in f]
        distinct = sorted(set(scores[train].tolist()))
        candidates = [-math.inf] + [(a + b) / 2 for a, b in zip(distinct, distinct[1:])] + [math.inf]
        best_t, best_acc = None, -1.0
        for t in candidates:
            acc = sum((scores[j] > t) == same[j] for j in train) / len(train)
            if acc > best_acc:
                best_t, best_acc = t, acc
        thresholds.append(best_t)
        accs.append(sum((scores[j] > best_t) == same[j] for j in test) / len(test))
    return accs, thresholds


@pytest.mark.parametrize("decimals", [None, 1])
def test_kfold_matches_naive_loop(decimals):
    scores, same = random_pairs(n=200, seed=6, decimals=decimals)
    perm = np.random.default_rng(7).permutation(200)
    folds = [perm[k::10].tolist() for k in range(10)]  # LFWPairs.folds style: lists of indices
    r = kfold_accuracy(scores, same, folds)
    accs, thresholds = naive_kfold(scores, same, folds)
    np.testing.assert_allclose(r.accuracies, accs, atol=1e-12)
    np.testing.assert_allclose(r.thresholds, thresholds, atol=1e-12)
    assert r.mean == pytest.approx(np.mean(accs)) and r.std == pytest.approx(np.std(accs))
    contiguous = kfold_accuracy(scores, same, 10)
    np.testing.assert_allclose(contiguous.accuracies, naive_kfold(scores, same, np.array_split(np.arange(200), 10))[0])


def test_kfold_never_chooses_the_threshold_on_the_test_fold():
    # folds 1..9: genuine 0.6..0.9, impostor 0.1..0.4 -> on them, the best threshold is 0.5 and only 0.5;
    # fold 0: genuine 0.46, 0.47 and impostor 0.42, 0.43, whose own best threshold would be ~0.445 (accuracy 1)
    rng = np.random.default_rng(8)
    folds, scores, same = [], [], []
    for k in range(10):
        if k == 0:
            s, y = [0.46, 0.47, 0.42, 0.43], [1, 1, 0, 0]
        else:
            s, y = list(rng.uniform(0.6, 0.9, 3)) + list(rng.uniform(0.1, 0.4, 3)), [1, 1, 1, 0, 0, 0]
        folds.append(list(range(len(scores), len(scores) + len(s))))
        scores += s
        same += y
    scores, same = np.array(scores), np.array(same, bool)
    r = kfold_accuracy(scores, same, folds)
    train = [i for f in folds[1:] for i in f]
    lo, hi = scores[train][~same[train]].max(), scores[train][same[train]].min()
    assert r.thresholds[0] == pytest.approx((lo + hi) / 2)  # the optimum of folds 1..9
    assert r.accuracies[0] == 0.5  # both genuine pairs of fold 0 rejected at that threshold
    assert best_accuracy_threshold(scores[folds[0]], same[folds[0]])[1] == 1.0  # its own optimum was better
    # and a fold's threshold does not move when only that fold's scores change
    moved = scores.copy()
    moved[folds[3]] = rng.uniform(0, 1, len(folds[3]))
    assert kfold_accuracy(moved, same, folds).thresholds[3] == r.thresholds[3]


def test_kfold_fold_errors():
    scores, same = random_pairs(n=20)
    with pytest.raises(ValueError, match="overlap"):
        kfold_accuracy(scores, same, [[0, 1, 2], [2, 3]])
    with pytest.raises(ValueError, match="fold indices"):
        kfold_accuracy(scores, same, [[0, 1], [25]])
    with pytest.raises(ValueError, match="folds=1"):
        kfold_accuracy(scores, same, 1)


def test_verification_report_bundles_the_parts():
    scores, same = random_pairs(n=400, seed=9)
    rep = verification_report(scores, same, folds=10)
    assert rep.auc == auc(scores, same) and (rep.eer, rep.eer_threshold) == eer(scores, same)
    assert [x.tar for x in rep.tar_at_far] == [x.tar for x in tar_at_far(scores, same)]
    assert rep.kfold.mean == kfold_accuracy(scores, same, 10).mean
    assert (rep.num_genuine, rep.num_impostor) == (same.sum(), (~same).sum())
    text = rep.summary()
    assert "10-fold accuracy" in text and "unsupported" in text  # ~200 impostor pairs cannot support 1e-3
    assert verification_report(scores, same).kfold is None


def test_cosine_scores():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    expected = [np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)) for u, v in zip(a, b)]
    np.testing.assert_allclose(cosine_scores(a, b), expected)
    np.testing.assert_allclose(cosine_scores(torch.tensor(a), torch.tensor(b)), expected)
    with pytest.raises(ValueError, match="same shape"):
        cosine_scores(a, b[:3])


def test_identification_hand_made_gallery():
    gallery = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]]  # identity 0 has two images
    gallery_labels = [0, 0, 1, 2]
    probes = [[0.8, 0.6], [0.1, 1.0], [0.2, 0.9]]
    probe_labels = [0, 2, 0]
    # probe 0: identity 0 scores 0.96 (its 2nd image) > 1: 0.6 > 2: -0.8        -> rank 1
    # probe 1: 1: 0.995 > 0: 0.856 > 2: -0.0995, its identity 2 is last         -> rank 3
    # probe 2: 1: 0.976 > 0: 0.911 > 2                                           -> rank 2
    r = identification(gallery, gallery_labels, probes, probe_labels, ranks=(1, 2, 5))
    assert r.probe_ranks.tolist() == [1, 3, 2]
    assert r.rank1 == pytest.approx(1 / 3)
    np.testing.assert_allclose(r.cmc, [1 / 3, 2 / 3, 1.0])
    assert r.at_ranks == pytest.approx({1: 1 / 3, 2: 2 / 3, 5: 1.0})
    assert (r.num_probes, r.num_gallery_identities) == (3, 3)
    with pytest.raises(ValueError, match="absent from the gallery"):
        identification(gallery, gallery_labels, probes, [0, 7, 0])


def test_identification_against_naive_loop():
    rng = np.random.default_rng(11)
    gallery, gallery_labels = rng.normal(size=(12, 5)), rng.integers(0, 6, 12)
    probes = rng.normal(size=(9, 5))
    probe_labels = rng.choice(np.unique(gallery_labels), 9)
    r = identification(torch.tensor(gallery), torch.tensor(gallery_labels), probes, probe_labels)
    ids = sorted(set(gallery_labels.tolist()))
    for p, label, rank in zip(probes, probe_labels, r.probe_ranks):
        score = {i: max(np.dot(p, g) / np.linalg.norm(p) / np.linalg.norm(g)
                        for g, lg in zip(gallery, gallery_labels) if lg == i) for i in ids}
        assert rank == sum(score[i] >= score[label] for i in ids)


# ---------------------------------------------------------------- one home: open-set, identification, groups
def test_one_threshold_rule_one_open_set_result_one_normaliser():
    import facekit.fairness as fairness
    import facekit.metrics as metrics
    import facekit.pretrained.transfer as transfer
    import facekit.search as search

    assert search.threshold_at_far is metrics.threshold_at_far
    assert search.OpenSetResult is metrics.OpenSetResult is transfer.OpenSetResult
    assert fairness.group_rates is metrics.group_rates and transfer.enrol is metrics.enrol
    rng = np.random.default_rng(0)
    for n in (1, 7, 40):
        s = rng.normal(size=n)
        for far in (0.0, 0.1, 0.5, 1.0):
            assert metrics.threshold_at_fmr(s, far) == metrics.threshold_at_far(s, far)
    rows = rng.normal(size=(5, 3))
    np.testing.assert_allclose(metrics.l2_normalize(rows), rows / np.linalg.norm(rows, axis=1, keepdims=True))


def test_open_set_result_unifies_both_views():
    from facekit.metrics import open_set_metrics, open_set_rates

    known, correct, unknown = [0.9, 0.7, 0.4, 0.8], [True, False, True, True], [0.8, 0.3, 0.6]
    a, b = open_set_rates(known, correct, unknown, 0.65), open_set_metrics(0.65, known, correct, unknown)
    assert a == b
    assert a.dir == a.known_identification == 0.5  # 0.9 and 0.8 right and accepted
    assert a.false_alarm_rate == pytest.approx(1 / 3) and a.unknown_rejection == pytest.approx(2 / 3)  # 0.8 accepted
    assert a.known_false_rejection == 0.25 and a.accuracy == pytest.approx(4 / 7)  # 2 named + 2 rejected of 7
    assert np.isnan(open_set_metrics(0.5, known, correct, []).false_alarm_rate)
    with pytest.raises(ValueError, match="unknown_top1_scores must be a non-empty"):
        open_set_rates(known, correct, [], 0.5)


@pytest.mark.parametrize("module", ["verification", "identification", "openset", "groups"])
def test_metric_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"facekit.metrics.{module}"))
    assert result.failed == 0 and result.attempted > 0


def test_held_out_correct_is_the_per_pair_outcome_of_kfold_accuracy():
    import numpy as np

    from facekit.metrics import held_out_correct, kfold_accuracy

    rng = np.random.default_rng(0)
    is_same = rng.random(300) < 0.5
    scores = is_same + rng.normal(0, 0.8, 300)
    folds = np.array_split(rng.permutation(300), 10)
    result = kfold_accuracy(scores, is_same, folds)
    correct = held_out_correct(scores, is_same, folds, result.thresholds)
    assert correct.dtype == bool and correct.shape == (300,)
    for fold, acc in zip(folds, result.accuracies):
        assert correct[fold].mean() == pytest.approx(acc)
    with pytest.raises(ValueError, match="one threshold per fold: 10 folds, 3 thresholds"):
        held_out_correct(scores, is_same, folds, [0.1, 0.2, 0.3])
