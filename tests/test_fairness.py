"""facekit.fairness: per-group FNMR / FMR against hand-computed cases, thresholds, disparities."""

import numpy as np
import pytest

from facekit.fairness import disparity, global_threshold, group_rates, per_group_thresholds, threshold_at_fmr

# a hand-made case: group "a" has 4 genuine + 4 impostor pairs, group "b" 2 genuine + 5 impostor pairs
SCORES = np.array([0.9, 0.8, 0.55, 0.3, 0.7, 0.5, 0.2, 0.1,  # a: genuine x4, impostor x4
                   0.95, 0.45, 0.85, 0.6, 0.4, 0.35, 0.05])  # b: genuine x2, impostor x5
SAME = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0], bool)
GROUP = np.array(["a"] * 8 + ["b"] * 7)


def test_group_rates_at_one_threshold_by_hand():
    r = group_rates(SCORES, SAME, GROUP, 0.5)  # accept score >= 0.5
    assert r.groups == ["a", "b"]
    # a: genuine 0.9 0.8 0.55 accepted, 0.3 rejected -> FNMR 1/4; impostor 0.7 0.5 accepted -> FMR 2/4
    # b: genuine 0.95 accepted, 0.45 rejected -> FNMR 1/2; impostor 0.85 0.6 accepted -> FMR 2/5
    np.testing.assert_allclose(r.fnmr, [1 / 4, 1 / 2])
    np.testing.assert_allclose(r.fmr, [2 / 4, 2 / 5])
    assert r.num_genuine.tolist() == [4, 2] and r.num_impostor.tolist() == [4, 5]
    assert list(r.frame().columns[:3]) == ["group", "FNMR", "FMR"]


def test_group_rates_match_a_naive_loop_on_random_data():
    rng = np.random.default_rng(0)
    s, y, g = rng.normal(size=500), rng.uniform(size=500) < 0.3, rng.integers(0, 4, 500)
    r = group_rates(s, y, g, 0.2)
    for k, name in enumerate(r.groups):
        gen = [x for x, same, grp in zip(s, y, g) if grp == name and same]
        imp = [x for x, same, grp in zip(s, y, g) if grp == name and not same]
        assert r.fnmr[k] == pytest.approx(sum(x < 0.2 for x in gen) / len(gen))
        assert r.fmr[k] == pytest.approx(sum(x >= 0.2 for x in imp) / len(imp))


def test_threshold_at_fmr_and_global_threshold():
    imp = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    t = threshold_at_fmr(imp, 0.2)  # at most 2 of 10 accepted
    assert np.mean(imp >= t) == 0.2 and 0.8 < t <= 0.9
    assert np.mean(imp >= threshold_at_fmr(imp, 0.0)) == 0.0
    assert np.mean(imp >= threshold_at_fmr(imp, 1.0)) == 1.0
    assert global_threshold(SCORES, SAME, 2 / 9) == threshold_at_fmr(SCORES[~SAME], 2 / 9)
    with pytest.raises(ValueError):
        threshold_at_fmr([], 0.1)


def test_per_group_thresholds_equalise_fmr():
    rng = np.random.default_rng(1)
    g = np.repeat(["x", "y"], 1000)
    y = np.tile(rng.uniform(size=1000) < 0.2, 2)
    s = rng.normal(size=2000) + np.where(g == "y", 1.0, 0.0) + 2 * y  # group y's impostors score higher
    at_global = group_rates(s, y, g, global_threshold(s, y, 0.05))
    at_groups = group_rates(s, y, g, per_group_thresholds(s, y, g, 0.05))
    assert at_global.fmr[1] > at_global.fmr[0] * 2, "the case has an FMR gap at one threshold"
    assert np.all(at_groups.fmr <= 0.05) and np.all(at_groups.fmr > 0.04)
    assert disparity(at_groups.fmr) < disparity(at_global.fmr)
    with pytest.raises(ValueError, match="no threshold"):
        group_rates(s, y, g, {"x": 0.0})


def test_disparity():
    assert disparity([0.01, 0.04, 0.02]) == pytest.approx(4.0)
    assert disparity([0.0, 0.0]) == 1.0
    assert disparity([0.0, 0.1]) == float("inf")
    assert disparity([0.1, np.nan, 0.2]) == pytest.approx(2.0)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="one entry per pair"):
        group_rates([0.1, 0.2], [1], ["a", "a"], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        group_rates([np.nan], [1], ["a"], 0.5)


def test_doctests():
    import doctest

    import facekit.fairness.rates as rates

    result = doctest.testmod(rates)
    assert result.attempted > 0 and result.failed == 0
