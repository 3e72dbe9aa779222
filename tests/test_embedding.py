"""Face-embedding backbones: shapes, unit norm, presets, parameter counts, FLOPs, gradients, config errors."""

import pytest
import torch
import torch.nn.functional as F

from facekit.config import ConfigError
from facekit.losses import ArcFace, MarginClassifier
from facekit.models import count_parameters
from facekit.models.embedding import (EMBEDDINGS, IResNet, IResNetConfig, MobileFaceNet, MobileFaceNetConfig,
                                      create_embedding)
from facekit.models.flops import count_flops

# million parameters expected for each preset (insightface: r18 24.0 M, r50 43.6 M, r100 65.2 M;
# MobileFaceNet paper: 0.99 M)
PARAMS_M = {"iresnet_tiny": (0.8, 1.5), "iresnet18": (23.5, 24.5), "iresnet34": (33.5, 34.5),
            "iresnet50": (43.0, 44.0), "iresnet100": (64.5, 65.5), "mobilefacenet": (0.95, 1.05),
            "mobilefacenet_tiny": (0.1, 0.3)}
FAST = ["iresnet_tiny", "mobilefacenet_tiny", "mobilefacenet"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny tensors, one thread


def test_every_preset_builds_with_a_sensible_size():
    assert set(PARAMS_M) == set(EMBEDDINGS)
    for name in EMBEDDINGS:
        net = create_embedding(name)
        millions = count_parameters(net, trainable_only=False) / 1e6
        print(f"{name:20s} {millions:7.3f} M parameters, D = {net.embedding_dim}")
        lo, hi = PARAMS_M[name]
        assert lo <= millions <= hi, name


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("size", [112, 96, 64])
def test_shapes_and_unit_norm(name, size):
    net = create_embedding(name, image_size=size).eval()
    x = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        emb, raw = net(x), net.forward_unnormalized(x)
    assert emb.shape == raw.shape == (3, net.embedding_dim)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(emb, F.normalize(raw, dim=1))
    assert not torch.allclose(raw.norm(dim=1), torch.ones(3))


def test_flops_at_112():
    expected_gflops = {"iresnet_tiny": (0.15, 0.3), "mobilefacenet_tiny": (0.03, 0.1),
                       "mobilefacenet": (0.42, 0.46)}  # the paper: 221 M multiply-adds = 0.44 GFLOPs
    for name, (lo, hi) in expected_gflops.items():
        gflops = count_flops(create_embedding(name), (1, 3, 112, 112)) / 1e9
        print(f"{name:20s} {gflops:6.3f} GFLOPs at 112x112")
        assert lo <= gflops <= hi, name


@pytest.mark.parametrize("name", ["iresnet_tiny", "mobilefacenet_tiny"])
def test_gradient_reaches_every_parameter(name):
    net = create_embedding(name, image_size=64, embedding_dim=32).train()
    clf = MarginClassifier(32, 3, ArcFace(s=16.0))
    x, y = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0])
    F.cross_entropy(clf(net(x), y), y).backward()
    for pname, p in net.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
            assert p.grad.abs().sum() > 0, pname
    assert not net.features.weight.requires_grad if isinstance(net, IResNet) else True  # insightface: fixed scale


def test_options():
    grey = IResNet("iresnet_tiny", image_size=64, in_channels=1, normalize=False).eval()
    out = grey(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 128) and not torch.allclose(out.norm(dim=1), torch.ones(2))
    assert IResNetConfig.preset("iresnet18").depth == 18 and IResNetConfig.preset("iresnet100").depth == 100
    assert IResNetConfig(image_size=64).feature_size == 4
    wide = MobileFaceNet(MobileFaceNetConfig(width_mult=0.25, embedding_dim=512, image_size=64)).eval()
    assert wide(torch.rand(2, 3, 64, 64)).shape == (2, 512)
    zero = IResNet("iresnet_tiny", image_size=64, zero_init_residual=True)
    assert all(b.bn3.weight.abs().sum() == 0 for b in zero.stages)


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="'iresnet5'.*did you mean 'iresnet50'"):
        create_embedding("iresnet5")
    with pytest.raises(ConfigError, match="embeding_dim.*did you mean 'embedding_dim'"):
        create_embedding("iresnet_tiny", embeding_dim=64)
    with pytest.raises(ConfigError, match="image_size=100"):
        IResNet(image_size=100)
    with pytest.raises(ConfigError, match="image_size=100"):
        MobileFaceNet(image_size=100)
    with pytest.raises(ConfigError, match="widths"):
        IResNetConfig(widths=(8, 16), layers=(1,))
    net = create_embedding("mobilefacenet_tiny", image_size=64)
    with pytest.raises(ValueError, match="image_size=112"):
        net(torch.zeros(2, 3, 112, 112))


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("size", [32, 48, 64, 112])
def test_every_image_size_gives_one_embedding_per_image(name, size):
    """Small inputs too: the global depthwise conv must cover the whole S/16 map (no padding)."""
    net = create_embedding(name, image_size=size, embedding_dim=16).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, size, size))
    assert out.shape == (2, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
