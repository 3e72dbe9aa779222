"""facekit.losses against naive per-sample loops (float64, 1e-6), and against pytorch-metric-learning."""

import math

import pytest
import torch
import torch.nn.functional as F

from facekit.config import ConfigError
from facekit.losses import (HEADS, ArcFace, CenterLoss, CombinedMargin, ContrastiveLoss, CosFace, CosineSimilarity,
                            EuclideanDistance, MarginClassifier, MarginModel, NormSoftmax, PlainSoftmax, SphereFace,
                            TripletLoss, all_triplets, batch_hard_mining, create_head, margin_forward,
                            semi_hard_mining, softmax_cross_entropy)

TOL = dict(rel=1e-6, abs=1e-6)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny tensors, one thread


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- naive oracles (plain Python)

def dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def norm(u):
    return math.sqrt(dot(u, u))


def cos_of(u, v):
    return dot(u, v) / (norm(u) * norm(v))


def psi_arcface(c, m, easy=False):
    theta = math.acos(c)
    if easy:
        return math.cos(theta + m) if c > 0 else c
    return math.cos(theta + m) if theta + m <= math.pi else c - m * math.sin(m)


def psi_sphereface(c, m, monotonic=True):
    theta = math.acos(c)
    if not monotonic:
        return math.cos(m * theta)
    k = math.floor(m * theta / math.pi)
    return (-1) ** k * math.cos(m * theta) - 2 * k


NAIVE_PSI = {  # name -> (head, psi(cos) computed by hand with math.acos / math.cos)
    "normface": (lambda: NormSoftmax(s=30.0), lambda c: c),
    "sphereface": (lambda: SphereFace(m=1.35, s=30.0), lambda c: psi_sphereface(c, 1.35)),
    "sphereface_m4": (lambda: SphereFace(m=4, s=30.0), lambda c: psi_sphereface(c, 4)),
    "sphereface_plain": (lambda: SphereFace(m=2.0, s=30.0, monotonic=False), lambda c: psi_sphereface(c, 2, False)),
    "cosface": (lambda: CosFace(s=64.0, margin=0.35), lambda c: c - 0.35),
    "arcface": (lambda: ArcFace(s=64.0, margin_rad=0.5), lambda c: psi_arcface(c, 0.5)),
    "arcface_easy": (lambda: ArcFace(s=64.0, margin_rad=0.5, easy_margin=True), lambda c: psi_arcface(c, 0.5, True)),
    "combined": (lambda: CombinedMargin(s=64.0, m1=1.0, m2=0.3, m3=0.2),
                 lambda c: math.cos(math.acos(c) + 0.3) - 0.2),
}


def naive_margin_ce(emb, weight, labels, psi, s):
    """Mean cross-entropy of s * cos with the target cosine replaced by psi(cos), one sample at a time."""
    total = 0.0
    for e, y in zip(emb.tolist(), labels.tolist()):
        logits = []
        for k, w in enumerate(weight.tolist()):
            c = cos_of(e, w)
            logits.append(s * (psi(c) if k == y else c))
        top = max(logits)
        total += top + math.log(sum(math.exp(z - top) for z in logits)) - logits[y]
    return total / len(labels)


def spread_batch(num_classes=5, dim=4, seed=0):
    """Embeddings at every angle to their class weight: near it, random, near its opposite (ArcFace fallback)."""
    g = gen(seed)
    weight = torch.randn(num_classes, dim, generator=g, dtype=torch.float64)
    labels = torch.arange(12) % num_classes
    noise = torch.randn(12, dim, generator=g, dtype=torch.float64)
    sign = torch.tensor([1.0] * 4 + [0.0] * 4 + [-1.0] * 4, dtype=torch.float64)[:, None]
    emb = sign * F.normalize(weight[labels], dim=1) + 0.4 * noise
    return emb, weight, labels


# ----------------------------------------------------------------------------- margin heads

@pytest.mark.parametrize("name", NAIVE_PSI)
def test_margin_cross_entropy_matches_naive_loop(name):
    make_head, psi = NAIVE_PSI[name]
    head = make_head()
    emb, weight, labels = spread_batch()
    clf = MarginClassifier(4, 5, head).double()
    with torch.no_grad():
        clf.weight.copy_(weight)
    loss = F.cross_entropy(clf(emb, labels), labels)
    assert loss.item() == pytest.approx(naive_margin_ce(emb, weight, labels, psi, head.s), **TOL)


def test_evaluation_logits_have_no_margin():
    emb, weight, labels = spread_batch()
    clf = MarginClassifier(4, 5, ArcFace(s=10.0)).double()
    with torch.no_grad():
        clf.weight.copy_(weight)
    expected = 10.0 * torch.tensor([[cos_of(e, w) for w in weight.tolist()] for e in emb.tolist()], dtype=torch.float64)
    torch.testing.assert_close(clf(emb), expected)
    assert not torch.allclose(clf(emb, labels), expected)


def test_softmax_baseline_is_a_linear_layer():
    clf = softmax_cross_entropy(6, 3)
    assert not clf.head.normalized and clf.bias is not None
    x, y = torch.randn(4, 6, generator=gen()), torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(clf(x, y), x @ clf.weight.T + clf.bias)
    torch.testing.assert_close(clf(x), clf(x, y))
    assert isinstance(create_head("softmax"), PlainSoftmax)


def test_combined_margin_equals_each_head():
    g = gen(1)
    cos = torch.rand(64, 7, generator=g, dtype=torch.float64) * 1.98 - 0.99  # (B, K) in (-0.99, 0.99)
    labels = torch.randint(0, 7, (64,), generator=g)
    s = 32.0
    torch.testing.assert_close(CombinedMargin(s, 1.0, 0.0, 0.0)(cos, labels), NormSoftmax(s)(cos, labels))
    torch.testing.assert_close(CombinedMargin(s, 1.0, 0.0, 0.35)(cos, labels), CosFace(s, 0.35)(cos, labels))
    torch.testing.assert_close(CombinedMargin(s, 2.5, 0.0, 0.0)(cos, labels),
                               SphereFace(2.5, s, monotonic=False)(cos, labels))
    # ArcFace: equal where theta + m <= pi (the combined formula has no fallback beyond)
    m = 0.5
    ok = torch.acos(cos.gather(1, labels[:, None]).squeeze(1)) + m <= math.pi
    assert 0 < ok.sum() < len(ok)
    torch.testing.assert_close(CombinedMargin(s, 1.0, m, 0.0)(cos, labels)[ok], ArcFace(s, m)(cos, labels)[ok])
    # monotonic SphereFace: equal where m * theta <= pi
    ok = 2.5 * torch.acos(cos.gather(1, labels[:, None]).squeeze(1)) <= math.pi
    assert 0 < ok.sum() < len(ok)
    torch.testing.assert_close(CombinedMargin(s, 2.5, 0.0, 0.0)(cos, labels)[ok], SphereFace(2.5, s)(cos, labels)[ok])


def test_arcface_fallback_exactly_beyond_pi():
    m = 0.5
    theta = torch.linspace(0.01, math.pi - 0.01, 401, dtype=torch.float64)
    theta = theta[(theta + m - math.pi).abs() > 1e-6]
    cos = torch.cos(theta)[:, None]  # (B, 1): one class, the target
    out = ArcFace(s=1.0, margin_rad=m)(cos, torch.zeros(len(theta), dtype=torch.long))[:, 0]
    beyond = theta + m > math.pi  # <=> cos(theta) < cos(pi - m)
    assert torch.equal(beyond, cos[:, 0] < math.cos(math.pi - m))
    torch.testing.assert_close(out[~beyond], torch.cos(theta[~beyond] + m))
    torch.testing.assert_close(out[beyond], cos[beyond, 0] - m * math.sin(m))
    assert 0 < beyond.sum() < len(beyond)
    assert (out.diff() < 0).all()  # decreasing in theta, across the jump too


def test_arcface_easy_margin():
    m = 0.5
    cos = torch.tensor([[0.9], [0.3], [1e-3], [-1e-3], [-0.5], [-0.99]], dtype=torch.float64)
    out = ArcFace(s=1.0, margin_rad=m, easy_margin=True)(cos, torch.zeros(6, dtype=torch.long))[:, 0]
    positive = cos[:, 0] > 0
    torch.testing.assert_close(out[positive], torch.cos(torch.acos(cos[positive, 0]) + m))
    torch.testing.assert_close(out[~positive], cos[~positive, 0])  # no margin for theta >= 90 deg


def test_sphereface_psi_is_continuous_and_decreasing():
    theta = torch.linspace(1e-3, math.pi - 1e-3, 2001, dtype=torch.float64)
    for m in (1.35, 2.0, 3.0, 4.0):
        out = SphereFace(m=m, s=1.0)(torch.cos(theta)[:, None], torch.zeros(len(theta), dtype=torch.long))[:, 0]
        assert (out.diff() < 0).all(), m
        assert out.diff().abs().max() < 0.05, m  # no jumps on a fine grid


HEAD_FACTORIES = {name: make for name, (make, _) in NAIVE_PSI.items()}


@pytest.mark.parametrize("name", HEAD_FACTORIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_finite_at_cos_plus_and_minus_one(name, dtype):
    # through the classifier: embeddings equal to their class weight (cos = 1) and opposite (cos = -1)
    weight = torch.eye(3, 4, dtype=dtype)
    clf = MarginClassifier(4, 3, HEAD_FACTORIES[name]()).to(dtype)
    with torch.no_grad():
        clf.weight.copy_(weight)
    emb = torch.cat([weight, -weight]).requires_grad_(True)  # (6, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    F.cross_entropy(clf(emb, labels), labels).backward()
    assert torch.isfinite(emb.grad).all() and torch.isfinite(clf.weight.grad).all()
    # on the head directly, cosines exactly at and just inside +-1
    eps = torch.finfo(dtype).eps
    cos = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1 - eps, 0.0], [-1 + eps, 0.0]], dtype=dtype, requires_grad=True)
    logits = clf.head(cos, torch.zeros(4, dtype=torch.long))
    F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)).backward()
    assert torch.isfinite(logits).all() and torch.isfinite(cos.grad).all()


def test_head_half_precision_is_computed_in_float32():
    cos = torch.tensor([[0.5, 0.1]], dtype=torch.bfloat16)
    out = CosFace(s=64.0, margin=0.35)(cos, torch.tensor([0]))
    assert out.dtype == torch.float32
    assert out[0, 0].item() == pytest.approx(64 * (0.5 - 0.35), abs=1e-6)


def test_registry_and_config_errors():
    assert set(HEADS) == {"softmax", "normface", "sphereface", "cosface", "arcface", "combined"}
    assert isinstance(create_head("arcface", margin_rad=0.3), ArcFace)
    with pytest.raises(ConfigError, match="'arcfce'.*did you mean 'arcface'.*accepted: arcface, combined"):
        create_head("arcfce")
    with pytest.raises(ConfigError, match="margin_rad=28.6.*radians"):
        ArcFace(margin_rad=28.6)  # degrees by mistake
    with pytest.raises(ConfigError, match="s=0"):
        CosFace(s=0)
    with pytest.raises(ConfigError, match="m=0.5"):
        SphereFace(m=0.5)
    with pytest.raises(TypeError, match="MarginHead"):
        MarginClassifier(4, 3, torch.nn.Identity())
    with pytest.raises(ValueError, match=r"\(B, 4\) embeddings"):
        MarginClassifier(4, 3, ArcFace())(torch.zeros(2, 5))


def test_margin_model_trains_with_fit():
    from torch.utils.data import TensorDataset

    from facekit.train.loop import fit

    g = gen(3)
    centers = torch.randn(4, 8, generator=g) * 3
    y = torch.arange(200) % 4
    x = centers[y] + torch.randn(200, 8, generator=g)
    model = MarginModel(torch.nn.Linear(8, 16), MarginClassifier(16, 4, CosFace(s=16.0, margin=0.2)))
    hist = fit(model, TensorDataset(x, y), TensorDataset(x, y), forward=margin_forward, epochs=4, lr=0.05,
               batch_size=50, progress=False)
    assert hist.last("val_accuracy") > 0.9
    assert model.embed(x[:2]).shape == (2, 16)


# ----------------------------------------------------------------------------- distances

def test_distances_against_loops():
    g = gen(4)
    a, b = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    euclid = [[math.dist(u, v) for v in b.tolist()] for u in a.tolist()]
    cosine = [[cos_of(u, v) for v in b.tolist()] for u in a.tolist()]
    torch.testing.assert_close(EuclideanDistance().pairwise(a, b), torch.tensor(euclid, dtype=torch.float64))
    torch.testing.assert_close(EuclideanDistance(squared=True)(a, b), torch.tensor(euclid, dtype=torch.float64) ** 2)
    torch.testing.assert_close(CosineSimilarity().pairwise(a, b), torch.tensor(cosine, dtype=torch.float64))
    torch.testing.assert_close(EuclideanDistance().paired(a[:4], b), torch.tensor(euclid).diagonal().double())
    torch.testing.assert_close(CosineSimilarity().paired(a[:4], b), torch.tensor(cosine).diagonal().double())
    assert CosineSimilarity.is_similarity and not EuclideanDistance.is_similarity


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_euclidean_gradient_finite_at_zero(dtype):
    x = torch.randn(4, 3, generator=gen(5)).to(dtype).requires_grad_(True)
    (EuclideanDistance().pairwise(x).sum() + EuclideanDistance().paired(x, x.detach().clone()).sum()).backward()
    assert torch.isfinite(x.grad).all()
    z = torch.zeros(2, 3, dtype=dtype, requires_grad=True)
    CosineSimilarity().pairwise(z).sum().backward()  # zero vectors: normalised to 0, no NaN
    assert torch.isfinite(z.grad).all()


# ----------------------------------------------------------------------------- contrastive

def naive_contrastive(ea, eb, same, margin, dist, squared=True):
    total = 0.0
    for u, v, y in zip(ea.tolist(), eb.tolist(), same.tolist()):
        d = dist(u, v)
        pull, push = d, max(0.0, margin - d)
        if squared:
            pull, push = pull ** 2, push ** 2
        total += pull if y else push
    return total / len(same)


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("kind", ["euclidean", "cosine"])
def test_contrastive_matches_naive_loop(squared, kind):
    g = gen(6)
    ea, eb = torch.randn(2, 10, 5, generator=g, dtype=torch.float64)
    same = torch.rand(10, generator=g) < 0.5
    distance, dist = ((EuclideanDistance(), math.dist) if kind == "euclidean"
                      else (CosineSimilarity(), lambda u, v: 1 - cos_of(u, v)))
    margin = 3.0 if kind == "euclidean" else 1.2
    loss = ContrastiveLoss(margin=margin, distance=distance, squared=squared)(ea, eb, same)
    assert loss.item() == pytest.approx(naive_contrastive(ea, eb, same, margin, dist, squared), **TOL)


# ----------------------------------------------------------------------------- triplet mining and losses

LINE = torch.tensor([0.0, 1.0, 3.0, 3.5, 6.2, 8.0])  # two identities of three points on a line
LINE_LABELS = torch.tensor([0, 0, 0, 1, 1, 1])


def line_dist():
    return (LINE[:, None] - LINE[None, :]).abs()


def test_batch_hard_mining_by_hand():
    pos, neg = batch_hard_mining(line_dist(), LINE_LABELS)
    # anchor 0 (at 0): farthest positive 3.0 (index 2), closest negative 3.5 (index 3); ... anchor 5 (at 8):
    # positives 3.5 (4.5 away) and 6.2 (1.8) -> 3; negatives at 0, 1, 3 -> the closest is 3.0 (index 2)
    assert pos.tolist() == [2, 2, 0, 5, 3, 3]
    assert neg.tolist() == [3, 3, 3, 2, 2, 2]
    pos, neg = batch_hard_mining(line_dist()[:4, :4], torch.tensor([0, 0, 1, 2]))
    assert pos.tolist() == [1, 0, -1, -1]  # identities 1 and 2 have no positive
    assert neg.tolist() == [2, 2, 3, 2]  # 3.0 and 3.5 are each other's closest negative


def test_semi_hard_mining_by_hand():
    a, p, n = semi_hard_mining(line_dist(), LINE_LABELS, margin=1.0)
    assert a.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert p.tolist() == [1, 2, 0, 2, 0, 1, 4, 5, 3, 5, 3, 4]
    # e.g. (0, 1): d_ap = 1, negatives at 3.5, 6.2, 8: none in (1, 2) -> fallback, the hardest (3);
    # (2, 0): d_ap = 3, negatives at 0.5, 3.2, 5: 3.2 is in (3, 4) -> 4;
    # (3, 4): d_ap = 2.7, negatives at 3.5, 2.5, 0.5: 3.5 is in (2.7, 3.7) -> 0
    assert n.tolist() == [3, 3, 3, 3, 4, 3, 0, 2, 2, 2, 2, 2]
    a, p, n = semi_hard_mining(line_dist(), LINE_LABELS, margin=3.0)
    assert n[4].item() == 4  # (2, 0): 3.2 and 5 are both in (3, 6): the closer one


def naive_triplet(emb, labels, margin, dist, mining):
    e, y = emb.tolist(), labels.tolist()
    idx = range(len(y))
    losses = []
    for a in idx:
        pos = [p for p in idx if y[p] == y[a] and p != a]
        neg = [n for n in idx if y[n] != y[a]]
        if not pos or not neg:
            continue
        if mining == "batch_hard":
            losses.append(max(0.0, max(dist(e[a], e[p]) for p in pos) - min(dist(e[a], e[n]) for n in neg) + margin))
            continue
        for p in pos:
            d_ap = dist(e[a], e[p])
            if mining == "all":
                losses += [max(0.0, d_ap - dist(e[a], e[n]) + margin) for n in neg]
                continue
            semi = [dist(e[a], e[n]) for n in neg if d_ap < dist(e[a], e[n]) < d_ap + margin]
            d_an = min(semi) if semi else min(dist(e[a], e[n]) for n in neg)
            losses.append(max(0.0, d_ap - d_an + margin))
    if mining == "all":
        positive = [v for v in losses if v > 0]
        return sum(positive) / len(positive) if positive else 0.0
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "all"])
@pytest.mark.parametrize("kind", ["euclidean", "cosine"])
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_triplet_matches_naive_loop(mining, kind, margin):
    g = gen(7)
    emb = torch.randn(11, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4])  # identities 3 and 4: no positive
    distance, dist = ((EuclideanDistance(), math.dist) if kind == "euclidean"
                      else (CosineSimilarity(), lambda u, v: 1 - cos_of(u, v)))
    loss = TripletLoss(margin=margin, distance=distance, mining=mining)(emb, labels)
    assert loss.item() == pytest.approx(naive_triplet(emb, labels, margin, dist, mining), **TOL)


def test_triplet_without_triplets_is_zero_and_differentiable():
    emb = torch.randn(3, 4, generator=gen(8), requires_grad=True)
    loss = TripletLoss()(emb, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(emb.grad, torch.zeros_like(emb))
    assert [t.numel() for t in all_triplets(torch.tensor([0, 1, 2]))] == [0, 0, 0]
    with pytest.raises(ConfigError, match="mining='hardest'"):
        TripletLoss(mining="hardest")


def test_triplet_gradients_finite_with_duplicates():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)  # zero distances
    labels = torch.tensor([0, 0, 1, 1])
    for mining in ("batch_hard", "semi_hard", "all"):
        TripletLoss(mining=mining)(emb, labels).backward()
    assert torch.isfinite(emb.grad).all()


# ----------------------------------------------------------------------------- center loss

def test_center_loss_and_update_match_naive_loop():
    g = gen(9)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 2, 2, 1, 2, 0, 2])
    loss_fn = CenterLoss(num_classes=4, dim=3, alpha=0.3).double()
    c0 = loss_fn.centers.clone().tolist()
    loss = loss_fn(x, y)
    expected = sum(0.5 * sum((xi - ci) ** 2 for xi, ci in zip(row, c0[label]))
                   for row, label in zip(x.tolist(), y.tolist())) / 7
    assert loss.item() == pytest.approx(expected, **TOL)
    for j in range(4):  # c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)
        members = [row for row, label in zip(x.tolist(), y.tolist()) if label == j]
        delta = [sum(c0[j][d] - row[d] for row in members) / (1 + len(members)) for d in range(3)]
        new = [c0[j][d] - 0.3 * delta[d] for d in range(3)]
        assert loss_fn.centers[j].tolist() == pytest.approx(new, **TOL)
    loss_fn.eval()
    before = loss_fn.centers.clone()
    loss_fn(x, y)
    assert torch.equal(loss_fn.centers, before)  # no update in eval mode


def test_center_loss_with_learned_centers():
    loss_fn = CenterLoss(num_classes=3, dim=2, alpha=None)
    assert isinstance(loss_fn.centers, torch.nn.Parameter)
    x, y = torch.randn(5, 2, generator=gen(10)), torch.tensor([0, 1, 1, 2, 0])
    loss_fn(x, y).backward()
    expected = torch.zeros(3, 2).index_add_(0, y, loss_fn.centers.detach()[y] - x) / 5  # d/dc of mean 1/2||x - c||^2
    torch.testing.assert_close(loss_fn.centers.grad, expected)


# ----------------------------------------------------------------------------- pytorch-metric-learning

def test_against_pml_arcface_and_cosface():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    emb, weight, labels = spread_batch(seed=11)
    for ours, theirs in [
        (ArcFace(s=64.0, margin_rad=0.5), pml.ArcFaceLoss(5, 4, margin=math.degrees(0.5), scale=64.0)),  # degrees
        (CosFace(s=64.0, margin=0.35), pml.CosFaceLoss(5, 4, margin=0.35, scale=64.0)),
    ]:
        clf = MarginClassifier(4, 5, ours).double()
        with torch.no_grad():
            clf.weight.copy_(weight)
        theirs.W.data = weight.T.clone()  # PML stores (D, K)
        expected = theirs(emb, labels).item()
        assert F.cross_entropy(clf(emb, labels), labels).item() == pytest.approx(expected, **TOL)


@pytest.mark.parametrize("mining", ["batch_hard", "all"])
def test_against_pml_triplet(mining):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.miners import BatchHardMiner
    from pytorch_metric_learning.reducers import MeanReducer

    g = gen(12)
    emb = torch.randn(12, 6, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3])
    lp = LpDistance(normalize_embeddings=False)
    if mining == "batch_hard":  # Hermans et al.: mean over anchors, including the zero losses
        theirs = TripletMarginLoss(margin=0.5, distance=lp, reducer=MeanReducer())(
            emb, labels, BatchHardMiner(distance=lp)(emb, labels))
    else:  # every triplet, mean over the non-zero losses (PML's default AvgNonZeroReducer)
        theirs = TripletMarginLoss(margin=0.5, distance=lp)(emb, labels)
    ours = TripletLoss(margin=0.5, distance=EuclideanDistance(), mining=mining)(emb, labels)
    assert ours.item() == pytest.approx(theirs.item(), **TOL)


def test_against_pml_contrastive():
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import ContrastiveLoss as PMLContrastive
    from pytorch_metric_learning.reducers import MeanReducer

    g = gen(13)
    ea, eb = torch.randn(2, 10, 4, generator=g, dtype=torch.float64)
    same = torch.tensor([True] * 4 + [False] * 6)
    # PML: relu(d - pos_margin) on positive pairs, relu(neg_margin - d) on negative ones, unsquared, and the
    # mean over positive pairs plus the mean over negative pairs (MeanReducer on each sub-loss)
    emb = torch.cat([ea, eb])  # pair i is (i, 10 + i)
    i = torch.arange(10)
    tuple4 = (i[same], 10 + i[same], i[~same], 10 + i[~same])
    theirs = PMLContrastive(pos_margin=0.0, neg_margin=2.5, distance=LpDistance(normalize_embeddings=False),
                            reducer=MeanReducer())(emb, indices_tuple=tuple4)
    ours = ContrastiveLoss(margin=2.5, squared=False)
    expected = ours(ea[same], eb[same], same[same]) + ours(ea[~same], eb[~same], same[~same])
    assert expected.item() == pytest.approx(theirs.item(), **TOL)
