# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 7 — Benchmarking the course's networks on a GPU (or a CPU), and trusting the numbers
#
# "Model A trains at 3,000 images/s" says little on its own: on which device, at which batch size, in which
# precision, measured how, and how much would a second run differ? This chapter measures the networks of the
# course the way a careful benchmark does, and turns the raw images/s into numbers that travel between machines:
# a fraction of what the device can do (the model FLOP utilisation, MFU) and a ratio to a reference network
# measured in the same run.
#
# ## Learning outcomes
#
# After this chapter you can
#
# 1. time a piece of PyTorch work correctly (warm-up, device synchronisation, repeats) and report its median,
#    interquartile range and 95th percentile, with a timer written from scratch and checked against
#    `facekit.bench.Timer`;
# 2. count the FLOPs of a network with `torch.utils.flop_counter.FlopCounterMode` and by hand for a linear layer
#    and a convolution;
# 3. measure a device's practical compute peak (matrix products and convolutions over sizes and threads) and
#    its copy bandwidth, and compare them with the theoretical peak of the CPU's specification;
# 4. compute MFU and place a model on the roofline (compute-bound or memory-bound), and explain an MFU above 1;
# 5. switch speed levers on and off and state a speed-up with its interval over paired timing rounds, naming a
#    winner only when the course's noise rule allows.
#
# ## Prerequisites
#
# - The networks of chapters 1 to 4 (a small CNN and ResNet, a vision transformer, the embedding networks and
#   the detector); chapter 10's ports of dlib's ResNet and FaceNet appear when their packages are installed.
# - Chapter 1's `facekit.stats`: intervals, paired comparisons and the noise rule (a winner only when the 95%
#   interval of the paired difference excludes zero, with enough repetitions).
# - Matrix products and convolutions as sums of multiply-adds; what a CPU core, a vector instruction and a GPU are.
#
# The plan: (1) what the run is measured on; (2) timing done right; (3) the device's ceilings, measured and from
# the specification; (4) every backbone's throughput, latency, FLOPs, MFU and roofline; (5) the levers, over
# paired rounds; (6) dlib's own code against our port; then exercises, a summary, pitfalls and further reading.
#
# Profiles: `smoke` measures tiny inputs with few repeats (its numbers only prove the code runs), `cpu` gives
# meaningful CPU numbers in a few minutes, `gpu` uses full sizes and a batch sweep up to 512. Every timing depends
# on what else the machine is doing: on a shared machine the numbers of one run are slower than an idle machine's,
# and the chapter says how much they moved between repeats.

# %% tags=["parameters"]
profile = "auto"  # smoke | cpu | gpu | auto (auto: $FACEKIT_PROFILE, else gpu if CUDA, else cpu)
device = "auto"  # auto | cpu | cuda | cuda:N
seed = 0

# %%
import math
import time
from dataclasses import asdict, dataclass, replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import facekit as fk
from facekit.bench import (BACKBONES, LEVERS, REFERENCE, SyntheticImages, Timer, achieved_flops, activation_bytes,
                           build_backbone, copy_bandwidth, dlib_descriptor_timer, loading_grid, matmul_peak,
                           measure_levers, measure_model, mfu, peak_sweep, proxy_loss, random_inputs,
                           read_cpu_spec, roofline, speedup_verdict, unavailable)
from facekit.models import count_flops
from facekit.reports import record
from facekit.reports.device import device_info


# %% [markdown]
# One set of sizes per profile; the table below shows all three, the arrow marks this run's.

# %%
@dataclass(frozen=True)
class Sizes:
    models: tuple  # course backbones measured (names of facekit.bench.BACKBONES)
    pretrained: tuple  # real pretrained models measured when installed: dlib_resnet, facenet
    max_image_size: int  # cap on each model's input side (0 = the size each model is made for)
    train_batch: int = fk.profiles.count()  # images per timed training step (a dry run: at most 32)
    sweep_batches: tuple  # inference batch sizes (1 first: the sweep's batch-1 rate is checked against latency)
    warmup: int  # untimed calls before each measurement
    repeats: int  # timed samples per measurement (median and spread over them)
    latency_repeats: int  # samples of the batch-1 latency (for its 95th percentile)
    matmul_sizes: tuple  # sides n of the square matrix products of the compute peak
    conv_channels: tuple  # channels of the 3x3 convolutions of the compute peak
    conv_side: int  # their feature-map side
    threads: tuple  # CPU thread counts tried for the peak (the best is the ceiling)
    copy_mib: int = fk.profiles.count()  # size of the tensor copied for the bandwidth
    lever_models: tuple  # models whose levers are measured
    lever_batch: int = fk.profiles.count("steps")  # batch of the lever measurements (a dry run: max_steps images)
    lever_rounds: int  # paired rounds (baseline, then each lever) behind every lever verdict
    graph_batch: int  # the small inference batch of the CUDA-graph lever
    compile_models: tuple  # lever models whose torch.compile is measured (a minute or more to compile on a CPU)
    loader_images: int  # images per epoch of the data-loading measurement
    loader_batch: int
    loader_workers: tuple  # num_workers values tried
    dlib_chips: int  # chips timed through ours and dlib's own descriptor code, per round
    dlib_batch: int
    dlib_rounds: int  # paired rounds (dlib's own, then ours)


# %% [markdown]
# The `smoke` column is what the tests run (tiny inputs: its timings only prove that the code runs), `cpu` a
# laptop-sized run of a few minutes, `gpu` full sizes. The compute peak is swept over `matmul_sizes`,
# `conv_channels` and `threads`; every comparison of section 5 and 6 is repeated in paired rounds.

# %%
COURSE = ("article_cnn", "small_resnet", "vit", "iresnet_tiny", "mobilefacenet", "detector")
ctx = fk.notebook.setup(
    profile, seed=seed, device=device, data_root=None,
    smoke=Sizes(models=COURSE, pretrained=("dlib_resnet",), max_image_size=32, train_batch=4, sweep_batches=(1, 8),
                warmup=1, repeats=3, latency_repeats=5, matmul_sizes=(128, 256), conv_channels=(16,), conv_side=16,
                threads=(1,), copy_mib=16, lever_models=("small_resnet",), lever_batch=8, lever_rounds=3,
                graph_batch=1, compile_models=(), loader_images=64, loader_batch=16, loader_workers=(0,),
                dlib_chips=2, dlib_batch=2, dlib_rounds=3),
    cpu=Sizes(models=COURSE, pretrained=("dlib_resnet", "facenet"), max_image_size=0, train_batch=16,
              sweep_batches=(1, 4, 16, 64), warmup=2, repeats=5, latency_repeats=15, matmul_sizes=(512, 1024, 2048),
              conv_channels=(64, 128, 256), conv_side=56, threads=(1, 2), copy_mib=128,
              lever_models=("small_resnet", "mobilefacenet"), lever_batch=32, lever_rounds=3, graph_batch=1,
              compile_models=("small_resnet",), loader_images=512, loader_batch=64, loader_workers=(0, 1),
              dlib_chips=16, dlib_batch=16, dlib_rounds=3),
    gpu=Sizes(models=COURSE[:4] + ("iresnet50",) + COURSE[4:], pretrained=("dlib_resnet", "facenet"),
              max_image_size=0, train_batch=128, sweep_batches=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), warmup=5,
              repeats=20, latency_repeats=100, matmul_sizes=(4096, 8192), conv_channels=(256, 512), conv_side=56,
              threads=(), copy_mib=1024, lever_models=("small_resnet", "iresnet50", "vit", "mobilefacenet"),
              lever_batch=128, lever_rounds=5, graph_batch=1,
              compile_models=("small_resnet", "iresnet50", "vit", "mobilefacenet"), loader_images=8192,
              loader_batch=256, loader_workers=(0, 4, 8), dlib_chips=32, dlib_batch=32, dlib_rounds=3))
PROFILE, S, DEVICE = ctx.profile, ctx.sizes, ctx.device
if fk.profiles.dry_run():  # the code paths, not the work: products of at most 1024, batches at most the item cap
    S = replace(S, matmul_sizes=tuple(dict.fromkeys(min(n, 1024) for n in S.matmul_sizes)),
                sweep_batches=tuple(b for b in S.sweep_batches if b == fk.profiles.capped(b)))
IS_CPU_RUN = DEVICE.type == "cpu"
FULL_RUN = PROFILE != "smoke" and not fk.profiles.dry_run()  # timings are asserted only at full size
TIMER = Timer(warmup=S.warmup, repeats=S.repeats)
LATENCY_TIMER = Timer(warmup=S.warmup, repeats=S.latency_repeats)

# %% [markdown]
# How long this chapter takes at each profile, read from the committed report runs (`reports/*/summary.json`):

# %%
fk.notebook.say(fk.notebook.durations_sentence("07_gpu_benchmarks"))

# %% [markdown]
# ## 1. What this run is measured on
#
# A benchmark without its machine is not a result. The table below is the hardware and software of this run;
# on a CPU the number of threads torch uses matters as much as the CPU model.

# %%
INFO = device_info()
INFO["torch_threads"] = torch.get_num_threads()
INFO["device_used"] = str(DEVICE)
if DEVICE.type == "cuda":
    props = torch.cuda.get_device_properties(DEVICE)
    INFO["gpu_capability"] = f"{props.major}.{props.minor}"  # TF32 and bf16 tensor cores need 8.0+
display(pd.Series(INFO, name="value").astype(str).to_frame())
if IS_CPU_RUN:
    fk.notebook.say(f"**This is a CPU run** ({INFO['cpu']}, {INFO['torch_threads']} torch threads): the numbers "
                    "say how the models compare on this CPU, not what a GPU would do; GPU-only levers are skipped.")
else:
    fk.notebook.say(f"GPU run on {INFO['gpu']} ({INFO['gpu_memory_gib']} GiB), CUDA {INFO['cuda_version']}, "
                    f"torch {INFO['torch']}.")
record("bench_device", INFO["gpu"] or f"CPU: {INFO['cpu']}"[:200])
record("bench_is_cpu_run", IS_CPU_RUN)
_ = record("bench_torch_threads", INFO["torch_threads"])

# %% [markdown]
# ## 2. Timing done right, from scratch
#
# Four rules:
#
# - **Warm up.** The first calls allocate memory, pick convolution algorithms, fill caches (and for
#   `torch.compile`, compile). They are not what a long run pays per step.
# - **Synchronise.** On a GPU, `model(x)` returns as soon as its kernels are *queued*; reading the clock then
#   measures the queueing. Wait for the device (`torch.cuda.synchronize()`) before each clock read, or record
#   CUDA events on the stream.
# - **Repeat, and report the median with its spread.** Other processes only ever slow a run down. The
#   **median** (half the samples are faster) ignores a few slow outliers; the **interquartile range** (IQR, the
#   75th minus the 25th percentile) says how noisy the machine was; the **95th percentile** (p95) is the slow
#   tail that a user of a latency-sensitive service sees.
# - **Use real-looking inputs.** Seeded random inputs, never zeros: hardware and kernels can take shortcuts
#   on zeros, and the benchmark must not measure them.
#
# A from-scratch timer is a dozen lines. We check it against `facekit.bench.Timer` on a call whose duration we
# know, `time.sleep`, and check the percentile definitions against NumPy's.

# %%
def my_timer(fn, warmup: int, repeats: int, sync=lambda: None) -> dict:
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()  # wait for the device before reading the clock
        samples.append(time.perf_counter() - t0)
    q25, q50, q75, q95 = np.percentile(samples, [25, 50, 75, 95])
    return {"median_s": q50, "p95_s": q95, "iqr_s": q75 - q25, "min_s": min(samples), "samples": samples}


SLEEP_S = 0.01
mine = my_timer(lambda: time.sleep(SLEEP_S), warmup=1, repeats=7)
theirs = Timer(warmup=1, repeats=7).measure(lambda: time.sleep(SLEEP_S))
fk.notebook.say(f"`time.sleep({SLEEP_S})`: from-scratch median {1e3 * mine['median_s']:.2f} ms, facekit "
                f"{1e3 * theirs.median_s:.2f} ms (IQR {1e3 * theirs.iqr_s:.2f} ms).")
assert SLEEP_S <= theirs.min_s and SLEEP_S <= mine["min_s"], "a timer never measures less than the sleep"
from facekit.bench.timer import summarize  # noqa: E402  (the statistics of a list of samples)

ours_stats = summarize(mine["samples"])
assert math.isclose(ours_stats.p95_s, mine["p95_s"]) and math.isclose(ours_stats.iqr_s, mine["iqr_s"]), \
    "facekit's percentiles are NumPy's (linear interpolation)"

# %% [markdown]
# Why the median and not the mean: one slow sample, as a busy machine makes, drags the mean but barely moves the
# median.

# %%
samples = [0.01, 0.011, 0.0105, 0.2, 0.0102]  # one slow outlier
stats = summarize(samples)
assert stats.median_s == np.median(samples) < 2 * min(samples) < np.mean(samples)
fk.notebook.say(f"With one outlier: mean {1e3 * np.mean(samples):.1f} ms, median {1e3 * stats.median_s:.1f} ms, "
                f"p95 {1e3 * stats.p95_s:.1f} ms.")

# %% [markdown]
# Warm-up on a real network: each call of a freshly built ResNet timed on its own. Look at the first one or two
# calls against the rest: they pay for memory allocation and kernel selection, and a timer that included them
# would report a cost that a long run never pays again.

# %%
model, shape = build_backbone("small_resnet", min(64, S.max_image_size or 64))
x = random_inputs((S.train_batch, *shape), device=DEVICE)
model.to(DEVICE).eval()
sync = (lambda: torch.cuda.synchronize(DEVICE)) if DEVICE.type == "cuda" else (lambda: None)
with torch.no_grad():
    calls = my_timer(lambda: model(x), warmup=0, repeats=S.repeats + 5, sync=sync)["samples"]
fig, ax = plt.subplots(figsize=(7, 2.8))
ax.bar(range(1, len(calls) + 1), [1e3 * c for c in calls], color=["tab:red"] + ["tab:blue"] * (len(calls) - 1))
ax.axhline(1e3 * np.median(calls[1:]), color="k", lw=1, ls="--", label="median of calls 2..")
ax.set(xlabel="call", ylabel="ms", title="each call of a fresh small ResNet (red: the first)")
ax.legend()
plt.show()
first_over_median = record("first_call_over_median", calls[0] / np.median(calls[1:]))
fk.notebook.say(f"The first call took **{first_over_median:.2f}x** the median of the later ones.")

# %% [markdown]
# ## 3. The device's ceilings: measured, and from the specification
#
# **FLOPs.** A FLOP here is one multiply or one add, so a multiply-accumulate counts 2. A product of two
# $n \times n$ matrices does $n^3$ multiply-accumulates: $2n^3$ FLOPs. A 3x3 convolution with $C$ channels in
# and out on an $H \times W$ map does $2 \cdot 9 C^2 H W$. torch counts them for us with
# `torch.utils.flop_counter.FlopCounterMode`, which records every matrix product and convolution a forward pass
# runs; `facekit.models.count_flops` wraps it (the tests check the two agree for every network of this chapter).
# First the formula against the counter:

# %%
n = min(S.matmul_sizes[-1], 1024)  # on the CPU, also in a GPU run: a check of the formula, not the peak
a, b = torch.randn(n, n), torch.randn(n, n)
with FlopCounterMode(display=False) as counter:
    a @ b
assert counter.get_total_flops() == 2 * n**3, "a matrix product is 2 n^3 FLOPs"
conv = nn.Conv2d(S.conv_channels[0], S.conv_channels[0], 3, padding=1, bias=False)
conv_formula = 2 * 9 * S.conv_channels[0] ** 2 * S.conv_side**2
assert count_flops(conv, (1, S.conv_channels[0], S.conv_side, S.conv_side)) == conv_formula
fk.notebook.say(f"$n = {n}$: FlopCounterMode counts {counter.get_total_flops():,} FLOPs, and $2n^3$ = {2 * n**3:,}; "
                f"a 3x3 convolution with {S.conv_channels[0]} channels on {S.conv_side}x{S.conv_side}: "
                f"{conv_formula:,} FLOPs both ways.")

# %% [markdown]
# **The practical peak.** The fastest dense work a device does is its practical ceiling: large matrix products
# (in bf16 on a GPU's tensor cores, fp32 on a CPU) and, because a convolution runs through a different library
# (oneDNN on a CPU, cuDNN on a GPU), large convolutions. Small sizes under-measure it (call overheads, a cache
# that is too warm or too cold), and on a CPU the number of threads matters, so we sweep sizes, kernels and
# thread counts and take the best. A ceiling is what the device *can* do, so each point is its fastest repeat.
# Expect the FLOP/s to grow with the size and then flatten.

# %%
sweep_before = peak_sweep(device=DEVICE, matmul_sizes=S.matmul_sizes, conv_channels=S.conv_channels,
                          conv_side=S.conv_side, threads=S.threads or None, timer=TIMER)
peak_table = pd.DataFrame(sweep_before.rows)
display(peak_table.pivot_table(index=["kernel", "size"], columns="threads", values="tflop_s", sort=False).round(4))
fk.notebook.say(f"Best of the sweep: **{sweep_before.best.per_s / 1e12:.4f} TFLOP/s** ({sweep_before.best.what}); "
                f"best matrix product: {sweep_before.best_matmul.per_s / 1e12:.4f} TFLOP/s "
                f"({sweep_before.best_matmul.what}).")

# %% [markdown]
# The same measurement by hand, for the largest matrix: `a @ b` timed with our own timer and `2 n^3` divided by
# its fastest call. On a shared machine two timings taken a minute apart can differ by whatever the other users
# did in between, so the two measurements are interleaved (by hand, facekit, by hand, ...) and the fastest of
# each is compared; the bound only catches a wrong formula or a unit error (a factor of 1,000 or of $n$).

# %%
by_hand, theirs = [], []
for _ in range(3):
    t = my_timer(lambda: a @ b, warmup=1, repeats=S.repeats)
    by_hand.append(2 * n**3 / t["min_s"])
    theirs.append(matmul_peak(device="cpu", n=n, timer=TIMER).per_s)
ratio = max(by_hand) / max(theirs)
fk.notebook.say(f"Matrix product $n = {n}$ on the CPU: by hand {max(by_hand) / 1e12:.4f}, facekit "
                f"{max(theirs) / 1e12:.4f} TFLOP/s (ratio {ratio:.2f}).")
assert 1 / 3 < ratio < 3, "the same product measured twice, interleaved: the FLOP formula or the units are wrong"

# %% [markdown]
# **The theoretical peak.** The hard ceiling of a CPU is in its specification: each core can start a fused
# multiply-add (FMA: one multiply and one add on every lane of a vector register) on each of its FMA units every
# cycle, so
#
# $$\text{peak} = \text{cores} \times \text{clock} \times \text{fp32 lanes} \times \text{FMA units} \times 2.$$
#
# `facekit.bench.read_cpu_spec` reads each number from `/proc/cpuinfo` and `lscpu` and says where it came from;
# the FMA units per core are not in either file, so their count is an assumption to check against the data
# sheet. A GPU has no such file; there the measured bf16 peak is the ceiling.

# %%
SPEC = read_cpu_spec() if IS_CPU_RUN else None
if SPEC is not None:
    display(pd.Series({"model": SPEC.model, "cores": SPEC.cores, "clock (GHz)": f"{SPEC.ghz:.3f}",
                       "vector bits": SPEC.vector_bits, "FMA units per core": SPEC.fma_units},
                      name="value").to_frame().join(pd.Series(SPEC.sources, name="source").rename(
                          {"clock": "clock (GHz)", "vector width": "vector bits", "FMA units": "FMA units per core",
                           "model": "model", "cores": "cores"})))
    THEORY = SPEC.peak_flops
    frac = sweep_before.best.per_s / THEORY
    why = "" if frac <= 1 else (
        f" Above 1: the cores run faster than the clock read from the files (boost), or the convolution uses a "
        f"fast algorithm (Winograd) that does fewer multiplications than a direct convolution's FLOPs; the best "
        f"matrix product reaches {sweep_before.best_matmul.per_s / THEORY:.2f} of it.")
    fk.notebook.say(f"Theoretical fp32 peak: {SPEC.formula}. The best measured kernel reaches **{frac:.2f}** of "
                    f"it.{why}")
else:
    THEORY = None
    print("no CPU specification to read here (a GPU run, or no x86 /proc/cpuinfo): the measured peak is the ceiling")

# %% [markdown]
# **The copy bandwidth.** A copy of $b$ bytes reads $b$ and writes $b$: its bytes/s is the memory bandwidth that
# a memory-bound layer can hope for. The ratio peak / bandwidth, in FLOP per byte, is the device's **ridge
# point** (section 4 explains it with the roofline).

# %%
bandwidth = copy_bandwidth(device=DEVICE, nbytes=S.copy_mib * 2**20, timer=TIMER)
BANDWIDTH = record("copy_bandwidth_gbs", bandwidth.per_s / 1e9, unit="GB/s", key=True) * 1e9
fk.notebook.say(f"{bandwidth.what}: **{BANDWIDTH / 1e9:.1f} GB/s**; ridge point of the measured peak "
                f"{sweep_before.best.per_s / BANDWIDTH:.1f} FLOP/byte.")

# %% [markdown]
# ## 4. Every backbone: throughput, latency, memory, FLOPs, MFU, and the ResNet-50 ratio
#
# For each network: a training step (forward, backward, SGD step) at a fixed batch, inference at each batch
# size of the sweep, latency at batch 1 (median and 95th percentile), the allocator's peak memory during
# training (only on a GPU: torch keeps no such statistic on a CPU), and the FLOPs of one forward pass.
#
# **MFU** (model FLOP utilisation) is the fraction of the peak a model uses:
# $\text{MFU} = k \cdot F \cdot r / P$, with $F$ the forward FLOPs per image, $r$ the images/s, $P$ the peak and
# $k = 3$ for a training step (the backward pass computes gradients with respect to the activations and to the
# weights, each about one forward) or $k = 1$ for inference. Measured against a true ceiling, MFU cannot exceed 1.
#
# **The reference**: torchvision's ResNet-50 (untrained; speed does not depend on the weights), measured the same
# way at the same input size in this run. `0.5x` ResNet-50 means half its training images/s: a ratio that
# travels between machines better than images/s does.
#
# The loop below takes a while; it prints one line per model.

# %%
def size_for(name: str) -> int | None:
    b = BACKBONES[name]
    return None if b.fixed_size or not S.max_image_size else min(b.native_size, S.max_image_size)


names, skipped = list(S.models), {}
for name in S.pretrained:
    reason = unavailable(name)
    if reason:
        skipped[name] = reason
        print(f"skipping {name}: {reason}")
    else:
        names.append(name)

rows, sweeps, reference = [], [], {}
for name in names:
    model, shape = build_backbone(name, size_for(name))
    row, sweep = measure_model(model, name, shape, train_batch=S.train_batch, sweep_batches=S.sweep_batches,
                               device=DEVICE, timer=TIMER, latency_timer=LATENCY_TIMER)
    side = shape[-1]
    if side not in reference:  # ResNet-50 at this input size, once per size
        ref_model, ref_shape = build_backbone(REFERENCE, side)
        reference[side], _ = measure_model(ref_model, f"resnet50@{side}", ref_shape, train_batch=S.train_batch,
                                           sweep_batches=(max(S.sweep_batches),), device=DEVICE, timer=TIMER,
                                           latency_timer=TIMER)
    ref = reference[side]
    row["train_vs_resnet50"] = row["train_img_s"] / ref["train_img_s"]
    # the ratio's spread: the relative IQRs of the two timings, added in quadrature
    row["ratio_spread"] = math.hypot(row["train_spread"], ref["train_spread"])
    row["infer_vs_resnet50"] = row["infer_img_s"] / ref["infer_img_s"]
    rows.append(row)
    sweeps.extend(sweep)
    print(f"{name:>14}: {row['train_img_s']:.1f} training img/s ({row['train_vs_resnet50']:.2f}x ResNet-50)")
    del model
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()

# %% [markdown]
# The peak again, now that the device is warm (and, on a shared machine, perhaps less busy). The ceiling is the
# best of the two sweeps; how far they differ says how much the machine's state moved during the chapter.

# %%
sweep_after = peak_sweep(device=DEVICE, matmul_sizes=S.matmul_sizes, conv_channels=S.conv_channels,
                         conv_side=S.conv_side, threads=S.threads or None, timer=TIMER)
PEAK = max(sweep_before.best, sweep_after.best, key=lambda p: p.per_s)
MATMUL_PEAK = max(sweep_before.best_matmul, sweep_after.best_matmul, key=lambda p: p.per_s)
PEAK_FLOPS = record("peak_tflops", PEAK.per_s / 1e12, unit="TFLOP/s", key=True) * 1e12
change = sweep_after.best.per_s / sweep_before.best.per_s - 1
fk.notebook.say(f"Best of the sweep before the models {sweep_before.best.per_s / 1e12:.4f}, after "
                f"{sweep_after.best.per_s / 1e12:.4f} TFLOP/s ({change:+.1%}); the ceiling used below: "
                f"**{PEAK_FLOPS / 1e12:.4f} TFLOP/s** ({PEAK.what}).")

# %% [markdown]
# The table: MFU against the measured ceiling, against the best matrix product alone, and (on a CPU) against the
# specification's theoretical peak. Look for values above 1 in the matrix-product column: a model whose
# convolutions run faster per FLOP than `torch.matmul` does exceeds a ceiling measured with matrix products only.

# %%
def mfu_columns(df: pd.DataFrame, peak_flops: float, suffix: str) -> dict:
    flops = df["forward_gflops"] * 1e9
    return {f"train_mfu{suffix}": [mfu(achieved_flops(f, r, training=True), peak_flops)
                                   for f, r in zip(flops, df["train_img_s"])],
            f"infer_mfu{suffix}": [mfu(achieved_flops(f, r, training=False), peak_flops)
                                   for f, r in zip(flops, df["infer_img_s"])]}


def with_mfu(df: pd.DataFrame) -> pd.DataFrame:
    """MFU against the measured ceiling, against the best matrix product, and against the theoretical peak."""
    out = df.assign(**mfu_columns(df, PEAK_FLOPS, ""), **mfu_columns(df, MATMUL_PEAK.per_s, "_matmul"))
    return out.assign(**mfu_columns(df, THEORY, "_spec")) if THEORY else out


table = with_mfu(pd.DataFrame(rows).set_index("model"))
ref_table = with_mfu(pd.DataFrame(list(reference.values())).set_index("model"))
pd.options.display.float_format = "{:.4g}".format
mfu_cols = [c for c in table.columns if "mfu" in c]
display(table.drop(columns=mfu_cols))
display(pd.concat([table[mfu_cols], ref_table[mfu_cols]]))
for name, r in table.iterrows():
    record(f"train_img_s[{name}]", round(r["train_img_s"], 2), unit="img/s")
    record(f"train_vs_resnet50[{name}]", round(r["train_vs_resnet50"], 3), unit="x")
    record(f"train_mfu[{name}]", round(r["train_mfu"], 4))
    record(f"latency_ms[{name}]", round(r["latency_ms"], 3), unit="ms")
assert (table["forward_gflops"] > 0).all() and (table["train_img_s"] > 0).all(), "every model was measured"

# %% [markdown]
# How to read the first table: `forward_gflops` is $F$ per image (counted by `FlopCounterMode`);
# `train_spread` is the relative IQR of the training-step times (IQR / median: `0.05` would mean that the middle
# half of the repeats lay within a twentieth of the median);
# `infer_img_s` is the best of the batch sweep; `latency_ms` and `latency_p95_ms` are the median and the 95th
# percentile at batch 1; `ratio_spread` is the run-to-run spread of the ratio to ResNet-50. The second table is
# MFU against the three ceilings, with the references (ResNet-50 at each input size) below the models.
#
# What the three MFU columns say about this run, computed from the table:

# %%
both = pd.concat([table, ref_table])
over_matmul = both.index[both[["train_mfu_matmul", "infer_mfu_matmul"]].max(axis=1) > 1].tolist()
over_peak = both.index[both[["train_mfu", "infer_mfu"]].max(axis=1) > 1].tolist()
conv_gain = PEAK.per_s / MATMUL_PEAK.per_s
lines = [f"- Highest MFU against the measured ceiling: {both[['train_mfu', 'infer_mfu']].max().max():.3f}."]
if over_matmul:
    lines.append(f"- Above 1 against the best matrix product alone: {', '.join(over_matmul)}. The measured cause: "
                 f"the best convolution kernel runs **{conv_gain:.2f}x** the best matrix product's FLOP/s on this "
                 "device, so a ceiling measured with matrix products only is too low for convolutional networks.")
if THEORY:
    top = both[["train_mfu_spec", "infer_mfu_spec"]].max().max()
    lines.append(f"- Against the specification's theoretical peak ({THEORY / 1e9:.0f} GFLOP/s) the highest MFU is "
                 f"{top:.3f}" + (": below 1, as it must be." if top <= 1 else
                                 ": above 1, so this CPU runs faster than the clock read from its files (boost), "
                                 "has more FMA units than assumed, or its convolutions do fewer multiplications "
                                 "than counted (Winograd); see section 3."))
if over_peak and not FULL_RUN:  # the smoke profile sweeps tiny kernels only: a ceiling below real layers' rate
    lines.append(f"- Above 1 even against the measured ceiling: {', '.join(over_peak)}. In this profile the ceiling "
                 f"is swept only over small kernels (matrices up to n = {max(S.matmul_sizes)}, convolutions of "
                 f"{max(S.conv_channels)} channels on {S.conv_side} px), slower per FLOP than the models' larger "
                 "layers; the cpu and gpu profiles sweep sizes that reach the device's rate.")
elif over_peak:
    lines.append(f"- Above 1 even against the measured ceiling: {', '.join(over_peak)}: a kernel of these models "
                 "runs faster than every swept one, or the machine was busier during the sweep than during the "
                 "models (compare the two sweeps above).")
fk.notebook.say("\n".join(lines))
if FULL_RUN:  # at full size the ceiling includes convolutions: a model above it by 25% would be a counting error
    assert (both[["train_mfu", "infer_mfu"]] < 1.25).all().all(), "MFU is a fraction of the measured ceiling"

# %% [markdown]
# The MFU of one model by hand, to see that it is nothing more than the formula, and a consistency check that
# can fail: the batch-1 latency (timed on its own, many repeats) and the sweep's batch-1 throughput are two
# measurements of the same thing, $1/\text{latency}$ images/s.

# %%
name = table.index[0]
r = table.loc[name]
model, shape = build_backbone(name, size_for(name))
assert count_flops(model, (1, *shape)) == round(r["forward_gflops"] * 1e9), "the table's FLOPs are count_flops'"
mfu_by_hand = 3 * r["forward_gflops"] * 1e9 * r["train_img_s"] / PEAK_FLOPS
assert math.isclose(mfu_by_hand, r["train_mfu"], rel_tol=1e-9)
fk.notebook.say(f"{name}: 3 x {r['forward_gflops']:.4f} GFLOP x {r['train_img_s']:.1f} img/s / "
                f"{PEAK_FLOPS / 1e12:.4f} TFLOP/s = **{mfu_by_hand:.4f}** (the table: {r['train_mfu']:.4f}).")
sweep_df = pd.DataFrame(sweeps)
one = sweep_df[sweep_df["batch_size"] == 1].set_index("model")["images_per_s"]
agreement = (one * table.loc[one.index, "latency_ms"] / 1e3).rename("batch-1 img/s x latency")
display(agreement.to_frame().T)
if FULL_RUN:  # at smoke a call lasts less than the scheduler's time slice on a busy machine: no honest bound
    assert agreement.between(1 / 4, 4).all(), "the latency and the batch-1 throughput measure the same call"

# %% [markdown]
# Inference throughput against batch size (left): small batches leave the device idle between kernel launches
# and pay Python's per-call overhead, large ones fill it until it saturates. The middle panel is each model's
# training images/s as a ratio to ResNet-50's at the same input size; the error bar is the ratio's run-to-run
# spread (the two timings' relative IQRs added in quadrature), so two bars whose error bars overlap are not
# told apart by this run.

# %% tags=["key-figure"]
fig, axes = plt.subplots(1, 2, figsize=(14, 4))
sns.lineplot(data=sweep_df, x="batch_size", y="images_per_s", hue="model", marker="o", ax=axes[0])
axes[0].set(xscale="log", yscale="log", title=f"inference throughput ({DEVICE.type})", ylabel="images / s")
axes[0].set_xticks(S.sweep_batches, [str(b) for b in S.sweep_batches], minor=False)
axes[0].xaxis.set_minor_locator(plt.NullLocator())
axes[0].legend(fontsize=8, ncol=2)
ratio = table.sort_values("train_vs_resnet50")
axes[1].barh(ratio.index, ratio["train_vs_resnet50"], xerr=ratio["train_vs_resnet50"] * ratio["ratio_spread"],
             color="tab:blue", capsize=3)
axes[1].axvline(1.0, color="k", lw=1)
axes[1].set(xscale="log", title="training img/s / ResNet-50's at the same size", xlabel="ratio")
plt.tight_layout()
plt.show()
gain = sweep_df.groupby("model")["images_per_s"].agg(lambda s: s.iloc[-1] / s.iloc[0])
fk.notebook.say("Throughput at the largest batch / at batch 1: "
                + ", ".join(f"{k} {v:.2f}x" for k, v in gain.items()) + ".")

# %% [markdown]
# ### Compute-bound or memory-bound? The roofline
#
# A forward pass does $F$ FLOPs and moves at least the bytes $Q$ of its activations (each written once and read
# once: twice the bytes of the input and of every layer's output). Its **arithmetic intensity** is $I = F/Q$
# FLOP per byte. The device can deliver at most $P$ FLOP/s, and at most $I \cdot B$ FLOP/s when bytes arrive at
# bandwidth $B$, so the attainable FLOP/s is $\min(P, I \cdot B)$: a sloped roof that meets the flat one at the
# **ridge point** $I = P/B$. A model left of the ridge is memory-bound (a faster memory would help, more FLOP/s
# would not); right of it, compute-bound. In the figure, each dot is a model's measured inference FLOP/s at its
# intensity; its distance below the roof is what the kernels leave unused.

# %%
roof_rows = []
for name in table.index:
    model, shape = build_backbone(name, size_for(name))
    moved = 2 * activation_bytes(model, (1, *shape))  # bytes per image (write + read)
    flops = table.loc[name, "forward_gflops"] * 1e9
    rl = roofline(flops, moved, peak_flops_per_s=PEAK_FLOPS, bytes_per_s=BANDWIDTH)
    ips = table.loc[name, "infer_img_s"]
    roof_rows.append({"model": name, "MB_per_image": moved / 1e6, "flop_per_byte": rl.intensity, "bound": rl.bound,
                      "achieved_gflop_s": flops * ips / 1e9, "of_roof": flops * ips / rl.ceiling_flops_per_s,
                      "bandwidth_use": moved * ips / BANDWIDTH})
    del model
roof = pd.DataFrame(roof_rows).set_index("model")
display(roof)
assert (roof["flop_per_byte"] > 0).all() and (roof["achieved_gflop_s"] > 0).all()

# %%
intensity = np.logspace(-1, 3, 200)
fig, ax = plt.subplots(figsize=(8, 5))
ax.plot(intensity, np.minimum(PEAK_FLOPS, intensity * BANDWIDTH) / 1e9, "k-", label="measured roof")
if THEORY:
    ax.plot(intensity, np.minimum(THEORY, intensity * BANDWIDTH) / 1e9, "k:", label="specification's peak")
ax.axvline(PEAK_FLOPS / BANDWIDTH, color="grey", lw=0.8, ls="--")
ax.text(PEAK_FLOPS / BANDWIDTH, PEAK_FLOPS / 1e9 * 0.05, " ridge point", color="grey")
for name, r in roof.iterrows():
    ax.scatter(r["flop_per_byte"], r["achieved_gflop_s"], s=40, zorder=3)
    ax.annotate(name, (r["flop_per_byte"], r["achieved_gflop_s"]), fontsize=8, xytext=(4, -10),
                textcoords="offset points")
ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP / byte of activations)",
       ylabel="GFLOP/s", title=f"roofline of this {DEVICE.type}: inference of each model")
ax.legend()
plt.show()
fk.notebook.say(f"Ridge point {PEAK_FLOPS / BANDWIDTH:.1f} FLOP/byte; memory-bound here: "
                f"{', '.join(roof.index[roof['bound'] == 'memory']) or 'none'}; the closest to its roof: "
                f"{roof['of_roof'].idxmax()} ({roof['of_roof'].max():.2f} of it).")

# %% [markdown]
# ## 5. The levers, one at a time, over paired rounds
#
# Each lever is switched on alone, against the same fp32 eager baseline (on a GPU the baseline forbids TF32,
# which cuDNN otherwise allows for convolutions by default), on a copy of the model, for inference and for a
# training step. A lever that does not apply on this device is listed with the reason. CUDA graphs (the whole
# forward recorded once and replayed, removing the per-kernel launch cost) matter for small batches, so they are
# measured at batch `graph_batch` against an eager baseline at the same batch.
#
# A speed-up measured once can be the machine's load as much as the lever. So the comparison is repeated in
# `lever_rounds` rounds, each timing the baseline and then every lever back to back: a drift in load slows both
# sides of a round alike. `facekit.bench.speedup_verdict` takes the log of each round's speed-up, a paired t
# interval of its mean over the rounds, and names a winner only by the course's noise rule (the interval excludes
# zero, at least `facekit.stats.MIN_SEEDS` rounds).

# %%
compile_timer = Timer(warmup=max(3, S.warmup), repeats=S.repeats)
lever_results = []
for name in S.lever_models:
    model, shape = build_backbone(name, size_for(name))
    for mode in ("inference", "train"):
        levers = [lv for lv in LEVERS if lv != "cuda_graphs"]
        results = measure_levers(model, shape, levers=levers, batch_size=S.lever_batch, device=DEVICE, mode=mode,
                                 timer=TIMER, compile_timer=compile_timer, rounds=S.lever_rounds,
                                 allow_compile=name in S.compile_models)
        if mode == "inference":
            results += measure_levers(model, shape, levers=("cuda_graphs",), batch_size=S.graph_batch,
                                      device=DEVICE, mode=mode, timer=TIMER, rounds=S.lever_rounds)
        lever_results += [(name, r) for r in results]
    del model
levers_df = pd.DataFrame([{"model": m, "mode": r.mode, "lever": r.lever, "batch": r.batch_size,
                           "baseline_img_s": r.baseline_images_per_s, "img_s": r.images_per_s,
                           "speedup": r.speedup, "skipped": r.skipped or ""} for m, r in lever_results])
display(levers_df.pivot_table(index=["model", "mode"], columns="lever", values="speedup", sort=False).round(3))
for lever, reason in levers_df[levers_df["skipped"] != ""].groupby("lever")["skipped"].first().items():
    print(f"skipped {lever}: {reason}")

# %% [markdown]
# Each measured lever's verdict, from its paired rounds. Look at the interval as well as the verdict: a lever
# can be a clear win in inference and undecided in training, or the other way round.

# %%
verdicts, round_rows = [], []
for m, r in lever_results:
    if r.skipped or r.lever == "fp32":
        continue
    round_rows += [{"model": m, "mode": r.mode, "lever": r.lever, "speedup": s} for s in r.round_speedups]
    if len(r.lever_rounds) >= 2:
        v, ratio_iv = speedup_verdict(r.lever_rounds, r.baseline_rounds, names=(r.lever, "fp32 eager"))
        verdicts.append({"model": m, "mode": r.mode, "lever": r.lever, "speed-up": f"{ratio_iv:.2f}",
                         "verdict": v.text, "winner": v.winner, "ratio": ratio_iv})
rounds_df = pd.DataFrame(round_rows)
verdict_df = pd.DataFrame(verdicts)
if len(verdict_df):
    display(verdict_df[["model", "mode", "lever", "speed-up", "verdict"]])
else:
    print("fewer than 2 rounds per lever (a dry run): no verdicts")
if len(rounds_df):
    grid = sns.catplot(data=rounds_df, x="lever", y="speedup", hue="mode", col="model", kind="strip", dodge=True,
                       height=3.2, aspect=1.5)
    for ax in grid.axes.flat:
        ax.axhline(1.0, color="k", lw=1)  # fp32 eager
        ax.tick_params(axis="x", rotation=30)
    grid.figure.suptitle(f"speed-up of each lever in each round ({DEVICE.type}); 1 = no change", y=1.04)
    plt.show()
    for (mode, lever), v in rounds_df.groupby(["mode", "lever"])["speedup"].median().items():
        record(f"lever_speedup[{mode},{lever}]", round(v, 3), unit="x")
assert len(rounds_df) and ((rounds_df["speedup"] > 0) & np.isfinite(rounds_df["speedup"])).all()
if IS_CPU_RUN:
    assert set(levers_df[levers_df["skipped"] != ""]["lever"]) >= {"tf32", "fp16_autocast", "cuda_graphs"}

# %% [markdown]
# Why the levers differ between devices: on a GPU, bf16 and fp16 autocast and TF32 move matrix products onto
# tensor cores, which is where most of a GPU's FLOP/s live, and CUDA graphs and `torch.compile` remove launch
# overheads that small networks are dominated by. On a CPU, bf16 only pays where the processor has bf16
# instructions (the `avx512_bf16` or `amx_bf16` flags of section 3), `channels_last` lets oneDNN use its
# preferred layout, and `torch.compile` fuses element-wise work into the convolutions. A lever that helps
# inference may not help training, whose backward pass runs different kernels.

# %% [markdown]
# ### Data loading: does the input pipeline keep up?
#
# The same small network consumes batches of synthetic images (each made on the fly with CPU work, as decoding
# and augmenting would), with the data loader's workers and pinned host memory switched on and off. On a GPU,
# workers prepare the next batches while the device computes, and pinned memory lets the copy to the GPU run
# asynchronously; on a CPU the workers compete with the model for the same cores.

# %%
consumer, shape = build_backbone("small_resnet", min(64, S.max_image_size or 64))
consumer.to(DEVICE).train()
opt = torch.optim.SGD(consumer.parameters(), lr=1e-3)


def consume(batch):
    opt.zero_grad(set_to_none=True)
    proxy_loss(consumer(batch)).backward()
    opt.step()


dataset = SyntheticImages(S.loader_images, shape[-1])
loading = pd.DataFrame([asdict(r) for r in loading_grid(dataset, consume, batch_size=S.loader_batch,
                                                         workers=S.loader_workers, pins=(False, True),
                                                         device=DEVICE, epochs=2)])
display(loading)
base_rate = loading.query("num_workers == 0 and not pin_memory")["images_per_s"].iloc[0]
best_rate = loading["images_per_s"].max()
record("loader_best_vs_single_process", best_rate / base_rate, unit="x", key=True)
assert loading["skipped"].isna().any() and (loading.dropna(subset=["images_per_s"])["images_per_s"] > 0).all()

# %% [markdown]
# ## 6. A real model: our PyTorch dlib ResNet against dlib's own code
#
# dlib computes its face descriptors with its own C++ kernels on the CPU
# (`face_recognition_model_v1.compute_face_descriptor` with a list of 150x150 chips). Our port
# (`facekit.pretrained.load_dlib_resnet`) gives the same descriptors (the tests hold them within `1e-5`), so
# the two can be timed on the same chips, on the CPU, with the threads this process has. The chips are random
# pixels: the cost of a convolutional network does not depend on the image content. The two are timed in paired
# rounds (dlib's own, then ours), and the summary quotes this section's numbers only: throughput at another
# batch size (section 4's sweep) is a different quantity. dlib's speed depends on how it was built (a BLAS
# library for its matrix products or not, AVX, CUDA): the build flags are printed with the result.

# %%
dlib_reason = unavailable("dlib_resnet")
try:
    import dlib
except ImportError:
    dlib_reason = dlib_reason or "dlib is not installed (pip install dlib-bin)"
dlib_result = None
if dlib_reason:
    print(f"skipping the dlib comparison: {dlib_reason}")
else:
    from facekit.pretrained import load_dlib_resnet

    print("dlib", dlib.__version__, {k: getattr(dlib, k) for k in ("DLIB_USE_BLAS", "DLIB_USE_CUDA",
                                                                   "USE_AVX_INSTRUCTIONS") if hasattr(dlib, k)})
    rng = np.random.default_rng(seed)
    chips = rng.integers(0, 256, size=(S.dlib_chips, 150, 150, 3), dtype=np.uint8)  # (N, 150, 150, 3) RGB
    dlib_run = dlib_descriptor_timer(chips, batch_size=S.dlib_batch)
    ours = load_dlib_resnet().cpu().eval()
    batch = torch.from_numpy(chips).permute(0, 3, 1, 2).float()  # (N, 3, 150, 150)

    def ours_run():
        with torch.inference_mode():
            return [ours(batch[i:i + S.dlib_batch]) for i in range(0, len(batch), S.dlib_batch)]

    pair_timer = Timer(warmup=1, repeats=2)  # dlib's own runs a few chips/s: 2 repeats per round suffice
    dlib_rates, our_rates = [], []
    for _ in range(S.dlib_rounds):
        dlib_rates.append(pair_timer.measure(dlib_run).rate(S.dlib_chips))
        our_rates.append(pair_timer.measure(ours_run).rate(S.dlib_chips))
    gap = np.abs(ours(batch[:2]).detach().numpy() - dlib_descriptor_timer(chips[:2], batch_size=2)()).max()
    assert gap < 1e-3, "the two compute the same descriptors"
    dlib_result = {"dlib": float(np.median(dlib_rates)), "ours": float(np.median(our_rates)), "gap": float(gap)}
    if len(our_rates) >= 2:
        dlib_result["verdict"], dlib_result["ratio"] = speedup_verdict(our_rates, dlib_rates,
                                                                       names=("our port", "dlib's own"))
    display(pd.DataFrame({"dlib's own (CPU)": dlib_rates, "ours (CPU)": our_rates}).rename_axis("round"))

# %% [markdown]
# On a GPU run, the same chips also go through our port on the GPU (a different quantity from the CPU pair above:
# the GPU's chips/s, set beside dlib's own CPU code).

# %%
if dlib_result and DEVICE.type != "cpu":
    net, xb = load_dlib_resnet().to(DEVICE).eval(), batch.to(DEVICE)

    def ours_on_device():
        with torch.inference_mode():
            return [net(xb[i:i + S.dlib_batch]) for i in range(0, len(xb), S.dlib_batch)]

    dlib_result["ours_device"] = TIMER.measure(ours_on_device, device=DEVICE).rate(S.dlib_chips)
    record(f"dlib_ours_{DEVICE.type}_chips_s", dlib_result["ours_device"], unit="chips/s")
    fk.notebook.say(f"Our port on the {DEVICE.type}: **{dlib_result['ours_device']:.1f} chips/s**, "
                    f"{dlib_result['ours_device'] / dlib_result['dlib']:.1f}x dlib's own on the CPU.")

# %%
if dlib_result:
    record("dlib_own_cpu_chips_s", dlib_result["dlib"], unit="chips/s")
    record("dlib_ours_cpu_chips_s", dlib_result["ours"], unit="chips/s")
    text = (f"Largest difference between the two descriptors: {dlib_result['gap']:.1e}. Medians over "
            f"{S.dlib_rounds} rounds of {S.dlib_chips} chips in batches of {S.dlib_batch}: dlib's own "
            f"**{dlib_result['dlib']:.1f} chips/s**, our port **{dlib_result['ours']:.1f} chips/s**.")
    if "verdict" in dlib_result:
        record("dlib_ours_cpu_vs_dlib_own", dlib_result["ratio"].estimate, unit="x")
        text += f" Our port / dlib's own: {dlib_result['ratio']:.2f}x; {dlib_result['verdict'].text}."
    fk.notebook.say(text)

# %% [markdown]
# ## Exercises
#
# Graded by difficulty: ★ a few minutes, ★★ a little thought or code, ★★★ a derivation. Each has a solution in a
# folded cell below it (click to expand); try first. The check cells tell you whether your answer is right.
#
# **Exercise 1 ★ (predict, then run).** Predict the FLOPs of `nn.Linear(512, 256)` on a batch of 32 rows, and of
# `nn.Conv2d(16, 32, 3, padding=1)` on one 16-channel 28x28 map. Write your numbers, then run the check.

# %%
ex1 = {"linear": None, "conv": None}  # your predicted FLOPs

# %% tags=["solution"] jupyter={"source_hidden": true}
# Linear: every output (32 x 256 of them) is a dot product of length 512 -> 32 * 256 * 512 multiply-adds, 2 FLOPs each.
# Conv: every output (32 channels x 28 x 28, padding keeps the size) is a dot product of length 16 * 3 * 3.
ex1 = {"linear": 2 * 32 * 256 * 512, "conv": 2 * 32 * 28 * 28 * 16 * 3 * 3}

# %%
fk.notebook.check("FLOPs of the linear layer", ex1["linear"], count_flops(nn.Linear(512, 256), (32, 512)))
fk.notebook.check("FLOPs of the convolution", ex1["conv"],
                  count_flops(nn.Conv2d(16, 32, 3, padding=1), (1, 16, 28, 28)));

# %% [markdown]
# **Exercise 2 ★★ (implement from scratch).** Write `conv2d_flops(c_in, c_out, k, side_out, groups=1)`, the FLOPs
# of one image through a square convolution with `groups` (each output channel sees `c_in / groups` input
# channels). The check compares it with `count_flops` on a depthwise convolution (MobileFaceNet's building block)
# and on a grouped one.

# %%
def conv2d_flops(c_in: int, c_out: int, k: int, side_out: int, groups: int = 1) -> int:
    return None  # your code here

# %% tags=["solution"] jupyter={"source_hidden": true}
def conv2d_flops(c_in: int, c_out: int, k: int, side_out: int, groups: int = 1) -> int:
    # each of the c_out * side_out^2 outputs is a dot product of length (c_in / groups) * k * k
    return 2 * c_out * side_out**2 * (c_in // groups) * k * k

# %%
fk.notebook.check("depthwise 3x3, 64 channels, 28x28", conv2d_flops(64, 64, 3, 28, groups=64),
                  count_flops(nn.Conv2d(64, 64, 3, padding=1, groups=64), (1, 64, 28, 28)))
fk.notebook.check("grouped 3x3 stride 2, 32 -> 64 channels in 4 groups", conv2d_flops(32, 64, 3, 14, groups=4),
                  count_flops(nn.Conv2d(32, 64, 3, stride=2, padding=1, groups=4), (1, 32, 28, 28)));

# %% [markdown]
# **Exercise 3 ★★ (implement from scratch).** Write `theoretical_peak(cores, ghz, vector_bits, fma_units)`, the
# fp32 FLOP/s of section 3's formula. The check compares it with `facekit.bench.parse_cpu_spec` on a made-up CPU:
# an 8-core AVX2 laptop at 3 GHz with 2 FMA units per core.

# %%
def theoretical_peak(cores: int, ghz: float, vector_bits: int, fma_units: int) -> float:
    return None  # your code here

# %% tags=["solution"] jupyter={"source_hidden": true}
def theoretical_peak(cores: int, ghz: float, vector_bits: int, fma_units: int) -> float:
    lanes = vector_bits // 32  # fp32 values per vector register
    return cores * ghz * 1e9 * lanes * fma_units * 2  # an FMA is a multiply and an add

# %%
from facekit.bench import parse_cpu_spec  # noqa: E402

laptop = parse_cpu_spec("model name : laptop\ncpu MHz : 3000\nflags : avx avx2 fma\n", "Core(s) per socket: 8\n"
                        "Socket(s): 1\n", usable_cpus=8, fma_units=2)
fk.notebook.check("theoretical peak of the laptop", theoretical_peak(8, 3.0, 256, 2), laptop.peak_flops);

# %% [markdown]
# **Exercise 4 ★★ (change a parameter and explain).** Measure the matrix-product FLOP/s for `n` in 32, 128 and
# the largest size of this profile (at most 1024), with `matmul_peak(device=DEVICE, n=...)`. Why does the
# smallest size under-measure the peak? Then count the FLOPs of each product with `FlopCounterMode` (put them
# in `ex4`) and let the check compare them with $2n^3$.

# %%
ex4 = {}  # n -> FLOPs counted by FlopCounterMode

# %% tags=["solution"] jupyter={"source_hidden": true}
ex4_sizes = (32, 128, min(S.matmul_sizes[-1], 1024))  # at most 1024: a few seconds on any device
for size in ex4_sizes:
    m = torch.randn(size, size, device=DEVICE)
    with FlopCounterMode(display=False) as c:
        m @ m
    ex4[size] = c.get_total_flops()
    print(f"n={size}: {matmul_peak(device=DEVICE, n=size, timer=TIMER).per_s / 1e9:.2f} GFLOP/s")
# A product of 32x32 matrices is 65,536 FLOPs: microseconds of work, while calling into torch, checking the
# arguments and starting threads costs microseconds too, so the overhead dominates. Large products amortise it
# and keep the vector units busy; beyond the cache sizes, blocking keeps them fed.

# %%
fk.notebook.check("FLOPs of each product", [ex4[s] for s in sorted(ex4)], [2 * s**3 for s in sorted(ex4)]);

# %% [markdown]
# **Exercise 5 ★★★ (derive and implement).** A fully connected layer $y = xW$ with $x$ of shape $(B, N)$ and $W$
# of shape $(N, M)$, in fp32, does $2BNM$ FLOPs and must at least read $x$ and $W$ and write $y$. Write
# `linear_intensity(B, N, M)`, its arithmetic intensity in FLOP per byte. How does it grow with the batch $B$,
# and from which batch is a `Linear(512, 512)` compute-bound on this device (its ridge point from section 3)?

# %%
def linear_intensity(B: int, N: int, M: int) -> float:
    return None  # your code here

# %% tags=["solution"] jupyter={"source_hidden": true}
def linear_intensity(B: int, N: int, M: int) -> float:
    return 2 * B * N * M / (4 * (B * N + N * M + B * M))  # 4 bytes per fp32 value


ridge = PEAK_FLOPS / BANDWIDTH
first = next((b for b in range(1, 4097) if linear_intensity(b, 512, 512) >= ridge), None)
print(f"ridge {ridge:.1f} FLOP/byte: Linear(512, 512) is compute-bound from batch {first}")
# At B = 1 the weights dominate the bytes and the intensity is about 1/2 FLOP per byte: memory-bound everywhere.
# It grows about linearly with B while W dominates the bytes and tends to 2NM / (4 (N + M)) for large B:
# batching is what makes a layer compute-bound.

# %%
fk.notebook.check("intensity of Linear(512, 512) at batches 1, 64, 4096",
                  [linear_intensity(b, 512, 512) for b in (1, 64, 4096)],
                  [count_flops(nn.Linear(512, 512, bias=False), (b, 512)) / (4 * (b * 512 + 512 * 512 + b * 512))
                   for b in (1, 64, 4096)]);

# %% [markdown]
# **Exercise 6 (open question).** A report shows a training MFU above 1 for three convolutional networks,
# measured against a matrix-product peak. List the explanations (the peak, the FLOP count, the model's kernels)
# and, for each, one measurement that would confirm or rule it out on the same machine.

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# One answer. (1) **The peak is too low**: it was measured at a size too small, with fewer threads, or while the
# machine was busier than during the models. Sweep sizes and threads, measure it before and after the models,
# and take the best (section 3 does). (2) **The peak is the wrong kernel**: convolutions run through another
# library (oneDNN) that can be faster per FLOP than the matrix-product library; time a large 3x3 convolution
# next to the matrix product, interleaved. (3) **The FLOPs are over-counted**: check the counter against a
# closed form for one layer and against `FlopCounterMode` (the tests do), and check the factor 3 of a training
# step (a network whose first layer needs no input gradient, or frozen layers, does less). (4) **The hard
# ceiling**: compute the specification's peak from cores, clock, vector width and FMA units; an MFU above that
# means the clock is higher than assumed (boost) or the FLOPs are wrong.

# %% [markdown]
# ## Summary
#
# - A benchmark number needs its device, batch size, precision and spread; the timer warms up, synchronises,
#   repeats, and reports the median with its IQR and 95th percentile.
# - FLOPs are counted by `FlopCounterMode` (checked against closed forms); the practical ceiling is the best of
#   matrix products and convolutions over sizes and threads, and on a CPU the specification gives the hard one.
# - MFU and the roofline turn images/s into a fraction of the device; a ratio to ResNet-50 in the same run turns
#   them into a number that travels between machines.
# - A lever's speed-up is stated with its interval over paired rounds, and a winner named only by the noise rule.
#
# This run's figures, each computed once above:

# %%
fastest = table["train_img_s"].idxmax()
lines = [f"- device: {INFO['gpu'] or 'CPU ' + str(INFO['cpu'])}, {INFO['torch_threads']} torch threads, "
         f"profile {PROFILE}",
         f"- measured ceiling {PEAK_FLOPS / 1e12:.4f} TFLOP/s ({PEAK.what}); best matrix product "
         f"{MATMUL_PEAK.per_s / 1e12:.4f} TFLOP/s; copy bandwidth {BANDWIDTH / 1e9:.1f} GB/s"]
if THEORY:
    lines.append(f"- theoretical peak {THEORY / 1e12:.4f} TFLOP/s ({SPEC.formula}); the ceiling reaches "
                 f"{PEAK_FLOPS / THEORY:.2f} of it")
lines.append(f"- highest training MFU: {table['train_mfu'].idxmax()} {table['train_mfu'].max():.3f} of the measured "
             f"ceiling" + (f", {table['train_mfu_spec'].max():.3f} of the theoretical peak" if THEORY else ""))
lines.append(f"- fastest training: {fastest}, {table.loc[fastest, 'train_img_s']:.1f} img/s = "
             f"{table.loc[fastest, 'train_vs_resnet50']:.2f}x ResNet-50 (spread "
             f"±{100 * table.loc[fastest, 'ratio_spread']:.0f}%)")
if len(verdict_df):
    decided = verdict_df[verdict_df["winner"].notna()]
    lines += [f"- {r.model}, {r.mode}: {r.verdict}" for r in decided.itertuples()]
    lines.append(f"- levers with no detectable difference at {S.lever_rounds} rounds: "
                 f"{len(verdict_df) - len(decided)} of {len(verdict_df)}")
if dlib_result:
    lines.append(f"- dlib's ResNet on the CPU: dlib's own {dlib_result['dlib']:.1f} chips/s, our port "
                 f"{dlib_result['ours']:.1f} chips/s (section 6)"
                 + (f"; our port on the {DEVICE.type} {dlib_result['ours_device']:.1f} chips/s"
                    if "ours_device" in dlib_result else ""))
lines += [f"- skipped {name}: {reason}" for name, reason in skipped.items()]
fk.notebook.say("\n".join(lines))
_ = record("chapter_seconds", round(ctx.elapsed(), 1))

# %% [markdown]
# ## Pitfalls
#
# - **Timing without synchronising.** On a GPU the clock then reads the kernel launches, not the work: numbers
#   that look hundreds of times too fast.
# - **Counting the warm-up.** The first calls allocate, select kernels and compile; a short benchmark that
#   includes them reports a cost a long run never pays.
# - **One measurement per configuration.** Other users of the machine move every timing; time the two sides of a
#   comparison back to back, repeat the rounds, and state the interval.
# - **A peak measured once, small, or with one kernel.** An under-measured ceiling makes MFU exceed 1; sweep sizes,
#   threads and kernels, and compare with the specification.
# - **Model FLOPs are not hardware FLOPs.** MFU counts a direct convolution's multiply-adds; a kernel that uses a
#   fast algorithm (Winograd, FFT) does fewer, and can appear to beat the specification's peak.
# - **FLOPs in different units.** Many papers quote multiply-adds as "FLOPs": a factor of 2 between tables.
# - **Comparing images/s across machines, batch sizes or precisions.** Compare ratios to a reference measured in
#   the same run, at the same input size, batch and precision.
# - **Zeros as inputs.** Some kernels and processors take shortcuts on zeros; use seeded random inputs.
#
# ## Further reading
#
# - S. Williams, A. Waterman, D. Patterson, *Roofline: an insightful visual performance model for multicore
#   architectures*, Communications of the ACM, 2009.
# - T. Hoefler, R. Belli, *Scientific benchmarking of parallel computing systems: twelve ways to tell the masses
#   when reporting performance results*, SC, 2015 (medians, intervals and repeated runs).
# - J. Kaplan et al., *Scaling laws for neural language models*, arXiv, 2020 (a training step costs about three
#   forward passes).
# - A. Chowdhery et al., *PaLM: scaling language modeling with pathways*, arXiv, 2022 (model FLOP utilisation).
# - P. Micikevicius et al., *Mixed precision training*, ICLR, 2018 (fp16 with loss scaling).
# - J. Ansel et al., *PyTorch 2: faster machine learning through dynamic Python bytecode transformation and graph
#   compilation*, ASPLOS, 2024 (`torch.compile`).
# - A. Lavin, S. Gray, *Fast algorithms for convolutional neural networks*, CVPR, 2016 (Winograd convolution).
# - K. He, X. Zhang, S. Ren, J. Sun, *Deep residual learning for image recognition*, CVPR, 2016 (ResNet-50, the
#   reference).
# - D. E. King, *Dlib-ml: a machine learning toolkit*, Journal of Machine Learning Research, 2009.
