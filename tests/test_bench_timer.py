"""facekit.bench.timer against known sleeps, fake synchronisation and numpy's percentiles; FLOPs and MFU by hand."""

import time

import numpy as np
import pytest
import torch
from torch import nn

from facekit.bench import Timer, achieved_flops, activation_bytes, mfu, roofline, summarize
from facekit.config import ConfigError
from facekit.models import count_flops

SLEEP_S = 0.020


def test_timer_measures_a_known_sleep():
    t = Timer(warmup=1, repeats=5).measure(lambda: time.sleep(SLEEP_S))
    assert t.n == 5
    assert SLEEP_S * 0.98 <= t.min_s <= t.median_s <= t.p95_s
    assert t.median_s < SLEEP_S + 0.030, "sleep(20 ms) measured far too long (or the machine is overloaded)"
    assert t.iqr_s >= 0


def test_timer_is_monotone_in_the_work():
    timer = Timer(warmup=0, repeats=3)
    short = timer.measure(lambda: time.sleep(0.002)).median_s
    long = timer.measure(lambda: time.sleep(0.030)).median_s
    assert long >= 0.030 * 0.98 and long > short


def test_median_is_robust_to_one_outlier():
    calls = iter([0.005] * 3 + [0.150] + [0.005] * 3)  # one call 30x slower, as a busy machine makes it
    t = Timer(warmup=0, repeats=7).measure(lambda: time.sleep(next(calls)))
    assert t.median_s < 0.040, "one slow call must not move the median"
    assert t.p95_s > 0.100, "but the tail shows it"


def test_summarize_matches_numpy():
    rng = np.random.default_rng(0)
    samples = rng.exponential(1.0, size=23).tolist()
    s = summarize(samples)
    assert s.median_s == pytest.approx(np.median(samples))
    assert s.p95_s == pytest.approx(np.percentile(samples, 95))
    assert s.iqr_s == pytest.approx(np.percentile(samples, 75) - np.percentile(samples, 25))
    assert s.min_s == min(samples) and s.n == 23
    assert s.rate(10) == pytest.approx(10 / s.median_s)
    with pytest.raises(ValueError, match="no timing samples"):
        summarize([])


def test_timer_waits_for_the_device_before_each_clock_read():
    events = []
    fake_device_work = 0.010  # the "device" finishes its queued work only when synchronised

    def launch():
        events.append("launch")

    def synchronize():
        events.append("sync")
        time.sleep(fake_device_work)

    t = Timer(warmup=2, repeats=3, inner=2).measure(launch, synchronize=synchronize)
    # warm-up launches, one sync, then per sample: `inner` launches and a sync before the clock is read
    assert events == ["launch"] * 2 + ["sync"] + (["launch"] * 2 + ["sync"]) * 3
    assert t.median_s >= fake_device_work / 2 * 0.98  # the wait is inside the timed region, per inner call


@pytest.mark.parametrize("bad", [{"repeats": 0}, {"warmup": -1}, {"inner": 0}])
def test_timer_rejects_bad_settings(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        Timer(**bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA events need a CUDA device")
def test_timer_cuda_events_agree_with_synchronised_clock():  # pragma: no cover - GPU only
    a = torch.randn(2048, 2048, device="cuda")
    events = Timer(warmup=2, repeats=5).measure(lambda: a @ a, device="cuda").median_s
    clock = Timer(warmup=2, repeats=5, use_cuda_events=False).measure(lambda: a @ a, device="cuda").median_s
    assert events == pytest.approx(clock, rel=0.5)


# FLOPs by hand: a multiply-accumulate is 2 FLOPs; biases are not counted by torch's counter.

def test_count_flops_of_a_linear_layer_by_hand():
    batch, n_in, n_out = 8, 10, 4
    hand = 2 * batch * n_in * n_out  # 640 multiply-adds x 2; the bias adds (batch * n_out = 32) are not counted
    assert count_flops(nn.Linear(n_in, n_out), (batch, n_in)) == hand
    assert count_flops(nn.Linear(n_in, n_out, bias=False), (batch, n_in)) == hand


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0)])
def test_count_flops_of_a_conv_layer_by_hand(stride, padding):
    b, c_in, c_out, k, side = 2, 3, 8, 3, 16
    out_side = (side + 2 * padding - k) // stride + 1
    hand = 2 * b * c_out * out_side * out_side * c_in * k * k  # per output pixel: c_in * k * k MACs
    assert count_flops(nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding), (b, c_in, side, side)) == hand


def test_mfu_arithmetic_on_fabricated_numbers():
    forward = 1e9  # FLOPs per image
    achieved = achieved_flops(forward, images_per_s=100.0, training=True)
    assert achieved == pytest.approx(3e11)  # forward + backward = 3x the forward
    assert achieved_flops(forward, 100.0, training=False) == pytest.approx(1e11)
    assert mfu(achieved, peak_flops_per_s=1e12) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="peak_flops_per_s"):
        mfu(1.0, 0.0)


def test_roofline_on_fabricated_numbers():
    r = roofline(1e9, 1e8, peak_flops_per_s=1e12, bytes_per_s=1e11)  # 10 FLOP/B, ridge at 10 FLOP/B
    assert r.intensity == pytest.approx(10) and r.ridge == pytest.approx(10) and r.bound == "compute"
    m = roofline(1e9, 1e9, peak_flops_per_s=1e12, bytes_per_s=1e11)  # 1 FLOP/B < 10
    assert m.bound == "memory" and m.ceiling_flops_per_s == pytest.approx(1e11)


def test_activation_bytes_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    hand = 4 * (3 * 8 * 8 + 4 * 8 * 8 + 4 * 8 * 8)  # fp32: the input, the conv's output, the ReLU's output
    assert activation_bytes(net, (1, 3, 8, 8)) == hand
    assert net.training, "the mode is restored"


@pytest.mark.parametrize("name", ["timer", "steps", "memory", "peak", "levers", "loading", "backbones", "suite",
                                  "throughput"])
def test_doctests(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"facekit.bench.{name}"))
    assert result.failed == 0
