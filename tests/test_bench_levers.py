"""facekit.bench on a tiny model on the CPU: training steps, sweeps, levers (and their skip reasons), loading."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from facekit.bench import (BACKBONES, LEVERS, SyntheticImages, Timer, build_backbone, copy_bandwidth,
                           inference_sweep, loader_throughput, loading_grid, make_inference, matmul_peak,
                           measure_levers, measure_model, peak_memory, proxy_loss, random_inputs, skip_reason,
                           train_step_rate, unavailable)
from facekit.bench.levers import cuda_graph_inference, prepare
from facekit.config import ConfigError

FAST = Timer(warmup=1, repeats=2)
SHAPE = (3, 16, 16)


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 5))


def test_random_inputs_are_seeded_and_not_zero():
    x = random_inputs((4, *SHAPE), seed=1)
    assert bool((x != 0).all()) and torch.equal(x, random_inputs((4, *SHAPE), seed=1))
    assert not torch.equal(x, random_inputs((4, *SHAPE), seed=2))
    assert random_inputs((2, *SHAPE), channels_last=True).is_contiguous(memory_format=torch.channels_last)


def test_proxy_loss_reaches_every_floating_output():
    out = (torch.ones(2, 3), {"boxes": torch.full((2, 4), 2.0)}, torch.tensor([1]))
    assert proxy_loss(out).item() == pytest.approx(3.0)
    with pytest.raises(TypeError, match="no floating tensor"):
        proxy_loss(torch.tensor([1, 2]))


def test_train_step_rate_trains_the_model():
    model = tiny()
    before = model[-1].weight.detach().clone()
    r = train_step_rate(model, SHAPE, batch_size=4, timer=FAST)
    assert r.images_per_s > 0 and r.timing.n == 2
    assert model.training
    assert not torch.equal(before, model[-1].weight), "the optimizer stepped"
    assert r.images_per_s_p95 <= r.images_per_s + 1e-9


def test_inference_runs_in_eval_mode_without_gradients():
    seen = {}

    class Probe(nn.Module):
        def forward(self, x):
            seen.update(grad=torch.is_grad_enabled(), training=self.training)
            return x

    make_inference(Probe(), torch.randn(2, 3))()
    assert seen == {"grad": False, "training": False}


def test_inference_sweep_rows():
    rows = inference_sweep(tiny(), SHAPE, (1, 4), timer=FAST)
    assert [r["batch_size"] for r in rows] == [1, 4]
    assert all(r["images_per_s"] > 0 and r["p95_ms"] >= r["median_ms"] > 0 for r in rows)
    with pytest.raises(ValueError, match="batch sizes"):
        inference_sweep(tiny(), SHAPE, (0,), timer=FAST)


def test_measure_model_row():
    row, sweep = measure_model(tiny(), "tiny", SHAPE, train_batch=4, sweep_batches=(1, 2), timer=FAST,
                               peak_flops_per_s=1e12)
    assert row["model"] == "tiny" and row["forward_gflops"] > 0 and row["train_img_s"] > 0
    assert row["latency_p95_ms"] >= row["latency_ms"] > 0
    assert math.isnan(row["train_peak_mib"]), "no CPU peak memory figure is invented"
    assert 0 < row["train_mfu"] < 1 and 0 < row["infer_mfu"] < 1
    assert [r["model"] for r in sweep] == ["tiny", "tiny"]


def test_levers_that_do_not_apply_on_the_cpu_are_skipped_with_a_reason():
    for lever in ("tf32", "fp16_autocast", "cuda_graphs"):
        assert skip_reason(lever, "cpu"), lever
    assert skip_reason("cuda_graphs", "cpu", "train")
    assert "profile" in skip_reason("compile", "cpu", allow_compile=False)
    for lever in ("fp32", "bf16_autocast", "channels_last", "compile"):
        assert skip_reason(lever, "cpu") is None, lever
    with pytest.raises(ConfigError, match="fp8"):
        skip_reason("fp8", "cpu")
    with pytest.raises(ConfigError, match="mode"):
        skip_reason("fp32", "cpu", "serve")


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_measure_levers_on_the_cpu(mode):
    model = tiny()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    levers = ("fp32", "tf32", "bf16_autocast", "channels_last", "compile", "cuda_graphs")
    results = {r.lever: r for r in measure_levers(model, SHAPE, levers=levers, batch_size=4, mode=mode, timer=FAST,
                                                  allow_compile=False)}
    assert list(results) == list(levers)
    assert results["fp32"].speedup == pytest.approx(1.0)
    for lever in ("bf16_autocast", "channels_last"):
        assert results[lever].skipped is None and results[lever].speedup > 0
    for lever in ("tf32", "compile", "cuda_graphs"):
        assert results[lever].skipped and math.isnan(results[lever].speedup)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items()), "levers work on copies"
    with pytest.raises(ConfigError, match="lever"):
        measure_levers(model, SHAPE, levers=("fp64",), batch_size=2, timer=FAST)


def test_a_lever_computes_the_same_function():
    model = tiny().eval()
    x = random_inputs((2, *SHAPE))
    ref = model(x)
    out = prepare(model, "channels_last", SHAPE, batch_size=2)()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    bf16 = prepare(model, "bf16_autocast", SHAPE, batch_size=2)()
    torch.testing.assert_close(bf16.float(), ref, rtol=0.05, atol=0.05)


def test_cuda_graphs_need_cuda():
    with pytest.raises(ValueError, match="CUDA"):
        cuda_graph_inference(tiny(), torch.randn(1, *SHAPE))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU levers need a CUDA device")
def test_every_lever_runs_on_a_gpu():  # pragma: no cover - GPU only
    results = measure_levers(tiny(), SHAPE, levers=LEVERS, batch_size=8, device="cuda", timer=FAST)
    assert all(r.skipped is None or r.lever == "tf32" for r in results)
    model = tiny().cuda().eval()
    x = random_inputs((2, *SHAPE), device="cuda")
    torch.testing.assert_close(cuda_graph_inference(model, x)(), model(x))


def test_peak_memory_and_device_peaks_on_the_cpu():
    mem = peak_memory(lambda: None, device="cpu")
    assert mem.peak_bytes is None and "n/a" in mem.note and math.isnan(mem.peak_mib)
    mm = matmul_peak(n=64, timer=FAST)
    assert mm.per_s > 0 and "float32" in mm.what
    assert mm.per_s == pytest.approx(2 * 64**3 / mm.timing.min_s), "2 n^3 FLOPs at the fastest repeat"
    assert copy_bandwidth(nbytes=2**20, timer=FAST).per_s > 0


def test_loader_throughput_consumes_every_image_and_skips_pinning_on_the_cpu():
    ds = SyntheticImages(num_images=10, image_size=8)
    torch.testing.assert_close(ds[3][0], ds[3][0])
    seen = []
    r = loader_throughput(ds, lambda x: seen.append(len(x)), batch_size=4, epochs=2)
    assert r.skipped is None and r.images_per_s > 0
    assert sum(seen) == 10 * 3, "one warm-up epoch and two timed epochs"
    grid = loading_grid(ds, lambda x: None, batch_size=4, workers=(0,), pins=(False, True), epochs=1)
    assert [g.skipped is None for g in grid] == [True, False] and "pinned" in grid[1].skipped


def test_backbone_registry():
    with pytest.raises(ConfigError, match="backbone"):
        build_backbone("resnet5000")
    for name in ("article_cnn", "small_resnet", "iresnet_tiny", "detector"):
        assert unavailable(name) is None
        model, shape = build_backbone(name, image_size=32 if name != "detector" else 64)
        with torch.no_grad():
            proxy_loss(model.eval()(torch.randn(1, *shape)))
    assert BACKBONES["dlib_resnet"].fixed_size and build_backbone.__doc__


def test_dlib_descriptor_timer_on_random_chips():
    pytest.importorskip("dlib", reason="dlib is not installed")
    if unavailable("dlib_resnet"):
        pytest.skip(unavailable("dlib_resnet"))
    from facekit.bench import dlib_descriptor_timer

    chips = np.random.default_rng(0).integers(0, 256, size=(2, 150, 150, 3), dtype=np.uint8)
    out = dlib_descriptor_timer(chips, batch_size=2)()
    assert out.shape == (2, 128) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="uint8"):
        dlib_descriptor_timer(chips.astype(np.float32))


def test_every_course_backbone_runs_at_its_native_size():
    """The gpu profile measures them at these sizes: each builds, runs and has a positive FLOP count."""
    from facekit.models import count_flops

    for name, b in BACKBONES.items():
        if b.fixed_size:
            continue  # the pretrained models: their own tests (tests/test_pretrained*.py)
        model, shape = build_backbone(name)
        assert shape == (3, b.native_size, b.native_size)
        assert count_flops(model, (1, *shape)) > 0, name
