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
# # Chapter 6 — Fine-tuning: testing the transfer-learning claims
#
# The second source article sells a recipe: pretrain a model (it names BERT, ResNet, VGG) with a
# self-supervised task, then fine-tune it for face verification. It claims, without a single measurement:
#
# 1. **fewer labels**: the pretrained model "reaches high accuracy with less data";
# 2. **less time**: it gets there "in a shorter time";
# 3. **a smaller learning rate** is used when fine-tuning "to avoid destroying the pretrained parameters";
# 4. **language models become face recognisers**: fine-tune BERT-Base on LFW pairs.
#
# This chapter measures each claim. Chapter 5 pretrained two backbones without labels (a masked autoencoder on
# the vision transformer, SimCLR on a CNN) and left them on disk; here we also pretrain the classic way (ArcFace
# on labelled people), then fine-tune all of them with ArcFace on **other** people and test verification on a
# third set of people.
#
# ## Learning outcomes
#
# After this chapter you can
#
# 1. freeze part of a network correctly (gradients *and* BatchNorm statistics) and give parts of it their own
#    learning rates, by hand and with `facekit.train`;
# 2. run the four fine-tuning regimes (from scratch, linear probe, partial, full) with warm-up and early stopping,
#    and read their learning curves;
# 3. measure label efficiency and time to a target accuracy over several seeds, and state each claim with a
#    paired verdict from `facekit.stats`;
# 4. measure catastrophic forgetting on the people a backbone was pretrained on;
# 5. transplant transformer blocks between modalities and test, against the right baseline, whether the weights
#    (rather than the architecture) transfer.
#
# ## Prerequisites
#
# - Chapter 5: the MAE ViT and SimCLR CNN checkpoints (this notebook loads them; the report runner runs chapter 5
#   first).
# - Chapter 4: ArcFace, genuine and impostor pairs, AUC and the 10-fold accuracy of the verification protocol.
# - Chapter 1: `facekit.train.fit`, callbacks, learning curves and early stopping; `facekit.stats` and the noise
#   rule (paired comparisons on the same items, and over seeds).
#
# The plan: (1) load the pretrained backbones; (2) four disjoint sets of people and the label fractions; (3)
# freezing and parameter groups by hand; (4) supervised pretraining; (5) the regimes at every label fraction, over
# seeds, with learning curves and time to target; (6) the verdicts; (7) forgetting; (8) the language-model claim;
# then exercises, a summary, pitfalls and further reading.

# %% tags=["parameters"]
profile = "auto"  # smoke | cpu | gpu | auto (auto: $FACEKIT_PROFILE, else gpu if CUDA, else cpu)
seed = 0

# %%
import copy
import importlib
import inspect
import math
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import display
from torch import nn
from torchvision.transforms import v2

import facekit as fk
import facekit.stats as st
from facekit.data import SyntheticFaces, TensorImages, count_pairs, make_pairs
from facekit.losses import ArcFace, MarginClassifier, MarginModel, margin_forward
from facekit.metrics import cosine_scores, verification_report
from facekit.models import embed
from facekit.models.vit import Block
from facekit.pretrain import arch_of, build_arch, load_pretrained
from facekit.reports import record
from facekit.train import (Callback, EarlyStopping, count_trainable, fit, freeze, layer_decay_scales, layer_prefixes,
                           linear_probe, param_groups, predict)

# %% [markdown]
# One set of sizes per profile: `smoke` proves the code runs (its numbers mean nothing), `cpu` is a laptop run of
# at most about ten minutes, `gpu` the full sizes. The label `fractions` are chosen per profile so that the
# smallest still holds at least `MIN_LABEL_PEOPLE` people: a "fraction" of two people says nothing about
# fine-tuning. `seeds` is how many times every fine-tuning run is repeated for the verdicts.

# %%
@dataclass(frozen=True)
class Sizes:
    pretrain_identities: int  # people of the supervised (classic) pretraining, labelled
    pretrain_per_id: int  # their images
    forget_per_id: int  # held-out images of each pretraining person, for the forgetting test
    finetune_identities: int  # other people: 100% of the fine-tuning labels
    finetune_per_id: int
    val_identities: int  # other people again: early stopping and time-to-target
    val_per_id: int
    test_identities: int  # a fourth set of people: the reported verification numbers
    test_per_id: int
    test_pairs: int  # genuine pairs, and as many impostor pairs, on the test people
    pretrain_epochs: int  # supervised pretraining
    fractions: tuple  # label fractions: the share of the fine-tuning people whose labels are used
    epochs: tuple  # the epoch budget at each fraction (early stopping may end a run sooner)
    patience: int  # early stopping: epochs without a better validation accuracy
    batch_size: int
    seeds: int = fk.profiles.count("steps")  # every run is repeated with this many seeds (a verdict needs 3);
    # a loop count, so a dry run caps it like optimiser steps
    n_boot: int  # bootstrap resamples behind every interval
    text_steps: int  # optimiser steps of the character-level masked language model
    text_seq: int  # characters per sequence
    text_batch: int

# %%
ctx = fk.notebook.setup(
    profile, seed=seed,
    smoke=Sizes(pretrain_identities=12, pretrain_per_id=4, forget_per_id=2, finetune_identities=20, finetune_per_id=3,
                val_identities=6, val_per_id=3, test_identities=8, test_per_id=3, test_pairs=20, pretrain_epochs=1,
                fractions=(0.5, 1.0), epochs=(1, 1), patience=2, batch_size=32, seeds=2, n_boot=200, text_steps=4,
                text_seq=32, text_batch=8),
    cpu=Sizes(pretrain_identities=200, pretrain_per_id=10, forget_per_id=3, finetune_identities=200,
              finetune_per_id=6, val_identities=40, val_per_id=4, test_identities=100, test_per_id=5, test_pairs=1000,
              pretrain_epochs=10, fractions=(0.05, 0.2, 1.0), epochs=(40, 20, 8), patience=4, batch_size=64, seeds=3,
              n_boot=1000, text_steps=300, text_seq=64, text_batch=32),
    gpu=Sizes(pretrain_identities=1000, pretrain_per_id=20, forget_per_id=5, finetune_identities=1000,
              finetune_per_id=10, val_identities=100, val_per_id=5, test_identities=300, test_per_id=10,
              test_pairs=3000, pretrain_epochs=30, fractions=(0.01, 0.1, 1.0), epochs=(100, 50, 25), patience=6,
              batch_size=128, seeds=3, n_boot=2000, text_steps=3000, text_seq=128, text_batch=64))
PROFILE, S, DEVICE = ctx.profile, ctx.sizes, ctx.device
FRACTIONS = S.fractions
MIN_LABEL_PEOPLE = 10  # the smallest label fraction must hold at least this many people
SEEDS = [seed + 100 * i for i in range(S.seeds)]  # every fine-tuning run is repeated with each
LR = 1e-3  # Adam's base learning rate for every regime
WARMUP = 1  # epochs of linear warm-up (TrainConfig.warmup_epochs)
BACKBONE_LR_SCALE = 0.1  # the lower learning rate of a pretrained backbone (partial fine-tuning)
EMBED_DIM = 64  # the new linear embedding layer on top of every backbone
ARC_S, ARC_M = 30.0, 0.5  # ArcFace's scale and margin (radians), as in chapter 4
FARS = (1e-1, 1e-2)
assert len(S.epochs) == len(FRACTIONS) and FRACTIONS[-1] == 1.0, "one epoch budget per fraction; the last is all"

# %% [markdown]
# How long this chapter takes at each profile, read from the committed report runs (`reports/*/summary.json`):

# %%
fk.notebook.say(fk.notebook.durations_sentence("06_fine_tuning"))

# %% [markdown]
# ## 1. The pretrained backbones from chapter 5
#
# `facekit.pretrain.load_pretrained` rebuilds each backbone from its checkpoint (written by notebook 05 for the
# same profile) and returns what chapter 5 recorded about its pretraining. If the file is missing, run chapter 5
# first (`facekit report 05 --profile ...`); the report runner does that by itself, since this notebook declares
# `depends_on: [05_self_supervised_pretraining]` in its metadata.

# %%
mae_vit, mae_meta = load_pretrained("mae_vit.pt", PROFILE)
simclr_cnn, simclr_meta = load_pretrained("simclr_cnn.pt", PROFILE)
for name, model, meta in [("MAE ViT", mae_vit, mae_meta), ("SimCLR CNN", simclr_cnn, simclr_meta)]:
    shown = {k: v for k, v in meta.items() if isinstance(v, (int, float, str, bool))}
    print(f"{name}: {type(model).__name__}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; "
          f"pretraining: {shown}")

# %% [markdown]
# Every image of this chapter must look like chapter 5's: the same size, and the same central face crop, read
# from the checkpoints' records rather than typed again.

# %%
def input_size(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    return getattr(config, "image_size", None)


IMAGE_SIZE = input_size(mae_vit) or input_size(simclr_cnn) or 32
assert input_size(simclr_cnn) in (None, IMAGE_SIZE), "both backbones must take the same image size"
DIFFICULTY = mae_meta.get("difficulty", simclr_meta.get("difficulty", "medium"))
if not isinstance(DIFFICULTY, str):
    DIFFICULTY = "medium"
FACE_CROP = mae_meta.get("face_crop")  # chapter 5 kept the central part of each rendered face; we do the same
RENDER_SIZE = round(IMAGE_SIZE * 1.5) if FACE_CROP else IMAGE_SIZE  # chapter 5 renders at 1.5x, then crops


@torch.no_grad()
def feature_dim(backbone: nn.Module) -> int:
    was = backbone.training
    out = backbone.eval()(torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE))  # (2, D)
    backbone.train(was)
    return out.shape[1]


def fresh_like(model: nn.Module, init_seed: int = seed) -> nn.Module:
    """The same architecture, newly initialised (for training from scratch)."""
    torch.manual_seed(init_seed)
    try:
        return build_arch(arch_of(model))
    except ValueError:  # an architecture arch_of does not know: copy it and re-initialise every layer
        clone = copy.deepcopy(model)
        for m in reversed(list(clone.modules())):
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        return clone


print(f"image size {IMAGE_SIZE} (rendered at {RENDER_SIZE}, central crop {FACE_CROP or 1.0:g}), synthetic difficulty "
      f"{DIFFICULTY!r}; feature widths: MAE ViT {feature_dim(mae_vit)}, SimCLR CNN {feature_dim(simclr_cnn)}")

# %% [markdown]
# ## 2. Four sets of people
#
# Transfer is only interesting to people the backbone has never seen. The synthetic generator draws a person
# from `(seed, index)`, so four generator seeds give four disjoint populations:
#
# | set | used for | labels |
# | --- | --- | --- |
# | pretraining people | the supervised (classic) pretraining; the forgetting test | yes |
# | fine-tuning people | the fine-tuning runs, with a fraction of their labels | yes |
# | validation people | early stopping and the time to a target accuracy | pairs only |
# | test people | every number in the tables | pairs only |
#
# Chapter 5's self-supervised backbones were pretrained on unlabelled images from chapter 5's own generator
# draw, never on the fine-tuning, validation or test people here. Every image is preprocessed as in chapter 5 (the
# same render size and central face crop, read from the checkpoint's record).

# %%
POP = {"pretrain": seed + 101, "finetune": seed + 202, "val": seed + 303, "test": seed + 404}  # generator seeds


def people(kind: str, n: int, per_id: int, offset: int = 0):
    """(images (N, 3, S, S) in [0, 1], labels (N,)): n people of population `kind`, preprocessed as in chapter 5."""
    x, y = SyntheticFaces(n, per_id, RENDER_SIZE, seed=POP[kind], difficulty=DIFFICULTY, image_offset=offset).tensors()
    if FACE_CROP:
        side = int(round(RENDER_SIZE * FACE_CROP))
        x = v2.functional.resize(v2.functional.center_crop(x, [side, side]), [IMAGE_SIZE] * 2, antialias=True)
    return x.clamp(0, 1), y


x_pre, y_pre = people("pretrain", S.pretrain_identities, S.pretrain_per_id)
x_forget, y_forget = people("pretrain", S.pretrain_identities, S.forget_per_id, offset=S.pretrain_per_id)
x_ft, y_ft = people("finetune", S.finetune_identities, S.finetune_per_id)
x_val, y_val = people("val", S.val_identities, S.val_per_id)
x_test, y_test = people("test", S.test_identities, S.test_per_id)
fk.viz.image_grid(torch.cat([x_pre[:4], x_ft[:4], x_val[:4], x_test[:4]]), nrow=8, scale=0.8,
                  title="pretraining, fine-tuning, validation and test people (first images)")
plt.show()

# %% [markdown]
# A label fraction keeps **whole people** (all of their images): a fraction $f$ of the labels is the first
# $\mathrm{round}(fK)$ of the $K$ fine-tuning people. The validation and test sets are genuine and impostor pairs;
# the person of each test pair (of its first image, for an impostor pair) is what the bootstrap of section 6
# resamples.

# %%
def pairs_of(labels: torch.Tensor, n: int):
    """n genuine and n impostor pairs (fewer if these people do not have n genuine pairs)."""
    n = min(n, count_pairs(labels)[0])
    return make_pairs(labels, num_same=n, num_diff=n, seed=seed)


val_pairs = pairs_of(y_val, min(S.test_pairs, 400))
test_pairs = pairs_of(y_test, S.test_pairs)
forget_pairs = pairs_of(y_forget, S.test_pairs)
TEST_PERSON = y_test[test_pairs.a].numpy()  # (pairs,) the person each test pair is resampled with


def label_subset(fraction: float):
    """Images and labels of the first round(fraction * K) fine-tuning people (labels 0..k-1), and k."""
    k = round(fraction * S.finetune_identities)
    if k < MIN_LABEL_PEOPLE and fk.profiles.dry_run():  # a dry run caps the people: keep every set usable
        k = min(MIN_LABEL_PEOPLE, S.finetune_identities)
    if k < MIN_LABEL_PEOPLE:
        raise ValueError(f"fraction {fraction} of finetune_identities={S.finetune_identities} is {k} people; "
                         f"use at least {MIN_LABEL_PEOPLE} (raise finetune_identities or the fraction)")
    keep = y_ft < k
    return x_ft[keep], y_ft[keep], k


label_sets = pd.DataFrame([{"fraction": f, "people": label_subset(f)[2], "images": len(label_subset(f)[1])}
                           for f in FRACTIONS])
display(label_sets)
assert label_sets["people"].min() >= MIN_LABEL_PEOPLE
fk.notebook.say(f"Validation: {val_pairs.num_genuine} + {val_pairs.num_impostor} pairs of {S.val_identities} "
                f"people; test: {test_pairs.num_genuine} + {test_pairs.num_impostor} pairs of {S.test_identities} "
                f"people.")

# %% [markdown]
# ## 3. Freezing and parameter groups, by hand and with `facekit`
#
# *Freezing* a layer means its parameters get no gradient (`requires_grad = False`) so the optimiser leaves them
# alone. One trap: a BatchNorm layer also changes in `train()` mode **without** any gradient, because it updates
# its running mean and variance on every batch. A frozen part must therefore also keep its BatchNorm layers in
# evaluation mode, or the "frozen" features drift anyway. facekit's policy: `freeze` does both, and keeps the
# frozen BatchNorm layers in evaluation mode even though `fit` calls `model.train()` every epoch.
#
# *Parameter groups* give parts of the model their own learning rate: $\eta_g = \eta(t) \cdot s_g$ with the
# schedule $\eta(t)$ (warm-up, cosine) and a multiplier $s_g$ per group, e.g. $s = 0.1$ for a pretrained backbone
# and $s = 1$ for the new head. *Layer-wise decay* (BEiT, MAE) sets $s = d^{L-1-i}$ for layer $i$ of $L$.

# %%
def small_cnn():
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4))


toy_x, toy_y = x_ft[:32], y_ft[:32] % 4
by_hand, with_fk = small_cnn(), small_cnn()
for p in list(by_hand[0].parameters()) + list(by_hand[1].parameters()):  # by hand: conv + BN frozen
    p.requires_grad_(False)
opt = torch.optim.SGD([p for p in by_hand.parameters() if p.requires_grad], lr=0.1)
before = copy.deepcopy(by_hand.state_dict())
by_hand.train()
by_hand[1].eval()  # the frozen BatchNorm keeps its statistics
F.cross_entropy(by_hand(toy_x), toy_y).backward()
opt.step()
freeze(with_fk, ["0", "1"])
fit(with_fk, TensorImages(toy_x, toy_y), epochs=1, batch_size=32, optimizer="sgd", momentum=0.0, lr=0.1,
    progress=False)
for key, value in by_hand.state_dict().items():
    torch.testing.assert_close(value, with_fk.state_dict()[key])  # the same step, the same numbers
changed = [k for k in before if not torch.equal(before[k], by_hand.state_dict()[k])]
print(f"after one step only these changed: {changed}; facekit.freeze + fit gives the same weights")
assert changed == ["5.weight", "5.bias"]

# %% [markdown]
# Layer-wise decay by hand: find the layer each parameter of the ViT belongs to, give it $0.75^{L-1-i}$, and
# compare with `facekit.train.param_groups(model, layer_decay_scales(layer_prefixes(model), 0.75))`. The table
# lists each layer's multiplier: the embedding gets the smallest, the head the full rate.

# %%
vit_probe = fresh_like(mae_vit)
layers = layer_prefixes(vit_probe)
scales = layer_decay_scales(layers, 0.75)
groups = param_groups(vit_probe, scales)
manual = {}
for name, p in vit_probe.named_parameters():  # the layer each parameter belongs to, by hand
    i = next(i for i, layer in enumerate(layers) if any(name == q or name.startswith(q + ".") for q in layer))
    manual[name] = 0.75 ** (len(layers) - 1 - i)
ids = {id(p): n for n, p in vit_probe.named_parameters()}
from_fk = {ids[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
assert from_fk.keys() == manual.keys() and all(math.isclose(from_fk[n], manual[n]) for n in manual)
print(pd.DataFrame({"layer": [", ".join(l) for l in layers],
                    "lr multiplier (decay 0.75)": [scales[l[0]] for l in layers]}).to_string(index=False))

# %% [markdown]
# Finally, what `fit` does with the groups during warm-up: a callback records each group's learning rate after
# every epoch. Look for the backbone's group staying at exactly a tenth of the default one while both ramp up.

# %%
class GroupLRs(Callback):
    def __init__(self):
        self.rows = []

    def on_epoch_end(self, state):
        self.rows.append({g["name"]: g["lr"] for g in state.optimizer.param_groups})


spy = GroupLRs()
demo = small_cnn()
fit(demo, TensorImages(toy_x, toy_y), epochs=3, warmup_epochs=2, batch_size=32, lr=LR, progress=False,
    param_groups=param_groups(demo, {"0": BACKBONE_LR_SCALE}), callbacks=[spy])
lr_table = pd.DataFrame(spy.rows, index=pd.Index(range(1, len(spy.rows) + 1), name="epoch"))
print(lr_table.to_string())
for epoch, row in enumerate(spy.rows):  # warm-up: lr (epoch + 1) / (warmup + 1), then lr; the backbone at 0.1x
    assert math.isclose(row["default"], LR * min(1.0, (epoch + 1) / 3))
    assert math.isclose(row["0"], BACKBONE_LR_SCALE * row["default"])

# %% [markdown]
# ## 4. The classic recipe: supervised pretraining on labelled people
#
# Before self-supervised learning, a face backbone was pretrained with labels: train it with ArcFace on as many
# people as possible, then reuse it. We do that with the **same architecture** as chapter 5's SimCLR CNN, on the
# pretraining people, and keep its ArcFace class weights for the forgetting test of section 7.

# %%
class WithNeck(nn.Module):
    """A backbone (B, C, S, S) -> (B, D) and a new linear embedding layer (B, D) -> (B, E)."""

    def __init__(self, body: nn.Module, embedding_dim: int = EMBED_DIM):
        super().__init__()
        self.body = body
        self.neck = nn.Linear(feature_dim(body), embedding_dim)
        self.embedding_dim = embedding_dim

    def forward(self, x):
        return self.neck(self.body(x))


AUGMENT = v2.RandomHorizontalFlip()


def arcface_model(body: nn.Module, num_classes: int, init_seed: int = seed) -> MarginModel:
    torch.manual_seed(init_seed)
    return MarginModel(WithNeck(body), MarginClassifier(EMBED_DIM, num_classes, ArcFace(s=ARC_S, margin_rad=ARC_M)))


t_sup = time.perf_counter()
sup_body = fresh_like(simclr_cnn, seed + 7)
sup_model = arcface_model(sup_body, S.pretrain_identities)
sup_hist = fit(sup_model, TensorImages(x_pre, y_pre, AUGMENT), TensorImages(x_forget, y_forget),
               epochs=S.pretrain_epochs, batch_size=S.batch_size, lr=LR, warmup_epochs=WARMUP, scheduler="cosine",
               forward=margin_forward, seed=seed, device=DEVICE, progress=False)
sup_seconds = time.perf_counter() - t_sup
sup_body = sup_model.backbone.body.cpu().eval()
sup_head = copy.deepcopy(sup_model).cpu().eval()  # body + neck + class weights: the closed-set classifier
fk.notebook.say(f"Supervised pretraining: {S.pretrain_identities} people, {len(x_pre)} images, {S.pretrain_epochs} "
                f"epochs, {sup_seconds:.0f} s; closed-set accuracy on new images of those people "
                f"**{sup_hist.last('val_accuracy'):.3f}**.")
_ = record("supervised_pretrain_closed_set_accuracy", round(sup_hist.last("val_accuracy"), 4))

# %% [markdown]
# ## 5. Fine-tuning regimes × label fractions
#
# Every run fine-tunes a backbone plus a new linear embedding layer ($64$-d) with ArcFace ($s = 30$, $m = 0.5$) on
# the fine-tuning people it is given, with Adam at the same base learning rate, one epoch of linear warm-up, a
# cosine decay, horizontal flips, and **early stopping** on the validation people's 10-fold verification accuracy
# (the best epoch's weights are kept). The regimes:
#
# - **scratch**: the same architecture, randomly initialised, everything trained;
# - **linear probe**: the backbone frozen; only the new linear embedding (and the class weights) trained, on
#   features computed once;
# - **partial**: the first half of the backbone's layers frozen (with their BatchNorm statistics), the rest at
#   $0.1\times$ the learning rate, the new layers at $1\times$;
# - **full**: everything trained at the same learning rate.
#
# The backbones: chapter 5's SimCLR CNN and MAE ViT, the supervised CNN of section 4, and each architecture from
# scratch. The *time* of a run is the training time of its epochs (for the linear probe, plus the one pass that
# computes the features); the validation passes are not counted.
#
# One function, `prepare`, builds the model of every regime: it freezes what the regime freezes and returns the
# parameter groups with their learning-rate multipliers. The figure after it is drawn from those models, not
# typed: one row per regime, one box per layer of the CNN, grey where frozen, blue where trained (darker = a
# larger learning rate), hatched where the weights start random.

# %%
def prepare(body: nn.Module, regime: str, k: int, backbone_scale: float | None = None):
    """The ArcFace model of `regime` around `body` (not copied) for k people -> (model, param_groups or None).

    backbone_scale: the backbone's learning-rate multiplier; None = BACKBONE_LR_SCALE for partial, else 1."""
    if backbone_scale is None:
        backbone_scale = BACKBONE_LR_SCALE if regime == "partial" else 1.0
    model = arcface_model(body, k)
    if regime == "linear probe":
        freeze(model, ["backbone.body"])
    elif regime == "partial":
        layers = layer_prefixes(model.backbone.body, "backbone.body")
        freeze(model, [q for layer in layers[: len(layers) // 2] for q in layer])
    elif regime == "frozen blocks":  # section 8: a ViT whose transformer blocks stay as they are
        freeze(model, ["backbone.body.blocks"])
    elif regime not in ("full", "scratch"):
        raise ValueError(f"regime={regime!r}; use scratch, linear probe, partial, full or frozen blocks")
    groups = param_groups(model, {"backbone.body": backbone_scale}) if backbone_scale != 1.0 else None
    return model, groups

# %%
def layer_rates(model: MarginModel, groups) -> dict[str, float]:
    """Learning-rate multiplier of each layer of the backbone, the neck and the ArcFace weights (0 = frozen)."""
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]} if groups else {}
    layers = layer_prefixes(model.backbone.body, "backbone.body") + [["backbone.neck"], ["classifier"]]
    rates = {}
    for layer in layers:
        params = [p for n, p in model.named_parameters() if any(n == q or n.startswith(q + ".") for q in layer)]
        trained = [scale_of.get(id(p), 1.0) for p in params if p.requires_grad]
        rates[layer[0].replace("backbone.body.", "").replace("backbone.", "")] = max(trained) if trained else 0.0
    return rates


FIGURE_REGIMES = {"scratch": None, "linear probe": None, "partial": None, "full": None,
                  "full, backbone lr x0.1": BACKBONE_LR_SCALE}
roles = {name: layer_rates(*prepare(copy.deepcopy(simclr_cnn), name.split(",")[0], MIN_LABEL_PEOPLE, scale))
         for name, scale in FIGURE_REGIMES.items()}
fig, ax = plt.subplots(figsize=(12, 3.2))
for row, (name, rates) in enumerate(roles.items()):
    for col, (layer, rate) in enumerate(rates.items()):
        new = name == "scratch" or layer in ("neck", "classifier")
        ax.add_patch(plt.Rectangle((col, -row), 0.92, 0.8, hatch="///" if new else None, ec="black",
                                   fc="lightgrey" if rate == 0 else plt.cm.Blues(0.25 + 0.45 * rate)))
        ax.text(col + 0.46, -row + 0.4, "frozen" if rate == 0 else f"x{rate:g}", ha="center", va="center", fontsize=8)
ax.set_xticks(np.arange(len(rates)) + 0.46, list(rates), rotation=30, fontsize=8)
ax.set_yticks(-np.arange(len(roles)) + 0.4, list(roles))
ax.set(xlim=(0, len(rates)), ylim=(-len(roles) + 0.9, 0.9), title="what each regime trains (input left, output right; "
       "hatched = starts random)")
plt.tight_layout()
plt.show()
assert all(r == 0 for k, r in roles["linear probe"].items() if k not in ("neck", "classifier"))
assert roles["partial"]["neck"] == 1.0 and min(roles["partial"].values()) == 0.0

# %% [markdown]
# Read the figure row by row. *Scratch* and *full* train everything at one rate; they differ only in where the
# backbone's weights start. The *linear probe* trains only the two new layers, so its cost per epoch is tiny once
# the backbone's features are computed. *Partial* keeps the early layers (edges, textures: the most generic
# features) exactly as pretrained and lets the later, more task-specific ones move slowly. *Full at a lower
# backbone rate* is the article's advice: everything moves, the pretrained part at a tenth of the new
# layers' rate.
#
# The runner. A validation callback scores the validation pairs after every epoch (`val_acc`, `val_auc`), so
# early stopping and the learning curves below read the same numbers. Each run returns its test report, the test
# pair scores (for the paired comparisons of section 6) and its history.

# %%
class ValidationAccuracy(Callback):
    """After each epoch: 10-fold verification accuracy and AUC on the validation pairs -> val_acc, val_auc."""

    def __init__(self, embed_fn):
        self.embed_fn = embed_fn

    def on_epoch_end(self, state):
        was = state.model.training
        state.model.eval()
        with torch.no_grad():
            emb = self.embed_fn(state.model).float().cpu()
        state.model.train(was)
        rep = val_report(emb)
        state.history.records[-1].update(val_acc=rep.kfold.mean, val_auc=rep.auc)


def val_report(emb: torch.Tensor):
    return verification_report(cosine_scores(emb[val_pairs.a], emb[val_pairs.b]), val_pairs.is_same, folds=10,
                               far_targets=())


def test_scores(emb: torch.Tensor) -> np.ndarray:
    return np.asarray(cosine_scores(emb[test_pairs.a], emb[test_pairs.b]))


def epochs_for(fraction: float) -> int:
    return S.epochs[FRACTIONS.index(fraction)]

# %%
def train_regime(body: nn.Module, regime: str, fraction: float, run_seed: int, backbone_scale=None):
    """Fine-tune a copy of `body` -> (the trained embedding net (B, C, S, S) -> (B, E), history, seconds, trainable)."""
    x, y, k = label_subset(fraction)
    body = copy.deepcopy(body)
    budget = dict(epochs=epochs_for(fraction), batch_size=min(S.batch_size, len(y)), lr=LR, warmup_epochs=WARMUP,
                  scheduler="cosine", seed=run_seed, device=DEVICE, progress=False)
    stopper = EarlyStopping(monitor="val_acc", mode="max", patience=S.patience, restore_best=True)
    if regime == "linear probe":  # the body is frozen: compute its features once, train only the new layers
        t0 = time.perf_counter()
        freeze(body)
        feats, val_feats = embed(body, x, device=DEVICE), embed(body, x_val, device=DEVICE)
        extract_s = time.perf_counter() - t0
        torch.manual_seed(run_seed)
        probe, hist = linear_probe(feats, y, embedding_dim=EMBED_DIM, head=ArcFace(s=ARC_S, margin_rad=ARC_M),
                                   callbacks=[ValidationAccuracy(lambda m: m.backbone(val_feats.to(DEVICE))), stopper],
                                   **budget)
        return nn.Sequential(body, probe.backbone.cpu()).eval(), hist, extract_s, sum(p.numel() for p in
                                                                                    probe.parameters())
    model, groups = prepare(body, regime, k, backbone_scale)
    hist = fit(model, TensorImages(x, y, AUGMENT), forward=margin_forward, metrics={}, param_groups=groups,
               callbacks=[ValidationAccuracy(lambda m: m.backbone(x_val.to(DEVICE))), stopper], **budget)
    return model.backbone.cpu().eval(), hist, 0.0, count_trainable(model)[0]


def run_finetune(body: nn.Module, regime: str, fraction: float, run_seed: int = seed, *, backbone_scale=None):
    """Train, then test on the test people -> (result dict, trained embedding net)."""
    net, hist, extract_s, trainable = train_regime(body, regime, fraction, run_seed, backbone_scale)
    best = hist.best("val_acc")
    restored = val_report(embed(net, x_val, device=DEVICE)).auc
    # early stopping restored the best epoch's weights: the returned net scores what that epoch scored (the AUC,
    # which float rounding in another batch size can move by a swapped pair or two, not the thresholded accuracy)
    assert abs(restored - best["val_auc"]) <= 1e-3, (regime, restored, best["val_auc"])
    scores = test_scores(embed(net, x_test, device=DEVICE))
    rep = verification_report(scores, test_pairs.is_same, folds=10, far_targets=FARS)
    result = {"AUC": rep.auc, "10-fold acc": rep.kfold.mean, **{f"TAR@FAR={t.far_target:g}": t.tar
                                                                 for t in rep.tar_at_far},
              "epochs run": len(hist.records), "best epoch": best["epoch"], "best val acc": best["val_acc"],
              "seconds": extract_s + hist.total_time(), "trainable": trainable, "history": hist,
              "extract_s": extract_s, "scores": scores}
    return result, net

# %% [markdown]
# Two details of `run_finetune` matter for honest numbers. The test people are scored only once, after training,
# with the weights early stopping chose on the validation people; nothing about the test set feeds back into a
# run. And the function *asserts* that the returned network scores on the validation pairs what its best epoch
# scored: if early stopping failed to restore the best weights, the reported numbers would silently belong to the
# last epoch instead.
#
# Now every backbone in every regime at every label fraction, once per seed. A seed sets the new layers'
# initialisation, the order of the batches and, for training from scratch, the backbone's own initialisation;
# the pretrained weights are the same in every seed. This is the chapter's long cell.

# %%
BACKBONES = {  # name -> (pretrained body or None for scratch, architecture)
    "CNN scratch": (None, simclr_cnn),
    "CNN SimCLR": (simclr_cnn, simclr_cnn),
    "CNN supervised": (sup_body, simclr_cnn),
    "ViT scratch": (None, mae_vit),
    "ViT MAE": (mae_vit, mae_vit),
}
REGIMES = ("linear probe", "partial", "full")
results, trained_bodies = {}, {}  # (arch, pretraining, regime, fraction, seed) -> result; (regime, seed) -> body
t_table = time.perf_counter()
for s in SEEDS:
    for fraction in FRACTIONS:
        for name, (pretrained, arch) in BACKBONES.items():
            for regime in (("full",) if pretrained is None else REGIMES):
                body = pretrained if pretrained is not None else fresh_like(arch, s + 11)
                res, tuned = run_finetune(body, regime, fraction, s)
                a, p = name.split()
                results[(a, p, "scratch" if pretrained is None else regime, fraction, s)] = res
                if name == "CNN supervised" and fraction == 1.0:
                    trained_bodies[(regime, s)] = tuned[0] if regime == "linear probe" else tuned.body
    print(f"seed {s} done ({time.perf_counter() - t_table:.0f} s so far)")

# %% [markdown]
# The table: test AUC and 10-fold accuracy of every backbone and regime at every label fraction, the mean over
# seeds. Read down a column to compare regimes on the same labels, along a row to see what more labels buy.

# %%
table = pd.DataFrame([{"arch": a, "pretraining": p, "regime": r, "labels": f, "seed": s,
                       **{k: v for k, v in res.items() if k not in ("history", "scores")}}
                      for (a, p, r, f, s), res in results.items()])
pivot = table.pivot_table(index=["arch", "pretraining", "regime"], columns="labels", values="AUC", sort=False)
pivot.columns = [f"AUC @ {c:.0%}" for c in pivot.columns]
acc_pivot = table.pivot_table(index=["arch", "pretraining", "regime"], columns="labels", values="10-fold acc",
                              sort=False)
acc_pivot.columns = [f"acc @ {c:.0%}" for c in acc_pivot.columns]
display(pd.concat([pivot, acc_pivot], axis=1).round(3))
fk.notebook.say(f"{len(results)} fine-tuning runs over {len(SEEDS)} seeds in {time.perf_counter() - t_table:.0f} s; "
                f"means over seeds. Every run, with its epochs and seconds, is in `table`.")
for (a, p, r, f), auc in table.groupby(["arch", "pretraining", "regime", "labels"], sort=False)["AUC"].mean().items():
    record(f"auc[{a} {p} {r} @{f:g}]", round(auc, 4))

# %% [markdown]
# ### Label-efficiency curves
#
# Test AUC against the fraction of fine-tuning labels (log scale), one line per backbone and regime: the mean over
# seeds, with the range of the seeds as a band. Where bands overlap, the ranking can flip with another seed.

# %% tags=["key-figure"]
auc_by_seed = table.groupby(["arch", "pretraining", "regime", "labels"], sort=False)["AUC"]
lo, hi, mean = auc_by_seed.min(), auc_by_seed.max(), auc_by_seed.mean()
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
for ax, arch in zip(axes, ("CNN", "ViT")):
    for (a, p, r), row in pivot.iterrows():
        if a != arch:
            continue
        xs = [f * 100 for f in FRACTIONS]
        line, = ax.semilogx(xs, [mean[(a, p, r, f)] for f in FRACTIONS], marker="o",
                            lw=2 if r == "scratch" else 1.3, ls="--" if r == "linear probe" else "-", label=f"{p}, {r}")
        ax.fill_between(xs, [lo[(a, p, r, f)] for f in FRACTIONS], [hi[(a, p, r, f)] for f in FRACTIONS],
                        color=line.get_color(), alpha=0.15)
    ax.set(title=f"{arch} backbones", xlabel="labels used (% of the fine-tuning people)", ylabel="test AUC")
    ax.set_xticks([f * 100 for f in FRACTIONS], [f"{f:.0%}" for f in FRACTIONS])
    ax.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Learning curves
#
# Early stopping and "time to target" are read off the validation curves, so here they are: validation accuracy
# after every epoch, one panel per architecture and label fraction, seed by seed (thin lines) for scratch and for
# each pretrained backbone's full fine-tuning and linear probe. A cross marks where early stopping ended a run.
# Look at how many epochs each curve needs to flatten, and whether a pretrained curve *starts* higher (a head
# start) or *ends* higher (a better optimum): the claims of the article are about these two things.

# %%
SHOWN = [("scratch", "scratch"), ("SimCLR", "full"), ("supervised", "full"), ("supervised", "linear probe"),
         ("MAE", "full"), ("MAE", "linear probe")]
fig, axes = plt.subplots(2, len(FRACTIONS), figsize=(4.2 * len(FRACTIONS), 6.5), sharey=True, squeeze=False)
for col, f in enumerate(FRACTIONS):
    for row, arch in enumerate(("CNN", "ViT")):
        ax = axes[row, col]
        for i, (p, r) in enumerate(SHOWN):
            for s in SEEDS:
                res = results.get((arch, p, r, f, s))
                if res is None:
                    continue
                h = res["history"]
                ax.plot(h["epoch"], h["val_acc"], color=f"C{i}", lw=0.9, marker="o", ms=2.5,
                        label=f"{p}, {r}" if s == seed else None)
                if h.stopped_epoch is not None:
                    ax.plot(h.stopped_epoch, h.records[-1]["val_acc"], "x", color=f"C{i}")
        ax.set(title=f"{arch}, {f:.0%} of the labels", xlabel="epoch", ylabel="validation accuracy")
        ax.legend(fontsize=6)
plt.tight_layout()
plt.show()

# %% [markdown]
# What to look for: with the fewest labels, do the supervised backbone's curves start near their best while
# scratch climbs slowly? With all the labels, does scratch catch up? Where a cross comes early in a pretrained
# run, early stopping saw no improvement after a good start: a short run is then a run that was good from the
# first epoch, not one cut short by accident. The seeds' spread (the thin lines of one colour) is the yardstick
# for every difference between colours.
#
# ### Time to a target accuracy
#
# For each architecture the target is the lowest of its from-scratch runs' best validation accuracies with all
# the labels: every scratch run reaches it, by definition, and the question is how much sooner a pretrained
# backbone gets there. The regime of each pretrained backbone is the one with the best mean *validation* accuracy
# (never the test score). A run that never reaches the target counts as one epoch past its budget, and the table
# says how many did.
#
# Why epochs and not seconds? Seconds depend on the machine and on its load (several notebooks may share the CPU),
# and a linear probe's epoch is far cheaper than a full one; the table of section 5 lists the seconds of every
# run for that side of the story. Epochs to the target answer the article's "in a shorter time" for a fixed
# cost per epoch, and the paired comparison over seeds says whether the difference is more than luck. With a
# budget of a few epochs, note the resolution: a difference of one epoch is the smallest this can show.

# %%
def chosen_regime(arch: str, pre: str, f: float) -> str:
    """The regime with the highest mean best validation accuracy over seeds (validation only)."""
    options = {r: np.mean([results[(arch, pre, r, f, s)]["best val acc"] for s in SEEDS]) for r in REGIMES}
    return max(options, key=options.get)


def epochs_to(res: dict, target: float, budget: int) -> int:
    hit = res["history"].time_to("val_acc", target)
    return hit[0] if hit else budget + 1


PRETRAINED = [("CNN", "supervised"), ("CNN", "SimCLR"), ("ViT", "MAE")]
full_budget = epochs_for(1.0)
TARGET = {arch: min(results[(arch, "scratch", "scratch", 1.0, s)]["best val acc"] for s in SEEDS)
          for arch in ("CNN", "ViT")}
time_rows, time_verdicts = [], {}
for arch, pre in PRETRAINED:
    r = chosen_regime(arch, pre, 1.0)
    e_pre = [epochs_to(results[(arch, pre, r, 1.0, s)], TARGET[arch], full_budget) for s in SEEDS]
    e_scr = [epochs_to(results[(arch, "scratch", "scratch", 1.0, s)], TARGET[arch], full_budget) for s in SEEDS]
    time_verdicts[(arch, pre)] = st.compare_seeds(e_pre, e_scr, names=(f"{arch} {pre} ({r})", f"{arch} scratch"),
                                                  higher_is_better=False, metric="epochs to target")
    time_rows.append({"backbone": f"{arch} {pre}", "regime": r, "target": TARGET[arch],
                      "epochs to target (pretrained)": e_pre, "epochs (scratch)": e_scr,
                      "never reached (pretrained)": sum(e > full_budget for e in e_pre)})
time_table = pd.DataFrame(time_rows)
display(time_table.round(3))
for v in time_verdicts.values():
    fk.notebook.say(v.text)
record("target_val_accuracy_cnn", round(TARGET["CNN"], 4))

# %% [markdown]
# ## 6. Which claims held, and by how much
#
# Each pretrained backbone (in the regime chosen on validation) against training from scratch on the same
# architecture and the same labels, two ways:
#
# - **on the same test pairs**, for the first seed: `facekit.stats.compare_scores`, a paired bootstrap of
#   the AUC difference that resamples the test *people* (pairs of one person rise and fall together);
# - **over seeds**: `facekit.stats.compare_seeds`, a paired $t$ interval of the AUC difference, seed against seed.
#
# The first says whether this one pair of trained models differs beyond the noise of the test set; the second
# whether the *recipe* does, beyond the noise of training. The second is the claim the article makes.

# %%
acc_verdicts = []
for arch, pre in PRETRAINED:
    for f in FRACTIONS:
        r = chosen_regime(arch, pre, f)
        names = (f"{arch} {pre} ({r}) @ {f:.0%}", f"{arch} scratch @ {f:.0%}")
        pre_runs = [results[(arch, pre, r, f, s)] for s in SEEDS]
        scr_runs = [results[(arch, "scratch", "scratch", f, s)] for s in SEEDS]
        on_pairs = st.compare_scores(pre_runs[0]["scores"], scr_runs[0]["scores"], test_pairs.is_same, "auc",
                                     groups=TEST_PERSON, names=names, n_boot=S.n_boot, seed=seed)
        over_seeds = st.compare_seeds([x["AUC"] for x in pre_runs], [x["AUC"] for x in scr_runs], names=names,
                                      metric="test AUC")
        acc_verdicts.append({"backbone": f"{arch} {pre}", "labels": f, "regime": r, "pairs": on_pairs,
                             "seeds": over_seeds})
        record(f"auc_gain[{arch} {pre} @{f:g}]", round(over_seeds.difference.estimate, 4))
verdict_table = pd.DataFrame([{"comparison": kind, **v[kind].row} for v in acc_verdicts for kind in ("pairs", "seeds")])
display(verdict_table.round(4))

# %% [markdown]
# How to read the table: `A - B` is the pretrained backbone's AUC minus scratch's, `low` and `high` its $95\%$
# interval, and `verdict` names the better model only when the interval excludes zero and the comparison is large enough
# (at least `MIN_ITEMS` pairs and `MIN_GROUPS` people, or `MIN_SEEDS` seeds). The two rows of a comparison can
# disagree: a difference can be real for this one pair of trained models (the test set is large) yet not
# reproducible from seed to seed (training is noisy), or the other way round when few people are tested.
#
# In words, over seeds (the claim about the recipe):

# %%
for v in acc_verdicts:
    fk.notebook.say(v["seeds"].text)
held = sum(v["seeds"].winner == "a" for v in acc_verdicts)
record("claim_higher_accuracy_held", held, key=True)
record("claim_higher_accuracy_tested", len(acc_verdicts), key=True)
smallest = next(v for v in acc_verdicts if v["backbone"] == "CNN supervised" and v["labels"] == FRACTIONS[0])
assert all(v["pairs"].n == len(test_pairs.is_same) for v in acc_verdicts)  # every comparison on the same pairs
if PROFILE != "smoke":
    # the classic recipe transfers to new people: with the fewest labels it must beat training from scratch
    assert smallest["pairs"].winner != "b", smallest["pairs"].text
    assert smallest["seeds"].difference.estimate > 0, smallest["seeds"].text
    sup_time = time_verdicts[("CNN", "supervised")].difference.estimate
    assert sup_time <= 0, "the supervised backbone should reach the target no later than from scratch on average"

# %% [markdown]
# ## 7. Catastrophic forgetting
#
# Fine-tuning adapts the backbone to new people; what happens to the people it was pretrained on? We keep the
# supervised backbone's original class weights and measure, on new images of the **pretraining** people, the
# closed-set accuracy of the original classifier on top of the fine-tuned body, and the verification AUC of
# pairs of those people (the fine-tuned embedding, as used for the new people). Four fine-tunings with all the
# labels, in every seed: linear probe (the body is frozen, so nothing can be forgotten), partial, full at
# $0.1\times$ the backbone learning rate (the article's advice), and full at $1\times$.

# %%
def forgetting_row(body: nn.Module) -> dict:
    head = copy.deepcopy(sup_head)
    head.backbone.body = copy.deepcopy(body)
    logits, _ = predict(head, TensorImages(x_forget, y_forget), device=DEVICE)
    emb = embed(body, x_forget, device=DEVICE)
    ver = verification_report(cosine_scores(emb[forget_pairs.a], emb[forget_pairs.b]), forget_pairs.is_same,
                              far_targets=())
    return {"correct": (logits.argmax(1) == y_forget).numpy(), "verification AUC (old people)": ver.auc}


low_auc = {}
for s in SEEDS:
    res, tuned = run_finetune(sup_body, "full", 1.0, s, backbone_scale=BACKBONE_LR_SCALE)
    trained_bodies[("full, backbone lr x0.1", s)] = tuned.body
    low_auc[s] = res["AUC"]
before = forgetting_row(sup_body)
FORGET_REGIMES = ("linear probe", "partial", "full, backbone lr x0.1", "full")
after = {(r, s): forgetting_row(trained_bodies[(r, s)]) for r in FORGET_REGIMES for s in SEEDS}
forget_table = pd.DataFrame({r: {"closed-set accuracy (old head)": np.mean([after[(r, s)]["correct"].mean()
                                                                          for s in SEEDS]),
                                 "verification AUC (old people)": np.mean([after[(r, s)]["verification AUC (old people)"]
                                                                          for s in SEEDS]),
                                 "test AUC (new people)": np.mean([low_auc[s] if r.startswith("full,") else
                                                                  results[("CNN", "supervised", r, 1.0, s)]["AUC"]
                                                                  for s in SEEDS])}
                             for r in FORGET_REGIMES}).T
forget_table.loc["before fine-tuning"] = [before["correct"].mean(), before["verification AUC (old people)"], np.nan]
display(forget_table.round(4))

# %% [markdown]
# What to look for in the table: the linear probe's row must equal the "before" row (its body never changed).
# Full fine-tuning at the full rate is expected to lose the most closed-set accuracy on the old people, since the
# old ArcFace class weights no longer match the moved features. Compare that loss with the change of the old
# people's verification AUC: if the AUC moves much less, the *embedding* still separates them and only the old
# classifier's coordinates are lost. Forgetting is then a property of what you keep (a classifier, or just an
# embedding) as much as of the backbone.
#
# The checks and the verdict. A frozen body must forget nothing, to the last bit, and partial fine-tuning must
# leave its frozen half (weights and BatchNorm statistics) untouched. Then the article's advice: does a
# $0.1\times$ backbone learning rate forget less than $1\times$? Paired on the same old-people images for the
# first seed (McNemar and a bootstrap over people), and over seeds.

# %%
drop = {r: before["correct"].mean() - forget_table.loc[r, "closed-set accuracy (old head)"] for r in FORGET_REGIMES}
for k, v in drop.items():
    record(f"forgetting_closed_set_drop[{k}]", round(v, 4))
for s in SEEDS:
    assert np.array_equal(after[("linear probe", s)]["correct"], before["correct"]), "a frozen body forgets nothing"
    for name, p in sup_body.named_parameters():
        assert torch.equal(p, trained_bodies[("linear probe", s)].state_dict()[name])
partial_layers = layer_prefixes(sup_body)
frozen_half = [q for layer in partial_layers[: len(partial_layers) // 2] for q in layer]
for key, value in sup_body.state_dict().items():  # partial: the frozen half (weights and BN statistics) is intact
    if any(key == q or key.startswith(q + ".") for q in frozen_half):
        assert torch.equal(value, trained_bodies[("partial", seed)].state_dict()[key]), key
forget_pairs_verdict = st.compare_correct(after[("full, backbone lr x0.1", seed)]["correct"],
                                          after[("full", seed)]["correct"], names=("backbone lr x0.1", "backbone lr x1"),
                                          groups=y_forget.numpy(), n_boot=S.n_boot, seed=seed)
forget_seeds_verdict = st.compare_seeds([after[("full, backbone lr x0.1", s)]["correct"].mean() for s in SEEDS],
                                        [after[("full", s)]["correct"].mean() for s in SEEDS],
                                        names=("backbone lr x0.1", "backbone lr x1"), metric="old-people accuracy")
fk.notebook.say(f"Same images, first seed: {forget_pairs_verdict.text}")
fk.notebook.say(f"Over {len(SEEDS)} seeds: {forget_seeds_verdict.text}")
if PROFILE != "smoke":
    assert drop["full"] > drop["linear probe"], "full fine-tuning should forget more than a frozen body"

# %% [markdown]
# ## 8. Can a language model become a face recogniser?
#
# The article fine-tunes "BERT-Base" on LFW pairs. No text-model weights can be downloaded here, so we make one:
# a character-level transformer with **exactly the blocks of the face ViT** (same width, depth, heads, MLP), trained
# as BERT is trained, by masked language modelling (a fraction `MLM_RATE` of the characters replaced by a mask
# token, predict them), on a corpus every Python installation carries: the docstrings of the standard library.
# Then we copy its blocks into a new face ViT (the patch embedding, position embeddings and final norm stay new:
# text has no pixels) and fine-tune on faces, against the same ViT from random initialisation and from chapter 5's
# MAE.
#
# What transfers from text to faces is the *architecture* (a transformer encoder is a transformer encoder) and the
# *recipe* (pretrain without labels, then fine-tune). Whether the text *weights* help is the question; the
# frozen-blocks runs (only the patch embedding, norm and new layers trained) ask it most directly.
#
# First the corpus: every public docstring of a few dozen standard-library modules, as ASCII codes.

# %%
STDLIB = ("collections", "json", "string", "textwrap", "functools", "itertools", "re", "pathlib", "typing",
          "argparse", "logging", "random", "statistics", "datetime", "inspect", "dataclasses", "os", "shutil",
          "unittest", "email", "http.client", "urllib.parse", "csv", "pickle", "decimal", "fractions", "heapq",
          "bisect", "contextlib", "abc", "enum", "difflib", "calendar", "subprocess", "threading", "queue")
MLM_RATE = 0.15  # BERT's share of masked tokens


def docstrings(module_names) -> str:
    parts = []
    for name in module_names:
        module = importlib.import_module(name)
        parts.append(inspect.getdoc(module) or "")
        for attr in sorted(vars(module)):
            doc = inspect.getdoc(getattr(module, attr)) if not attr.startswith("_") else None
            if doc and getattr(getattr(module, attr), "__module__", None) == module.__name__:
                parts.append(doc)
    return "\n\n".join(parts)


corpus = docstrings(STDLIB)
codes = torch.tensor([min(ord(c), 127) for c in corpus], dtype=torch.long)  # ASCII; anything else -> 127
VOCAB, MASK = 129, 128
cut = int(0.95 * len(codes))
text_train, text_val = codes[:cut], codes[cut:]
print(f"corpus: {len(corpus):,} characters of docstrings from {len(STDLIB)} standard-library modules")
print(repr(corpus[:300]))

# %% [markdown]
# The text model: token and position embeddings, then the face ViT's own `Block` class with the face ViT's
# configuration, a final norm, and a linear decoder over the characters. A batch is random windows of the corpus
# with some characters masked; the loss is the cross-entropy on the masked ones only.

# %%
class CharBERT(nn.Module):
    """Token + position embeddings, the face ViT's Block stack, LayerNorm, a linear decoder over characters."""

    def __init__(self, vit_config, seq_len: int):
        super().__init__()
        c = vit_config
        self.tok = nn.Embedding(VOCAB, c.dim)
        self.pos = nn.Parameter(torch.zeros(1, seq_len, c.dim).normal_(0, 0.02))
        self.blocks = nn.ModuleList(Block(c.dim, c.num_heads, c.mlp_ratio, c.qkv_bias) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim)
        self.decoder = nn.Linear(c.dim, VOCAB)

    def forward(self, ids):  # (B, T) -> (B, T, VOCAB)
        h = self.tok(ids) + self.pos[:, : ids.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.decoder(self.norm(h))


def mlm_batch(source: torch.Tensor, g: torch.Generator):
    start = torch.randint(0, len(source) - S.text_seq, (S.text_batch,), generator=g)
    ids = torch.stack([source[s: s + S.text_seq] for s in start.tolist()])  # (B, T)
    masked = torch.rand(ids.shape, generator=g) < MLM_RATE
    return ids.masked_fill(masked, MASK), ids, masked


def mlm_forward(model, batch, device):
    """fit's forward: (logits of the masked positions (M, VOCAB), their true characters (M,))."""
    inputs, targets, masked = (t.to(device) for t in batch)
    return model(inputs)[masked], targets[masked]

# %% [markdown]
# Training runs through `fit` like every other model of the course. The schedule is counted in optimiser steps,
# not epochs: one "epoch" of `text_steps` random batches, a callback that sets a linear warm-up over the first
# tenth of the steps before each step, and one that records the loss after each step for the curve.

# %%
class StepWarmup(Callback):
    """Learning rate peak * min(1, (step + 1) / warmup_steps), set before every optimiser step."""

    def __init__(self, peak: float, warmup_steps: int):
        self.peak, self.warmup_steps = peak, max(1, warmup_steps)

    def on_step_start(self, state):
        for group in state.optimizer.param_groups:
            group["lr"] = self.peak * min(1.0, (state.steps + 1) / self.warmup_steps)


class StepLosses(Callback):
    def __init__(self):
        self.losses = []

    def on_step_end(self, state):
        self.losses.append(state.last_loss)


torch.manual_seed(seed)
text_model = CharBERT(mae_vit.config, S.text_seq)
g = torch.Generator().manual_seed(seed)
text_curve = StepLosses()
text_hist = fit(text_model, lambda epoch: (mlm_batch(text_train, g) for _ in range(S.text_steps)), epochs=1,
                optimizer="adamw", lr=1e-3, weight_decay=0.01, loss_fn=F.cross_entropy, metrics={},
                forward=mlm_forward, callbacks=[StepWarmup(1e-3, S.text_steps // 10), text_curve], seed=seed,
                device=DEVICE, progress=False)
text_seconds = text_hist.total_time()
assert len(text_curve.losses) == min(S.text_steps, fk.profiles.max_steps() or S.text_steps)

# %% [markdown]
# Note what is *not* here: no hand-written optimiser loop. The same `fit` that trains every face model runs the
# text model too, and the two callbacks are the whole difference. A second loop would be a second place where
# seeding, gradient clipping or the learning-rate schedule can silently differ.
#
# Did it learn anything about text? Two baselines need no training: a uniform guess over the characters, and a
# guess from character frequencies alone (the entropy of the unigram distribution). Look for the held-out loss
# below the second.

# %%
text_model.eval()
with torch.no_grad():
    gv = torch.Generator().manual_seed(seed + 1)
    text_val_loss = float(np.mean([F.cross_entropy(*mlm_forward(text_model, mlm_batch(text_val, gv), DEVICE)).item()
                                   for _ in range(10)]))
freq = torch.bincount(text_train, minlength=VOCAB).double() + 1
unigram = float(-(freq / freq.sum() * torch.log(freq / freq.sum())).sum())  # guessing by character frequency
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(range(1, len(text_curve.losses) + 1), text_curve.losses, lw=0.8, label="training loss (masked characters)")
ax.axhline(unigram, color="tab:red", ls="--", label="character frequencies alone")
ax.axhline(math.log(VOCAB), color="grey", ls=":", label="uniform guess")
ax.set(xlabel="optimiser step", ylabel="cross-entropy (nats)", title="the masked-character model")
ax.legend(fontsize=8)
plt.show()
fk.notebook.say(f"Masked-character model: {len(text_curve.losses)} steps in {text_seconds:.0f} s; held-out loss "
                f"**{text_val_loss:.3f}** nats against {unigram:.3f} for character frequencies alone "
                f"({text_val_loss / unigram - 1:+.1%} relative to it) and {math.log(VOCAB):.3f} for a uniform guess.")
record("text_mlm_val_loss", round(text_val_loss, 4))
record("text_unigram_loss", round(unigram, 4))
if PROFILE != "smoke":
    assert text_val_loss < unigram, "the text transformer should learn more than character frequencies"

# %% [markdown]
# The transplant: the text model's blocks into a fresh face ViT of the same configuration, checked weight by weight.

# %%
text_vit = fresh_like(mae_vit, seed + 11)
text_vit.blocks.load_state_dict({k: v.cpu() for k, v in text_model.blocks.state_dict().items()})
for a, b in zip(text_vit.blocks.parameters(), text_model.blocks.parameters()):
    assert torch.equal(a, b.cpu())
print(f"copied {sum(p.numel() for p in text_vit.blocks.parameters()):,} of the ViT's "
      f"{sum(p.numel() for p in text_vit.parameters()):,} parameters from the text model")

# %% [markdown]
# Four fine-tunings with all the labels, in every seed: text blocks and random blocks, each fully fine-tuned and
# with the blocks frozen (the `frozen blocks` regime of `prepare`). The fully fine-tuned random ViT is section 5's
# scratch run of the same seed. The comparisons are paired over seeds, and on the same test pairs for the first
# seed.

# %%
lm = {}
for s in SEEDS:
    random_vit = fresh_like(mae_vit, s + 11)
    lm[("random blocks, full", s)] = results[("ViT", "scratch", "scratch", 1.0, s)]
    lm[("MAE, full", s)] = results[("ViT", "MAE", "full", 1.0, s)]
    lm[("text blocks, full", s)] = run_finetune(text_vit, "full", 1.0, s)[0]
    lm[("random blocks, frozen", s)] = run_finetune(random_vit, "frozen blocks", 1.0, s)[0]
    lm[("text blocks, frozen", s)] = run_finetune(text_vit, "frozen blocks", 1.0, s)[0]
LM_ROWS = ("random blocks, full", "MAE, full", "text blocks, full", "random blocks, frozen", "text blocks, frozen")
lm_table = pd.DataFrame({r: {c: np.mean([lm[(r, s)][c] for s in SEEDS]) for c in ("AUC", "10-fold acc", "seconds")}
                         for r in LM_ROWS}).T
display(lm_table.round(4))
lm_verdicts = {}
for a, b in [("text blocks, full", "random blocks, full"), ("text blocks, frozen", "random blocks, frozen"),
             ("MAE, full", "text blocks, full")]:
    lm_verdicts[(a, b)] = st.compare_seeds([lm[(a, s)]["AUC"] for s in SEEDS], [lm[(b, s)]["AUC"] for s in SEEDS],
                                           names=(a, b), metric="test AUC")
    fk.notebook.say(lm_verdicts[(a, b)].text)
frozen_pairs = st.compare_scores(lm[("text blocks, frozen", seed)]["scores"], lm[("random blocks, frozen", seed)]["scores"],
                                 test_pairs.is_same, "auc", groups=TEST_PERSON, n_boot=S.n_boot, seed=seed,
                                 names=("text blocks, frozen", "random blocks, frozen"))
fk.notebook.say(f"On the same test pairs, first seed: {frozen_pairs.text}")
record("text_transplant_auc_gain_full", round(lm_verdicts[("text blocks, full", "random blocks, full")]
                                              .difference.estimate, 4))
_ = record("text_transplant_auc_gain_frozen", round(lm_verdicts[("text blocks, frozen", "random blocks, frozen")]
                                                    .difference.estimate, 4))

# %% [markdown]
# How to read this: the text model's held-out loss, printed above, says how much it learned about text beyond
# character frequencies; at the small sizes here it is little, so its blocks are a different starting point rather
# than "language understanding". Whatever their effect on faces, it is measured against the same ViT from random
# weights, with the same budget and the same seeds, and judged by the noise rule. A real BERT-Base (its published
# size: 110M parameters [Devlin et al., 2019]) has no pixel input at all: the article's recipe would have to
# replace its embeddings by a patch embedding, exactly as here, and keep only the blocks.

# %% [markdown]
# ## Exercises
#
# Graded by difficulty: ★ a few minutes, ★★ a little thought or code, ★★★ an open question. Each has a solution in
# a folded cell below it (click to expand); try first. The check cells tell you whether your answer is right.
#
# **Exercise 1 ★ (predict, then run).** Take `small_cnn()` from section 3, freeze its convolution and BatchNorm
# (`freeze(net, ["0", "1"])`) and train it for one epoch with `fit` on `toy_x, toy_y`. Does the BatchNorm layer's
# `running_mean` change? Predict, then set `ex1_changed` from the weights before and after.

# %%
ex1_changed = None  # True or False, from your run

# %% tags=["solution"] jupyter={"source_hidden": true}
net = small_cnn()
freeze(net, ["0", "1"])
mean_before = net[1].running_mean.clone()
fit(net, TensorImages(toy_x, toy_y), epochs=1, batch_size=32, lr=0.1, progress=False)
ex1_changed = not torch.equal(mean_before, net[1].running_mean)

# %%
fk.notebook.check("the frozen BatchNorm's running mean changed", ex1_changed, False);

# %% [markdown]
# **Exercise 2 ★★ (implement from scratch).** Write `decay_multipliers(num_layers, decay)`: the learning-rate
# multiplier of each layer under layer-wise decay, from the input layer ($i = 0$) to the output layer
# ($i = L - 1$), $s_i = d^{\,L-1-i}$. The check compares it with the table of section 3 (`scales`, from
# `facekit.train.layer_decay_scales`).

# %%
def decay_multipliers(num_layers: int, decay: float) -> list:
    return None  # your code here

# %% tags=["solution"] jupyter={"source_hidden": true}
def decay_multipliers(num_layers: int, decay: float) -> list:
    return [decay ** (num_layers - 1 - i) for i in range(num_layers)]

# %%
fk.notebook.check("layer-wise decay", decay_multipliers(len(layers), 0.75), [scales[l[0]] for l in layers]);

# %% [markdown]
# **Exercise 3 ★★ (implement from scratch).** `fit`'s linear warm-up sets the learning rate of epoch $e$
# (counted from 0) to $\eta \cdot \min\bigl(1, (e + 1)/(w + 1)\bigr)$ for $w$ warm-up epochs. Write
# `warmup_rate(epoch, base, warmup_epochs)` and reproduce the default group's column of the learning-rate table of
# section 3 (three epochs, two of warm-up, no schedule after it).

# %%
def warmup_rate(epoch: int, base: float, warmup_epochs: int) -> float:
    return None  # your code here

# %% tags=["solution"] jupyter={"source_hidden": true}
def warmup_rate(epoch: int, base: float, warmup_epochs: int) -> float:
    return base * min(1.0, (epoch + 1) / (warmup_epochs + 1))

# %%
fk.notebook.check("warm-up rates", [warmup_rate(e, LR, 2) for e in range(len(lr_table))],
                  lr_table["default"].to_numpy());

# %% [markdown]
# **Exercise 4 ★★ (change a parameter and explain).** Partial fine-tuning trains the unfrozen half of the
# backbone at `BACKBONE_LR_SCALE` times the base rate. Rerun the supervised CNN's partial fine-tuning with the
# fewest labels, first seed, with `backbone_scale=1.0`, and compare its test AUC and best epoch with the run of
# section 5 (`results[("CNN", "supervised", "partial", FRACTIONS[0], seed)]`). Rerun the default too and check
# that it reproduces section 5. Which learning curve of section 5 would you look at to explain the difference?

# %%
ex4 = None  # a dict: backbone scale -> the result dict of run_finetune

# %% tags=["solution"] jupyter={"source_hidden": true}
ex4 = {scale: run_finetune(sup_body, "partial", FRACTIONS[0], seed, backbone_scale=scale)[0]
       for scale in (BACKBONE_LR_SCALE, 1.0)}
fk.notebook.say("; ".join(f"backbone x{k:g}: test AUC {v['AUC']:.4f}, best epoch {v['best epoch']}"
                          for k, v in ex4.items()))

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# With ten-odd people, a full learning rate on the pretrained half lets a few hundred images pull features
# learned on many people towards the few in the training set: validation accuracy often peaks in the first epoch
# and then falls (look at the supervised curves of the smallest fraction), and early stopping rescues only part
# of it. A smaller rate changes the pretrained features slowly, so the head start survives. One seed cannot tell
# you which is better here: repeat over `SEEDS` and use `st.compare_seeds` before you conclude.

# %%
fk.notebook.check("the default rerun reproduces section 5", ex4[BACKBONE_LR_SCALE]["AUC"],
                  results[("CNN", "supervised", "partial", FRACTIONS[0], seed)]["AUC"], atol=1e-3);

# %% [markdown]
# **Exercise 5 ★★★ (open question).** In this chapter the supervised backbone is pretrained on labelled
# synthetic people drawn by the same generator as the test people, while chapter 5's self-supervised backbones saw
# unlabelled images of other people (and LFW photos when present). Is the comparison between "supervised" and
# "self-supervised" pretraining fair? List what differs besides the presence of labels, and design the experiment
# that isolates the labels.

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# One answer. Besides labels, the two differ in (a) the data: the supervised CNN saw people from exactly the test
# distribution (same generator, difficulty and crop), the self-supervised ones a pool that also held LFW photos;
# (b) the amount of training: epochs, batch sizes and optimiser steps differ; (c) the objective's match with the
# downstream task: ArcFace pretraining *is* the fine-tuning task, SimCLR and MAE are not; (d) the pretraining
# budget per seed: chapter 5's backbones are one checkpoint each, so the seeds here do not cover the pretraining's
# own luck. To isolate labels: pretrain both on the same images (the synthetic pretraining people, labels dropped
# for SimCLR), for the same number of optimiser steps and wall-clock time, with several pretraining seeds each,
# then fine-tune both with every regime and compare over pretraining *and* fine-tuning seeds with
# `st.compare_seeds`.

# %% [markdown]
# ## Summary
#
# - Freezing means no gradient *and* frozen BatchNorm statistics; parameter groups give each part of a model its
#   own multiplier of one schedule (warm-up, cosine), and one training loop, `fit`, handles every regime.
# - A label fraction is a number of *people*; with too few of them a "fraction" measures nothing.
# - Claims about pretraining are claims about a recipe, so they are tested over seeds, and on the same test pairs
#   resampling people; time to target is read off learning curves, never from a single pair of runs.
# - Forgetting is measured on the people the backbone was pretrained on, and a frozen body forgets nothing.
#
# This run's numbers:

# %%
people_at = dict(zip(label_sets["fraction"], label_sets["people"]))
lines = [f"- label fractions: " + ", ".join(f"{f:.0%} = {people_at[f]} people" for f in FRACTIONS) +
         f"; {len(SEEDS)} seeds; test: {len(test_pairs.is_same)} pairs of {S.test_identities} people"]
lines += [f"- {v['seeds'].text}" for v in acc_verdicts if v["labels"] in (FRACTIONS[0], FRACTIONS[-1])]
lines += [f"- time to target: {v.text}" for v in time_verdicts.values()]
lines += [f"- forgetting (old-people closed-set accuracy lost): " + ", ".join(f"{k} {v:+.3f}" for k, v in drop.items()),
          f"- smaller backbone learning rate: {forget_seeds_verdict.text}",
          f"- text weights: {lm_verdicts[('text blocks, frozen', 'random blocks, frozen')].text}",
          f"- the chapter took {ctx.elapsed():.0f} s at profile {PROFILE}"]
fk.notebook.say("\n".join(lines))
record("forgetting_smaller_lr_winner", str(forget_seeds_verdict.winner), key=True)
_ = record("chapter_seconds", round(ctx.elapsed(), 1))

# %% [markdown]
# What this does and does not show: the people are synthetic and the models small, so the numbers say how the
# regimes rank under one budget here, not what BERT-Base or an ImageNet ResNet would do on LFW. The recipe is what
# carries over: pretrain, then fine-tune with warm-up, a lower learning rate for what was pretrained, early
# stopping on held-out people, and a check of what was forgotten. Chapter 10 fine-tunes real pretrained face
# models (dlib's ResNet, FaceNet) on LFW.
#
# ## Pitfalls
#
# - **"Frozen" BatchNorm that still learns.** `requires_grad = False` does not stop running statistics from
#   updating in `train()` mode; freeze them too, or the frozen features drift.
# - **Choosing the regime, the epoch or the learning rate on the test people.** Every choice here uses the
#   validation people; a choice made on the test set inflates the number it reports.
# - **A label fraction of a handful of people.** Results on two or three people are anecdotes; define fractions by
#   the number of people they keep.
# - **Time to target from one run each.** Two runs that reach a target at epochs 1 and 2 differ by one epoch of
#   noise; draw the curves and repeat over seeds.
# - **A full learning rate on a pretrained backbone with few labels.** It can overwrite in a few steps what
#   pretraining learned (and forget the old people); use a smaller rate, partial freezing, or a linear probe first.
# - **A second, hand-written training loop.** It drifts from the first (schedules, seeding, clipping); use the
#   course's `fit` with callbacks, as section 8 does for a step-counted schedule.
#
# ## Further reading
#
# - J. Yosinski, J. Clune, Y. Bengio, H. Lipson, *How transferable are features in deep neural networks?*,
#   NeurIPS, 2014.
# - J. Howard, S. Ruder, *Universal language model fine-tuning for text classification* (ULMFiT), ACL, 2018
#   (discriminative learning rates per layer, gradual unfreezing).
# - J. Devlin, M.-W. Chang, K. Lee, K. Toutanova, *BERT: pre-training of deep bidirectional transformers for
#   language understanding*, NAACL, 2019 (masked language modelling; BERT-Base).
# - S. Kornblith, J. Shlens, Q. V. Le, *Do better ImageNet models transfer better?*, CVPR, 2019.
# - J. Kirkpatrick et al., *Overcoming catastrophic forgetting in neural networks*, PNAS, 2017.
# - A. Kumar, A. Raghunathan, R. Jones, T. Ma, P. Liang, *Fine-tuning can distort pretrained features and
#   underperform out-of-distribution*, ICLR, 2022 (linear probe, then fine-tune).
# - K. Lu, A. Grover, P. Abbeel, I. Mordatch, *Pretrained transformers as universal computation engines*, AAAI,
#   2022 (frozen language-model blocks on other modalities).
# - P. Goyal et al., *Accurate, large minibatch SGD: training ImageNet in 1 hour*, arXiv, 2017 (learning-rate
#   warm-up).
# - L. Prechelt, *Early stopping — but when?*, in Neural Networks: Tricks of the Trade, 1998.
