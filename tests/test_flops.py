import pytest
import torch
from torch import nn

from facekit.models import ArticleCNN, SmallResNet
from facekit.models.flops import count_flops, flops_by_module
from facekit.models.vit import VisionTransformer


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny tensors, one thread


@pytest.mark.parametrize("batch,n_in,n_out,bias", [(1, 10, 4, True), (8, 32, 16, False), (5, 7, 3, True)])
def test_linear(batch, n_in, n_out, bias):
    assert count_flops(nn.Linear(n_in, n_out, bias=bias), (batch, n_in)) == 2 * batch * n_in * n_out


@pytest.mark.parametrize("c_in,c_out,k,stride,padding,groups,size", [
    (3, 8, 3, 1, 1, 1, 16), (4, 6, 5, 2, 0, 1, 17), (8, 8, 3, 1, 1, 8, 10), (6, 4, 1, 1, 0, 2, 7)])
def test_conv2d_closed_form(c_in, c_out, k, stride, padding, groups, size):
    conv = nn.Conv2d(c_in, c_out, k, stride, padding, groups=groups)
    out = (size + 2 * padding - k) // stride + 1
    batch = 2
    # every output value is a dot product of length (c_in / groups) * k * k: that many multiply-adds
    expected = 2 * batch * c_out * out * out * (c_in // groups) * k * k
    assert count_flops(conv, (batch, c_in, size, size)) == expected


def test_article_cnn_is_its_layers():
    model = ArticleCNN(10)
    expected = 2 * (64 * 64 * 32 * 3 * 9 + 32 * 32 * 64 * 32 * 9 + 64 * 16 * 16 * 128 + 128 * 10)
    assert count_flops(model, (1, 3, 64, 64)) == expected


def test_vit_flops_positive_and_linear_in_batch():
    model = VisionTransformer(10, "tiny", depth=2)
    one, four = count_flops(model, (1, 3, 64, 64)), count_flops(model, (4, 3, 64, 64))
    assert one > 0 and four == 4 * one
    # 2 blocks, T = 65 tokens: per-token Linear layers qkv (3 d^2), proj (d^2), MLP (8 d^2), the attention
    # products (the CPU flash kernel is counted too), the patchify conv and the head
    d, t = 96, 65
    linear = 2 * 2 * t * 12 * d * d
    attention = 2 * 2 * 2 * t * t * d  # q k^T and weights @ v: t * t * d multiply-adds each, per block
    patchify = 2 * 64 * 3 * 8 * 8 * d
    assert one == linear + attention + patchify + 2 * d * 10


def test_fused_and_manual_count_the_same():
    model = VisionTransformer(10, "tiny", depth=1)
    fused = count_flops(model, (2, 3, 32, 32))
    assert count_flops(model.set_fused(False), (2, 3, 32, 32)) == fused


def test_state_is_restored():
    model = SmallResNet(3, widths=(8, 16)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_flops(model, (2, 3, 32, 32))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # batch norm stats untouched


def test_flops_by_module():
    net = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Sequential(nn.Linear(20, 4), nn.Linear(4, 2)))
    by = flops_by_module(net, (3, 10), depth=2)
    assert by["total"] == 2 * 3 * (200 + 80 + 8)
    assert by["0"] == 2 * 3 * 200 and by["2"] == 2 * 3 * 88 and by["2.1"] == 2 * 3 * 8
    assert "2.1" not in flops_by_module(net, (3, 10))


# facekit's counter against torch's own FlopCounterMode, model by model: they must agree exactly, except for the
# CPU flash-attention kernel that torch leaves uncounted and facekit adds (2 B nh T^2 (d_k + d_v) per call).
BENCH_SIZES = {"resnet50": 64, "article_cnn": 32, "small_resnet": 32, "vit": 32, "iresnet_tiny": 32,
               "mobilefacenet": 32, "detector": 64}


def _torch_count(model, shape):
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(shape))
    return int(counter.get_total_flops())


@pytest.mark.parametrize("name", sorted(BENCH_SIZES))
def test_count_flops_matches_torch_flop_counter(name):
    from facekit.bench import build_backbone, unavailable

    if unavailable(name):
        pytest.skip(unavailable(name))
    model, shape = build_backbone(name, BENCH_SIZES[name])
    ours, theirs = count_flops(model, (1, *shape)), _torch_count(model, (1, *shape))
    assert ours > 0
    if name == "vit":  # the fused attention on the CPU: torch counts 0 for it, facekit its formula
        manual = count_flops(model.set_fused(False), (1, *shape))
        assert ours == manual > theirs
    else:
        assert ours == theirs


@pytest.mark.parametrize("name", ["dlib_resnet", "facenet"])
def test_pretrained_models_count_like_torch(name):
    from facekit.bench import build_backbone, unavailable

    if unavailable(name):
        pytest.skip(unavailable(name))
    model, shape = build_backbone(name)
    assert count_flops(model, (1, *shape)) == _torch_count(model, (1, *shape)) > 0


def test_resnet50_matches_its_published_count():
    pytest.importorskip("torchvision")
    from torchvision.models import resnet50

    # torchvision's model card: 4.09 GFLOPS at 224x224, where its "FLOPS" are multiply-adds (facekit counts 2 each)
    assert count_flops(resnet50(), (1, 3, 224, 224)) / 2e9 == pytest.approx(4.09, rel=0.01)
