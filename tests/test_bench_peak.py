"""The compute ceilings: the CPU's theoretical peak from its specification and the measured peak sweep."""

import math

import numpy as np

import pytest
import torch

from facekit.bench import LEVERS, Timer, conv_peak, measure_levers, parse_cpu_spec, peak_sweep, read_cpu_spec
from facekit.models import count_flops

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = Timer(warmup=1, repeats=3)

CPUINFO = """processor : 0
model name : Example EPYC
cpu MHz : 2596.098
cpu cores : 2
flags : fpu sse sse2 avx fma avx2 avx512f avx512bw
processor : 1
model name : Example EPYC
cpu MHz : 2596.098
cpu cores : 2
flags : fpu sse sse2 avx fma avx2 avx512f avx512bw
"""
LSCPU = "Model name: Example EPYC\nThread(s) per core: 1\nCore(s) per socket: 2\nSocket(s): 1\n"


def test_cpu_spec_from_cpuinfo_and_lscpu():
    spec = parse_cpu_spec(CPUINFO, LSCPU, usable_cpus=2)
    assert (spec.model, spec.cores, spec.vector_bits, spec.fma_units) == ("Example EPYC", 2, 512, 2)
    assert spec.ghz == pytest.approx(2.596098)
    # 2 cores x 2.596 GHz x 16 lanes x 2 FMA units x 2 FLOPs per FMA
    assert spec.peak_flops == pytest.approx(2 * 2.596098e9 * 16 * 2 * 2)
    assert "lscpu" in spec.sources["cores"] and "cpu MHz" in spec.sources["clock"]
    assert "assumed" in spec.sources["FMA units"] and "332 GFLOP/s" in spec.formula


def test_cpu_spec_prefers_max_mhz_limits_cores_and_reads_narrower_isas():
    spec = parse_cpu_spec(CPUINFO.replace(" avx512f avx512bw", ""), LSCPU + "CPU max MHz: 3700.0000\n",
                          usable_cpus=1, fma_units=1)
    assert (spec.cores, spec.ghz, spec.vector_bits, spec.fp32_flops_per_cycle) == (1, 3.7, 256, 16)
    assert "limited to the 1 CPUs" in spec.sources["cores"] and spec.sources["clock"] == "lscpu CPU max MHz"
    sse = parse_cpu_spec("cpu MHz : 1000\nflags : fpu sse sse2\ncpu cores : 4\n", usable_cpus=8)
    assert (sse.cores, sse.vector_bits) == (4, 128)


def test_cpu_spec_rejects_what_it_cannot_read():
    with pytest.raises(ValueError, match="flags"):
        parse_cpu_spec("model name : M1\n")
    with pytest.raises(ValueError, match="clock"):
        parse_cpu_spec("flags : avx\n", usable_cpus=1)
    with pytest.raises(ValueError, match="fma_units"):
        parse_cpu_spec(CPUINFO, fma_units=0)


def test_this_machine_spec_is_consistent():
    spec = read_cpu_spec()
    if spec is None:
        pytest.skip("no x86 /proc/cpuinfo on this machine")
    assert 1 <= spec.cores and spec.ghz > 0.1 and spec.peak_flops > 0


def test_conv_peak_counts_the_flops_count_flops_counts():
    p = conv_peak(channels=8, side=10, timer=FAST)
    conv = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)
    assert p.per_s * p.timing.min_s == pytest.approx(count_flops(conv, (1, 8, 10, 10)))
    with pytest.raises(ValueError, match="channels"):
        conv_peak(channels=0, timer=FAST)


def test_peak_sweep_takes_the_best_and_restores_threads():
    before = torch.get_num_threads()
    sweep = peak_sweep(matmul_sizes=(32, 64), conv_channels=(8,), conv_side=8, threads=(1, 2), timer=FAST)
    assert torch.get_num_threads() == before
    assert [(r["kernel"], r["size"], r["threads"]) for r in sweep.rows] == [
        ("matmul", 32, 1), ("matmul", 64, 1), ("conv3x3", 8, 1), ("matmul", 32, 2), ("matmul", 64, 2),
        ("conv3x3", 8, 2)]
    assert sweep.best.per_s / 1e12 == pytest.approx(max(r["tflop_s"] for r in sweep.rows))
    assert sweep.best_matmul.what.startswith("matmul") and sweep.best_matmul.per_s <= sweep.best.per_s
    with pytest.raises(ValueError, match="threads"):
        peak_sweep(matmul_sizes=(8,), threads=(0,), timer=FAST)


def test_lever_rounds_are_paired():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    results = measure_levers(model, (3, 8, 8), levers=LEVERS, batch_size=2, timer=FAST, rounds=3,
                             allow_compile=False)
    by = {r.lever: r for r in results}
    cl = by["channels_last"]
    assert len(cl.baseline_rounds) == len(cl.lever_rounds) == 3
    assert cl.images_per_s == sorted(cl.lever_rounds)[1] and cl.baseline_images_per_s == sorted(cl.baseline_rounds)[1]
    assert all(math.isclose(s, a / b) for s, a, b in zip(cl.round_speedups, cl.lever_rounds, cl.baseline_rounds))
    assert by["fp32"].round_speedups == (1.0, 1.0, 1.0) and by["compile"].lever_rounds == ()
    with pytest.raises(Exception, match="rounds"):
        measure_levers(model, (3, 8, 8), levers=("fp32",), batch_size=2, timer=FAST, rounds=0)


def test_speedup_verdict_against_a_paired_t_on_logs():
    from scipy.stats import ttest_rel

    from facekit.bench import speedup_verdict

    fast, slow = [210.0, 190.0, 205.0, 198.0], [100.0, 98.0, 104.0, 97.0]
    v, ratio = speedup_verdict(fast, slow, names=("fast", "slow"))
    assert v.winner == "a" and v.unit == "timing rounds" and "fast better than slow" in v.text
    assert v.p_value == pytest.approx(ttest_rel(np.log(fast), np.log(slow)).pvalue)
    assert ratio.estimate == pytest.approx(np.exp(np.mean(np.log(fast) - np.log(slow))))
    assert ratio.low < ratio.estimate < ratio.high
    tie, _ = speedup_verdict([100.0, 120.0, 90.0], [110.0, 95.0, 105.0])
    assert tie.winner is None
    two, _ = speedup_verdict([200.0, 201.0], [100.0, 100.5])  # a clear ratio, but under MIN_SEEDS rounds
    assert two.winner is None and "too few" in two.text
    with pytest.raises(ValueError, match="> 0"):
        speedup_verdict([1.0, 0.0], [1.0, 1.0])
