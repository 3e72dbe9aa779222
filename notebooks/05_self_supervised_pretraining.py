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
# # Chapter 5 — Self-supervised pretraining on unlabelled faces
#
# Labels are the expensive part of face recognition: someone has to say which photos show the same person.
# Unlabelled face photos are cheap. **Self-supervised** learning invents a task whose answer is in the image
# itself, trains a network on it, and keeps the network's features for the real task.
#
# The second source article claims that a model pretrained with self-supervised tasks (autoencoding, masked
# modelling) and then fine-tuned reaches **higher accuracy with fewer labels and in less time**. This chapter
# does only the first half: it pretrains two backbones on unlabelled faces and measures what their features
# learned about identity, on people and labels the pretraining never saw, against random networks of the same
# shape and against raw pixels. Whether that turns into higher accuracy with fewer labels, or less training time,
# is a claim about fine-tuning; chapter 6 loads the two checkpoints written at the end of this notebook and
# measures it.
#
# ## Learning outcomes
#
# After this chapter you can
#
# 1. draw a different random mask for every image of a batch with one `argsort` (and undo it with the inverse
#    permutation), and check it against `facekit.pretrain.random_masking`;
# 2. build a masked autoencoder around an unchanged vision transformer, and prove that hidden pixels never reach
#    its encoder;
# 3. write SimCLR's NT-Xent loss from its formula, check it against two libraries, and say what the augmentations
#    teach the network to ignore;
# 4. judge pretrained features with nearest-neighbour and linear probes against random initialisation and raw
#    pixels, with paired tests on the same held-out images and over several pretraining seeds;
# 5. save a backbone with how to rebuild it, so that another notebook can fine-tune it.
#
# ## Prerequisites
#
# - Chapter 2: patches, tokens, position embeddings and the vision transformer (`facekit.models.VisionTransformer`).
# - Chapter 4: the IResNet embedding backbone, cosine similarity, and softmax cross-entropy as "pick the right one".
# - Chapter 1: `facekit.train.fit`, and `facekit.stats` with the course's noise rule (one model is called better only when
#   the $95\%$ interval of a paired difference excludes zero, with enough items and seeds).
#
# The plan: (1) the unlabelled pool and the labelled probe people; (2) random masking; (3) the masked autoencoder;
# (4) contrastive learning with SimCLR; (5) probes and verdicts, over several pretraining seeds; (6) the
# checkpoints for chapter 6; then exercises, a summary, pitfalls and further reading.

# %% tags=["parameters"]
profile = "auto"  # smoke | cpu | gpu | auto (auto: $FACEKIT_PROFILE, else gpu if CUDA, else cpu)
lfw = "auto"  # auto: add unlabelled LFW photos (people in no pairs.txt fold) when LFW is found; off: synthetic only
data_root = ""  # folder with lfw/, att_faces/, dlib_faces/; empty: FACEKIT_DATA, ./data, ../shared/datasets
seed = 0

# %%
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import display
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torchvision.transforms import v2

import facekit as fk
import facekit.stats as st
from facekit.config import choice
from facekit.data import LFWPairs, SyntheticFaces, TensorImages, lfw_people, read_image
from facekit.data.transforms import preprocess
from facekit.metrics import identification
from facekit.models import VisionTransformer, count_parameters, create_embedding, embed
from facekit.pretrain import (MaskedAutoencoder, PatchMask, SimCLR, TwoViews, gather_tokens, load_pretrained,
                              mask_image, nt_xent_loss, patchify, random_masking, save_pretrained, simclr_augment,
                              two_views, unpatchify)
from facekit.reports import record
from facekit.train import fit

# %% [markdown]
# One set of sizes per profile: `smoke` proves the code runs (its numbers mean nothing), `cpu` is a laptop run of
# at most about ten minutes, `gpu` the full sizes. `seeds` is how many times both pretrainings are repeated for the
# verdicts of section 5; the cpu profile pays for its three seeds with a smaller pool and fewer epochs per run.

# %%
@dataclass(frozen=True)
class Sizes:
    image_size: int  # side of every face given to the networks
    render_size: int  # synthetic faces are drawn at this size, centre-cropped (FACE_CROP) and resized
    unlabelled_identities: int  # synthetic people in the unlabelled pool (labels thrown away)
    unlabelled_per_id: int  # images of each
    lfw_images: int  # at most this many unlabelled LFW photos added to the pool (0 = none)
    probe_identities: int  # other synthetic people, labelled, used only by the probes of section 5
    probe_per_id: int  # images of each: the first half is the gallery / training set, the rest is tested
    vit: str  # facekit ViT preset of the MAE encoder
    patch_size: int  # P of the ViT: image_size / P patches per side
    decoder_dim: int  # the MAE's light decoder
    decoder_depth: int
    mae_epochs: int
    mae_batch: int
    cnn: str  # facekit.models.create_embedding preset of the SimCLR backbone (chapter 4's backbone)
    simclr_epochs: int
    simclr_batch: int  # B images -> 2B views; every other view in the batch is a negative
    seeds: int = fk.profiles.count("steps")  # pretraining seeds (both methods and their random twins) behind
    # the verdicts of section 5; a loop count, so a dry run caps it like optimiser steps
    n_boot: int  # bootstrap resamples behind every interval

# %% [markdown]
# `fk.notebook.setup` picks the profile's sizes, seeds every generator, finds the device and the real datasets on
# disk, and shows the three profiles side by side (the arrow marks the one in use). The constants after it are the
# recipe's choices, named once and used everywhere below.

# %%
ctx = fk.notebook.setup(
    profile, data_root=data_root, seed=seed,
    smoke=Sizes(image_size=32, render_size=48, unlabelled_identities=24, unlabelled_per_id=4, lfw_images=32,
                probe_identities=8, probe_per_id=4, vit="tiny", patch_size=8, decoder_dim=32, decoder_depth=1,
                mae_epochs=2, mae_batch=64, cnn="iresnet_tiny", simclr_epochs=2, simclr_batch=32, seeds=2,
                n_boot=200),
    cpu=Sizes(image_size=32, render_size=48, unlabelled_identities=80, unlabelled_per_id=10, lfw_images=200,
              probe_identities=60, probe_per_id=10, vit="tiny", patch_size=8, decoder_dim=64, decoder_depth=1,
              mae_epochs=20, mae_batch=128, cnn="iresnet_tiny", simclr_epochs=6, simclr_batch=128, seeds=3,
              n_boot=1000),
    gpu=Sizes(image_size=64, render_size=96, unlabelled_identities=2000, unlabelled_per_id=20, lfw_images=1500,
              probe_identities=100, probe_per_id=10, vit="small_cpu", patch_size=8, decoder_dim=128,
              decoder_depth=2, mae_epochs=200, mae_batch=256, cnn="iresnet_tiny", simclr_epochs=100,
              simclr_batch=256, seeds=3, n_boot=2000))
PROFILE, S, DEVICE, ROOT, FOUND = ctx.profile, ctx.sizes, ctx.device, ctx.root, ctx.found
choice(lfw, ("auto", "off"), name="lfw")
FACE_CROP = 0.6  # keep the central 60% of a rendered synthetic image: the face, little background or clothing
LFW_CROP = 0.5  # centre crop of LFW's 250-pixel side (as chapters 1 and 4)
MASK_RATIO = 0.75  # MAE's default: most of the image is hidden
NORM_PIX = True  # MAE's target: each hidden patch's pixels standardised by its own mean and variance
TEMPERATURE = 0.5  # NT-Xent's tau (SimCLR's value for small batches)
CROP_SCALE = 0.2  # SimCLR's random crops keep at least this fraction of the face's area
PROBE_C = 0.1  # inverse L2 strength of the linear probe (logistic regression on standardised features)
SEEDS = [seed + 100 * i for i in range(S.seeds)]  # the first is `seed`: its models are shown and saved

# %% [markdown]
# How long this chapter takes at each profile, read from the committed report runs (`reports/*/summary.json`):

# %%
fk.notebook.say(fk.notebook.durations_sentence("05_self_supervised_pretraining"))

# %% [markdown]
# ## 1. Unlabelled faces, and labelled people kept for the probes
#
# The pretraining pool is a pile of face images **without labels**: synthetic faces whose identity labels we
# discard, plus (when LFW is on disk) LFW photos of people who appear in **none** of the ten `pairs.txt` folds,
# so that a later LFW evaluation never scores a person the backbone has seen. The probe set is a different set of
# synthetic people (another generator seed), with labels, never used in pretraining. Synthetic faces are
# centre-cropped to the face: their backgrounds and clothes are random and differ from photo to photo, and a network
# that only has to tell images apart happily uses them instead of the face. Such a *shortcut* solves the
# pretraining task perfectly and teaches nothing about identity; with a loose crop, SimCLR's features can end up
# below a random network's (exercise 5 asks you to explain why the crop matters).

# %%
def face_crop(images: torch.Tensor) -> torch.Tensor:
    """(N, C, R, R) rendered faces -> (N, C, S, S): the central FACE_CROP of the side, resized."""
    side = int(round(images.shape[-1] * FACE_CROP))
    return v2.functional.resize(v2.functional.center_crop(images, [side, side]), [S.image_size] * 2, antialias=True)


t_data = time.perf_counter()
synthetic_pool, _discarded = SyntheticFaces(S.unlabelled_identities, S.unlabelled_per_id, S.render_size,
                                            seed=seed).tensors()
synthetic_pool = face_crop(synthetic_pool)
probe_set = SyntheticFaces(S.probe_identities, S.probe_per_id, S.render_size, seed=seed + 1000)
probe_x, probe_y = probe_set.tensors()
probe_x = face_crop(probe_x)
pool_people = SyntheticFaces(S.unlabelled_identities, 1, 16, seed=seed).identities
assert not set(map(repr, probe_set.identities)) & set(map(repr, pool_people)), "a probe person is in the pool"

lfw_pool = torch.empty(0, 3, S.image_size, S.image_size)
if lfw == "off" or FOUND.get("lfw") is None or S.lfw_images == 0:
    print(f"lfw={lfw!r}: pool is synthetic only ({'off' if lfw == 'off' else 'LFW not found'})")
else:
    pairs = LFWPairs(ROOT)
    in_folds = {p.parent.name for pair in pairs.pairs for p in (pair.path_a, pair.path_b)}
    people = lfw_people(ROOT, min_images=1)
    outside = [path for path, label in people.samples if people.classes[label] not in in_folds]
    rng = np.random.default_rng(seed)
    chosen = [outside[i] for i in sorted(rng.choice(len(outside), min(S.lfw_images, len(outside)), replace=False))]
    prep = preprocess(S.image_size, crop=LFW_CROP)
    lfw_pool = torch.stack([prep(read_image(path)) for path in chosen])
    assert not {path.parent.name for path in chosen} & in_folds, "an LFW pretraining photo shows a pairs.txt person"
    print(f"LFW: {len(people.classes)} people; {len(in_folds)} appear in pairs.txt; {len(outside)} photos of the "
          f"others, {len(chosen)} of them used (no labels)")
pool = torch.cat([synthetic_pool, lfw_pool])  # (N, 3, S, S) in [0, 1], no labels
print(f"unlabelled pool: {len(pool)} images ({len(synthetic_pool)} synthetic, {len(lfw_pool)} LFW); probe set: "
      f"{S.probe_identities} other people x {S.probe_per_id} images; {time.perf_counter() - t_data:.1f} s")
record("pool_images", len(pool))
record("pool_lfw_images", len(lfw_pool))

show = torch.cat([synthetic_pool[:8], lfw_pool[:8]]) if len(lfw_pool) else synthetic_pool[:16]
fk.viz.image_grid(show, nrow=8, title="the unlabelled pool (synthetic, then LFW when present)")
plt.show()

# %% [markdown]
# ## 2. Random masking, per sample
#
# A vision transformer cuts an $S \times S$ image into $N = (S/P)^2$ patches (chapter 2). Masked image modelling
# hides most of them and asks for the hidden pixels back. MAE's trick for drawing a different random mask for
# every image of a batch without a Python loop: give every patch a uniform random number, **sort** the numbers
# (`argsort`), keep the patches with the $N - \mathrm{round}(rN)$ smallest ones, and remember the inverse
# permutation `ids_restore` (the `argsort` of the `argsort`), which puts the tokens back in place later.

# %%
def masking_from_scratch(batch: int, n: int, ratio: float, generator: torch.Generator):
    noise = torch.rand(batch, n, generator=generator)  # (B, N) one random number per patch
    ids_shuffle = noise.argsort(dim=1)  # (B, N) patches by increasing noise
    ids_restore = ids_shuffle.argsort(dim=1)  # (B, N) inverse permutation
    keep = n - round(ratio * n)
    mask = torch.ones(batch, n)
    mask[:, :keep] = 0  # in shuffled order: the first `keep` are visible
    return ids_shuffle[:, :keep], ids_restore, mask.gather(1, ids_restore)  # mask back in patch order


N_PATCHES = (S.image_size // S.patch_size) ** 2
keep_ids, restore_ids, mask_scratch = masking_from_scratch(4, N_PATCHES, MASK_RATIO, torch.Generator().manual_seed(0))
lib = random_masking(4, N_PATCHES, MASK_RATIO, generator=torch.Generator().manual_seed(0))
assert torch.equal(keep_ids, lib.ids_keep) and torch.equal(restore_ids, lib.ids_restore)
assert torch.equal(mask_scratch, lib.mask)
assert lib.mask.sum(1).tolist() == [float(round(MASK_RATIO * N_PATCHES))] * 4  # the same count in every image
tokens = torch.randn(4, N_PATCHES, 5)
assert torch.equal(gather_tokens(gather_tokens(tokens, lib.ids_restore.argsort(1)), lib.ids_restore), tokens)
print(f"{N_PATCHES} patches of {S.patch_size}x{S.patch_size} px; {lib.num_masked} hidden, "
      f"{N_PATCHES - lib.num_masked} visible per image; from scratch == facekit.pretrain.random_masking")


# %% [markdown]
# The figure below follows one face through the masking. Left: the face cut into its patches, numbered in reading
# order, with the hidden ones greyed out. Middle: the random number each patch drew, in sorted order; the
# `keep` smallest (coloured) are the visible ones. Right: the two token sequences this produces. The **encoder**
# gets only the visible patches (plus the class token), in shuffled order; the **decoder** gets every position
# back, in patch order, with one shared learned mask token `[M]` wherever a patch was hidden. Look for the same
# patch numbers in all three panels.

# %%
def draw_masking(image: torch.Tensor, generator_seed: int = 0):
    g = torch.Generator().manual_seed(generator_seed)
    noise = torch.rand(1, N_PATCHES, generator=g)[0]  # what random_masking draws with this generator
    m = random_masking(1, N_PATCHES, MASK_RATIO, generator=torch.Generator().manual_seed(generator_seed))
    side, per_row = S.image_size, S.image_size // S.patch_size
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), gridspec_kw=dict(width_ratios=[1, 1.3, 1.6]))
    axes[0].imshow(mask_image(image[None], m.mask, S.patch_size)[0].permute(1, 2, 0).clamp(0, 1))
    for i in range(N_PATCHES):
        r, c = divmod(i, per_row)
        axes[0].text((c + 0.5) * S.patch_size - 0.5, (r + 0.5) * S.patch_size - 0.5, str(i), ha="center",
                     va="center", color="white" if m.mask[0, i] else "yellow", fontsize=9, weight="bold")
    axes[0].set(xticks=np.arange(0, side, S.patch_size) - 0.5, yticks=np.arange(0, side, S.patch_size) - 0.5,
                xticklabels=[], yticklabels=[], title="patches (grey = hidden)")
    axes[0].grid(color="white", lw=1)
    order = noise.argsort()
    kept = m.ids_keep[0].tolist()
    axes[1].bar(range(N_PATCHES), noise[order], color=["tab:orange" if i in kept else "lightgrey" for i in order])
    axes[1].set_xticks(range(N_PATCHES), [str(int(i)) for i in order], fontsize=7)
    axes[1].set(xlabel="patch, by increasing noise", ylabel="noise", title=f"argsort: keep the {len(kept)} smallest")
    axes[2].axis("off")
    enc = ["[cls]"] + [str(i) for i in kept]
    dec = ["[cls]"] + [("[M]" if m.mask[0, i] else str(i)) for i in range(N_PATCHES)]
    for row, (label, toks) in enumerate([("encoder input", enc), ("decoder input", dec)]):
        axes[2].text(0, 0.85 - 0.45 * row, label, fontsize=10, weight="bold", transform=axes[2].transAxes)
        for j, tok in enumerate(toks):
            axes[2].text(0.04 + j * 0.95 / len(dec), 0.68 - 0.45 * row, tok, fontsize=7, ha="center",
                         transform=axes[2].transAxes, bbox=dict(fc="lightgrey" if tok == "[M]" else "tab:orange",
                                                                alpha=0.6, boxstyle="round,pad=0.2"))
    axes[2].set_title("what the encoder and the decoder receive")
    plt.tight_layout()
    plt.show()
    return m


demo_mask = draw_masking(synthetic_pool[0], generator_seed=seed)
assert demo_mask.mask.sum().item() == round(MASK_RATIO * N_PATCHES)

# %%
fk.viz.image_grid(torch.cat([synthetic_pool[:4], mask_image(synthetic_pool[:4], lib.mask, S.patch_size)]), nrow=4,
                  title=f"four faces and what the encoder sees at mask ratio {MASK_RATIO}: a new mask per face")
plt.show()

# %% [markdown]
# ## 3. A masked autoencoder whose encoder is a plain facekit ViT
#
# `facekit.pretrain.MaskedAutoencoder` wraps a `facekit.models.VisionTransformer`:
#
# - the **encoder** embeds the patches, adds the position embeddings, keeps only the visible tokens (and the class
#   token) and runs the ViT's own blocks on them: a fraction $1 - r$ of the tokens, so it is cheap;
# - the light **decoder** gets the encoded visible tokens plus one shared, learned *mask token* at every hidden
#   position (put back in place with `ids_restore`), adds its own position embeddings, and predicts every patch's
#   pixels;
# - the **loss** is the mean squared error on the hidden patches only: copying the visible ones is no lesson. The
#   target is each patch standardised by its own mean and variance (`norm_pix_loss`, which the MAE paper found
#   gives better features): the network must predict the patch's structure, not its average colour.
#
# The encoder's weights are exactly a `VisionTransformer`'s, so chapter 6 can load them into a plain ViT.
# Two checks before training: with nothing masked the MAE encoder computes `VisionTransformer.tokens`, and the
# encoder's output does not change when the **pixels of hidden patches** are replaced by noise (no leakage; a
# conv stem with overlapping kernels would leak, and `MaskedAutoencoder` refuses one).

# %%
def make_mae(init_seed: int) -> tuple[MaskedAutoencoder, VisionTransformer]:
    """A fresh MAE around a fresh ViT (seeded), and a second ViT of the same shape that stays random."""
    torch.manual_seed(init_seed)
    vit = VisionTransformer(0, S.vit, image_size=S.image_size, patch_size=S.patch_size, pool="mean")
    model = MaskedAutoencoder(vit, mask_ratio=MASK_RATIO, decoder_dim=S.decoder_dim, decoder_depth=S.decoder_depth,
                              norm_pix_loss=NORM_PIX)
    torch.manual_seed(init_seed + 1)
    return model, VisionTransformer(0, vit.config)  # the same architecture, another random initialisation


mae, random_vit = make_mae(seed)
encoder = mae.encoder
assert encoder is not None and isinstance(encoder, VisionTransformer)
mae.eval()
x = synthetic_pool[:4]
ids = torch.arange(N_PATCHES).expand(4, -1)
nothing_hidden = PatchMask(ids_keep=ids, ids_restore=ids, mask=torch.zeros(4, N_PATCHES))
torch.testing.assert_close(mae.forward_encoder(x, nothing_hidden), encoder.tokens(x), atol=1e-5, rtol=1e-5)
hidden = lib.mask.bool()[:, :, None]  # (B, N, 1)
noisy = unpatchify(torch.where(hidden, torch.rand_like(patchify(x, S.patch_size)), patchify(x, S.patch_size)),
                   S.patch_size, 3)
leak = (mae.forward_encoder(noisy, lib) - mae.forward_encoder(x, lib)).abs().max().item()
assert leak == 0.0, f"hidden pixels changed the encoder's output by {leak}"
print(f"encoder: {count_parameters(encoder):,} parameters ({S.vit}, {N_PATCHES} patches); decoder: "
      f"{count_parameters(mae) - count_parameters(encoder):,}; largest change of the encoder's output when "
      f"hidden pixels become noise: {leak}")
_ = record("mae_leak_max_abs", leak)

# %% [markdown]
# Training goes through the course's one loop, `facekit.train.fit`: the dataset is the pool with a dummy label,
# `forward` returns the MAE's loss and `loss_fn` passes it on. A random horizontal flip is the only augmentation
# (MAE needs little). Before and after, we measure the reconstruction error on held-out faces (the probe people)
# against a baseline that needs no training: a flat patch at the hidden patch's own mean, which is 0 in the
# standardised target (so its error is the patches' standardised variance, just under 1).

# %%
def mae_forward(model, batch, device):
    return model(batch[0].to(device)).loss, batch[1]


def passthrough(loss, _):
    return loss


def pretrain_mae(model: MaskedAutoencoder, run_seed: int):
    """Train `model` on the pool with fit -> (history, seconds)."""
    t0 = time.perf_counter()
    history = fit(model, TensorImages(pool, torch.zeros(len(pool)), transform=v2.RandomHorizontalFlip()),
                  config=dict(epochs=S.mae_epochs, batch_size=S.mae_batch, lr=1.5e-3, optimizer="adamw",
                              weight_decay=0.05, scheduler="cosine", warmup_epochs=1, seed=run_seed,
                              device=str(DEVICE), progress=False),
                  forward=mae_forward, loss_fn=passthrough, metrics={})
    return history, time.perf_counter() - t0


@torch.no_grad()
def held_out_mae_loss(model: MaskedAutoencoder, images: torch.Tensor) -> float:
    """Masked-patch MSE on `images` with a fixed set of masks (the same for every call)."""
    model.eval()
    mask = model.random_mask(len(images), torch.Generator().manual_seed(seed + 7))
    return model(images.to(DEVICE), mask).loss.item()  # random_mask puts the mask on the model's device


@torch.no_grad()
def flat_patch_baseline(images: torch.Tensor, mask: torch.Tensor) -> float:
    """Masked-patch MSE of predicting every hidden patch as flat at its own mean (the MAE loss with pred = 0)."""
    return mae.loss(images, torch.zeros_like(mae.targets(images)), mask).item()

# %% [markdown]
# What to look for: the training loss should fall well below the flat-patch baseline, and so should the error on
# held-out faces of people the MAE never saw; if only the training loss falls, the MAE memorised the pool.

# %%
baseline_mask = mae.random_mask(len(probe_x), torch.Generator().manual_seed(seed + 7)).mask.cpu()
mae_before = held_out_mae_loss(mae.to(DEVICE), probe_x)
baseline = flat_patch_baseline(probe_x.to(DEVICE), baseline_mask.to(DEVICE))
mae_history, mae_time = pretrain_mae(mae, seed)
mae_after = held_out_mae_loss(mae, probe_x)
mae_losses = mae_history["train_loss"]
fk.notebook.say(f"MAE: {S.mae_epochs} epochs over {len(pool)} images in {mae_time:.0f} s; training loss "
                f"{mae_losses[0]:.4f} → {mae_losses[-1]:.4f}. Held-out masked-patch MSE: untrained "
                f"{mae_before:.4f}, trained **{mae_after:.4f}**, flat-patch baseline {baseline:.4f}.")
assert all(np.isfinite(mae_losses)) and mae_losses[-1] < mae_losses[0]
if PROFILE != "smoke":  # two epochs on a hundred images (smoke) prove nothing either way
    assert mae_after < mae_before and mae_after < baseline, "the trained MAE should beat flat patches"
record("mae_train_loss_first", mae_losses[0])
record("mae_train_loss_last", mae_losses[-1])
record("mae_heldout_mse", mae_after, key=True)
record("mae_heldout_mse_untrained", mae_before)
record("mae_heldout_mse_flat_patch", baseline)
_ = record("mae_time_s", mae_time, unit="s")

# %% [markdown]
# The reconstructions of held-out faces come in four rows: the original, what the encoder saw, the decoder's
# prediction for every patch, and the prediction with the visible patches pasted back. Look at the hidden patches
# only: a trained MAE should put the eyes, nose and mouth roughly where a face has them, blurred (a squared error
# rewards the average of the plausible answers), while an untrained one predicts flat patches. The right panel is
# the training loss against the flat-patch baseline.

# %%
mae.eval()
with torch.no_grad():
    shown = probe_x[:: S.probe_per_id][:6].to(DEVICE)
    m = mae.random_mask(len(shown), torch.Generator().manual_seed(seed + 3))
    out = mae(shown, m)
    pictures = torch.cat([shown, mask_image(shown, out.mask.mask, S.patch_size),
                          mae.reconstruct(shown, out.pred, out.mask.mask, paste_visible=False),
                          mae.reconstruct(shown, out.pred, out.mask.mask)]).cpu()
fig, (ax_img, ax_loss) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw=dict(width_ratios=[1.6, 1]))
fk.viz.image_grid(pictures, nrow=len(shown), ax=ax_img,
                  title="held-out faces: original / masked / prediction / prediction + visible patches")
# the predictions are standardised patches: to draw them, each is rescaled with the true patch's mean and spread
# (as in the MAE paper's figures), so the pictures show the predicted structure, not a predicted colour
ax_loss.plot(range(1, len(mae_losses) + 1), mae_losses, marker="o")
ax_loss.axhline(baseline, color="grey", ls="--", label="flat-patch baseline (held out)")
ax_loss.set(xlabel="epoch", ylabel="masked-patch MSE", title="MAE training loss")
ax_loss.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Contrastive learning: SimCLR and the NT-Xent loss
#
# SimCLR needs no decoder. Each image of a batch of $B$ is augmented twice; the two views of one image are a
# **positive** pair and the other $2B - 2$ views are **negatives**. A backbone $f$ (here chapter 4's IResNet, the
# CNN that chapter 6 fine-tunes with ArcFace) and a small projection head $g$ map each view to $z = g(f(x))$; with
# cosine similarities $s_{ik}$ and a temperature $\tau$, the loss of anchor $i$ with positive $j$ is
#
# $$\ell(i, j) = -\log \frac{\exp(s_{ij}/\tau)}{\sum_{k \ne i} \exp(s_{ik}/\tau)},$$
#
# averaged over all $2B$ anchors: the normalised temperature-scaled cross-entropy (NT-Xent). It is a softmax
# classification "which of the other $2B - 1$ views is my partner?". The head $g$ is thrown away afterwards: the
# features before it keep more information.
#
# The augmentations define the task. SimCLR's ImageNet recipe turns colours to grey and shifts hues, which would
# teach the network to ignore skin and hair colour, both identity cues; we use crops (down to a fifth of the
# face, so the two views often show different parts of it), flips and milder brightness, contrast and saturation
# changes. Each image gets its own random draw: a torchvision transform
# called on a whole batch draws one set of parameters for all of it (`two_views` and `TwoViews` apply it image by
# image).

# %%
def nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent written anchor by anchor, straight from the formula."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n, b = len(z), len(z1)
    total = 0.0
    for i in range(n):
        j = (i + b) % n  # the other view of the same image
        denominator = sum(torch.exp(z[i] @ z[k] / tau) for k in range(n) if k != i)
        total = total + -torch.log(torch.exp(z[i] @ z[j] / tau) / denominator)
    return total / n


g = torch.Generator().manual_seed(seed)
z1, z2 = torch.randn(8, 16, generator=g, dtype=torch.float64), torch.randn(8, 16, generator=g, dtype=torch.float64)
loop_value, lib_value = nt_xent_loop(z1, z2, TEMPERATURE), nt_xent_loss(z1, z2, TEMPERATURE)
torch.testing.assert_close(lib_value, loop_value)
parity = {"facekit - loop": abs(lib_value - loop_value).item()}
try:
    from pytorch_metric_learning.losses import NTXentLoss as PMLNTXent

    pml_value = PMLNTXent(temperature=TEMPERATURE)(torch.cat([z1, z2]), torch.arange(8).repeat(2))
    torch.testing.assert_close(lib_value, pml_value)
    parity["facekit - pytorch-metric-learning"] = abs(lib_value - pml_value).item()
except ImportError:
    print("pytorch-metric-learning not installed: that comparison is skipped")
aligned = nt_xent_loss(z1, z1 + 0.01 * z2, TEMPERATURE).item()
uniform = nt_xent_loss(torch.ones(8, 16), torch.ones(8, 16), TEMPERATURE).item()  # every similarity equal
assert abs(uniform - np.log(15)) < 1e-5
print(f"NT-Xent of unrelated random pairs {lib_value.item():.4f}; of nearly identical pairs {aligned:.4f}; when "
      f"all similarities are equal {uniform:.4f} = log(2B - 1); |facekit - reference|: {parity}")
record("nt_xent_parity_max_abs", max(parity.values()))

AUGMENT = simclr_augment(S.image_size, crop_scale=CROP_SCALE)
torch.manual_seed(seed)
view1, view2 = two_views(synthetic_pool[:8], AUGMENT)
fk.viz.image_grid(torch.cat([synthetic_pool[:8], view1, view2]), nrow=8,
                  title="eight faces and two random views of each (one positive pair per column)")
plt.show()

# %% [markdown]
# The figure below is the whole task of one batch. With $B$ images there are $2B$ views; row $i$ of the $2B \times 2B$
# matrix of cosine similarities is one softmax over "which column is my partner?". The diagonal (a view with itself)
# is left out; the one positive of each row sits $B$ columns away; every other cell is a negative. Left: the roles
# for a small batch. Right: the same matrix measured with the backbone trained below, on two views of eight
# held-out faces; after training, the positives should stand out as the brightest cell of their rows.

# %%
def contrastive_roles(b: int) -> np.ndarray:
    """(2B, 2B) roles of NT-Xent's similarity matrix: 0 negative, 1 positive, 2 left out (the view itself)."""
    n = 2 * b
    roles = np.zeros((n, n))
    roles[np.arange(n), (np.arange(n) + b) % n] = 1
    roles[np.arange(n), np.arange(n)] = 2
    return roles


def draw_contrastive(roles: np.ndarray, similarity: np.ndarray | None = None):
    fig, axes = plt.subplots(1, 2 if similarity is not None else 1, figsize=(10, 4.2), squeeze=False)
    cmap = plt.matplotlib.colors.ListedColormap(["#c6dbef", "tab:green", "lightgrey"])
    for ax in axes.ravel():
        ax.grid(False)
    axes[0, 0].imshow(roles, cmap=cmap, vmin=-0.5, vmax=2.5)
    b = len(roles) // 2
    axes[0, 0].set(title=f"roles, B = {b}: green positive, blue negative, grey left out",
                   xlabel="view k (first views, then second views)", ylabel="anchor view i")
    if similarity is not None:
        im = axes[0, 1].imshow(similarity, cmap="viridis")
        b = len(similarity) // 2
        rows = np.arange(2 * b)
        axes[0, 1].scatter((rows + b) % (2 * b), rows, marker="s", facecolors="none", edgecolors="red", s=40)
        axes[0, 1].set(title="measured cosine similarity (red: the positive)", xlabel="view k")
        fig.colorbar(im, ax=axes[0, 1], shrink=0.8)
    plt.tight_layout()
    plt.show()


assert (contrastive_roles(4) == 1).sum() == 8 and (contrastive_roles(4) == 0).sum() == 8 * (8 - 2)

# %% [markdown]
# Training again goes through `fit`: `TwoViews` turns each pool image into its two views, `forward` returns the
# NT-Xent loss of the batch. The loss starts near $\log(2B - 1)$, the value when every other view is equally
# similar, and should fall below it.

# %%
def simclr_forward(model, batch, device):
    views = batch[0].to(device)  # (B, 2, C, H, W) from TwoViews
    return model(views[:, 0], views[:, 1]), batch[1]


def make_simclr(init_seed: int):
    """A fresh SimCLR model around a fresh CNN (seeded), and a same-shaped CNN that stays random."""
    torch.manual_seed(init_seed)
    cnn = create_embedding(S.cnn, image_size=S.image_size)
    model = SimCLR(cnn, feature_dim=cnn.embedding_dim, temperature=TEMPERATURE)
    torch.manual_seed(init_seed + 1)
    return model, create_embedding(S.cnn, image_size=S.image_size)


def pretrain_simclr(model: SimCLR, run_seed: int):
    """Train `model` on the pool with fit -> (history, seconds)."""
    t0 = time.perf_counter()
    history = fit(model, TensorImages(pool, torch.zeros(len(pool)), transform=TwoViews(AUGMENT)),
                  config=dict(epochs=S.simclr_epochs, batch_size=S.simclr_batch, lr=1e-3, optimizer="adamw",
                              weight_decay=1e-4, scheduler="cosine", warmup_epochs=1, seed=run_seed,
                              device=str(DEVICE), progress=False),
                  forward=simclr_forward, loss_fn=passthrough, metrics={})
    return history, time.perf_counter() - t0


simclr, random_cnn = make_simclr(seed)
backbone = simclr.backbone
simclr_history, simclr_time = pretrain_simclr(simclr, seed)
simclr_losses = simclr_history["train_loss"]
chance = float(np.log(2 * S.simclr_batch - 1))
fk.notebook.say(f"SimCLR ({S.cnn}, {count_parameters(backbone):,} parameters): {S.simclr_epochs} epochs over "
                f"{len(pool)} images in {simclr_time:.0f} s; NT-Xent {simclr_losses[0]:.3f} → "
                f"**{simclr_losses[-1]:.3f}** (all views equally similar: $\\log(2B - 1)$ = {chance:.3f}).")
assert all(np.isfinite(simclr_losses)) and simclr_losses[-1] < simclr_losses[0]
record("simclr_loss_first", simclr_losses[0])
record("simclr_loss_last", simclr_losses[-1])
_ = record("simclr_time_s", simclr_time, unit="s")

# %%
torch.manual_seed(seed + 5)
held_views = torch.stack(two_views(probe_x[:: S.probe_per_id][:8], AUGMENT))  # (2, 8, C, H, W)
with torch.no_grad():
    z = F.normalize(simclr.eval().project(held_views.flatten(0, 1).to(DEVICE)).cpu(), dim=1)  # (16, d)
similarity = (z @ z.T).numpy()
draw_contrastive(contrastive_roles(4), similarity)
b8 = len(z) // 2
positive_rank = [(similarity[i][np.arange(2 * b8) != i] > similarity[i, (i + b8) % (2 * b8)]).sum() + 1
                 for i in range(2 * b8)]
fk.notebook.say(f"On these held-out views the positive is the most similar other view in "
                f"{sum(r == 1 for r in positive_rank)} of {2 * b8} rows (a random guess: about one row).")

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(range(1, len(simclr_losses) + 1), simclr_losses, marker="o", label="training NT-Xent")
ax.axhline(chance, color="grey", ls="--", label="all views equally similar, log(2B - 1)")
ax.set(xlabel="epoch", ylabel="NT-Xent", title=f"SimCLR on {S.cnn}")
ax.legend()
plt.show()

# %% [markdown]
# ## 5. Did the features learn anything about identity?
#
# A low pretraining loss only says the network solved its own puzzle. The question for faces is whether the
# features separate **people**, and people the pretraining never saw. Two standard probes on the held-out
# labelled set (the first half of each person's images is the gallery / training set, the second half is tested):
#
# - **nearest neighbour** (`facekit.metrics.identification`, rank 1): each test image takes the identity of the
#   most cosine-similar gallery image; no training at all;
# - **linear probe**: a logistic regression on the frozen, standardised features (scikit-learn).
#
# Each pretrained backbone is compared with **the same architecture at random initialisation**, and raw pixels give
# a reference line. The MAE's features are the mean of the encoder's patch tokens with nothing masked (the ViT's
# `pool="mean"`, which chapter 6 keeps for fine-tuning); the CNN's are its embedding before normalisation.
#
# What to expect: SimCLR's task *is* a retrieval task (find the other view among the batch), so its features are
# built for nearest neighbours. MAE's are not: the MAE paper reports that its features are far weaker under a
# linear probe than after fine-tuning, and that the two rankings disagree. A random network is a serious baseline
# here: random convolutions keep local image structure, and on small tightly-cropped faces that already
# identifies people well above chance, and so do raw pixels of these small, centred faces.
#
# **How we decide.** Every model is probed on the *same* held-out test images, so a comparison is paired: McNemar's
# exact test on the images one model gets right and the other wrong, and a paired bootstrap of the accuracy
# difference that resamples **people** (a person's test images succeed or fail together), through
# `facekit.stats.compare_correct`. Then, because one pretraining run is one draw of its random start, both
# pretrainings and their random twins are repeated with `seeds` seeds and compared over seeds
# (`facekit.stats.compare_seeds`). Verdicts follow the noise rule.

# %%
GALLERY = (np.arange(len(probe_y)) % S.probe_per_id) < S.probe_per_id // 2  # (N,) first half of each person
TEST_PERSON = probe_y.numpy()[~GALLERY]  # (T,) the person of each test image: what the bootstrap resamples
PROBES = ("1-NN", "linear")


def probe(features: torch.Tensor) -> dict[str, np.ndarray]:
    """(N, D) features of the probe set -> for each probe, a (T,) bool array: test image named correctly."""
    f, y = features.numpy(), probe_y.numpy()
    knn = identification(f[GALLERY], y[GALLERY], f[~GALLERY], y[~GALLERY], ranks=(1,)).probe_ranks == 1
    linear = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=2000))
    linear.fit(f[GALLERY], y[GALLERY])
    return {"1-NN": np.asarray(knn), "linear": linear.predict(f[~GALLERY]) == y[~GALLERY]}


def probe_models(vit_encoder, vit_random, cnn, cnn_random) -> dict[str, dict[str, np.ndarray]]:
    """The four networks of one seed, probed on the same test images."""
    for net in (vit_encoder, vit_random, cnn, cnn_random):
        net.to(DEVICE).eval()
    return {"ViT random": probe(embed(vit_random.features, probe_x, device=DEVICE)),
            "ViT MAE": probe(embed(vit_encoder.features, probe_x, device=DEVICE)),
            "CNN random": probe(embed(cnn_random.forward_unnormalized, probe_x, device=DEVICE)),
            "CNN SimCLR": probe(embed(cnn.forward_unnormalized, probe_x, device=DEVICE))}


pixels = probe(probe_x.flatten(1))  # raw pixels need no seed: computed once
first = {"pixels": pixels, **probe_models(encoder, random_vit, backbone, random_cnn)}
n_test = int((~GALLERY).sum())
table = pd.DataFrame({name: {p: f"{st.wilson(int(c[p].sum()), n_test):.3f}" for p in PROBES}
                      for name, c in first.items()}).T
table.columns = [f"{p} accuracy [95% Wilson]" for p in PROBES]
display(table)
fk.notebook.say(f"{n_test} test images of {S.probe_identities} people (chance {1 / S.probe_identities:.3f}), "
                f"seed {seed}.")
for name, c in first.items():
    for p in PROBES:
        record(f"{'knn_rank1' if p == '1-NN' else 'linear_probe'}[{name}]", round(float(c[p].mean()), 4))

# %% [markdown]
# The paired comparisons of this seed: each pretrained backbone against its random twin and against raw pixels,
# with both probes. Read the interval first: it says how large the difference could be, and whether zero is in it.

# %%
def item_verdict(a: str, b: str, p: str, results: dict) -> st.Verdict:
    return st.compare_correct(results[a][p], results[b][p], names=(f"{a} ({p})", f"{b} ({p})"),
                              groups=TEST_PERSON, n_boot=S.n_boot, seed=seed)


item_verdicts = [item_verdict(a, b, p, first) for a, b in [("ViT MAE", "ViT random"), ("CNN SimCLR", "CNN random"),
                                                          ("ViT MAE", "pixels"), ("CNN SimCLR", "pixels")]
                 for p in PROBES]
display(pd.DataFrame([v.row for v in item_verdicts]).round(3))
for v in item_verdicts[:4]:
    fk.notebook.say(v.text)
assert all(v.n == n_test for v in item_verdicts)  # the same held-out images behind every comparison

# %% [markdown]
# ### The same comparisons over pretraining seeds
#
# One seed could be lucky. The next cell repeats both pretrainings (same recipe, same pool) from other random
# starts, each with its own random twin, and probes them on the same test images. This is the expensive cell of the
# chapter: it costs `seeds - 1` times sections 3 and 4.

# %%
accuracy = {seed: {name: {p: float(c[p].mean()) for p in PROBES} for name, c in first.items() if name != "pixels"}}
t_seeds = time.perf_counter()
for s in SEEDS[1:]:
    mae_s, vit_random_s = make_mae(s)
    pretrain_mae(mae_s, s)
    simclr_s, cnn_random_s = make_simclr(s)
    pretrain_simclr(simclr_s, s)
    results_s = probe_models(mae_s.encoder, vit_random_s, simclr_s.backbone, cnn_random_s)
    accuracy[s] = {name: {p: float(c[p].mean()) for p in PROBES} for name, c in results_s.items()}
fk.notebook.say(f"{len(SEEDS)} seeds ({SEEDS}); the extra pretrainings took {time.perf_counter() - t_seeds:.0f} s.")
per_seed = pd.DataFrame({(name, p): {s: accuracy[s][name][p] for s in SEEDS} for name in accuracy[seed]
                         for p in PROBES})
per_seed.index.name = "seed"
display(per_seed.round(3))

# %% [markdown]
# The figure shows every seed as a point, a line joining each pretrained model to its random twin of the same
# seed, and pixels as a dashed reference. Lines that all slope the same way are what a consistent effect looks like.

# %% tags=["key-figure"]
seed_verdicts = {}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, p in zip(axes, PROBES):
    for x0, (pre, rand) in enumerate([("ViT MAE", "ViT random"), ("CNN SimCLR", "CNN random")]):
        a_vals, b_vals = per_seed[(pre, p)].to_numpy(), per_seed[(rand, p)].to_numpy()
        for av, bv in zip(a_vals, b_vals):
            ax.plot([2 * x0, 2 * x0 + 1], [bv, av], color="grey", lw=0.8, marker="o")
        seed_verdicts[(pre, p)] = st.compare_seeds(a_vals, b_vals, names=(pre, rand), metric=f"{p} accuracy")
    ax.axhline(float(pixels[p].mean()), color="tab:red", ls="--", label="raw pixels")
    ax.axhline(1 / S.probe_identities, color="grey", ls=":", label="chance")
    ax.set_xticks(range(4), ["ViT random", "ViT MAE", "CNN random", "CNN SimCLR"])
    ax.set(title=f"{p} probe, one point per seed", ylabel="accuracy on held-out people")
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
for v in seed_verdicts.values():
    fk.notebook.say(v.text)

# %%
simclr_knn_gain = float((per_seed[("CNN SimCLR", "1-NN")] - per_seed[("CNN random", "1-NN")]).mean())
mae_linear_gain = float((per_seed[("ViT MAE", "linear")] - per_seed[("ViT random", "linear")]).mean())
assert all(v.n == len(SEEDS) and v.unit == "seeds" for v in seed_verdicts.values())
if PROFILE != "smoke":  # at smoke sizes (a few images, two epochs) the probes are noise
    assert simclr_knn_gain > 0, f"SimCLR's features should beat a random CNN's at 1-NN on average: {simclr_knn_gain}"
record("simclr_knn_gain_mean_over_seeds", round(simclr_knn_gain, 4), key=True)
record("mae_linear_probe_gain_mean_over_seeds", round(mae_linear_gain, 4), key=True)
_ = record("simclr_knn_winner_over_seeds", str(seed_verdicts[("CNN SimCLR", "1-NN")].winner))

# %% [markdown]
# ## 6. Checkpoints for chapter 6
#
# The MAE's decoder and SimCLR's projection head are thrown away; the two backbones are saved with
# `facekit.pretrain.save_pretrained` to `facekit.io.artifact_path(name, profile)` (under `$FACEKIT_ARTIFACTS`, else
# the cache, never the repository). Each file holds the weights, how to rebuild the network (`arch`: a registry
# name and a config of plain literals, so it loads with `torch.load(weights_only=True)`), the profile, and what
# the pretraining did. Chapter 6 calls `load_pretrained("mae_vit.pt", profile)` and
# `load_pretrained("simclr_cnn.pt", profile)`; without this notebook's run they raise a `FileNotFoundError` that
# says to run `facekit report 05 --profile <profile>` first.

# %%
pool_info = {"synthetic_images": len(synthetic_pool), "lfw_images": len(lfw_pool), "image_size": S.image_size,
             "face_crop": FACE_CROP, "lfw_crop": LFW_CROP, "seed": seed}
encoder.cpu(), backbone.cpu()
mae_path = save_pretrained(encoder, "mae_vit.pt", PROFILE, meta={
    "method": "mae", "mask_ratio": MASK_RATIO, "decoder_dim": S.decoder_dim, "decoder_depth": S.decoder_depth,
    "epochs": S.mae_epochs, "batch_size": S.mae_batch, "train_losses": [float(v) for v in mae_losses],
    "heldout_mse": mae_after, "seconds": mae_time, "probe": accuracy[seed]["ViT MAE"], **pool_info})
simclr_path = save_pretrained(backbone, "simclr_cnn.pt", PROFILE, meta={
    "method": "simclr", "backbone": S.cnn, "temperature": TEMPERATURE, "epochs": S.simclr_epochs,
    "batch_size": S.simclr_batch, "train_losses": [float(v) for v in simclr_losses], "seconds": simclr_time,
    "probe": accuracy[seed]["CNN SimCLR"], **pool_info})

vit_back, vit_meta = load_pretrained("mae_vit.pt", PROFILE)
cnn_back, cnn_meta = load_pretrained("simclr_cnn.pt", PROFILE)
sample = probe_x[:4]
with torch.no_grad():
    torch.testing.assert_close(vit_back.eval().features(sample), encoder.eval().features(sample))
    torch.testing.assert_close(cnn_back.eval()(sample), backbone.eval()(sample))
assert type(vit_back) is VisionTransformer and vit_meta["method"] == "mae" and cnn_meta["method"] == "simclr"
for path in (mae_path, simclr_path):
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB); reloaded, same outputs")


# %% [markdown]
# ## Exercises
#
# Graded by difficulty: ★ a few minutes, ★★ a little thought or code, ★★★ an open question. Each has a solution in
# a folded cell below it (click to expand); try first. The check cells tell you whether your answer is right.
#
# **Exercise 1 ★ (predict, then run).** On the chapter's `image_size` faces with patches of 4 pixels instead of
# `patch_size`, and a mask ratio of one half, how many tokens does the MAE encoder process per image, the class
# token included? Predict with pen and paper, then compute it with `random_masking`.

# %%
ex1_tokens = None  # your number

# %% tags=["solution"] jupyter={"source_hidden": true}
n4 = (S.image_size // 4) ** 2  # patches of 4 pixels: (S / 4)^2 of them
ex1_tokens = random_masking(1, n4, 0.5).ids_keep.shape[1] + 1  # the visible half, plus the class token

# %%
fk.notebook.check("tokens the encoder sees", ex1_tokens, (S.image_size // 4) ** 2 // 2 + 1);

# %% [markdown]
# **Exercise 2 ★★ (implement from scratch).** Write `patchify_by_hand(images, p)`: (B, C, H, W) to (B, N, P·P·C),
# patches in reading order, each flattened as (row in patch, column in patch, channel) like MAE. Use only
# `reshape` and `permute`. The check compares it with `facekit.pretrain.patchify` on faces of the pool.

# %%
def patchify_by_hand(images: torch.Tensor, p: int) -> torch.Tensor:
    return None  # your code here

# %% tags=["solution"] jupyter={"source_hidden": true}
def patchify_by_hand(images: torch.Tensor, p: int) -> torch.Tensor:
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // p, p, w // p, p)  # (B, C, rows, P, cols, P)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, rows, cols, P, P, C)
    return x.reshape(b, (h // p) * (w // p), p * p * c)

# %%
fk.notebook.check("patchify", patchify_by_hand(synthetic_pool[:3], S.patch_size),
                  patchify(synthetic_pool[:3], S.patch_size));

# %% [markdown]
# **Exercise 3 ★★ (implement from scratch).** The loop `nt_xent_loop` of section 4 costs $O(B^2)$ Python steps.
# Write NT-Xent without a loop, as one cross-entropy over the $2B \times 2B$ matrix of cosine similarities divided
# by $\tau$: fill the diagonal with $-\infty$ (a view is not its own candidate) and give row $i$ the target
# column $(i + B) \bmod 2B$. The check compares it with the loop on the random projections of section 4.

# %%
def nt_xent_vectorised(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    return None  # your code here

# %% tags=["solution"] jupyter={"source_hidden": true}
def nt_xent_vectorised(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D)
    n, b = len(z), len(z1)
    logits = (z @ z.T / tau).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, (torch.arange(n) + b) % n)

# %%
fk.notebook.check("NT-Xent without a loop", nt_xent_vectorised(z1, z2, TEMPERATURE), loop_value);

# %% [markdown]
# **Exercise 4 ★★ (change a parameter and explain).** The MAE was trained to fill in three quarters of each face.
# Measure the trained MAE's held-out masked-patch error when it must fill in a quarter, a half, three quarters and
# nine tenths (`random_masking(len(probe_x), N_PATCHES, ratio, generator=torch.Generator().manual_seed(seed + 7))`,
# then `mae(images, mask).loss`). Before running: does hiding less make the task easier per hidden patch? Explain
# what you see.

# %%
ex4 = None  # a dict: mask ratio -> held-out masked-patch MSE

# %% tags=["solution"] jupyter={"source_hidden": true}
mae.to(DEVICE).eval()
with torch.no_grad():
    ex4 = {r: mae(probe_x.to(DEVICE), random_masking(len(probe_x), N_PATCHES, r, device=DEVICE,
                                                     generator=torch.Generator().manual_seed(seed + 7))).loss.item()
           for r in (0.25, 0.5, MASK_RATIO, 0.9)}
fk.notebook.say(", ".join(f"ratio {r}: {v:.4f}" for r, v in ex4.items()))

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# Usually the error falls as fewer patches are hidden: each hidden patch has more visible neighbours to be
# inferred from. It need not fall much, and at tiny sizes it can even rise a little: the decoder was trained
# with exactly three quarters hidden and has never seen so many visible tokens. The error measures the pretext
# task, not the features, and a very easy pretext task (a low ratio) is known to give weaker features: with
# many neighbours visible, interpolation is enough.

# %%
fk.notebook.check("the error at the training ratio is the one of section 3", ex4[MASK_RATIO], mae_after,
                  rtol=1e-4);

# %% [markdown]
# **Exercise 5 ★★★ (open question).** Section 1 crops the synthetic faces tightly "so that the network cannot use
# backgrounds and clothes". Explain why a contrastive network would use them if it could, although they say
# nothing about identity, and why such features can score *below* a random network's at identifying
# people. Which augmentation would remove the shortcut without cropping, and what would it cost? How would you
# test your explanation with the code of this chapter?

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# One answer. SimCLR is rewarded for recognising *the same image* under augmentation among others of the batch.
# Anything that survives the augmentations and differs between images solves that task: with random backgrounds
# and clothes drawn per photo, the background is a near-perfect image identifier, easier to read than the face.
# The network spends its capacity on it; two photos of one person then have *different* backgrounds and land far
# apart, so nearest neighbours by identity fall below what random filters give, which at least keep the face's
# local structure. Remedies: stronger crops (views that rarely share much background), background replacement or
# blur as an augmentation (costs: realistic images are harder to make, and hair or shoulders also carry identity),
# or a face mask on the input. A test: rerun the chapter with `FACE_CROP = 1.0` (whole rendered image) and
# compare the SimCLR-versus-random verdicts of section 5 over the same seeds; then add a background-swap
# augmentation and check that the verdict recovers.

# %% [markdown]
# ## Summary
#
# - Masked image modelling hides most patches (a fresh random subset per image, drawn by sorting random numbers)
#   and asks for them back; the MAE encoder is a plain ViT that sees only the visible patches, so it is cheap and
#   its weights load into the ViT unchanged.
# - Contrastive learning (SimCLR) pulls two augmented views of an image together and pushes the other views of the
#   batch away; its augmentations decide what the features ignore.
# - A falling pretraining loss says nothing about identity. Probes on people the pretraining never saw, against a
#   random network of the same shape and raw pixels, paired on the same images and repeated over seeds, do.
#
# This run's numbers:

# %%
seed_lines = "\n".join(f"  - {v.text}" for v in seed_verdicts.values())
fk.notebook.say(
    f"- pool: {len(pool)} unlabelled images ({len(lfw_pool)} from LFW); probes on {n_test} test images of "
    f"{S.probe_identities} other people\n"
    f"- MAE: held-out masked-patch MSE {mae_after:.4f} against {baseline:.4f} for flat patches; hidden pixels changed "
    f"the encoder's output by {leak}\n"
    f"- SimCLR: NT-Xent {simclr_losses[0]:.3f} → {simclr_losses[-1]:.3f} (equal similarities: {chance:.3f})\n"
    f"- 1-NN accuracy, seed {seed}: pixels {pixels['1-NN'].mean():.3f}, MAE {first['ViT MAE']['1-NN'].mean():.3f} "
    f"(random ViT {first['ViT random']['1-NN'].mean():.3f}), SimCLR {first['CNN SimCLR']['1-NN'].mean():.3f} "
    f"(random CNN {first['CNN random']['1-NN'].mean():.3f})\n"
    f"- over {len(SEEDS)} pretraining seeds:\n{seed_lines}\n"
    f"- checkpoints for chapter 6: `{mae_path.name}`, `{simclr_path.name}`; the chapter took {ctx.elapsed():.0f} s "
    f"at profile {PROFILE}")
_ = record("total_time_s", ctx.elapsed(), unit="s")

# %% [markdown]
# What this chapter did not show: that pretraining then fine-tuning gives higher accuracy with fewer labels and
# in less time, as the source article claims. That needs fine-tuning runs against training from scratch at several
# label fractions; chapter 6 does them with the two checkpoints written above. Nor does a weak linear probe
# condemn the MAE: its features are meant to be fine-tuned, and chapter 6 fine-tunes them.
#
# ## Pitfalls
#
# - **Judging pretraining by its own loss.** The pretext task can be solved by shortcuts (backgrounds, clothes,
#   image borders); only a probe on held-out people says whether identity was learned.
# - **No baseline.** Random convolutional features and raw pixels identify small, centred faces far above
#   chance; compare with them, on the same images, before crediting the pretraining.
# - **Augmentations that erase identity.** ImageNet recipes turn faces grey and shift hues; for faces that teaches
#   the network to ignore skin and hair colour.
# - **One augmentation draw per batch.** A torchvision transform called on a batch tensor draws one set of
#   parameters for all of it, so both views of every image share the same crop; apply it image by image.
# - **Leaking hidden pixels.** A stem whose receptive fields overlap patch borders lets hidden pixels reach the
#   encoder; check the encoder's output with hidden pixels replaced by noise.
# - **One pretraining seed.** A second run from another start can move a probe by as much as the effect; repeat.
#
# ## Further reading
#
# - K. He, X. Chen, S. Xie, Y. Li, P. Dollár, R. Girshick, *Masked autoencoders are scalable vision learners*,
#   CVPR, 2022 (random masking by sorting noise, the normalised-pixel target, linear probing against fine-tuning).
# - T. Chen, S. Kornblith, M. Norouzi, G. Hinton, *A simple framework for contrastive learning of visual
#   representations* (SimCLR), ICML, 2020 (NT-Xent, the projection head, the role of augmentations).
# - A. van den Oord, Y. Li, O. Vinyals, *Representation learning with contrastive predictive coding*, arXiv, 2018
#   (the InfoNCE loss that NT-Xent is an instance of).
# - A. Dosovitskiy et al., *An image is worth 16x16 words: transformers for image recognition at scale*, ICLR,
#   2021 (the vision transformer).
# - H. Bao, L. Dong, S. Piao, F. Wei, *BEiT: BERT pre-training of image transformers*, ICLR, 2022.
# - R. Geirhos et al., *Shortcut learning in deep neural networks*, Nature Machine Intelligence, 2020.
# - Q. McNemar, *Note on the sampling error of the difference between correlated proportions or percentages*,
#   Psychometrika, 1947 (the paired test of section 5).
