"""facekit.compress: quantisation against torch's own quantiser and the float model, exact pruning sparsity,
the distillation loss against a hand formula and decreasing on a toy, sizes and timings."""

import doctest
import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facekit.compress import (ChipInput, EmbeddingDistillLoss, affine_qparams, cast_precision, dynamic_int8,
                              fake_quantize, fold_batchnorm, global_magnitude_prune, latency, layer_coverage, sparsity,
                              state_dict_mb, static_int8)
from facekit.config import ConfigError
from facekit.models import create_embedding

pytestmark = pytest.mark.usefixtures("one_thread")
MODULES = ["facekit.compress", "facekit.compress.quantize", "facekit.compress.prune", "facekit.compress.distill",
           "facekit.compress.measure", "facekit.compress.fuse"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0


def small_convnet(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 16)).eval()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_affine_qparams_and_fake_quantize_match_torch():
    torch.manual_seed(0)
    x = torch.randn(1000) * 3 + 1
    scale, zp = affine_qparams(float(x.min()), float(x.max()))
    observer = torch.ao.quantization.MinMaxObserver(dtype=torch.quint8)
    observer(x)
    t_scale, t_zp = observer.calculate_qparams()
    assert scale == pytest.approx(float(t_scale), rel=1e-6) and zp == int(t_zp)
    q, x_hat = fake_quantize(x, scale, zp)
    ref = torch.quantize_per_tensor(x, scale, zp, torch.quint8)
    assert torch.equal(q, ref.int_repr().long())
    assert torch.allclose(x_hat, ref.dequantize(), atol=1e-6)
    assert float((x - x_hat).abs().max()) <= scale / 2 + 1e-6  # rounding error at most half a step in range
    assert fake_quantize(torch.zeros(1), scale, zp)[1].item() == 0.0  # zero is exact


def test_layer_coverage_counts_linear_share():
    net = small_convnet()
    linear = 32 * 16 + 16
    total = sum(p.numel() for p in net.parameters())
    assert layer_coverage(net) == pytest.approx(linear / total)
    assert layer_coverage(net, (nn.Conv2d, nn.Linear)) == pytest.approx(1.0)


def test_dynamic_int8_close_to_float_and_smaller():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64)).eval()
    x = torch.randn(32, 64)
    q = dynamic_int8(net)
    cos = F.cosine_similarity(q(x), net(x), dim=1)
    assert cos.min() > 0.99
    assert state_dict_mb(q) < state_dict_mb(net) / 2.5  # int8 weights: about a quarter of fp32
    assert isinstance(net[0], nn.Linear)  # the original is untouched


def test_static_int8_close_to_float():
    net = small_convnet()
    torch.manual_seed(1)
    calib = [torch.rand(8, 3, 16, 16) for _ in range(4)]
    q = static_int8(net, calib, backend="x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm")
    x = torch.rand(16, 3, 16, 16)
    cos = F.cosine_similarity(q(x), net(x), dim=1)
    assert cos.min() > 0.99, cos.min()
    assert any("quantized" in type(m).__module__ for m in q.modules())
    with pytest.raises(ConfigError):
        static_int8(net, calib, backend="tpu")
    with pytest.raises(ValueError, match="calibration"):
        static_int8(net, [], backend="fbgemm")


def test_static_int8_on_mobilefacenet_tiny():
    torch.manual_seed(0)
    net = create_embedding("mobilefacenet_tiny", image_size=32).eval()
    with torch.no_grad():  # BN statistics that are not the identity, as after training
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(8, 3, 32, 32)
    q = static_int8(net, [torch.rand(16, 3, 32, 32)], backend="fbgemm")
    assert F.cosine_similarity(q(x), net(x), dim=1).min() > 0.95


def test_cast_precision_close():
    net = small_convnet()
    x = torch.rand(4, 3, 16, 16)
    for precision, tol in (("bf16", 0.995), ("fp16", 0.9999)):
        out = cast_precision(net, precision)(x)
        assert out.dtype == torch.float32
        assert F.cosine_similarity(out, net(x), dim=1).min() > tol
    assert next(net.parameters()).dtype == torch.float32
    with pytest.raises(ConfigError):
        cast_precision(net, "int4")


@pytest.mark.parametrize("amount", [0.3, 0.5, 0.7])
def test_global_pruning_sparsity_is_exact(amount):
    net = small_convnet()
    weights = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    n = sum(w.numel() for w in weights)
    pruned = global_magnitude_prune(net, amount)
    assert sparsity(pruned) == pytest.approx(round(amount * n) / n, abs=1e-12)
    assert sparsity(net) == 0.0  # the original is untouched
    assert not any(name.endswith("_orig") for name, _ in pruned.named_parameters())  # masks removed
    # global: the kept weights are exactly the largest |w| over all layers
    all_w = torch.cat([w.detach().abs().flatten() for w in weights])
    kept = torch.cat([m.weight.detach().flatten() for m in pruned.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    threshold = all_w.sort().values[round(amount * n) - 1]
    assert bool(((kept != 0) == (all_w > threshold)).all())


def test_pruning_bad_amount():
    with pytest.raises(ValueError, match="amount"):
        global_magnitude_prune(small_convnet(), 1.0)


def test_distill_loss_matches_formula():
    torch.manual_seed(0)
    s, t = torch.randn(5, 8), torch.randn(5, 8)
    cos = F.cosine_similarity(s, t, dim=1)
    assert EmbeddingDistillLoss()(s, t).item() == pytest.approx(float((1 - cos).mean()), rel=1e-5)
    both = EmbeddingDistillLoss(cosine_weight=0.5, mse_weight=2.0)(s, t).item()
    mse = ((F.normalize(s, dim=1) - F.normalize(t, dim=1)) ** 2).sum(1).mean()
    assert both == pytest.approx(float(0.5 * (1 - cos).mean() + 2.0 * mse), rel=1e-5)
    with pytest.raises(ValueError, match="embedding_dim"):
        EmbeddingDistillLoss()(s, torch.randn(5, 4))
    with pytest.raises(ValueError):
        EmbeddingDistillLoss(cosine_weight=0.0)


def test_distillation_loss_decreases_on_toy():
    from facekit.train import fit

    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16)).eval()
    images = torch.rand(128, 3, 8, 8) * 255
    with torch.no_grad():
        targets = teacher(images / 127.5 - 1)
    student = ChipInput(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 16)), 4)
    loss = EmbeddingDistillLoss()
    before = loss(student(images), targets).item()
    history = fit(student, torch.utils.data.TensorDataset(images, targets), loss_fn=loss, metrics={}, epochs=8,
                  batch_size=32, lr=1e-2, device="cpu", progress=False)
    after = loss(student(images), targets).item()
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert after < 0.5 * before


def test_latency_and_size():
    net = small_convnet()
    r = latency(net, torch.rand(1, 3, 16, 16), batch_size=4, warmup=1, repeats=3)
    assert r.batch1_ms > 0 and r.throughput_ips == pytest.approx(4 / (r.batch_ms / 1e3))
    n_params = sum(p.numel() for p in net.parameters())
    assert state_dict_mb(net) == pytest.approx(n_params * 4 / 1e6, rel=0.5, abs=0.01)
    with pytest.raises(ValueError, match="example"):
        latency(net, torch.rand(2, 3, 16, 16))


def test_compare_latency_round_robin_orders_models():
    import time as _time

    class Sleepy(nn.Module):
        def __init__(self, seconds):
            super().__init__()
            self.seconds = seconds

        def forward(self, x):
            _time.sleep(self.seconds)
            return x

    from facekit.compress import compare_latency

    out = compare_latency({"fast": Sleepy(0.001), "slow": Sleepy(0.02)}, torch.zeros(1, 2), batch_size=2, warmup=1,
                          rounds=3)
    assert out["slow"].batch1_ms > 5 * out["fast"].batch1_ms
    assert out["fast"].batch1_ms >= 1.0 and out["slow"].throughput_ips < 2 / 0.02


class _ConvBnRelu(nn.Module):  # facenet-pytorch's BasicConv2d: conv (no bias), batch norm, ReLU
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def _random_stats(net):
    torch.manual_seed(3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
    return net.eval()


def test_fold_batchnorm_by_hand_and_exact():
    torch.manual_seed(0)
    net = _random_stats(nn.Sequential(_ConvBnRelu(3, 8), _ConvBnRelu(8, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Linear(8, 4, bias=False), nn.BatchNorm1d(4)))
    x = torch.randn(5, 3, 12, 12)
    folded, count = fold_batchnorm(net, example=x, atol=1e-5)
    assert count == 3 and sum(isinstance(m, nn.Identity) for m in folded.modules()) == 3
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in folded.modules())
    assert isinstance(net[0].bn, nn.BatchNorm2d)  # the original is untouched
    bn, conv = net[0].bn, net[0].conv  # the formula by hand: w' = w * g / sqrt(v + eps), b' = beta - mean * g / ...
    k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(folded[0].conv.weight, conv.weight * k[:, None, None, None], atol=1e-6)
    assert torch.allclose(folded[0].conv.bias, bn.bias - bn.running_mean * k, atol=1e-6)
    assert torch.allclose(folded(x), net(x), atol=1e-5)


def test_fold_batchnorm_refuses_a_wrong_order():
    class BnFirst(nn.Module):  # registered conv, bn but applied bn, conv: folding would change the function
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.conv(self.bn(x))

    net = _random_stats(BnFirst())
    with pytest.raises(ValueError, match="batch norm"):
        fold_batchnorm(net, example=torch.randn(2, 4, 5, 5))
    assert fold_batchnorm(net)[1] == 1  # without an example nothing is checked


def test_fold_batchnorm_then_static_int8_close():
    net = _random_stats(nn.Sequential(_ConvBnRelu(3, 8), _ConvBnRelu(8, 16), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    folded, _ = fold_batchnorm(net)
    q = static_int8(folded, [torch.rand(16, 3, 16, 16)], backend="fbgemm")
    x = torch.rand(8, 3, 16, 16)
    assert F.cosine_similarity(q(x), net(x), dim=1).min() > 0.98
