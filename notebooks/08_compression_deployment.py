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
# # Chapter 8 — Compression, export and face search
#
# Both source articles name compute cost as an open problem of face recognition in enterprises: a strong
# embedding network is large and slow, and a deployment runs it on CPUs, phones and cameras. This chapter takes
# a **real** pretrained face model, dlib's face-recognition ResNet (loaded into PyTorch by
# `facekit.pretrained.load_dlib_resnet`; 150x150 chips, 128-d descriptors), and measures what each compression
# method buys and costs:
#
# 1. int8 quantisation from scratch: the affine map, per-tensor against per-channel scales;
# 2. post-training **dynamic** int8 (`quantize_dynamic`, Linear layers only), **static** int8 (observers,
#    calibration on real chips), **fp16** and **bf16**, global **magnitude pruning**, and **knowledge
#    distillation** into a MobileFaceNet-sized student; for each: size on disk, CPU latency, and LFW verification
#    (TAR@FAR and k-fold accuracy) beside the fp32 model;
# 3. a second real model, **FaceNet** (Inception-ResNet-v1, chapter 10), through the same int8 and bf16
#    recipes, with its batch norms folded into its convolutions first;
# 4. **ONNX** export and onnxruntime inference, with the numerical parity asserted;
# 5. a working **face search**: enrol a gallery, search probes with a vector index (faiss), set the decision
#    threshold from a target false alarm rate, and measure the open-set rejection of people who are not enrolled.
#
# Every number comes from this run. dlib's models are compared on all of LFW's 6,000 pairs in the `cpu` and `gpu`
# profiles, and every "method X against fp32" statement is a paired test on the same pairs (`facekit.stats`).
# All compressed models run on the **CPU** here (int8 kernels are CPU kernels); only the student's training
# uses the GPU when there is one.
#
# ## Learning outcomes
#
# After this chapter you can
#
# 1. quantise a tensor to int8 by hand (scale, zero point, clipping), per tensor and per channel, and check it
#    against `torch.quantize_per_tensor`;
# 2. apply dynamic and static int8, fp16, bf16 and magnitude pruning to a real face model and measure size,
#    latency and verification accuracy, with a paired verdict against fp32 on the same LFW pairs;
# 3. distil a teacher's embedding into a small student and explain why the teacher's embeddings are centred first;
# 4. fold batch norms into convolutions, export to ONNX and check numerical parity;
# 5. build an open-set face search (enrolment, top-k, a threshold set on held-out unknown people) and read its
#    rank-1, false alarm and detection-and-identification rates.
#
# ## Prerequisites
#
# - Chapter 4 (verification pairs, LFW's 10-fold protocol, TAR at FAR) and chapter 1's `facekit.stats` (paired
#   comparisons, McNemar's test, the noise rule).
# - Chapter 3's five-point alignment (the chips), and chapter 7's latency measurement (medians, warm-up).
# - Floating-point formats (fp32, fp16, bf16) at the level of "how many bits of mantissa and exponent".

# %% tags=["parameters"]
profile = "auto"  # smoke | cpu | gpu | auto (auto: $FACEKIT_PROFILE, else gpu if CUDA, else cpu)
data_root = ""  # folder with lfw/; empty: FACEKIT_DATA, ./data, ../shared/datasets; LFW absent -> synthetic faces
quant_backend = "x86"  # int8 kernels: x86 | fbgemm | onednn | qnnpack (ARM)
latency_threads = 1  # intra-op threads while timing: 1 for per-core latency (steady on a shared machine), 0 for all
seed = 0

# %%
import copy
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import display
from torch import nn

import facekit as fk
import facekit.stats as st
from facekit.compress import (ChipInput, EmbeddingDistillLoss, OnnxEmbedder, affine_qparams, cast_precision,
                              compare_latency, dynamic_int8, export_onnx, fake_quantize, global_magnitude_prune,
                              layer_coverage, mean_cosine, onnx_max_abs_diff, sparsity, state_dict_mb, static_int8)
from facekit.data import SyntheticFaces, make_pairs, read_image
from facekit.metrics import cosine_scores, kfold_accuracy, tar_at_far
from facekit.models import count_parameters, create_embedding
from facekit.pretrained import load_dlib_resnet
from facekit.reports import record
from facekit.search import FaceIndex, faiss_available, open_set_rates, threshold_at_far
from facekit.train import fit

# %% [markdown]
# One set of sizes per profile: `smoke` is what the tests run, `cpu` a laptop run of about ten minutes.

# %%
@dataclass(frozen=True)
class Sizes:
    eval_folds: tuple  # LFW folds of pairs.txt evaluated (0-based)
    pairs_per_fold: int  # the first n/2 genuine and n/2 impostor pairs of each evaluated fold (600 = all)
    far: float  # the FAR of the TAR@FAR column and of the search threshold
    calib_images: int  # chips that calibrate static int8 (people outside the evaluated folds)
    distill_images: int  # chips the student learns from (people outside the evaluated folds; 0 = all)
    student: str  # facekit.models.create_embedding preset of the student
    student_size: int  # the student's input side (chips are resized to it)
    distill_epochs: int
    fp16_eval_images: int  # fp16 compute is slow on CPUs: its embeddings are checked on this many chips (0 = all)
    latency_batch: int  # images per call of the throughput measurement
    latency_repeats: int  # timed calls of each model (the median counts)
    latency_seconds: float  # a slow model (fp16 on a CPU) gets fewer timed calls, about this many seconds
    fn_pairs_per_fold: int  # FaceNet: the first n/2 genuine and n/2 impostor of each fold's evaluated pairs
    fn_calib_images: int  # FaceNet: MTCNN crops that calibrate its static int8 (people outside the folds)
    fn_unfolded: bool  # FaceNet: also quantise it with its batch norms left in float (to see what folding buys)
    timing_warmup: int  # untimed calls of each model before timing (FaceNet's table)
    prune_amounts: tuple  # fractions of weights zeroed by global magnitude pruning
    known_people: int  # search: enrolled people (each with >= enrol + probes images)
    enrol_per_person: int  # gallery images of each enrolled person
    probes_per_person: int  # probe images of each enrolled person
    unknown_people: int  # search: people never enrolled, half to set the threshold, half to test it
    n_boot: int  # bootstrap resamples behind every interval


# %%
ctx = fk.notebook.setup(
    profile, data_root=data_root, seed=seed,
    smoke=Sizes(eval_folds=(0, 5), pairs_per_fold=10, far=0.1, calib_images=16, distill_images=32,
                student="mobilefacenet_tiny", student_size=64, distill_epochs=1, fp16_eval_images=4,
                latency_batch=2, latency_repeats=3, latency_seconds=1.0, fn_pairs_per_fold=2, fn_calib_images=4,
                fn_unfolded=False, timing_warmup=1, prune_amounts=(0.5,), known_people=6, enrol_per_person=1,
                probes_per_person=2, unknown_people=12, n_boot=200),
    cpu=Sizes(eval_folds=tuple(range(10)), pairs_per_fold=600, far=0.001, calib_images=128, distill_images=600,
              student="mobilefacenet_tiny", student_size=64, distill_epochs=8, fp16_eval_images=32,
              latency_batch=16, latency_repeats=10, latency_seconds=8.0, fn_pairs_per_fold=30,
              fn_calib_images=16, fn_unfolded=True, timing_warmup=2, prune_amounts=(0.5, 0.7), known_people=50,
              enrol_per_person=2, probes_per_person=2, unknown_people=200, n_boot=1000),
    gpu=Sizes(eval_folds=tuple(range(10)), pairs_per_fold=600, far=0.001, calib_images=512, distill_images=0,
              student="mobilefacenet", student_size=112, distill_epochs=60, fp16_eval_images=256,
              latency_batch=32, latency_repeats=20, latency_seconds=10.0, fn_pairs_per_fold=200,
              fn_calib_images=256, fn_unfolded=True, timing_warmup=2, prune_amounts=(0.3, 0.5, 0.7),
              known_people=300, enrol_per_person=2, probes_per_person=2, unknown_people=1000, n_boot=2000))
PROFILE, S, DEVICE, ROOT = ctx.profile, ctx.sizes, ctx.device, ctx.root
REAL = ctx.has("lfw")
CHIP = 150  # dlib's chip side
rng = np.random.default_rng(seed)
print(f"torch threads: {torch.get_num_threads()}, int8 engines: {torch.backends.quantized.supported_engines}")

# %% [markdown]
# How long this chapter takes at each profile, read from the committed report runs:

# %%
fk.notebook.say(fk.notebook.durations_sentence("08_compression_deployment"))

# %% [markdown]
# ## 1. Data: aligned chips of LFW
#
# The teacher takes dlib's aligned 150x150 chips: HOG face detection, 5 landmarks, a similarity transform to
# dlib's template (`facekit.pretrained.image_landmarks`, cached in `$FACEKIT_CACHE`, then `face_chip`). Three
# disjoint uses:
#
# - **evaluation**: the first `pairs_per_fold` pairs (half genuine, half impostor) of each evaluated fold of
#   `pairs.txt`;
# - **calibration and distillation**: images of people who appear in **none** of the evaluated folds, so the
#   student and the int8 observers never see a person they are tested on;
# - **search**: enrolled people with several images, and people never enrolled (section 9).
#
# Without LFW, synthetic faces rendered at 150 pixels stand in (the pretrained model then sees cartoons: the
# pipeline runs, the accuracies mean little).

# %%
def lfw_chips(paths) -> torch.Tensor:
    """(N, 3, 150, 150) uint8 aligned chips of LFW images (landmarks cached in $FACEKIT_CACHE)."""
    from facekit.pretrained import face_chip, image_landmarks

    if not paths:
        return torch.zeros(0, 3, CHIP, CHIP, dtype=torch.uint8)
    landmarks, _ = image_landmarks(paths)  # (N, 5, 2)
    chips = [face_chip(read_image(p, channels=3).permute(1, 2, 0).numpy(), lm) for p, lm in zip(paths, landmarks)]
    return torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).contiguous()  # (N, 150, 150, 3) -> (N, 3, 150, 150)


def synthetic_chips(num_identities, per_identity, offset) -> tuple[torch.Tensor, np.ndarray]:
    faces = SyntheticFaces(num_identities, per_identity, CHIP, seed=seed + offset, difficulty="medium")
    images = torch.stack([torch.from_numpy(faces.render(i)[0]) for i in range(len(faces))])  # (N, 150, 150, 3) [0, 1]
    return (images * 255).round().to(torch.uint8).permute(0, 3, 1, 2).contiguous(), np.array(faces.targets) + offset


def first_run_seconds(paths, sample: int = 4) -> float:
    """Estimated seconds to find the landmarks of `paths` with an empty cache: `sample` of them timed uncached."""
    from facekit.pretrained import image_landmarks

    t = time.perf_counter()
    image_landmarks(paths[:sample], cache=False)
    return (time.perf_counter() - t) / max(1, min(sample, len(paths))) * len(paths)


# %% [markdown]
# With LFW on disk, `facekit.data.lfw` gives the evaluated pairs (`lfw_pair_subset`: the first `pairs_per_fold`
# of each fold, all 600 at the `cpu` profile) and the people in no evaluated fold (`people_outside_folds`). The
# chips' landmarks are cached by image content, so only a first run pays for finding the faces; the cell prints
# that cost, estimated from a few images timed without the cache.

# %%
t_data = time.perf_counter()
if REAL:
    from facekit.data.lfw import lfw_pair_subset, people_outside_folds

    subset = lfw_pair_subset(ROOT, folds=S.eval_folds, pairs_per_fold=S.pairs_per_fold)
    images_dir = subset.images_dir
    eval_paths = subset.images
    row_of = {p: i for i, p in enumerate(eval_paths)}  # image path -> row of eval_chips
    pair_a = np.array([row_of[p] for p in subset.paths_a])
    pair_b = np.array([row_of[p] for p in subset.paths_b])
    is_same, folds = subset.is_same, subset.folds
    pair_person = np.array([Path(p).parent.name for p in subset.paths_a])  # the person of each pair's first image
    outside = people_outside_folds(ROOT, folds=S.eval_folds)
    free = [p for images in outside.values() for p in images]  # images of people in no evaluated fold
    rng.shuffle(free)
    train_paths = free[: fk.profiles.capped(S.distill_images or len(free))]  # 0 = all (a dry run caps either)
    calib_paths = train_paths[: S.calib_images]
    first_run = first_run_seconds(eval_paths + train_paths)
    eval_chips, train_chips = lfw_chips(eval_paths), lfw_chips(train_paths)
    fk.notebook.say(f"Evaluation: {len(is_same)} pairs ({is_same.sum()} genuine) of folds {S.eval_folds}, "
                    f"{len(eval_paths)} images of {len(subset.people)} people; {len(outside)} people in no evaluated "
                    f"fold with {len(free)} images, {len(train_paths)} used for distillation. Finding the faces of "
                    f"these images with an empty cache costs about {first_run / 60:.1f} min on this machine "
                    f"(estimated from a few images); this run took {time.perf_counter() - t_data:.0f} s.")

# %% [markdown]
# Without LFW, synthetic faces rendered at 150 pixels stand in, paired one fold at a time.

# %%
if not REAL:
    n_eval_ids = max(4, S.pairs_per_fold // 2)
    eval_chips, eval_labels = synthetic_chips(n_eval_ids, 4, 0)
    pair_a, pair_b, is_same, pair_fold = [], [], [], []
    for k in range(len(S.eval_folds)):  # pairs of synthetic people, one fold at a time
        pr = make_pairs(eval_labels, S.pairs_per_fold // 2, S.pairs_per_fold // 2, seed=seed + k)
        pair_a, pair_b = pair_a + list(pr.a), pair_b + list(pr.b)
        is_same, pair_fold = is_same + list(pr.is_same), pair_fold + [k] * len(pr.a)
    pair_a, pair_b, is_same, pair_fold = map(np.array, (pair_a, pair_b, is_same, pair_fold))
    folds = [np.flatnonzero(pair_fold == k) for k in np.unique(pair_fold)]
    pair_person = eval_labels[pair_a]
    train_chips, _ = synthetic_chips(max(2, fk.profiles.capped(S.distill_images or 400) // 4), 4, 10_000)
    print(f"LFW not found: {len(is_same)} pairs of synthetic faces, {len(train_chips)} synthetic training chips")
pair_fold = np.zeros(len(is_same), int)
for k, f in enumerate(folds):
    pair_fold[f] = k
calib_chips = train_chips[: S.calib_images]
print(f"chips ready in {time.perf_counter() - t_data:.1f} s: eval {tuple(eval_chips.shape)}, "
      f"train {tuple(train_chips.shape)}")
assert eval_chips.dtype == torch.uint8 and eval_chips.shape[1:] == (3, CHIP, CHIP)

# %% [markdown]
# Two pairs as the teacher sees them: aligned, eyes at fixed positions, the face filling the chip. Alignment is what
# lets a small network compare faces without learning to undo pose and scale.

# %%
shown = [0, int(np.flatnonzero(~is_same)[0])]  # a genuine and an impostor pair
fig, axes = plt.subplots(1, 4, figsize=(6.5, 1.9))
for j, i in enumerate(shown):
    for ax, img in zip(axes[2 * j: 2 * j + 2], (eval_chips[pair_a[i]], eval_chips[pair_b[i]])):
        ax.imshow(img.permute(1, 2, 0))
        ax.set_title("same person" if is_same[i] else "different people", fontsize=8)
        ax.axis("off")
fig.suptitle("aligned 150x150 chips, the teacher's input", fontsize=9)
plt.show()

# %% [markdown]
# ## 2. The fp32 baseline and the evaluation protocol
#
# Every model of the table is evaluated the same way: embeddings of the evaluation chips, cosine similarity of
# each pair, TAR at the profile's FAR, and the k-fold accuracy over the evaluated folds (the threshold of each
# fold chosen on the others, as in chapter 4). Size is the bytes of `torch.save(state_dict)`. Latency is measured
# once every model exists (section 6), on the CPU with `latency_threads` intra-op threads (default 1: per-core
# latency; with several threads on a busy machine one descheduled thread stalls every parallel region and the
# timings scatter): the **median** of timed calls after warm-up calls, the models timed **round-robin** so that a
# change in the machine's load hits all of them alike; batch 1 (an interactive query) and a batch (enrolment,
# offline indexing).
#
# A compressed model is compared with fp32 **on the same pairs**, so the comparison is paired: McNemar's exact test
# on which pairs each model gets right at its own fold thresholds (only the pairs where they disagree carry
# information), a paired bootstrap of the accuracy difference, and a paired bootstrap of the AUC difference; both
# bootstraps resample **people** (the person of each pair's first image), since pairs of one person succeed or
# fail together. `held_out_correct` gives the per-pair outcome of the k-fold rule.
#
# The fp32 row is also run through `facekit.data.lfw.evaluate_pairs`, the package's one evaluator of LFW's
# protocol, fed the same embeddings: the two k-fold accuracies must agree (asserted), so every row of the table is
# measured by the protocol chapter 4 built.

# %%
teacher = load_dlib_resnet().eval()
EXAMPLE = eval_chips[:1].float()  # (1, 3, 150, 150) one chip, values in [0, 255]
BATCH = 64  # chips per forward pass when embedding


def embed(model, chips=eval_chips) -> torch.Tensor:
    """(N, D) float32 embeddings of uint8 chips (the models take floats in [0, 255])."""
    return fk.models.embed(model, chips, batch_size=BATCH, device="cpu", transform=lambda b: b.float())


def held_out_correct(scores: np.ndarray, kfold) -> np.ndarray:
    """(P,) bool: pair i classified right by its fold's threshold (chosen on the other folds)."""
    correct = np.zeros(len(scores), bool)
    for f, thr in zip(folds, kfold.thresholds):
        correct[f] = (scores[f] > thr) == is_same[f]
    return correct


rows, REF, MODELS, EMB, SCORES, CORRECT = [], {}, {}, {}, {}, {}


def verification(emb: torch.Tensor, method: str | None = None) -> dict:
    scores = cosine_scores(emb[pair_a].numpy(), emb[pair_b].numpy())  # (P,)
    kfold = kfold_accuracy(scores, is_same, folds=folds)
    if method is not None:
        SCORES[method], CORRECT[method] = scores, held_out_correct(scores, kfold)
    tar = tar_at_far(scores, is_same, (S.far,))[0]
    return {"tar_at_far": tar.tar, "kfold_acc": kfold.mean, "kfold_std": kfold.std}


# %%


def evaluate(method: str, model, *, emb=None, size_model=None, ref=None, note="") -> dict:
    """One row of the compression table (latency comes later); the fp32 row must come first."""
    emb = embed(model) if emb is None else emb
    MODELS[method], EMB[method] = model, emb
    row = {"method": method, "size_mb": state_dict_mb(size_model or model)}
    if not REF:
        REF.update(emb=emb)
    ref = REF["emb"] if ref is None else ref
    row["cos_to_fp32"] = float(F.cosine_similarity(emb, ref[: len(emb)], dim=1).mean())
    row.update(verification(emb, method) if len(emb) == len(eval_chips) else {"tar_at_far": np.nan,
                                                                               "kfold_acc": np.nan})
    row["note"] = note
    rows.append(row)
    return row


t = time.perf_counter()
base = evaluate("fp32 (dlib ResNet)", teacher, note=f"{count_parameters(teacher) / 1e6:.2f} M parameters")
print(pd.Series(base).to_string(), f"\n({time.perf_counter() - t:.1f} s)")
fp32_name = base["method"]
per_fold = [CORRECT[fp32_name][f].mean() for f in folds]
assert np.isclose(np.mean(per_fold), base["kfold_acc"]), "per-pair outcomes must reproduce the k-fold accuracy"
if REAL:  # the same protocol as the package's one evaluator, fed the fp32 embeddings of the same images
    from facekit.data.lfw import evaluate_pairs

    package = evaluate_pairs(subset, lambda paths: REF["emb"][[row_of[p] for p in paths]], distance="cosine")
    assert np.isclose(package.kfold.mean, base["kfold_acc"]), (package.kfold.mean, base["kfold_acc"])
if REAL and PROFILE != "smoke":
    assert base["kfold_acc"] > 0.97, "dlib's ResNet is near 99% on LFW's pairs"

# %% [markdown]
# ## 3. int8 quantisation from scratch
#
# An int8 tensor stores codes $q \in \{0..255\}$ (or $-128..127$) and two numbers: a **scale** $s$ and a **zero
# point** $z$, with $x \approx \hat x = s\,(q - z)$. For a range $[x_{min}, x_{max}]$ stretched to include 0,
# $s = (x_{max} - x_{min}) / 255$ and $z = -\mathrm{round}(x_{min}/s)$, so that 0 is exact (zero padding stays
# exact). Rounding costs at most $s/2$ per value. One scale for a whole weight tensor (**per-tensor**) is set by
# its largest value; one scale per output channel (**per-channel**, what the x86 backend uses for weights)
# fits each filter's own range. We check the formula against `torch.quantize_per_tensor` and measure both errors
# on the teacher's first convolution (symmetric per-channel int8 spends one bit on the sign: compare the maximum
# and the mean errors).
#
# PyTorch's quantised tensor types (`quint8`, `qint8`) and `torch.ao.quantization` are deprecated in favour of
# the separate `torchao` package (not installed here); they still work from torch `2.11` to `2.14`, and this
# chapter silences their deprecation warnings.

# %%
warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
w = teacher.conv1.weight.detach()  # (32, 3, 7, 7)
lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
scale = (hi - lo) / 255
zero_point = int(round(-lo / scale))
codes = torch.clamp(torch.round(w / scale) + zero_point, 0, 255)
w_hat = (codes - zero_point) * scale  # by hand
ref = torch.quantize_per_tensor(w, scale, zero_point, torch.quint8)
pkg_scale, pkg_zp = affine_qparams(w.min(), w.max())
assert torch.equal(codes.long(), ref.int_repr().long()) and (pkg_scale, pkg_zp) == (scale, zero_point)
assert torch.allclose(fake_quantize(w, scale, zero_point)[1], w_hat)
err_tensor = float((w - w_hat).abs().max())
assert err_tensor <= scale / 2 + 1e-9

amax = w.abs().amax(dim=(1, 2, 3))  # (32,) symmetric int8 per output channel
per_channel = torch.quantize_per_channel(w, amax / 127, torch.zeros(32, dtype=torch.long), 0, torch.qint8)
err_channel = float((w - per_channel.dequantize()).abs().max())
rel = lambda e: e / float(w.abs().max())  # noqa: E731
print(f"conv1 weights: range [{lo:.3f}, {hi:.3f}], per-tensor scale {scale:.2e}, zero point {zero_point}; "
      f"max error per-tensor {err_tensor:.2e} ({rel(err_tensor):.2%} of max |w|), per-channel {err_channel:.2e}")
mean_tensor, mean_channel = float((w - w_hat).abs().mean()), float((w - per_channel.dequantize()).abs().mean())
print(f"mean |error| per-tensor {mean_tensor:.2e}, per-channel {mean_channel:.2e}: per-channel is "
      f"{'better' if mean_channel < mean_tensor else 'not better'} on average, "
      f"{'better' if err_channel < err_tensor else 'not better'} at the worst weight")

# %% [markdown]
# The figure draws the map $x \mapsto \hat x$ over the weights it quantises. Left: the histogram of conv1's
# weights with the 8-bit map on top, over a range wider than the weights, so that the two **clipping** flats show
# (values beyond $[x_{min}, x_{max}]$ all land on the end codes). Right: a zoom around zero, where the map is a
# **staircase** of steps one **scale** $s$ wide, and $0$ sits exactly on a step (the **zero point** $z$). Look at
# how many steps the bulk of the weights spans: that is how much resolution per-tensor int8 leaves them.

# %%
def dequantised(x: torch.Tensor) -> torch.Tensor:
    return (torch.clamp(torch.round(x / scale) + zero_point, 0, 255) - zero_point) * scale  # clamp = clipping


span = hi - lo
x_wide = torch.linspace(lo - 0.3 * span, hi + 0.3 * span, 4001)
x_zoom = torch.linspace(-4 * scale, 4 * scale, 2001)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
axes[0].hist(w.flatten().numpy(), bins=80, color="lightgrey")
twin = axes[0].twinx()
twin.plot(x_wide, dequantised(x_wide), color="C0", lw=1.2, label="dequantised value $\\hat x$")
twin.plot(x_wide, x_wide, color="k", ls=":", lw=0.8, label="$\\hat x = x$")
for edge in (lo, hi):
    axes[0].axvline(edge, color="C3", ls="--", lw=0.8)
axes[0].set(xlabel="weight x", ylabel="count", title="conv1 weights and the int8 map (clipped outside the dashes)")
twin.legend(fontsize=7, loc="upper left")
axes[1].step(x_zoom, dequantised(x_zoom), where="mid", color="C0")
axes[1].plot(x_zoom, x_zoom, color="k", ls=":", lw=0.8)
axes[1].axvline(0, color="grey", lw=0.5); axes[1].axhline(0, color="grey", lw=0.5)
axes[1].set(xlabel="weight x (near 0)", ylabel="$\\hat x$", title=f"steps of one scale s = {scale:.1e}; 0 is exact")
plt.tight_layout(); plt.show()
assert dequantised(torch.tensor([0.0])).item() == 0.0  # the zero point makes 0 exact
assert torch.isclose(dequantised(torch.tensor([hi + span])), dequantised(torch.tensor([hi]))).item()  # clipped

# %% [markdown]
# **Explore it:** the same by-hand formula with $2^k$ levels instead of 256, applied to the fp32 embeddings of the
# evaluated chips: move the bits and see one embedding's levels, its cosine to fp32 and the k-fold accuracy.

# %% tags=["exploration"]
from facekit.explore import explore_bits

explore_bits(REF["emb"], pair_a, pair_b, is_same, folds=folds)

# %% [markdown]
# ## 4. Post-training quantisation and reduced precision
#
# **Dynamic int8** (`torch.ao.quantization.quantize_dynamic`) stores Linear weights as int8 and quantises
# activations on the fly. It is the one-line method for transformers and LSTMs; in a conv net the Linear layers
# hold a small share of the weights (printed below) and almost none of the compute, so it changes little.
#
# **Static int8** quantises convolutions too: observers record each layer's input range on **calibration** chips
# (real faces of people outside the evaluation), then weights and activations become int8 and the convolutions
# run in the x86 (fbgemm/oneDNN) int8 kernels. Graph-mode (FX) quantisation cannot trace dlib's network (its
# residual add zero-pads by comparing tensor shapes in Python), so `facekit.compress.static_int8` uses eager mode
# and wraps **each** conv and linear layer in its own quantise/dequantise pair: the per-channel affine layers,
# padded adds and pooling stay in float between them. That is "quantise what can be": a fused graph would also
# keep the activations in int8 between layers and save the conversions.
#
# **fp16 / bf16** halve the weights. CPUs without native fp16 arithmetic emulate it, so we measure rather than
# assume; "fp16 storage" keeps fp16 weights on disk and computes in fp32 after loading (the usual CPU choice).

# %%
coverage = layer_coverage(teacher)
q_dynamic = dynamic_int8(teacher)
evaluate("dynamic int8 (Linear)", q_dynamic, note=f"covers {coverage:.1%} of the weights")

t = time.perf_counter()
q_static = static_int8(teacher, calib_chips.float().split(32), backend=quant_backend)
n_int8 = sum(type(m).__name__ in ("Conv2d", "Linear") and "quantized" in type(m).__module__ for m in q_static.modules())
print(f"static int8: calibrated on {len(calib_chips)} chips in {time.perf_counter() - t:.1f} s, backend "
      f"{torch.backends.quantized.engine}; int8 layers: {n_int8}")
evaluate("static int8 (conv + linear)", q_static, note=f"calibrated on {len(calib_chips)} chips")

bf16 = cast_precision(teacher, "bf16")
evaluate("bf16 (weights + compute)", bf16)

fp16_storage = copy.deepcopy(teacher).half().float()  # weights rounded to fp16, compute in fp32
evaluate("fp16 storage, fp32 compute", fp16_storage, size_model=copy.deepcopy(teacher).half(),
         note="size of the fp16 file")

fp16 = cast_precision(teacher, "fp16")
n16 = S.fp16_eval_images or len(eval_chips)
evaluate("fp16 (weights + compute)", fp16, emb=embed(fp16, eval_chips[:n16]),
         note=("" if n16 == len(eval_chips) else f"embeddings of {n16} chips only (slow on this CPU)"))
pd.DataFrame(rows).set_index("method").round(4)

# %% [markdown]
# What the asserts below hold to: every method keeps embeddings close to fp32's (the cosine thresholds), static
# int8 and fp16 storage shrink the file, and at the larger profiles static int8's k-fold accuracy stays within two
# points of fp32's. The paired verdicts after the latency measurement say whether any gap is more than noise.

# %%
by = {r["method"]: r for r in rows}
assert by["dynamic int8 (Linear)"]["cos_to_fp32"] > 0.999
assert by["static int8 (conv + linear)"]["cos_to_fp32"] > 0.98
assert by["fp16 storage, fp32 compute"]["cos_to_fp32"] > 0.9999
assert by["fp16 (weights + compute)"]["cos_to_fp32"] > 0.999
assert by["bf16 (weights + compute)"]["cos_to_fp32"] > 0.98
assert by["static int8 (conv + linear)"]["size_mb"] < 0.4 * base["size_mb"]
assert by["fp16 storage, fp32 compute"]["size_mb"] < 0.6 * base["size_mb"]
if PROFILE != "smoke":  # enough pairs for the accuracy to mean something
    assert abs(by["static int8 (conv + linear)"]["kfold_acc"] - base["kfold_acc"]) < 0.02
print(f"dynamic int8 touches {coverage:.1%} of the weights; static int8 keeps a mean cosine of "
      f"{by['static int8 (conv + linear)']['cos_to_fp32']:.4f} to the fp32 embeddings")

# %% [markdown]
# ## 5. Magnitude pruning
#
# Global unstructured pruning ranks $|w|$ over **all** conv and linear weights together and zeros the smallest
# fraction: layers with many small weights lose more. From scratch: the threshold is the k-th smallest $|w|$;
# `facekit.compress.global_magnitude_prune` (torch's `prune.global_unstructured`, masks then removed) must zero
# exactly those weights. The zeros are still stored and multiplied by dense kernels: the table shows whether
# size or latency move.

# %%
layers = [m for m in teacher.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
all_w = torch.cat([m.weight.detach().abs().flatten() for m in layers])
for amount in S.prune_amounts:
    k = round(amount * len(all_w))
    threshold = all_w.kthvalue(k).values  # by hand: the k-th smallest magnitude
    pruned = global_magnitude_prune(teacher, amount)
    kept = torch.cat([m.weight.detach().flatten() for m in pruned.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    assert torch.equal(kept != 0, all_w > threshold), "package and by-hand pruning disagree"
    assert abs(sparsity(pruned) - amount) < 1e-6
    evaluate(f"pruned {amount:.0%} (global magnitude)", pruned, note=f"sparsity {sparsity(pruned):.3f}")
per_layer = pd.Series({n: float((m.weight == 0).float().mean()) for n, m in pruned.named_modules()
                       if isinstance(m, (nn.Conv2d, nn.Linear))})
ax = per_layer.plot.bar(figsize=(9, 2.5), title=f"zeros per layer after {S.prune_amounts[-1]:.0%} global pruning")
ax.set_xticklabels([]); ax.set_xlabel("layers, input to output"); plt.show()
pd.DataFrame(rows).set_index("method").round(4).tail(len(S.prune_amounts))

# %% [markdown]
# Read the bar chart before the table: a global threshold prunes layers unevenly, and the layers with many small
# weights lose the most (the bars show which). The cosine column then shows how much of the
# embedding survives; the verdicts of section 6 say whether the accuracy moved more than the test set's noise.

# %% [markdown]
# ## 6. Knowledge distillation into a MobileFaceNet student
#
# A student does not need identity labels to learn from a teacher: it is trained to **reproduce the teacher's
# embeddings**, $\mathcal L = 1 - \cos(f_s(x), f_t(x))$ (plus an optional MSE on the unit vectors), on any face
# the teacher can embed. The teacher's embeddings are computed once; the student (MobileFaceNet, `student`
# preset, depthwise convolutions) sees the same chips resized to `student_size` (`ChipInput` keeps the teacher's
# input convention, so latencies compare like with like). It trains on people outside the evaluated folds (and
# their mirror images, with the teacher's embeddings of the mirrored chips) and is then evaluated like every
# other row. The teacher here is dlib's network; FaceNet (section 7) is compressed by quantisation only.
#
# One trap, measured below: dlib's descriptors are not centred. All faces share a large common component, so
# even two *different* people have a high cosine, and a "student" that outputs the same vector, the mean
# $\mu$, for every face reaches a high cosine to the teacher (both printed below) while telling nobody apart.
# Distilling the **centred** teacher embeddings
# $f_t(x) - \mu$ ($\mu$ = their mean over the training chips) makes the loss measure the part that separates
# people; the teacher's own accuracy with centred embeddings is printed beside it.

# %%
t = time.perf_counter()
train_x = torch.cat([train_chips, train_chips.flip(-1)])  # chips and their mirror images
teacher_train = embed(teacher, train_x)  # (2N, 128)
center = teacher_train.mean(0)  # (128,) the common component of all faces
targets = teacher_train - center
ref_centered = REF["emb"] - center  # the teacher's evaluation embeddings, centred
impostor = ~is_same
raw_cos = cosine_scores(REF["emb"][pair_a[impostor]].numpy(), REF["emb"][pair_b[impostor]].numpy()).mean()
cen_cos = cosine_scores(ref_centered[pair_a[impostor]].numpy(), ref_centered[pair_b[impostor]].numpy()).mean()
teacher_centered = verification(ref_centered)
const_cos = float(F.cosine_similarity(center[None], REF["emb"], dim=1).mean())
print(f"mean cosine of impostor pairs: raw descriptors {raw_cos:.3f}, centred {cen_cos:.3f}; a constant output mu "
      f"has a mean cosine of {const_cos:.3f} to the teacher; teacher k-fold raw {base['kfold_acc']:.4f}, centred "
      f"{teacher_centered['kfold_acc']:.4f}")
assert cen_cos < raw_cos
s_emb = torch.randn(4, 128)
by_hand = (1 - (F.normalize(s_emb, dim=1) * F.normalize(teacher_train[:4], dim=1)).sum(1)).mean()
assert torch.allclose(EmbeddingDistillLoss()(s_emb, teacher_train[:4]), by_hand)

# %% [markdown]
# The student trains through `fit` on the centred targets, with a tenth of the chips (and their mirrors) held out
# for the validation curve. Look at the cosine to the teacher before and after, and whether the held-out curve
# follows the training curve.

# %%
torch.manual_seed(seed)
student = ChipInput(create_embedding(S.student, image_size=S.student_size, embedding_dim=teacher_train.shape[1]),
                    S.student_size)
cos_before = mean_cosine(embed(student.eval()), ref_centered)
n_val = max(2, len(train_chips) // 10)
val_rows = torch.cat([torch.arange(n_val), len(train_chips) + torch.arange(n_val)])  # held-out chips and mirrors
rest_rows = torch.arange(n_val, len(train_chips))
train_rows = torch.cat([rest_rows, len(train_chips) + rest_rows])
train_set = torch.utils.data.TensorDataset(train_x[train_rows], targets[train_rows])
val_set = torch.utils.data.TensorDataset(train_x[val_rows], targets[val_rows])
history = fit(student, train_set, val_set, loss_fn=EmbeddingDistillLoss(), metrics={"cosine": mean_cosine},
              epochs=S.distill_epochs, batch_size=32, lr=3e-3, scheduler="cosine", weight_decay=5e-4,
              optimizer="adamw", device=DEVICE, seed=seed, progress=False)
student = student.cpu().eval()
t_distill = time.perf_counter() - t
stu = evaluate(f"distilled {S.student} @{S.student_size}px", student, ref=ref_centered,
              note=f"{count_parameters(student) / 1e6:.2f} M parameters, {len(train_set)} training chips; "
                   "cos_to_fp32: to the centred teacher")
print(f"distillation: {S.distill_epochs} epochs on {len(train_set)} chips in {t_distill:.0f} s; cosine to the teacher "
      f"on the evaluation chips {cos_before:.3f} before, {stu['cos_to_fp32']:.3f} after; val cosine "
      f"{history.last('val_cosine'):.3f}")
if PROFILE != "smoke" and not fk.profiles.dry_run():  # trained at full size
    assert stu["cos_to_fp32"] > cos_before + 0.05 and history["train_loss"][-1] < history["train_loss"][0]

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(history["epoch"], history["train_loss"], "o-", label="train")
ax.plot(history["epoch"], history["val_loss"], "s-", label="held-out chips")
ax.set(xlabel="epoch", ylabel="1 - cos(student, teacher)", title="distillation")
ax.legend(); plt.show()

# %% [markdown]
# ### The compression table
#
# `cos_to_fp32` is the mean cosine of each model's embeddings to the fp32 teacher's on the evaluation chips;
# `drop_pts` is the fall in k-fold accuracy in percentage points; `speedup` is the batch-1 latency of fp32
# divided by the method's. Timings on a shared machine are noisy (medians and round-robin timing help); the
# accuracy columns are exact for the pairs evaluated (all of LFW's at the `cpu` and `gpu` profiles), and whether a
# difference is larger than the test set's noise is the next subsection's paired verdict.

# %% [markdown]
# The latency of every model of the table, timed together. Look at two columns: `batch1_ms` (one query, what a
# user waits for) and the throughput at a batch (what an enrolment job pays). A method can win one and lose the
# other: batching amortises per-call overheads, so the ranking at batch 1 need not hold at a batch.

# %%
THREADS = latency_threads or torch.get_num_threads()


def timed(models: dict, example: torch.Tensor = EXAMPLE, warmup: int = 2, seconds: float = S.latency_seconds) -> dict:
    """compare_latency with THREADS intra-op threads (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return compare_latency(models, example, batch_size=S.latency_batch, warmup=warmup, rounds=S.latency_repeats,
                               max_seconds=seconds)
    finally:
        torch.set_num_threads(before)


t = time.perf_counter()
lat = timed(MODELS)
for r in rows:
    r["batch1_ms"], r[f"ips@{S.latency_batch}"] = lat[r["method"]].batch1_ms, lat[r["method"]].throughput_ips
base = rows[0]
print(f"latencies measured in {time.perf_counter() - t:.0f} s")
table = pd.DataFrame(rows).set_index("method")
table["drop_pts"] = 100 * (base["kfold_acc"] - table["kfold_acc"])
table["speedup"] = base["batch1_ms"] / table["batch1_ms"]
table["size_ratio"] = table["size_mb"] / base["size_mb"]
print(f"{len(is_same)} pairs of folds {S.eval_folds}; TAR at FAR={S.far}; latency: median of {S.latency_repeats} "
      f"calls, {THREADS} thread(s)")
display_cols = ["size_mb", "size_ratio", "batch1_ms", "speedup", f"ips@{S.latency_batch}", "cos_to_fp32",
                "tar_at_far", "kfold_acc", "drop_pts", "note"]
table[display_cols].round(4)

# %% [markdown]
# The same table as a picture: accuracy against batch-1 latency (the best methods sit at the top left), and the
# size on disk. Pruned models sit on top of fp32: same size, same latency.

# %% tags=["key-figure"]
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
ok = table.dropna(subset=["kfold_acc"])
for name, r in ok.iterrows():
    axes[0].scatter(r["batch1_ms"], 100 * r["kfold_acc"], s=30 + 40 * r["size_mb"])
    axes[0].annotate(name, (r["batch1_ms"], 100 * r["kfold_acc"]), fontsize=7)
axes[0].set(xscale="log", xlabel="batch-1 latency (ms, log)", ylabel="k-fold accuracy (%)",
            title="accuracy against latency (marker area ~ size)")
table["size_mb"].plot.barh(ax=axes[1], title="state dict on disk (MB)")
plt.tight_layout(); plt.show()

# %%
s8 = table.loc["static int8 (conv + linear)"]
record("fp32_kfold_acc", base["kfold_acc"], key=True)
record("fp32_batch1_ms", base["batch1_ms"], unit="ms")
record("static_int8_kfold_acc", s8["kfold_acc"], key=True)
record("static_int8_speedup", s8["speedup"], unit="x", key=True)
record("static_int8_size_ratio", s8["size_ratio"])
record("bf16_speedup", table.loc["bf16 (weights + compute)", "speedup"], unit="x")
record("fp16_speedup", table.loc["fp16 (weights + compute)", "speedup"], unit="x")
record("student_kfold_acc", stu["kfold_acc"])
record("student_speedup", table.loc[stu["method"], "speedup"], unit="x")
pr = table.loc[f"pruned {S.prune_amounts[-1]:.0%} (global magnitude)"]
record("pruned_max_speedup", pr["speedup"], unit="x")
assert all(np.isfinite(table[c]).all() for c in ("size_mb", "batch1_ms", "cos_to_fp32"))
assert pr["size_ratio"] > 0.95  # zeros stored densely: no smaller on disk

# %% [markdown]
# ### Each method against fp32, with a verdict
#
# The table's `drop_pts` is a difference of two accuracies on the same pairs; whether it is larger than the noise
# of this test set is a paired question. For each method with embeddings of every evaluation chip: McNemar's exact
# test and a paired bootstrap over people of the k-fold accuracy difference (`compare_correct`), and a paired
# bootstrap over people of the AUC difference (`compare_scores`). Look at the `low` and `high` columns: a method
# "costs accuracy" only when its whole interval lies below zero.

# %%
def versus_fp32(method: str) -> dict:
    names = (method, "fp32")
    return {"k-fold accuracy": st.compare_correct(CORRECT[method], CORRECT[fp32_name], names=names, groups=pair_person,
                                                  n_boot=S.n_boot, seed=seed, unit="pairs"),
            "AUC": st.compare_scores(SCORES[method], SCORES[fp32_name], is_same, metric="auc", groups=pair_person,
                                     names=names, n_boot=S.n_boot, seed=seed)}


t = time.perf_counter()
verdicts = {m: versus_fp32(m) for m in CORRECT if m != fp32_name}
verdict_table = pd.DataFrame([{"metric": k, **v.row} for vs in verdicts.values() for k, v in vs.items()])
print(f"{len(verdicts)} methods against fp32 on {len(is_same)} pairs of {len(set(pair_person))} people "
      f"({time.perf_counter() - t:.0f} s)")
display(verdict_table.drop(columns=["B"]).round(4))
v8 = verdicts["static int8 (conv + linear)"]["k-fold accuracy"]
fk.notebook.say(f"Static int8 against fp32: {v8.text}")
assert v8.n == len(is_same)
if REAL and PROFILE != "smoke" and not fk.profiles.dry_run():
    assert v8.difference.low > -0.01, "static int8 should cost at most about a point of accuracy"

# %% [markdown]
# How to read the verdicts. McNemar's test looks only at the **discordant** pairs, those one model gets right and
# the other wrong; pairs both get right (almost all of them, for a model near the top of LFW) say nothing about
# which is better. A method whose embeddings have a cosine of nearly $1$ to fp32's changes few decisions, so it
# has few discordant pairs and a narrow interval around zero: "no detectable difference" here means the two
# models disagree on too few pairs for the difference to be told from chance, and the interval bounds how large
# a real difference could be. The AUC row looks at the whole ranking of scores instead of the decisions at one
# threshold, so it can detect a shift that moves no pair across the threshold. The paired bootstrap resamples
# people, not pairs: pairs of one person share images and rise and fall together.

# %% [markdown]
# ## 7. A second model: FaceNet at int8 and bf16
#
# Does what held for dlib's ResNet hold for another architecture? **FaceNet** (`facekit.pretrained.load_facenet`:
# Sandberg's Inception-ResNet-v1 trained on CASIA-WebFace, converted from its frozen TensorFlow graph, chapter 10)
# takes 160x160 RGB crops standardised as $(x - 127.5)/128$ (`standardize_faces`) and returns 512-d unit vectors.
# Its photo pipeline is chapter 10's: MTCNN finds every face, the one nearest the image centre is cropped with a
# margin (`facekit.pretrained.face_crops`, detections cached in `$FACEKIT_CACHE`). It is a quantisation subject
# only: the distillation of section 6 uses dlib's network as its teacher.
#
# Two things differ from dlib's network:
#
# - every convolution of a `BasicConv2d` is followed by a `BatchNorm2d` (and the 512-d bottleneck `Linear` by a
#   `BatchNorm1d`). In eval mode a batch norm is a per-channel affine map, so it can be **folded** into the layer
#   before it: $w' = w\,\gamma/\sqrt{\sigma^2+\epsilon}$, $b' = (b - \mu)\,\gamma/\sqrt{\sigma^2+\epsilon} + \beta$
#   (`facekit.compress.fold_batchnorm`; the outputs must not change, asserted). `static_int8` wraps each conv in
#   its own quantise/dequantise pair, so an unfolded batch norm runs in float after every int8 convolution; folded,
#   its offset is inside the int8 convolution and the observer sees the range the layer really produces. We
#   quantise both versions (the `smoke` profile only the folded one) to measure what folding buys;
# - the residual branches are concatenated and scaled in float between the int8 convolutions, as dlib's adds are.
#
# FaceNet is evaluated on a subset of the **same** LFW pairs as dlib (the first `fn_pairs_per_fold` of each
# evaluated fold's pairs, half genuine), and its int8 observers are calibrated on MTCNN crops of the same people
# outside the evaluated folds that calibrate dlib's. dlib's rows are scored again on that subset (their embeddings,
# sizes and latencies come from the sections above), so the two models share one table. Without LFW, the synthetic
# chips resized to 160 pixels stand in for the crops (MTCNN is skipped).

# %%
from facekit.compress import fold_batchnorm
from facekit.pretrained import face_crops, load_facenet, standardize_faces

try:
    facenet = load_facenet()  # converted from the frozen graph once, then read from $FACEKIT_CACHE
except (ImportError, FileNotFoundError) as err:
    facenet = None
    print("FaceNet skipped (section 7):", err)
FN_OK = facenet is not None
fn_half = max(1, S.fn_pairs_per_fold // 2)
fn_pairs = np.concatenate([np.r_[np.flatnonzero((pair_fold == k) & is_same)[:fn_half],
                                 np.flatnonzero((pair_fold == k) & ~is_same)[:fn_half]] for k in np.unique(pair_fold)])
fn_rows = np.unique(np.r_[pair_a[fn_pairs], pair_b[fn_pairs]])  # the evaluation images these pairs use
fn_pos = np.full(len(eval_chips), -1)
fn_pos[fn_rows] = np.arange(len(fn_rows))
fn_a, fn_b, fn_same = fn_pos[pair_a[fn_pairs]], fn_pos[pair_b[fn_pairs]], is_same[fn_pairs]
fn_folds = [np.flatnonzero(pair_fold[fn_pairs] == k) for k in np.unique(pair_fold[fn_pairs])]
fn_person = pair_person[fn_pairs]

# %% [markdown]
# Three helpers: FaceNet's inputs (MTCNN crops, or the synthetic chips resized), its embeddings, and the
# verification of the FaceNet pair subset, with the per-pair outcomes kept for the paired tests.

# %%


def facenet_inputs(paths=None, chips=None) -> tuple[torch.Tensor, float]:
    """(N, 3, 160, 160) standardised FaceNet inputs and the fraction of images where MTCNN found a face."""
    if REAL:
        crops, found, _ = face_crops(paths)  # (N, 160, 160, 3) uint8, the face nearest the centre
        return standardize_faces(torch.from_numpy(crops).permute(0, 3, 1, 2)), float(found.mean())
    x = F.interpolate(chips.float(), size=160, mode="bilinear", align_corners=False)  # synthetic: no detector
    return standardize_faces(x.clamp(0, 255)), float("nan")


def fn_embed(model, x) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(b) for b in x.split(BATCH)]).float()  # (N, 512)


def fn_verification(emb: torch.Tensor, key=None) -> dict:
    """TAR@FAR and k-fold accuracy of the FaceNet pair subset from the embeddings of its images."""
    scores = cosine_scores(emb[fn_a].numpy(), emb[fn_b].numpy())
    kfold = kfold_accuracy(scores, fn_same, folds=fn_folds)
    if key is not None:
        correct = np.zeros(len(scores), bool)
        for f, thr in zip(fn_folds, kfold.thresholds):
            correct[f] = (scores[f] > thr) == fn_same[f]
        FN_SCORES[key], FN_CORRECT[key] = scores, correct
    return {"tar_at_far": tar_at_far(scores, fn_same, (S.far,))[0].tar, "kfold_acc": kfold.mean}


FN_SCORES, FN_CORRECT = {}, {}

# %% [markdown]
# FaceNet's crops, its batch norms folded (the embeddings must not change), and its compressed versions.

# %%
if FN_OK:
    t = time.perf_counter()
    fn_x, fn_found = facenet_inputs([eval_paths[i] for i in fn_rows] if REAL else None, eval_chips[fn_rows])
    fn_calib, _ = facenet_inputs(calib_paths[: S.fn_calib_images] if REAL else None,
                                 calib_chips[: S.fn_calib_images])
    t_crops = time.perf_counter() - t
    n_bn = sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in facenet.modules())
    fn_emb = {"fp32": fn_embed(facenet, fn_x)}
    fn_folded, n_folded = fold_batchnorm(facenet)
    n_check = min(8, len(fn_x))
    fold_diff = float((fn_embed(fn_folded, fn_x[:n_check]) - fn_emb["fp32"][:n_check]).abs().max())
    t = time.perf_counter()
    fn_models = {"fp32": facenet}
    if S.fn_unfolded:
        fn_models["static int8, batch norms in float"] = static_int8(facenet, fn_calib.split(16), backend=quant_backend)
    fn_models.update({
        "static int8, batch norms folded": static_int8(fn_folded, fn_calib.split(16), backend=quant_backend),
        "dynamic int8 (Linear)": dynamic_int8(facenet),
        "bf16 (weights + compute)": cast_precision(facenet, "bf16"),
    })
    t_quant = time.perf_counter() - t
    print(f"FaceNet: {count_parameters(facenet) / 1e6:.2f} M parameters; {len(fn_pairs)} of the {len(is_same)} "
          f"pairs, {len(fn_rows)} images (MTCNN found a face in {fn_found:.1%}), {len(fn_calib)} calibration crops, "
          f"made in {t_crops:.1f} s; {n_folded} of {n_bn} batch norms folded, max |difference| of the embeddings "
          f"{fold_diff:.1e}; quantised in {t_quant:.1f} s; Linear layers hold {layer_coverage(facenet):.1%} "
          f"of the weights")
    assert n_folded == n_bn and fold_diff < 1e-4

# %% [markdown]
# Every FaceNet version embeds the same crops; the latency is timed as in section 6 (one 160x160 crop, the same
# threads, round-robin, fewer timed calls of a slow model), dlib's rows reuse section 6's timings of a 150x150
# chip. `speedup`, `size_ratio` and `drop_pts` compare each row with **its own model's** fp32 row.

# %%
if FN_OK:
    t = time.perf_counter()
    fn_emb.update({name: fn_embed(m, fn_x) for name, m in fn_models.items() if name not in fn_emb})
    fn_lat = timed(fn_models, fn_x[:1], warmup=S.timing_warmup, seconds=S.latency_seconds / 4)  # ~4x dlib's cost
    fn_rows_out = [{"model": "FaceNet", "method": name, "size_mb": state_dict_mb(m),
                    "batch1_ms": fn_lat[name].batch1_ms, f"ips@{S.latency_batch}": fn_lat[name].throughput_ips,
                    "cos_to_fp32": float(F.cosine_similarity(fn_emb[name], fn_emb["fp32"], dim=1).mean()),
                    **fn_verification(fn_emb[name], ("FaceNet", name))} for name, m in fn_models.items()]
    dlib_methods = {"fp32": base["method"], "static int8": "static int8 (conv + linear)",
                    **{m: m for m in ("dynamic int8 (Linear)", "bf16 (weights + compute)")}}
    dlib_rows = [{"model": "dlib ResNet", "method": short, **table.loc[long, ["size_mb", "batch1_ms",
                                                                             f"ips@{S.latency_batch}"]].to_dict(),
                  "cos_to_fp32": float(F.cosine_similarity(EMB[long][fn_rows], REF["emb"][fn_rows], dim=1).mean()),
                  **fn_verification(EMB[long][fn_rows], ("dlib ResNet", short))}
                 for short, long in dlib_methods.items()]
    fn_table = pd.DataFrame(dlib_rows + fn_rows_out).set_index(["model", "method"])
    print(f"FaceNet embedded and timed in {time.perf_counter() - t:.1f} s")

# %% [markdown]
# One table for both models; compare FaceNet's static int8 rows (batch norms folded and in float) for speed, and
# each model's int8 row with its own fp32 row for the cosine and the accuracy.

# %%
if FN_OK:
    fp32_of = fn_table.xs("fp32", level="method")
    own = fn_table.index.get_level_values("model")
    fn_table["size_ratio"] = fn_table["size_mb"].values / fp32_of.loc[own, "size_mb"].values
    fn_table["speedup"] = fp32_of.loc[own, "batch1_ms"].values / fn_table["batch1_ms"].values
    fn_table["drop_pts"] = 100 * (fp32_of.loc[own, "kfold_acc"].values - fn_table["kfold_acc"].values)
    print(f"{len(fn_pairs)} LFW pairs ({fn_same.sum()} genuine) of folds {S.eval_folds}; TAR at FAR={S.far}")
    display(fn_table[["size_mb", "size_ratio", "batch1_ms", "speedup", f"ips@{S.latency_batch}", "cos_to_fp32",
                      "tar_at_far", "kfold_acc", "drop_pts"]].round(4))

# %%
if FN_OK:
    fn = fn_table.loc["FaceNet"]
    f8 = fn.loc["static int8, batch norms folded"]
    u8 = fn.loc["static int8, batch norms in float"] if S.fn_unfolded else f8  # smoke: the folded model only
    record("facenet_fp32_kfold_acc", fn.loc["fp32", "kfold_acc"])
    record("facenet_static_int8_kfold_acc", f8["kfold_acc"])
    record("facenet_static_int8_drop_pts", f8["drop_pts"], unit="pts")
    record("facenet_static_int8_cos", f8["cos_to_fp32"])
    record("facenet_static_int8_size_ratio", f8["size_ratio"])
    record("facenet_static_int8_speedup", f8["speedup"], unit="x")
    if S.fn_unfolded:
        record("facenet_fold_int8_speedup", u8["batch1_ms"] / f8["batch1_ms"], unit="x")
    record("facenet_bf16_speedup", fn.loc["bf16 (weights + compute)", "speedup"], unit="x")
    assert np.isfinite(fn[["size_mb", "batch1_ms", "cos_to_fp32"]].to_numpy(float)).all()
    assert f8["cos_to_fp32"] > 0.95 and u8["cos_to_fp32"] > 0.95
    assert fn.loc["dynamic int8 (Linear)", "cos_to_fp32"] > 0.999
    assert fn.loc["bf16 (weights + compute)", "cos_to_fp32"] > 0.99
    assert f8["size_ratio"] < 0.35 and fn.loc["bf16 (weights + compute)", "size_ratio"] < 0.55
    if PROFILE != "smoke" and REAL:  # enough pairs for the accuracy to mean something
        assert f8["cos_to_fp32"] > 0.98 and abs(f8["drop_pts"]) < 3.0

# %% [markdown]
# Each compressed row against its own model's fp32 row, on the FaceNet pair subset: McNemar and a paired bootstrap
# over people, as for dlib's models in section 6. Both models are near the top of their accuracy range on these
# pairs, so expect few discordant pairs: the interval, not the point estimate, says what the data can resolve.

# %%
if FN_OK:
    fn_verdicts = {(model, name): st.compare_correct(FN_CORRECT[(model, name)], FN_CORRECT[(model, "fp32")],
                                                     names=(f"{model} {name}", f"{model} fp32"), groups=fn_person,
                                                     n_boot=S.n_boot, seed=seed, unit="pairs")
                   for model, name in FN_CORRECT if name != "fp32"}
    display(pd.DataFrame([v.row for v in fn_verdicts.values()]).round(4))
    fig, ax = plt.subplots(figsize=(6, 3))
    for model, part in fn_table.groupby(level="model"):
        ax.scatter(part["batch1_ms"], 100 * part["kfold_acc"], s=20 + 2 * part["size_mb"], label=model)
        for (m, name), r in part.iterrows():
            ax.annotate(name, (r["batch1_ms"], 100 * r["kfold_acc"]), fontsize=6)
    ax.set(xscale="log", xlabel="batch-1 latency (ms, log)", ylabel="k-fold accuracy (%)",
           title=f"{len(fn_pairs)} LFW pairs: two models (marker area ~ size)")
    ax.legend(fontsize=7); plt.show()

# %% [markdown]
# ## 8. ONNX export and onnxruntime
#
# ONNX is the exchange format most inference engines read (onnxruntime, TensorRT, OpenVINO, mobile runtimes).
# `facekit.compress.export_onnx` uses torch's TorchScript-based exporter (fast, works in torch `2.11` and `2.14`, a
# dynamic batch axis); `exporter="dynamo"` uses `torch.export`. The exported graph must compute the same
# function: we assert the largest absolute difference of the descriptors over the evaluation chips is below
# $10^{-4}$, and compare latencies.
#
# Why can another runtime be faster with the same weights? onnxruntime optimises the whole graph before running it:
# it fuses each convolution with the operations after it, chooses a memory layout once, and skips Python between
# layers. PyTorch's eager mode runs one operator at a time. The difference matters most at batch 1, where the
# per-operator overhead is a large share of the time.

# %%
onnx_dir = Path(tempfile.mkdtemp(prefix="facekit_onnx_"))
t = time.perf_counter()
onnx_path = export_onnx(teacher, EXAMPLE, onnx_dir / "dlib_resnet.onnx")
t_export = time.perf_counter() - t
ort_teacher = OnnxEmbedder(onnx_path, threads=THREADS)
check = eval_chips[: min(len(eval_chips), 64)].float()
max_diff = onnx_max_abs_diff(teacher, ort_teacher, check)
onnx_lat = timed({"PyTorch fp32": teacher, "onnxruntime fp32": ort_teacher})  # the same thread count for both
onnx_row = pd.DataFrame({k: [v.batch1_ms, v.throughput_ips] for k, v in onnx_lat.items()},
                        index=["batch1_ms", f"ips@{S.latency_batch}"])
print(f"exported in {t_export:.1f} s to {onnx_path.stat().st_size / 1e6:.1f} MB; max |torch - onnxruntime| over "
      f"{len(check)} chips: {max_diff:.2e}")
record("onnx_max_abs_diff", max_diff)
record("onnx_speedup", onnx_lat["PyTorch fp32"].batch1_ms / onnx_lat["onnxruntime fp32"].batch1_ms, unit="x")
assert max_diff < 1e-4
onnx_row.round(2)

# %% [markdown]
# ## 9. A working face search: enrolment, top-k, and open-set rejection
#
# A search system **enrols** a gallery (a few images of each known person, their embeddings stored with the
# identity) and answers a probe with the most similar gallery entries. Closed-set, the question is rank-1 /
# rank-5: is the right person first, or among the first five? Deployed, most probes are **not** enrolled
# (passers-by at a camera), so the system reports the top-1 identity only when its score reaches a threshold,
# chosen so that at most a target fraction of unknown people trigger a **false alarm**. That threshold is
# set on **held-out** unknown people, then measured on other unknown people; the known probes give the
# **detection-and-identification rate** (DIR: right person *and* above the threshold).
#
# The index is faiss's exact inner-product index on L2-normalised embeddings (`IndexFlatIP`); the torch
# backend (one matrix product) must return the same neighbours. We run the search with the fp32 teacher and
# with its static int8 version.

# %%
t = time.perf_counter()
need = S.enrol_per_person + S.probes_per_person
if REAL:
    by_person = {d.name: sorted(d.glob("*.jpg")) for d in sorted(images_dir.iterdir()) if d.is_dir()}
    all_people = list(by_person)
    many = [n for n in all_people if len(by_person[n]) >= need]
    known = sorted(rng.choice(many, S.known_people, replace=False).tolist())
    rest = [n for n in all_people if n not in set(known)]
    unknown = rng.choice(rest, S.unknown_people, replace=False).tolist()
    paths, labels = [], []
    for n in known:
        picked = by_person[n][:need]
        paths += picked
        labels += [n] * need
    unknown_paths = [by_person[n][rng.integers(len(by_person[n]))] for n in unknown]
    search_chips = lfw_chips(paths + unknown_paths)
    labels = np.array(labels + unknown)
else:
    search_chips, labels = synthetic_chips(S.known_people + S.unknown_people, need, 20_000)
    keep = np.r_[np.flatnonzero(labels < 20_000 + S.known_people),
                 np.flatnonzero(labels >= 20_000 + S.known_people)[::need]]  # one image of each unknown person
    search_chips, labels = search_chips[keep], labels[keep]
n_known_imgs = S.known_people * need
slot = np.tile(np.arange(need), S.known_people)  # image number of each known person's images
gallery_idx = np.flatnonzero(slot < S.enrol_per_person)
probe_idx = np.flatnonzero(slot >= S.enrol_per_person)
unknown_idx = np.arange(n_known_imgs, len(labels))
calib_unknown, test_unknown = unknown_idx[: len(unknown_idx) // 2], unknown_idx[len(unknown_idx) // 2:]
print(f"gallery: {S.known_people} people x {S.enrol_per_person} images; probes: {len(probe_idx)} of enrolled people, "
      f"{len(calib_unknown)} unknown people to set the threshold, {len(test_unknown)} other unknown people to test it "
      f"({time.perf_counter() - t:.1f} s)")

# %% [markdown]
# One function runs the whole search for one set of embeddings: enrol the gallery, search the known probes (rank-1
# and top-k), set the threshold on the held-out unknown people for the target false alarm rate, and measure the
# other unknown people and the detection-and-identification rate at it.

# %%
S_FAR = max(S.far, 2 / max(1, len(calib_unknown)))  # target false alarm rate: >= 2 false alarms observable


def run_search(emb: torch.Tensor, backend: str = "auto") -> dict:
    index = FaceIndex(emb.shape[1], backend=backend)
    index.add(emb[gallery_idx], labels[gallery_idx])
    k = min(5, len(index))
    known_hits = index.search(emb[probe_idx], k=k)
    top1_correct = known_hits.labels[:, 0] == labels[probe_idx]
    top5 = (known_hits.labels == labels[probe_idx][:, None]).any(1)
    calib_scores = index.search(emb[calib_unknown], k=1).scores[:, 0]
    test_scores = index.search(emb[test_unknown], k=1).scores[:, 0]
    threshold = threshold_at_far(calib_scores, S_FAR)
    r = open_set_rates(known_hits.scores[:, 0], top1_correct, test_scores, threshold)
    return {"backend": index.backend, "rank1": r.rank1, f"top{k}": float(top5.mean()), "threshold": threshold,
            "calib_false_alarm": float(np.mean(calib_scores >= threshold)), "test_false_alarm": r.false_alarm_rate,
            "DIR": r.dir, "hits": known_hits, "known_scores": known_hits.scores[:, 0], "unknown_scores": test_scores,
            "correct": top1_correct}


# %%
search_emb = {"fp32": embed(teacher, search_chips), "static int8": embed(q_static, search_chips)}
results = {name: run_search(emb) for name, emb in search_emb.items()}
exact = run_search(search_emb["fp32"], backend="torch")
same_topk = bool(np.array_equal(exact["hits"].indices, results["fp32"]["hits"].indices))
print(f"index backend: {results['fp32']['backend']} (faiss installed: {faiss_available()}); "
      f"torch exact search returns the same top-k: {same_topk}; target false alarm rate {S_FAR:.3f}")
assert same_topk or not faiss_available()
search_table = pd.DataFrame({n: {k: v for k, v in r.items() if not isinstance(v, (np.ndarray,)) and k != "hits"}
                             for n, r in results.items()}).T
search_table

# %% [markdown]
# The histogram shows why the threshold works: enrolled people's best matches sit high, unknown people's best
# matches lower, and the threshold set on held-out unknown people cuts between them. Look at the overlap: those
# are the false alarms and the missed enrolled people.

# %%
r32 = results["fp32"]
fig, ax = plt.subplots(figsize=(6, 3.2))
bins = np.linspace(-0.2, 1, 40)
ax.hist(r32["known_scores"][r32["correct"]], bins, alpha=0.6, density=True, label="known probe, right top-1")
ax.hist(r32["unknown_scores"], bins, alpha=0.6, density=True, label="unknown probe (test)")
ax.axvline(r32["threshold"], color="k", ls="--", label=f"threshold (false alarm {S_FAR:.2f} on held-out)")
ax.set(xlabel="top-1 cosine similarity", ylabel="density", title="open-set search, fp32 teacher")
ax.legend(fontsize=7); plt.show()
record("search_rank1", r32["rank1"])
record("search_dir", r32["DIR"])
record("search_test_false_alarm", r32["test_false_alarm"])
record("search_int8_rank1", results["static int8"]["rank1"])
search_verdict = st.compare_correct(results["static int8"]["correct"], r32["correct"], names=("static int8", "fp32"),
                                    groups=labels[probe_idx], n_boot=S.n_boot, seed=seed, unit="probes")
fk.notebook.say(f"Rank-1 on the same {len(probe_idx)} probes, static int8 against fp32: {search_verdict.text}")
assert r32["calib_false_alarm"] <= S_FAR + 1e-12  # by construction of the threshold
assert 0.0 <= r32["DIR"] <= r32["rank1"] <= 1.0
if PROFILE != "smoke" and REAL:
    assert r32["rank1"] > 0.8 and abs(results["static int8"]["rank1"] - r32["rank1"]) < 0.05
    assert r32["test_false_alarm"] < S_FAR + 0.1  # other unknown people: close to the target, not exactly on it

# %% [markdown]
# ## Exercises
#
# Graded by difficulty: ★ a few minutes, ★★ a little thought or code, ★★★ an open design question. Each has a
# solution in a folded cell below it (click to expand); try first. The check cells tell you whether you are right.
#
# **Exercise 1 ★ (predict, then run).** Section 3 quantised conv1's weights per tensor with 256 levels. With 16
# levels (4 bits) over the same range, how large can the worst rounding error be, as a multiple of the 8-bit
# worst case? Predict, then compute the 4-bit scale, zero point and the largest error $\max|w - \hat w|$.

# %%
ex1 = None  # the largest |w - w_hat| with 16 levels

# %% tags=["solution"] jupyter={"source_hidden": true}
scale4 = (hi - lo) / 15
zp4 = int(round(-lo / scale4))
w_hat4 = (torch.clamp(torch.round(w / scale4) + zp4, 0, 15) - zp4) * scale4
ex1 = float((w - w_hat4).abs().max())
print(f"4-bit scale {scale4:.2e} (8-bit {scale:.2e}); worst error {ex1:.2e}, {ex1 / err_tensor:.1f}x the 8-bit one")
# The worst error is at most half a step, and the step grows by 255 / 15 = 17x: the bound grows 17x (the measured
# worst case need not sit exactly on the bound).

# %%
fk.notebook.check("worst 4-bit rounding error", ex1, float((w - torch.fake_quantize_per_tensor_affine(
    w, (hi - lo) / 15, int(round(-lo / ((hi - lo) / 15))), 0, 15)).abs().max()), rtol=1e-6);

# %% [markdown]
# **Exercise 2 ★★ (implement from scratch).** Write symmetric per-channel int8 for a conv weight of shape
# (out, in, kh, kw): one scale per output channel, $s_c = \max|w_c| / 127$, codes $\mathrm{round}(w / s_c)$ in
# $[-127, 127]$, zero point 0. Return the dequantised weights; the check compares them with
# `torch.quantize_per_channel` (section 3's `per_channel`).

# %%
def per_channel_int8(w: torch.Tensor) -> torch.Tensor:
    """(O, I, kh, kw) weights after symmetric per-output-channel int8 quantisation and dequantisation."""
    return None  # your code here

# %% tags=["solution"] jupyter={"source_hidden": true}
def per_channel_int8(w: torch.Tensor) -> torch.Tensor:
    """(O, I, kh, kw) weights after symmetric per-output-channel int8 quantisation and dequantisation."""
    s = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127  # (O, 1, 1, 1)
    return torch.clamp(torch.round(w / s), -127, 127) * s

# %%
fk.notebook.check("per-channel int8", per_channel_int8(w), per_channel.dequantize(), atol=1e-7);

# %% [markdown]
# **Exercise 3 ★★ (implement from scratch).** Fold an eval-mode `BatchNorm2d` into the convolution before it
# (section 7's formula): return the folded weight and bias. The check runs a random conv + batch norm and the folded
# convolution on the same input.

# %%
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of one convolution computing bn(conv(x)) in eval mode."""
    return None  # your code here

# %% tags=["solution"] jupyter={"source_hidden": true}
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of one convolution computing bn(conv(x)) in eval mode."""
    k = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (O,) gamma / sqrt(var + eps)
    b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return conv.weight * k[:, None, None, None], (b - bn.running_mean) * k + bn.bias

# %%
torch.manual_seed(seed)
conv_ex, bn_ex = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
with torch.no_grad():
    bn_ex.running_mean.uniform_(-1, 1); bn_ex.running_var.uniform_(0.5, 2); bn_ex.weight.uniform_(0.5, 1.5)
    x_ex = torch.randn(2, 3, 10, 10)
    w_f, b_f = fold_conv_bn(conv_ex, bn_ex.eval())
    fk.notebook.check("folded conv + bn", F.conv2d(x_ex, w_f, b_f, padding=1), bn_ex(conv_ex(x_ex)), atol=1e-5);

# %% [markdown]
# **Exercise 4 ★★ (change a parameter and explain).** Static int8's observers set each layer's activation range
# from the calibration chips. Calibrate on 2 chips instead of `calib_images` and measure the mean cosine of the
# embeddings of the first 32 evaluation chips to fp32's. What changes, and why would a single unusual calibration
# photo matter more with few chips?

# %%
ex4 = None  # {"2 chips": cosine, "calib_images chips": cosine}

# %% tags=["solution"] jupyter={"source_hidden": true}
few = static_int8(teacher, calib_chips[:2].float().split(32), backend=quant_backend)
ex4 = {"2 chips": mean_cosine(embed(few, eval_chips[:32]), REF["emb"][:32]),
       "calib_images chips": mean_cosine(EMB["static int8 (conv + linear)"][:32], REF["emb"][:32])}
print({k: round(float(v), 5) for k, v in ex4.items()})
# With two chips the observed activation ranges are those of two faces: activations of other faces beyond them
# are clipped and the ones inside get the resolution of a range that may not fit them. More chips give ranges
# that cover typical faces (min/max observers are still sensitive to one outlier; histogram observers are not).

# %%
fk.notebook.check("cosine with the chapter's calibration",
                  ex4["calib_images chips"], mean_cosine(EMB["static int8 (conv + linear)"][:32], REF["emb"][:32]));

# %% [markdown]
# **Exercise 5 ★★★ (open question).** Compare the distilled student of section 6 with its teacher (section 6's
# verdict table). List what limits it here (number of training faces, input resolution, epochs, the loss, the student's width) and design the
# smallest set of runs that would tell which limit matters most. Which comparisons would you make, over how many
# seeds, and on which pairs, to state a verdict?

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# One answer. Hold the evaluation pairs (all 6,000, people outside the training set) and the student fixed, and vary
# one factor at a time from the `cpu` setting: the training faces (people outside the evaluated folds: a few hundred
# chips against all of them, with mirror images), the input side (64 against 112 pixels), the epochs, and the loss
# (cosine on centred embeddings against cosine plus a relational term). Train each with three seeds and compare with
# `st.compare_seeds` on the k-fold accuracy, and the best single run against the teacher with `compare_correct`.
# The factor whose change moves the accuracy most with an interval that excludes zero is the main limit; published
# embedding distillation trains on hundreds of thousands of faces, so the number of faces is the first suspect.

# %% [markdown]
# ## Summary
#
# - **Static int8** is the method built for CPUs: int8 convolution kernels, a file about a quarter of fp32, and
#   embeddings very close to fp32's; it needs a calibration set of real faces. **Dynamic int8** only touches the
#   Linear layers, a tiny share of a conv net.
# - **fp16** and **bf16** halve the weights; whether they are faster depends on the CPU's native support.
# - **Pruning** with dense kernels and dense storage does not shrink the file (asserted) and is not expected to
#   speed it up (the table's ratios say by how much it moved here); it pays with sparse kernels or structured
#   (channel) pruning.
# - **Distillation** gives the smallest, fastest model; how close it gets to the teacher depends on how many
#   faces it learns from.
# - A compressed model is judged against fp32 **on the same pairs**, with a paired test, resampling people.
# - A search system is judged **open-set**: the false alarm rate of people who are not enrolled, at a threshold
#   set on other people, and the detection-and-identification rate it leaves for the enrolled ones.
#
# This run's numbers (ratios of batch-1 latency on this machine, so a run on another CPU reads differently):

# %%
def faster(name: str) -> str:
    return f"{table.loc[name, 'speedup']:.2f}x fp32's batch-1 speed"


def acc(name: str) -> str:
    a = table.loc[name, "kfold_acc"]
    return "not evaluated" if np.isnan(a) else f"k-fold {a:.2%} ({verdicts[name]['k-fold accuracy'].text})"


prune_names = [f"pruned {a:.0%} (global magnitude)" for a in S.prune_amounts]
lines = [f"On {len(is_same)} {'LFW' if REAL else 'synthetic'} pairs the fp32 teacher scores "
         f"k-fold {base['kfold_acc']:.2%} and TAR {base['tar_at_far']:.3f} at FAR {S.far}.",
         f"Static int8: {s8['size_ratio']:.2f} of the size, {faster('static int8 (conv + linear)')}, "
         f"{acc('static int8 (conv + linear)')}, mean cosine to fp32 {s8['cos_to_fp32']:.4f}.",
         f"Dynamic int8 covers {coverage:.1%} of the weights: size ratio "
         f"{table.loc['dynamic int8 (Linear)', 'size_ratio']:.3f}, {faster('dynamic int8 (Linear)')}.",
         f"bf16: {faster('bf16 (weights + compute)')}; fp16 compute: {faster('fp16 (weights + compute)')}; "
         f"fp16 storage with fp32 compute: {acc('fp16 storage, fp32 compute')}.",
         "Pruning: " + "; ".join(f"{n.split(' (')[0]}: {acc(n)}, size ratio {table.loc[n, 'size_ratio']:.2f}, "
                                 f"{faster(n)}" for n in prune_names) + ".",
         f"Distilled student: {table.loc[stu['method'], 'size_ratio']:.3f} of the size, {faster(stu['method'])}, "
         f"{acc(stu['method'])}.",
         f"ONNX: max difference {max_diff:.1e}; onnxruntime at "
         f"{onnx_lat['PyTorch fp32'].batch1_ms / onnx_lat['onnxruntime fp32'].batch1_ms:.2f}x PyTorch's batch-1 speed.",
         f"Search ({S.known_people} enrolled people): rank-1 {r32['rank1']:.1%}; at a threshold for a false alarm rate "
         f"of {S_FAR:.3f} on held-out unknowns, other unknowns raise false alarms at {r32['test_false_alarm']:.1%} and "
         f"enrolled people are found (DIR) at {r32['DIR']:.1%}; with the int8 model rank-1 is "
         f"{results['static int8']['rank1']:.1%} ({search_verdict.text})."]
if FN_OK:
    lines.insert(-2, f"FaceNet on {len(fn_pairs)} of these pairs: fp32 k-fold {fn.loc['fp32', 'kfold_acc']:.2%}; "
                 f"static int8 with folded batch norms: {f8['size_ratio']:.2f} of the size, {f8['speedup']:.2f}x "
                 f"fp32's batch-1 speed, k-fold {f8['kfold_acc']:.2%} "
                 f"({fn_verdicts[('FaceNet', 'static int8, batch norms folded')].text}), mean cosine "
                 f"to fp32 {f8['cos_to_fp32']:.4f}; "
                 + (f"folding the batch norms made the int8 model {u8['batch1_ms'] / f8['batch1_ms']:.2f}x as "
                    "fast as leaving them in float; " if S.fn_unfolded else "") + "bf16: "
                 f"{fn.loc['bf16 (weights + compute)', 'speedup']:.2f}x fp32's speed.")
fk.notebook.say("\n".join("- " + line for line in lines))
_ = record("runtime_s", round(ctx.elapsed(), 1), unit="s")

# %% [markdown]
# ## Pitfalls
#
# - **Comparing accuracies on a saturated test.** When both models are near the top on a few hundred pairs, one
#   pair moves the accuracy by a visible step; compare on all pairs, paired, with an interval.
# - **Calibrating on the test faces.** Static int8's observers (and a student's training set) must use people
#   outside the evaluated folds, or the evaluation is optimistic.
# - **Expecting pruning to shrink or speed up a model.** Zeros stored densely and multiplied by dense kernels cost
#   the same; use sparse formats and kernels, or remove whole channels.
# - **Assuming fp16 is faster on a CPU.** Without native fp16 arithmetic it is emulated and far slower; store in
#   fp16, compute in fp32 or bf16.
# - **Quantising before folding batch norms.** Unfolded batch norms run in float between int8 layers, and the
#   observers see ranges the deployed layer never produces.
# - **Distilling uncentred embeddings.** A constant output already has a high cosine to the teacher; centre the
#   targets so the loss measures what separates people.
# - **Setting a search threshold on the people it is tested on.** Set it on held-out unknown people and measure
#   the false alarm rate on others.
# - **Timing on a loaded machine without medians and round-robin order.** One descheduled thread changes a
#   latency several-fold.
#
# ## Further reading
#
# - B. Jacob et al., *Quantization and training of neural networks for efficient integer-arithmetic-only
#   inference*, CVPR, 2018 (the affine scheme with a zero point).
# - R. Krishnamoorthi, *Quantizing deep convolutional networks for efficient inference: a whitepaper*, arXiv, 2018
#   (per-channel weights, calibration, batch-norm folding).
# - S. Han, H. Mao, W. J. Dally, *Deep compression*, ICLR, 2016 (magnitude pruning and quantisation).
# - G. Hinton, O. Vinyals, J. Dean, *Distilling the knowledge in a neural network*, arXiv, 2015.
# - S. Chen, Y. Liu, X. Gao, Z. Han, *MobileFaceNets: efficient CNNs for accurate real-time face verification on
#   mobile devices*, CCBR, 2018.
# - P. Micikevicius et al., *Mixed precision training*, ICLR, 2018; D. Kalamkar et al., *A study of BFLOAT16 for deep
#   learning training*, arXiv, 2019.
# - D. E. King, *High quality face recognition with deep metric learning*, dlib blog, 2017 (dlib's ResNet, 99.38% on
#   LFW).
# - F. Schroff, D. Kalenichenko, J. Philbin, *FaceNet: a unified embedding for face recognition and clustering*,
#   CVPR, 2015.
# - J. Johnson, M. Douze, H. Jégou, *Billion-scale similarity search with GPUs*, IEEE Transactions on Big Data, 2019
#   (faiss).
# - Q. McNemar, *Note on the sampling error of the difference between correlated proportions or percentages*,
#   Psychometrika, 1947.
