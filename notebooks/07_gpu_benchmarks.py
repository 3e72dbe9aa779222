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
# precision, measured how? In this chapter we
#
# 1. write down what the run is measured on (device, versions, threads) and say plainly when it is a CPU run,
# 2. build a timer from scratch (warm-up, device synchronisation, repeats, median and spread) and check the
#    package's `facekit.bench.Timer` against it,
# 3. measure the device's own ceilings: the FLOP/s of a large matrix product and the bandwidth of a large copy,
# 4. measure every backbone of the course and the two real pretrained face models (dlib's ResNet, FaceNet):
#    training throughput, inference throughput over a batch-size sweep, latency at batch 1, peak memory, and
#    the model FLOP utilisation (MFU) against the measured peak,
# 5. express every throughput as a ratio to torchvision's ResNet-50 measured in the same run at the same input
#    size, a number a reader can compare across machines,
# 6. switch the levers on and off one at a time: TF32, bf16 and fp16 autocast, `channels_last`,
#    `torch.compile`, CUDA graphs, and the data loader's workers and pinned memory,
# 7. time our PyTorch port of dlib's face model against dlib's own C++ code on the same chips.
#
# Profiles: `smoke` measures tiny inputs with few repeats (its numbers only prove the code runs), `cpu` gives
# meaningful CPU numbers in a few minutes, `gpu` uses full sizes and a batch sweep up to 512.

# %% tags=["parameters"]
profile = "auto"  # smoke | cpu | gpu | auto (auto: $FACEKIT_PROFILE, else gpu if CUDA, else cpu)
device = "auto"  # auto | cpu | cuda | cuda:N
seed = 0

# %%
import math
import time
from dataclasses import asdict, dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

import facekit as fk
from facekit.bench import (BACKBONES, LEVERS, REFERENCE, SyntheticImages, Timer, achieved_flops, activation_bytes,
                           build_backbone, copy_bandwidth, dlib_descriptor_timer, loading_grid, matmul_peak,
                           measure_levers, measure_model, mfu, proxy_loss, random_inputs, roofline, unavailable)
from facekit.bench.timer import summarize
from facekit.models import count_flops
from facekit.reports import record
from facekit.reports.device import device_info
from facekit.train import resolve_device

fk.viz.setup_notebook()
T0 = time.perf_counter()


@dataclass(frozen=True)
class Sizes:
    models: tuple  # course backbones measured (names of facekit.bench.BACKBONES)
    pretrained: tuple  # real pretrained models measured when installed: dlib_resnet, facenet
    max_image_size: int  # cap on each model's input side (0 = the size each model is made for)
    train_batch: int  # images per timed training step
    sweep_batches: tuple  # inference batch sizes
    warmup: int  # untimed calls before each measurement
    repeats: int  # timed samples per measurement (median and spread over them)
    latency_repeats: int  # samples of the batch-1 latency (for its 95th percentile)
    matmul_n: int  # side of the square matrices of the compute peak
    copy_mib: int  # size of the tensor copied for the bandwidth
    lever_models: tuple  # models whose levers are measured
    lever_batch: int  # batch of the lever measurements (inference and training)
    graph_batch: int  # the small inference batch of the CUDA-graph lever
    compile_models: tuple  # lever models whose torch.compile is measured (a minute or more to compile on a CPU)
    loader_images: int  # images per epoch of the data-loading measurement
    loader_batch: int
    loader_workers: tuple  # num_workers values tried
    dlib_chips: int  # chips timed through ours and dlib's own descriptor code
    dlib_batch: int


PROFILE, S = fk.profiles.pick(
    profile,
    smoke=Sizes(models=("article_cnn", "small_resnet", "vit", "iresnet_tiny", "mobilefacenet", "detector"),
                pretrained=("dlib_resnet",), max_image_size=32, train_batch=4, sweep_batches=(1, 8), warmup=1,
                repeats=3, latency_repeats=5, matmul_n=512, copy_mib=16, lever_models=("small_resnet",),
                lever_batch=8, graph_batch=1, compile_models=(), loader_images=64, loader_batch=16,
                loader_workers=(0,), dlib_chips=4, dlib_batch=4),
    cpu=Sizes(models=("article_cnn", "small_resnet", "vit", "iresnet_tiny", "mobilefacenet", "detector"),
              pretrained=("dlib_resnet", "facenet"), max_image_size=0, train_batch=16, sweep_batches=(1, 4, 16, 64),
              warmup=2, repeats=5, latency_repeats=15, matmul_n=2048, copy_mib=128,
              lever_models=("small_resnet", "mobilefacenet"), lever_batch=32, graph_batch=1,
              compile_models=("small_resnet",),
              loader_images=512, loader_batch=64, loader_workers=(0, 1), dlib_chips=16, dlib_batch=16),
    gpu=Sizes(models=("article_cnn", "small_resnet", "vit", "iresnet_tiny", "iresnet50", "mobilefacenet",
                      "detector"),
              pretrained=("dlib_resnet", "facenet"), max_image_size=0, train_batch=128,
              sweep_batches=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), warmup=5, repeats=20, latency_repeats=100,
              matmul_n=8192, copy_mib=1024, lever_models=("small_resnet", "iresnet50", "vit", "mobilefacenet"),
              lever_batch=128, graph_batch=1,
              compile_models=("small_resnet", "iresnet50", "vit", "mobilefacenet"), loader_images=8192,
              loader_batch=256,
              loader_workers=(0, 4, 8), dlib_chips=64, dlib_batch=32),
)
DEVICE = resolve_device(device)
torch.manual_seed(seed)
TIMER = Timer(warmup=S.warmup, repeats=S.repeats)
LATENCY_TIMER = Timer(warmup=S.warmup, repeats=S.latency_repeats)
record("profile", PROFILE)

# %% [markdown]
# ## 1. What this run is measured on
#
# A benchmark without its machine is not a result. The table below is the hardware and software of this run;
# the number of CPU threads torch uses matters as much as the CPU model on a CPU run.

# %%
INFO = device_info()
INFO["torch_threads"] = torch.get_num_threads()
INFO["device_used"] = str(DEVICE)
if DEVICE.type == "cuda":
    props = torch.cuda.get_device_properties(DEVICE)
    INFO["gpu_capability"] = f"{props.major}.{props.minor}"  # TF32 and bf16 tensor cores need 8.0+
    INFO.setdefault("cudnn_version", torch.backends.cudnn.version())
IS_CPU_RUN = DEVICE.type == "cpu"
display(pd.Series(INFO, name="value").to_frame())
if IS_CPU_RUN:
    print(f"*** THIS IS A CPU RUN ({INFO['cpu']}, {INFO['torch_threads']} torch threads): the numbers below say how "
          "the models compare on this CPU, not what a GPU would do. GPU-only levers are reported as skipped. ***")
else:
    print(f"GPU run on {INFO['gpu']} ({INFO['gpu_memory_gib']} GiB), driver {INFO.get('driver_version')}, "
          f"CUDA {INFO['cuda_version']}, torch {INFO['torch']}")
record("bench_device", INFO["gpu"] or f"CPU: {INFO['cpu']}"[:200])
record("bench_is_cpu_run", IS_CPU_RUN)
record("bench_torch_threads", INFO["torch_threads"])

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
# - **Repeat, report the median and the spread.** Other processes only ever slow a run down; the median
#   ignores a few slow outliers, the interquartile range (IQR) says how noisy the machine was, and the 95th
#   percentile is the tail a user of a latency-sensitive service sees.
# - **Use real-looking inputs.** Seeded random inputs, never zeros: hardware and kernels can take shortcuts
#   on zeros (sparse paths, power management), and the benchmark must not measure them.
#
# A from-scratch timer is a dozen lines:

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
    q25, q50, q95, q75 = np.percentile(samples, [25, 50, 95, 75])
    return {"median_s": q50, "p95_s": q95, "iqr_s": q75 - q25, "min_s": min(samples)}


SLEEP_S = 0.01
mine = my_timer(lambda: time.sleep(SLEEP_S), warmup=1, repeats=7)
theirs = Timer(warmup=1, repeats=7).measure(lambda: time.sleep(SLEEP_S))
print(f"time.sleep({SLEEP_S}): from scratch median {1e3 * mine['median_s']:.2f} ms, facekit "
      f"{1e3 * theirs.median_s:.2f} ms (spread {1e3 * theirs.iqr_s:.2f} ms)")
assert SLEEP_S <= theirs.min_s and SLEEP_S <= mine["min_s"], "a timer never measures less than the sleep"
assert abs(mine["median_s"] - theirs.median_s) < 0.01, "the two timers agree on a known sleep"
samples = [0.01, 0.011, 0.0105, 0.2, 0.0102]  # one slow outlier, as a busy machine makes
assert summarize(samples).median_s == np.median(samples) < 2 * min(samples) < np.mean(samples)
print(f"with one outlier: mean {1e3 * np.mean(samples):.1f} ms, median {1e3 * summarize(samples).median_s:.1f} ms")

# %% [markdown]
# Why warm-up matters, on a real model: the first call of a fresh network against the median of the later ones.

# %%
model, shape = build_backbone("small_resnet", min(64, S.max_image_size or 64))
x = random_inputs((S.train_batch, *shape), device=DEVICE)
model.to(DEVICE).eval()
sync = (lambda: torch.cuda.synchronize(DEVICE)) if DEVICE.type == "cuda" else (lambda: None)
with torch.no_grad():
    t0 = time.perf_counter()
    model(x)
    sync()
    first_call_s = time.perf_counter() - t0
    steady = Timer(warmup=S.warmup, repeats=S.repeats).measure(lambda: model(x), device=DEVICE)
    if DEVICE.type == "cuda":  # no synchronisation: the clock reads only the kernel launches
        t0 = time.perf_counter()
        model(x)
        unsynced_s = time.perf_counter() - t0
        sync()
        print(f"without synchronising: {1e3 * unsynced_s:.3f} ms, synchronised median {1e3 * steady.median_s:.3f} ms")
print(f"first call {1e3 * first_call_s:.2f} ms, later calls: median {1e3 * steady.median_s:.2f} ms "
      f"(IQR {1e3 * steady.iqr_s:.2f} ms, p95 {1e3 * steady.p95_s:.2f} ms)")
record("first_call_over_median", first_call_s / steady.median_s)

# %% [markdown]
# ## 3. The device's ceilings, measured
#
# A matrix product of two $n \times n$ matrices costs $2n^3$ FLOPs (one multiply and one add per
# multiply-accumulate); at large $n$ it is the fastest thing a device does, so its FLOP/s is the practical peak
# (bf16 tensor cores on a GPU, fp32 on a CPU). A copy of $b$ bytes reads $b$ and writes $b$: its bytes/s is
# the memory bandwidth a memory-bound layer can hope for. Both are ceilings, so they are taken at the fastest
# repeat (the models' throughputs, below, at the median: MFU errs on the low side).

# %%
peak = matmul_peak(device=DEVICE, n=S.matmul_n, timer=TIMER)
bandwidth = copy_bandwidth(device=DEVICE, nbytes=S.copy_mib * 2**20, timer=TIMER)
a = torch.randn(S.matmul_n, S.matmul_n, device=DEVICE)
t = TIMER.measure(lambda: a @ a, device=DEVICE)
by_hand = 2 * S.matmul_n**3 / t.min_s  # a ceiling: the fastest repeat
fp32_note = " (fp32, for comparison)" if DEVICE.type == "cuda" else ""
print(f"{peak.what}: {peak.per_s / 1e12:.3f} TFLOP/s (spread {100 * peak.timing.relative_spread:.1f}%)")
print(f"matmul by hand{fp32_note}: {by_hand / 1e12:.3f} TFLOP/s")
print(f"{bandwidth.what}: {bandwidth.per_s / 1e9:.1f} GB/s")
print(f"ridge point: {peak.per_s / bandwidth.per_s:.1f} FLOP/byte (workloads below it are memory-bound)")
if IS_CPU_RUN:
    assert 0.2 < by_hand / peak.per_s < 5, "the same fp32 product, measured twice"
PEAK_FLOPS = peak.per_s  # measured again after the models (section 4): the ceiling is the best of the two
BANDWIDTH = record("copy_bandwidth_gbs", bandwidth.per_s / 1e9, unit="GB/s") * 1e9

# %% [markdown]
# ## 4. Every backbone: throughput, latency, memory, MFU, and the ResNet-50 ratio
#
# For each network: a training step (forward, backward, SGD step) at a fixed batch, inference at each batch
# size of the sweep, latency at batch 1 (median and 95th percentile), the allocator's peak memory during
# training (only on a GPU: torch keeps no such statistic on a CPU, and the process's resident memory is not
# the model's), and the FLOPs of one forward pass (`facekit.models.count_flops`). A training step costs about
# 3x the forward FLOPs, so training MFU = 3 x forward FLOPs x images/s / matmul peak (the peak is measured
# again after the models, and the better of the two measurements is the ceiling). On a GPU the peak is the
# bf16 tensor-core peak while these rows run in fp32, so their MFU is low by construction: it says how much of
# the hardware an fp32 model leaves unused, and section 5 shows how much of it autocast wins back. Small
# networks on small images also cannot fill a large GPU: their kernels are too short, and the time goes to
# launching them (CUDA graphs, section 5, remove that cost).
#
# The reference: torchvision's ResNet-50 (untrained; speed does not depend on the weights) measured the same
# way at the same input size in this run. "0.5x ResNet-50" means half its training images/s.

# %%
def size_for(name: str) -> int | None:
    b = BACKBONES[name]
    if b.fixed_size or not S.max_image_size:
        return None
    return min(b.native_size, S.max_image_size)


names = list(S.models)
skipped = {}
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
        ref_row, _ = measure_model(ref_model, f"resnet50@{side}", ref_shape, train_batch=S.train_batch,
                                   sweep_batches=(max(S.sweep_batches),), device=DEVICE, timer=TIMER,
                                   latency_timer=TIMER)
        reference[side] = ref_row
        del ref_model
    row["train_vs_resnet50"] = row["train_img_s"] / reference[side]["train_img_s"]
    row["infer_vs_resnet50"] = row["infer_img_s"] / reference[side]["infer_img_s"]
    rows.append(row)
    sweeps.extend(sweep)
    del model
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()

# The peak again, now that the device is warm (and, on a shared machine, perhaps less busy): the best of two
peak_after = matmul_peak(device=DEVICE, n=S.matmul_n, timer=TIMER)
print(f"matmul peak before the models {peak.per_s / 1e12:.3f}, after {peak_after.per_s / 1e12:.3f} TFLOP/s")
peak = max(peak, peak_after, key=lambda p: p.per_s)
PEAK_FLOPS = record("peak_matmul_tflops", peak.per_s / 1e12, unit="TFLOP/s") * 1e12


def with_mfu(df: pd.DataFrame) -> pd.DataFrame:
    """Training and inference MFU columns: 3 (training) or 1 x forward FLOPs x images/s / matmul peak."""
    flops = df["forward_gflops"] * 1e9
    return df.assign(train_mfu=[mfu(achieved_flops(f, r, training=True), PEAK_FLOPS)
                                for f, r in zip(flops, df["train_img_s"])],
                     infer_mfu=[mfu(achieved_flops(f, r, training=False), PEAK_FLOPS)
                                for f, r in zip(flops, df["infer_img_s"])])


table = with_mfu(pd.DataFrame(rows).set_index("model"))
ref_table = with_mfu(pd.DataFrame(list(reference.values())).set_index("model"))
pd.options.display.float_format = "{:.4g}".format
display(table)
print("the reference, ResNet-50, at each input size used:")
display(ref_table[["image_size", "forward_gflops", "train_img_s", "infer_img_s", "latency_ms", "train_mfu"]])
for name, r in table.iterrows():
    record(f"train_img_s[{name}]", round(r["train_img_s"], 2), unit="img/s")
    record(f"train_vs_resnet50[{name}]", round(r["train_vs_resnet50"], 3), unit="x")
    record(f"train_mfu[{name}]", round(r["train_mfu"], 4))
    record(f"latency_ms[{name}]", round(r["latency_ms"], 3), unit="ms")
assert (table["forward_gflops"] > 0).all() and (table["train_img_s"] > 0).all(), "every model was measured"
assert (table["latency_p95_ms"] >= table["latency_ms"]).all(), "the 95th percentile is never below the median"
assert (table["train_mfu"] > 0).all() and np.isfinite(table["train_mfu"]).all()
over = table.index[table[["train_mfu", "infer_mfu"]].max(axis=1) > 1].tolist()
if over:  # above the matmul reference: either the reference was under-measured, or the model's kernels beat it
    print(f"note: MFU above 1 for {over}. The matmul reference is a practical peak, not a hard ceiling: it was "
          f"measured at {peak.per_s / 1e12:.3f} TFLOP/s both before and after the models, so on this device the "
          "convolution kernels (oneDNN on a CPU) run at least as fast per FLOP as torch.matmul, and 3x the forward "
          "FLOPs slightly over-counts a training step (the first layer needs no input gradient)")
if PROFILE != "smoke":  # tiny matrices at smoke under-measure the peak; 3x off would be a FLOP-counting error
    assert (table["train_mfu"] < 3).all(), "MFU is a fraction of the measured peak"

# %% [markdown]
# The MFU column by hand for one model, to see that it is nothing more than the formula above:

# %%
name = table.index[0]
r = table.loc[name]
model, shape = build_backbone(name, size_for(name))
assert count_flops(model, (1, *shape)) == round(r["forward_gflops"] * 1e9), "the table's FLOPs are count_flops'"
mfu_by_hand = 3 * r["forward_gflops"] * 1e9 * r["train_img_s"] / PEAK_FLOPS
print(f"{name}: 3 x {r['forward_gflops']:.4f} GFLOP x {r['train_img_s']:.1f} img/s / "
      f"{PEAK_FLOPS / 1e12:.3f} TFLOP/s = {mfu_by_hand:.4f}; facekit: {r['train_mfu']:.4f}")
assert math.isclose(mfu_by_hand, r["train_mfu"], rel_tol=1e-9)
assert math.isclose(mfu(achieved_flops(r["forward_gflops"] * 1e9, r["train_img_s"], training=True), PEAK_FLOPS),
                    mfu_by_hand, rel_tol=1e-9)

# %% [markdown]
# Inference throughput against batch size: small batches leave the device idle between kernel launches (and
# pay Python's per-call overhead), large ones fill it until it is saturated (or out of memory).

# %%
sweep_df = pd.DataFrame(sweeps)
fig, axes = plt.subplots(1, 3, figsize=(17, 4))
sns.lineplot(data=sweep_df, x="batch_size", y="images_per_s", hue="model", marker="o", ax=axes[0])
axes[0].set(xscale="log", yscale="log", title=f"inference throughput ({DEVICE.type})", ylabel="images / s")
axes[0].set_xticks(S.sweep_batches, [str(b) for b in S.sweep_batches], minor=False)
axes[0].xaxis.set_minor_locator(plt.NullLocator())
axes[0].legend(fontsize=8, ncol=2)
ratio = table["train_vs_resnet50"].sort_values()
sns.barplot(x=ratio.values, y=ratio.index, ax=axes[1], color="tab:blue")
axes[1].axvline(1.0, color="k", lw=1)
axes[1].set(xscale="log", title="training img/s / ResNet-50's at the same size", xlabel="ratio")
mfu_long = table[["train_mfu", "infer_mfu"]].rename(columns=lambda c: c.split("_")[0]).reset_index().melt(
    id_vars="model", var_name="step", value_name="MFU")
sns.barplot(data=mfu_long, x="MFU", y="model", hue="step", ax=axes[2])
axes[2].set(title=f"model FLOP utilisation ({peak.what})")
plt.tight_layout()
plt.show()
gain = sweep_df.groupby("model")["images_per_s"].agg(lambda s: s.iloc[-1] / s.iloc[0])
print("throughput at the largest batch / at batch 1:", gain.round(2).to_dict())
if PROFILE != "smoke":
    assert (gain > 1).mean() >= 0.5, "batching should raise throughput for most models"

# %% [markdown]
# ### Compute-bound or memory-bound?
#
# The roofline: a forward pass does `forward FLOPs` and moves at least the bytes of its activations (each
# written once and read once: twice the bytes of the input and of every layer's output). Its arithmetic
# intensity (FLOP per byte) below the device's ridge point (peak / bandwidth) means bandwidth, not arithmetic,
# limits it, and the ceiling is intensity x bandwidth. For those models the achieved bytes/s against the
# measured copy bandwidth is the fairer efficiency figure.

# %%
roof_rows = []
for name in table.index:
    model, shape = build_backbone(name, size_for(name))
    moved = 2 * activation_bytes(model, (1, *shape))  # bytes per image (write + read)
    flops = table.loc[name, "forward_gflops"] * 1e9
    rl = roofline(flops, moved, peak_flops_per_s=PEAK_FLOPS, bytes_per_s=BANDWIDTH)
    ips = table.loc[name, "infer_img_s"]
    roof_rows.append({"model": name, "MB_per_image": moved / 1e6, "flop_per_byte": rl.intensity, "bound": rl.bound,
                      "achieved_GB_s": moved * ips / 1e9, "bandwidth_use": moved * ips / BANDWIDTH,
                      "infer_mfu": table.loc[name, "infer_mfu"]})
    del model
roof = pd.DataFrame(roof_rows).set_index("model")
display(roof)
print(f"ridge point of this device: {PEAK_FLOPS / BANDWIDTH:.1f} FLOP/byte")
assert (roof["flop_per_byte"] > 0).all()

# %% [markdown]
# ## 5. The levers, one at a time
#
# Each lever is switched on alone, against the same fp32 eager baseline (on a GPU the baseline forbids TF32,
# which cuDNN otherwise allows for convolutions by default), on a copy of the model, for inference and for a
# training step. A lever that does not apply on this device is listed with the reason. CUDA graphs (the whole
# forward recorded once and replayed, removing the per-kernel launch cost) matter for small batches, so they
# are measured at batch `graph_batch` against an eager baseline at the same batch.

# %%
compile_timer = Timer(warmup=max(3, S.warmup), repeats=S.repeats)
lever_rows = []
for name in S.lever_models:
    model, shape = build_backbone(name, size_for(name))
    for mode in ("inference", "train"):
        levers = [lv for lv in LEVERS if lv != "cuda_graphs"]
        results = measure_levers(model, shape, levers=levers, batch_size=S.lever_batch, device=DEVICE, mode=mode,
                                 timer=TIMER, compile_timer=compile_timer, allow_compile=name in S.compile_models)
        if mode == "inference":
            results += measure_levers(model, shape, levers=("cuda_graphs",), batch_size=S.graph_batch, device=DEVICE,
                                      mode=mode, timer=TIMER)
        lever_rows += [{"model": name, "mode": mode, "lever": r.lever, "batch": r.batch_size,
                        "baseline_img_s": r.baseline_images_per_s, "img_s": r.images_per_s, "speedup": r.speedup,
                        "skipped": r.skipped or ""} for r in results]
    del model
levers_df = pd.DataFrame(lever_rows)
display(levers_df.pivot_table(index=["model", "mode"], columns="lever", values="speedup", sort=False).round(3))
for lever, reason in levers_df[levers_df["skipped"] != ""].groupby("lever")["skipped"].first().items():
    print(f"skipped {lever}: {reason}")
measured = levers_df[levers_df["skipped"] == ""]
grid = sns.catplot(data=measured[measured["lever"] != "fp32"], x="lever", y="speedup", hue="mode", col="model",
                   kind="bar", height=3.2, aspect=1.5, errorbar=None)
for ax in grid.axes.flat:
    ax.axhline(1.0, color="k", lw=1)  # fp32 eager
    ax.tick_params(axis="x", rotation=30)
grid.figure.suptitle(f"speed-up of each lever over fp32 eager ({DEVICE.type}); 1 = no change", y=1.04)
plt.show()
for (mode, lever), v in measured.groupby(["mode", "lever"])["speedup"].mean().items():
    record(f"lever_speedup[{mode},{lever}]", round(v, 3), unit="x")
assert (measured["speedup"] > 0).all() and np.isfinite(measured["speedup"]).all()
if IS_CPU_RUN:
    assert set(levers_df[levers_df["skipped"] != ""]["lever"]) >= {"tf32", "fp16_autocast", "cuda_graphs"}

# %% [markdown]
# ### Data loading: does the input pipeline keep up?
#
# The same small network consumes batches of synthetic images (each made on the fly with CPU work, as decoding
# and augmenting would), with the data loader's workers and pinned host memory switched on and off. On a
# GPU, workers prepare the next batches while the device computes, and pinned memory lets the copy to the GPU
# run asynchronously; on a CPU the workers compete with the model for the same cores.

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
record("loader_best_vs_single_process", best_rate / base_rate, unit="x")
assert loading["skipped"].isna().any() and (loading.dropna(subset=["images_per_s"])["images_per_s"] > 0).all()

# %% [markdown]
# ## 6. A real model: our PyTorch dlib ResNet against dlib's own code
#
# dlib computes its face descriptors with its own C++ kernels on the CPU
# (`face_recognition_model_v1.compute_face_descriptor` with a list of 150x150 chips). Our port
# (`facekit.pretrained.load_dlib_resnet`) gives the same descriptors (the tests hold them within 1e-5), so the
# two can be timed on the same chips: dlib's own on the CPU, ours on the CPU and on this run's device. The
# chips are random pixels here: the cost of a convolutional network does not depend on the image content.
# Both sides run with the threads this process has (torch: the count printed in section 1). dlib's speed
# depends on how it was built (with a BLAS library for its matrix products or not, AVX, CUDA): the build flags
# of the installed dlib are printed with the result.

# %%
dlib_summary = {}
dlib_reason = unavailable("dlib_resnet")
try:
    import dlib  # noqa: F401
except ImportError:
    dlib_reason = dlib_reason or "dlib is not installed (pip install dlib-bin)"
if dlib_reason:
    print(f"skipping the dlib comparison: {dlib_reason}")
else:
    import dlib

    from facekit.pretrained import load_dlib_resnet

    print("dlib", dlib.__version__, {k: getattr(dlib, k) for k in ("DLIB_USE_BLAS", "DLIB_USE_CUDA",
                                                                   "USE_AVX_INSTRUCTIONS") if hasattr(dlib, k)})
    rng = np.random.default_rng(seed)
    chips = rng.integers(0, 256, size=(S.dlib_chips, 150, 150, 3), dtype=np.uint8)  # (N, 150, 150, 3) RGB
    dlib_run = dlib_descriptor_timer(chips, batch_size=S.dlib_batch)
    t_dlib = Timer(warmup=1, repeats=3).measure(dlib_run)  # a few chips/s: 3 repeats of a C++ loop suffice
    ours = load_dlib_resnet()
    batch = torch.from_numpy(chips).permute(0, 3, 1, 2).float()  # (N, 3, 150, 150)

    def ours_on(dev):
        net, xb = ours.to(dev), batch.to(dev)

        def run():
            with torch.inference_mode():
                return [net(xb[i:i + S.dlib_batch]) for i in range(0, len(xb), S.dlib_batch)]

        return Timer(warmup=1, repeats=S.repeats).measure(run, device=dev)

    t_ours_cpu = ours_on(torch.device("cpu"))
    dlib_summary = {"dlib own (CPU)": t_dlib.rate(S.dlib_chips), "ours (CPU)": t_ours_cpu.rate(S.dlib_chips)}
    if DEVICE.type != "cpu":
        dlib_summary[f"ours ({DEVICE.type})"] = ours_on(DEVICE).rate(S.dlib_chips)
    ours_desc = ours.cpu()(batch[:2]).detach().numpy()
    dlib_desc = dlib_descriptor_timer(chips[:2], batch_size=2)()
    print(f"max |ours - dlib| on these chips: {np.abs(ours_desc - dlib_desc).max():.2e}")
    display(pd.Series(dlib_summary, name="chips / s").to_frame())
    record("dlib_own_cpu_chips_s", dlib_summary["dlib own (CPU)"], unit="chips/s")
    record("dlib_ours_cpu_vs_dlib_own", dlib_summary["ours (CPU)"] / dlib_summary["dlib own (CPU)"], unit="x")
    if DEVICE.type != "cpu":
        record(f"dlib_ours_{DEVICE.type}_vs_dlib_own",
               dlib_summary[f"ours ({DEVICE.type})"] / dlib_summary["dlib own (CPU)"], unit="x")
    assert all(v > 0 for v in dlib_summary.values())
    assert np.abs(ours_desc - dlib_desc).max() < 1e-3, "the two compute the same descriptors"

# %% [markdown]
# ## Summary
#
# - A benchmark number needs its device, its batch size, its precision and its spread; the timer warms up,
#   synchronises, repeats and reports the median and IQR.
# - The device's measured matmul peak and copy bandwidth turn images/s into a utilisation (MFU) and tell
#   compute-bound from memory-bound models; ResNet-50 in the same run turns images/s into a ratio.
# - Which levers pay off depends on the device: see the lever table of this run.
# - This run's key figures:

# %%
summary = {
    "device": INFO["gpu"] or f"CPU ({INFO['cpu']}, {INFO['torch_threads']} threads)",
    "matmul peak": f"{PEAK_FLOPS / 1e12:.3f} TFLOP/s ({peak.what})",
    "copy bandwidth": f"{BANDWIDTH / 1e9:.1f} GB/s",
    "fastest training (img/s)": f"{table['train_img_s'].idxmax()}: {table['train_img_s'].max():.1f}",
    "highest training MFU": f"{table['train_mfu'].idxmax()}: {table['train_mfu'].max():.3f}",
}
lever_means = measured[measured["lever"] != "fp32"].groupby("lever")["speedup"].mean()
if len(lever_means):
    summary["best lever (mean speed-up)"] = f"{lever_means.idxmax()}: {lever_means.max():.2f}x"
if dlib_summary:
    own = dlib_summary["dlib own (CPU)"]
    summary["dlib ResNet, ours / dlib's own (CPU)"] = (f"{dlib_summary['ours (CPU)'] / own:.2f}x "
                                                      f"({own:.1f} chips/s for dlib)")
for name, reason in skipped.items():
    summary[f"skipped {name}"] = reason
for key, value in summary.items():
    print(f"{key:>38}: {value}")
record("chapter_seconds", round(time.perf_counter() - T0, 1))
