"""facekit.stats against scipy, statsmodels, scikit-learn and naive oracles."""

import doctest
import importlib
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

import facekit.stats as st
from facekit.metrics import verification as vm

sm_proportion = pytest.importorskip("statsmodels.stats.proportion", reason="statsmodels (test extra) not installed")
sm_tables = importlib.import_module("statsmodels.stats.contingency_tables")


def pairs(n=400, shift=1.0, seed=0):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    return rng.normal(np.where(same, shift, 0.0), 1.0), same


@pytest.mark.parametrize("name", ["interval", "bootstrap", "verification", "paired", "verdict", ""])
def test_doctests(name):
    module = importlib.import_module("facekit.stats" + (f".{name}" if name else ""))
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# ---- Interval, Wilson, standard error ---------------------------------------------------------------------------

def test_interval_formatting_and_checks():
    iv = st.Interval(0.8123, 0.7811, 0.8404)
    assert str(iv) == "0.812 [0.781, 0.840]"
    assert f"{st.Interval(0.031, 0.012, 0.05):+.3f}" == "+0.031 [+0.012, +0.050]"
    assert iv.level == 0.95 and iv.contains(0.8) and iv.excludes(0.9) and not iv.excludes(0.8)
    neg = st.Interval(0.02, -0.01, 0.05).negated()
    assert (neg.estimate, neg.low, neg.high) == (-0.02, -0.05, 0.01)
    with pytest.raises(ValueError, match="low"):
        st.Interval(0.5, 0.6, 0.4)
    with pytest.raises(ValueError, match="level"):
        st.Interval(0.5, 0.4, 0.6, level=95)
    with pytest.raises(ValueError, match="finite"):
        st.Interval(float("nan"), 0.4, 0.6)


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (5, 10), (10, 10), (812, 1000), (3, 7), (119, 120)])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_wilson_matches_statsmodels(k, n, level):
    low, high = sm_proportion.proportion_confint(k, n, alpha=1 - level, method="wilson")
    iv = st.wilson(k, n, level)
    assert iv.estimate == k / n and iv.method == "Wilson score"
    assert (iv.low, iv.high) == pytest.approx((low, high), abs=1e-12)


def test_wilson_all_correct_is_not_degenerate():
    iv = st.wilson(120, 120)
    assert iv.high == 1.0 and 0.95 < iv.low < 0.98  # 100% on 120 pairs is compatible with about 97%
    assert st.standard_error(1.0, 120) == 0.0  # the Wald SE collapses: why Wilson is the interval to use


@pytest.mark.parametrize("k,n,match", [(1, 0, "n .*positive"), (5, 4, "k .*\\[0, n=4\\]"), (-1, 4, "k"),
                                       (1.5, 4, "k"), (1, 2.5, "n")])
def test_wilson_bad_counts(k, n, match):
    with pytest.raises(ValueError, match=match):
        st.wilson(k, n)


def test_standard_error():
    assert st.standard_error(0.8, 1000) == pytest.approx(math.sqrt(0.8 * 0.2 / 1000))
    with pytest.raises(ValueError, match="n"):
        st.standard_error(0.5, 0)
    with pytest.raises(ValueError, match="proportion"):
        st.standard_error(1.2, 10)


# ---- bootstrap --------------------------------------------------------------------------------------------------

def test_bootstrap_matches_scipy_percentile():
    rng = np.random.default_rng(3)
    x = rng.exponential(size=200)
    ours = st.bootstrap(np.mean, x, n_boot=4000, seed=1)
    ref = sps.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", confidence_level=0.95,
                        random_state=np.random.default_rng(2), vectorized=False).confidence_interval
    se = x.std() / math.sqrt(len(x))
    assert ours.estimate == pytest.approx(x.mean())
    # two Monte-Carlo estimates of the same 2.5% quantile, 4,000 resamples each: each has a Monte-Carlo SE of
    # sqrt(0.025 * 0.975 / 4000) / pdf(1.96) = 0.042 SE of the mean, their difference 0.06; allow 4 of those
    assert ours.low == pytest.approx(ref.low, abs=0.25 * se)
    assert ours.high == pytest.approx(ref.high, abs=0.25 * se)
    assert ours.low != ref.low  # independent streams: the comparison above is not of one number with itself
    assert "4,000 resamples of 200 items" in ours.method


def test_bootstrap_several_arrays_torch_and_reproducible():
    s, y = pairs()

    def gap(s, y):
        return s[y].mean() - s[~y].mean()

    a = st.bootstrap(gap, s, y, n_boot=300, seed=5)
    b = st.bootstrap(gap, torch.tensor(s), torch.tensor(y), n_boot=300, seed=5)
    assert a == b and a.estimate == pytest.approx(s[y].mean() - s[~y].mean())
    assert st.bootstrap(np.mean, s, n_boot=300, seed=6) != st.bootstrap(np.mean, s, n_boot=300, seed=7)


def test_grouped_bootstrap_is_wider_when_groups_are_correlated():
    """Pairs of one person share a person effect: resampling pairs understates the spread, resampling people not."""
    rng = np.random.default_rng(0)
    people, per_person = 40, 25
    groups = np.repeat(np.arange(people), per_person)
    x = rng.normal(0, 1, people)[groups] + rng.normal(0, 0.3, groups.size)  # strongly correlated within a person
    flat = st.bootstrap(np.mean, x, n_boot=1000)
    grouped = st.bootstrap(np.mean, x, groups=groups, n_boot=1000)
    # the person means are the independent units: their SE is the truth the grouped interval should match
    person_means = x.reshape(people, per_person).mean(1)
    true_half = 1.96 * person_means.std(ddof=1) / math.sqrt(people)
    assert grouped.width / 2 == pytest.approx(true_half, rel=0.2)
    assert grouped.width > 3 * flat.width
    assert "40 groups" in grouped.method


def test_resample_indices_keeps_groups_whole():
    groups = np.array([0, 0, 0, 1, 1, 2])
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = st.resample_indices(len(groups), groups, rng=rng)
        for g in np.unique(groups[idx]):
            count = np.sum(groups[idx] == g)
            assert count % np.sum(groups == g) == 0  # every drawn group comes with all of its items


def test_bootstrap_errors():
    with pytest.raises(ValueError, match="n = 0"):
        st.bootstrap(np.mean, np.array([]))
    with pytest.raises(ValueError, match="array 1 has 3"):
        st.bootstrap(lambda a, b: 0.0, np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError, match="groups"):
        st.bootstrap(np.mean, np.zeros(4), groups=[0, 1])
    with pytest.raises(ValueError, match="n_boot"):
        st.bootstrap(np.mean, np.zeros(4), n_boot=1)
    with pytest.raises(ValueError, match="level"):
        st.bootstrap(np.mean, np.zeros(4), level=1.5)
    # one genuine pair among 30: most resamples have one class only, where AUC is undefined
    y = np.zeros(30, bool)
    y[0] = True
    with pytest.raises(ValueError, match="undefined on"):
        st.bootstrap(lambda s, t: roc_auc_score(t, s), np.arange(30.0), y, n_boot=200)


# ---- verification intervals -------------------------------------------------------------------------------------

def test_verification_intervals_estimate_the_facekit_metrics():
    s, y = pairs(600)
    auc = st.auc_interval(s, y, n_boot=300)
    eer = st.eer_interval(s, y, n_boot=300)
    tar = st.tar_at_far_interval(s, y, far=0.01, n_boot=300)
    assert auc.estimate == vm.auc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert eer.estimate == vm.eer(s, y)[0]
    assert tar.estimate == vm.tar_at_far(s, y, (0.01,))[0].tar
    for iv in (auc, eer, tar):
        assert iv.low < iv.estimate < iv.high
    # the bootstrap spread of an AUC agrees with the Hanley-McNeil standard error to about 20%
    a, m, n = auc.estimate, int(y.sum()), int((~y).sum())
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se_hm = math.sqrt((a * (1 - a) + (m - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (m * n))
    assert auc.width / 2 == pytest.approx(1.96 * se_hm, rel=0.2)


@pytest.mark.parametrize("name", ["auc", "eer", "accuracy", "tar@far=0.05", "tar@far=0.1"])
@pytest.mark.parametrize("grouped", [False, True])
def test_fast_roc_bootstrap_equals_the_generic_bootstrap(name, grouped):
    """Same seed, same resamples: the weighted-ROC fast path gives the generic bootstrap's interval of the
    facekit.metrics function, alone and paired (scores rounded to 1 decimal: many ties)."""
    from facekit.stats.verification import roc_bootstrap

    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.5
    a, b = rng.normal(y * 1.0, 1).round(1), rng.normal(y * 0.8, 1).round(1)
    groups = rng.integers(0, 40, 300) if grouped else None
    m = st.score_metric(name)
    fast = roc_bootstrap(m, a, y, groups, n_boot=200, seed=3)
    slow = st.bootstrap(m.fn, a, y, groups=groups, n_boot=200, seed=3)
    assert (fast.estimate, fast.low, fast.high) == pytest.approx((slow.estimate, slow.low, slow.high), abs=1e-12)
    assert fast.method == slow.method
    fast_d = roc_bootstrap(m, a, y, groups, other_scores=b, n_boot=200, seed=3)
    slow_d = st.paired_bootstrap(m.fn, a, b, y, groups=groups, n_boot=200, seed=3)
    assert (fast_d.estimate, fast_d.low, fast_d.high) == pytest.approx((slow_d.estimate, slow_d.low, slow_d.high),
                                                                       abs=1e-12)
    assert fast_d.method == slow_d.method and fast_d.low < fast_d.high


def test_fast_roc_bootstrap_skips_one_class_resamples():
    y = np.zeros(60, bool)
    y[:3] = True  # 3 genuine pairs of 60: (57/60)^60, about 1 resample in 20, draws none
    s = np.random.default_rng(0).normal(size=60) + y
    iv = st.auc_interval(s, y, n_boot=400)  # those resamples are undefined and skipped
    assert iv.low < iv.estimate <= iv.high
    y[1:3] = False  # 1 genuine pair: about 1 resample in 3 draws none, too many
    with pytest.raises(ValueError, match="undefined on"):
        st.auc_interval(s, y, n_boot=400)


def test_verification_interval_errors_and_warnings():
    with pytest.raises(ValueError, match="both genuine and impostor"):
        st.auc_interval([0.1, 0.2, 0.3], [1, 1, 1])
    s, y = pairs(200)
    with pytest.warns(UserWarning, match="cannot measure FAR=0.001"):
        st.tar_at_far_interval(s, y, far=1e-3, n_boot=50)
    with pytest.raises(ValueError, match="unknown metric"):
        st.score_metric("f1")
    assert st.score_metric("TAR@FAR=1e-2").name == "TAR@FAR=1e-02"


# ---- paired tests -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_mcnemar_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    a = rng.random(150) < 0.8
    b = np.where(rng.random(150) < 0.7, a, rng.random(150) < 0.75)
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    ref = sm_tables.mcnemar(table, exact=True)
    ours = st.mcnemar(a, b)
    assert ours.p_value == pytest.approx(ref.pvalue, abs=1e-12)
    assert ours.statistic == ref.statistic and ours.n == 150


def test_mcnemar_edge_cases():
    assert st.mcnemar([1, 1, 1], [1, 1, 1]).p_value == 1.0  # all correct: no discordant item, no evidence
    with pytest.raises(ValueError, match="n = 0"):
        st.mcnemar([], [])
    with pytest.raises(ValueError, match="same items"):
        st.mcnemar([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="0/1"):
        st.mcnemar([0.5, 1], [1, 1])


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_paired_seeds_matches_scipy(n):
    rng = np.random.default_rng(n)
    a = rng.normal(0.8, 0.02, n)
    b = a - 0.01 + rng.normal(0, 0.01, n)
    ref = sps.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    ours = st.paired_t(a, b)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
    iv = st.paired_seeds(a, b)
    assert (iv.estimate, iv.low, iv.high) == pytest.approx((np.mean(a - b), ci.low, ci.high), rel=1e-10)


def test_paired_seeds_needs_two_seeds():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        st.paired_seeds([0.8], [0.7])
    with pytest.raises(ValueError, match="same seeds"):
        st.paired_seeds([0.8, 0.7], [0.7, 0.6, 0.5])


def naive_delong(sa, sb, y):
    """DeLong from the definition: psi(X, Y) over every (genuine, impostor) pair, then the covariances."""
    out = []
    for s in (sa, sb):
        pos, neg = s[y], s[~y]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        out.append((psi.mean(1), psi.mean(0), psi.mean()))
    m, n = y.sum(), (~y).sum()
    s10 = np.cov([out[0][0], out[1][0]])
    s01 = np.cov([out[0][1], out[1][1]])
    c = np.array([1, -1])
    return out[0][2] - out[1][2], math.sqrt(c @ s10 @ c / m + c @ s01 @ c / n)


@pytest.mark.parametrize("decimals", [None, 1])  # 1 decimal: many ties
def test_delong_matches_naive(decimals):
    s, y = pairs(300, seed=1)
    other = s + np.random.default_rng(9).normal(0, 0.8, s.size)
    if decimals is not None:
        s, other = s.round(decimals), other.round(decimals)
    diff, se = naive_delong(s, other, y)
    t = st.delong(s, other, y)
    assert t.difference.estimate == pytest.approx(diff, abs=1e-12)
    assert t.difference.estimate == pytest.approx(roc_auc_score(y, s) - roc_auc_score(y, other), abs=1e-12)
    assert t.statistic == pytest.approx(diff / se, rel=1e-9)
    assert t.p_value == pytest.approx(2 * sps.norm.sf(abs(diff / se)), rel=1e-9)


def test_paired_bootstrap_agrees_with_delong_and_is_narrower_than_unpaired():
    s, y = pairs(600, seed=2)
    rng = np.random.default_rng(4)
    a = s + rng.normal(0, 0.3, s.size)
    b = s + rng.normal(0, 0.6, s.size)  # same items, a bit noisier: strongly correlated with a

    from facekit.stats.verification import roc_bootstrap  # = paired_bootstrap of facekit.metrics.auc, faster

    paired = roc_bootstrap("auc", a, y, other_scores=b, n_boot=1000)
    dl = st.delong(a, b, y)
    assert paired.estimate == pytest.approx(dl.difference.estimate, abs=1e-12)
    assert paired.width == pytest.approx(dl.difference.width, rel=0.25)
    unpaired = math.hypot(st.auc_interval(a, y, n_boot=1000).width, st.auc_interval(b, y, n_boot=1000).width)
    assert paired.width < 0.6 * unpaired  # pairing removes the item difficulty both models share
    assert paired.method.startswith("paired percentile bootstrap")


# ---- verdicts and the noise rule --------------------------------------------------------------------------------

def test_verdict_text_and_winner():
    v = st.verdict(st.Interval(0.031, 0.012, 0.050), ("ArcFace", "softmax"), n=3000, unit="pairs",
                   method="paired bootstrap", metric="AUC")
    assert v.winner == "a"
    assert v.text == "ArcFace better than softmax: AUC +0.031 [+0.012, +0.050] (paired bootstrap over 3,000 pairs, 95%)"
    assert v._repr_markdown_() == v.text and "__bool__" not in type(v).__dict__
    assert v.row["verdict"] == "ArcFace" and v.row["A - B"] == 0.031 and v.row["low"] == 0.012
    b = st.verdict(st.Interval(-0.031, -0.050, -0.012), ("A", "B"), n=3000, p_value=0.001)
    assert b.winner == "b" and b.text.startswith("B better than A: +0.031 [+0.012, +0.050]") and "p = 0.001" in b.text
    tie = st.verdict(st.Interval(0.004, -0.010, 0.018), ("A", "B"), n=3000)
    assert tie.winner is None
    assert tie.text.startswith("no detectable difference between A and B at this size: +0.004 [-0.010, +0.018]")


def test_verdict_lower_is_better_and_minimum_sizes():
    eer = st.verdict(st.Interval(-0.02, -0.03, -0.01), ("A", "B"), n=500, higher_is_better=False, metric="EER")
    assert eer.winner == "a"
    small = st.verdict(st.Interval(0.2, 0.1, 0.3), ("A", "B"), n=50)
    assert small.winner is None and "fewer than 100" in small.text
    disagree = st.verdict(st.Interval(0.2, 0.1, 0.3), ("A", "B"), n=500, p_value=0.2)
    assert disagree.winner is None and "borderline" in disagree.reason
    with pytest.raises(TypeError, match="Interval"):
        st.verdict((0.1, 0.0, 0.2), n=10)


def test_compare_correct_verdict_flips_with_sample_size():
    """The same 3-point accuracy gain: undecided on 200 images, decided on 4,000."""
    def experiment(n, seed=0):
        rng = np.random.default_rng(seed)
        hard = rng.random(n)  # item difficulty shared by both models
        a = hard < 0.83
        b = hard < 0.80
        flip = rng.random(n) < 0.1  # some independent noise per model
        return a ^ (flip & (rng.random(n) < 0.5)), b ^ (flip & (rng.random(n) < 0.5))

    small = st.compare_correct(*experiment(200), names=("A", "B"), n_boot=500)
    large = st.compare_correct(*experiment(4000), names=("A", "B"), n_boot=500)
    assert small.winner is None and "no detectable difference" in small.text
    assert large.winner == "a" and large.p_value < st.ALPHA and large.difference.low > 0
    a, b = experiment(4000)
    assert large.p_value == st.mcnemar(a, b).p_value
    assert large.difference.estimate == pytest.approx(a.mean() - b.mean())
    # the paired bootstrap of a mean difference agrees with the paired normal interval
    d = a.astype(float) - b
    half = 1.96 * d.std(ddof=1) / math.sqrt(d.size)
    assert large.difference.width / 2 == pytest.approx(half, rel=0.15)


def test_compare_correct_edge_cases():
    both_right = st.compare_correct(np.ones(300, bool), np.ones(300, bool), names=("A", "B"), n_boot=100)
    assert both_right.winner is None and both_right.p_value == 1.0 and both_right.difference.width == 0.0
    assert both_right.text.startswith("no detectable difference between A and B at this size: accuracy +0.000")
    with pytest.raises(ValueError, match="n = 0"):
        st.compare_correct([], [])


def test_compare_scores_and_groups():
    rng = np.random.default_rng(1)
    people = np.repeat(np.arange(60), 20)
    y = rng.random(people.size) < 0.5
    person_effect = rng.normal(0, 0.7, 60)[people]  # some people are hard for both models
    base = np.where(y, 1.5, 0.0) + np.where(y, -1, 1) * person_effect
    a = base + rng.normal(0, 0.6, y.size)
    b = base + rng.normal(0, 1.2, y.size)
    v = st.compare_scores(a, b, y, metric="auc", groups=people, names=("A", "B"), n_boot=300)
    assert v.winner == "a" and v.metric == "AUC" and v.unit == "pairs" and v.n == y.size
    assert v.difference.estimate == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    e = st.compare_scores(a, b, y, metric="eer", names=("A", "B"), n_boot=300)
    assert e.winner == "a" and e.difference.estimate < 0
    few = st.compare_scores(a, b, y, metric="auc", groups=people % 10, n_boot=200)
    assert few.winner is None and "10 people" in few.reason
    with pytest.raises(ValueError, match="both genuine and impostor"):
        st.compare_scores(a[y], b[y], y[y])


def test_compare_seeds():
    a, b = [0.82, 0.84, 0.83, 0.85], [0.80, 0.81, 0.80, 0.82]
    v = st.compare_seeds(a, b, names=("aug", "plain"), metric="accuracy")
    assert v.winner == "a" and v.unit == "seeds" and v.p_value == pytest.approx(sps.ttest_rel(a, b).pvalue)
    two = st.compare_seeds(a[:2], b[:2])
    assert two.winner is None and "fewer than 3 seeds" in two.text
    loss = st.compare_seeds([0.5, 0.52, 0.49], [0.6, 0.61, 0.63], higher_is_better=False)
    assert loss.winner == "a"
    with pytest.raises(ValueError, match="at least 2 seeds"):
        st.compare_seeds([0.8], [0.7])


def test_compare_seeds_names_no_winner_when_the_seeds_agree_exactly():
    """Tied seeds (a coarse metric) give a zero-width t interval and p = 0: no spread, so no evidence either way."""
    from facekit.stats import compare_seeds

    tied = compare_seeds([0.80, 0.82, 0.81], [0.76, 0.78, 0.77], names=("A", "B"))
    assert tied.winner is None and "spread" in tied.reason and "no detectable difference" in tied.text
    spread = compare_seeds([0.80, 0.83, 0.81], [0.76, 0.78, 0.77], names=("A", "B"))
    assert spread.winner == "a"
