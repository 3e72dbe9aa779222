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
# learned about identity, on people and labels the pretraining never saw, against random networks of the same shape. Whether that turns into
# higher accuracy with fewer labels, or less training time, is a claim about fine-tuning; chapter 6 loads the two
# checkpoints written at the end of this notebook and measures it.
#
# 1. **Data**: unlabelled synthetic faces (labels thrown away) and, when LFW is on disk, LFW photos of people who
#    appear in none of the `pairs.txt` folds; a labelled held-out set of *other* people for the probes.
# 2. **Masking** (He et al. 2022): hide 75% of the patches of each image, per sample, written from scratch and
#    checked against `facekit.pretrain.random_masking`.
# 3. **Masked autoencoder** (MAE) whose encoder *is* chapter 2's vision transformer: reconstructions and losses,
#    and a check that hidden pixels never reach the encoder.
# 4. **Contrastive learning** (SimCLR, Chen et al. 2020) on chapter 4's CNN backbone: two augmented views, the
#    NT-Xent loss written as a loop and checked against `facekit` and `pytorch-metric-learning`.
# 5. **Did it learn anything?** Nearest-neighbour and linear-probe identification of held-out people with the
#    pretrained features against the same architectures at random initialisation.
# 6. **Checkpoints** for chapter 6, written with `facekit.pretrain.save_pretrained`.

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
from facekit.config import choice
from facekit.data import LFWPairs, SyntheticFaces, TensorImages, available_datasets, lfw_people, read_image
from facekit.data.transforms import preprocess
from facekit.metrics import identification
from facekit.models import VisionTransformer, count_parameters, create_embedding
from facekit.pretrain import (MaskedAutoencoder, PatchMask, SimCLR, TwoViews, gather_tokens, load_pretrained,
                              mask_image, nt_xent_loss, patchify, random_masking, save_pretrained, simclr_augment,
                              two_views, unpatchify)
from facekit.reports import record
from facekit.train import fit, resolve_device, seed_everything

fk.viz.setup_notebook()
T0 = time.perf_counter()


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


PROFILE, S = fk.profiles.pick(
    profile,
    smoke=Sizes(image_size=32, render_size=48, unlabelled_identities=24, unlabelled_per_id=4, lfw_images=32,
                probe_identities=8, probe_per_id=4, vit="tiny", patch_size=8, decoder_dim=32, decoder_depth=1,
                mae_epochs=2, mae_batch=64, cnn="iresnet_tiny", simclr_epochs=2, simclr_batch=32),
    cpu=Sizes(image_size=32, render_size=48, unlabelled_identities=100, unlabelled_per_id=10, lfw_images=400,
              probe_identities=30, probe_per_id=10, vit="tiny", patch_size=8, decoder_dim=64, decoder_depth=1,
              mae_epochs=30, mae_batch=128, cnn="iresnet_tiny", simclr_epochs=10, simclr_batch=128),
    gpu=Sizes(image_size=64, render_size=96, unlabelled_identities=2000, unlabelled_per_id=20, lfw_images=1500,
              probe_identities=100, probe_per_id=10, vit="small_cpu", patch_size=8, decoder_dim=128,
              decoder_depth=2, mae_epochs=200, mae_batch=256, cnn="iresnet_tiny", simclr_epochs=100,
              simclr_batch=256),
)
choice(lfw, ("auto", "off"), name="lfw")
DEVICE = resolve_device("auto")
ROOT = data_root or None
FOUND = available_datasets(ROOT)
FACE_CROP = 0.6  # keep the central 60% of a rendered synthetic image: the face, little background or clothing
LFW_CROP = 0.5  # centre crop of LFW's 250-pixel side (as chapters 1 and 4)
MASK_RATIO = 0.75  # MAE's default: most of the image is hidden
NORM_PIX = True  # MAE's target: each hidden patch's pixels standardised by its own mean and variance
TEMPERATURE = 0.5  # NT-Xent's tau (SimCLR's value for small batches)
CROP_SCALE = 0.2  # SimCLR's random crops keep at least this fraction of the face's area
PROBE_C = 0.1  # inverse L2 strength of the linear probe (logistic regression on standardised features)
seed_everything(seed)
record("profile", PROFILE)
print(f"profile={PROFILE}, device={DEVICE}, real data found: {[k for k, v in FOUND.items() if v]}")

# %% [markdown]
# ## 1. Unlabelled faces, and labelled people kept for the probes
#
# The pretraining pool is a pile of face images **without labels**: synthetic faces whose identity labels we
# discard, plus (when LFW is on disk) LFW photos of people who appear in **none** of the ten `pairs.txt` folds,
# so that a later LFW evaluation never scores a person the backbone has seen. The probe set is a different set of
# synthetic people (another generator seed), with labels, never used in pretraining. Synthetic faces are
# centre-cropped to the face: their backgrounds and clothes are random and differ from photo to photo, and a network
# that only has to tell images apart happily uses them instead of the face (the first version of this notebook,
# with a looser crop, learned exactly that and its SimCLR features lost to a random network).

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

fk.viz.image_grid(torch.cat([synthetic_pool[:4], mask_image(synthetic_pool[:4], lib.mask, S.patch_size)]), nrow=4,
                  title=f"four faces and what the encoder sees at mask ratio {MASK_RATIO}")
plt.show()

# %% [markdown]
# ## 3. A masked autoencoder whose encoder is a plain facekit ViT
#
# `facekit.pretrain.MaskedAutoencoder` wraps a `facekit.models.VisionTransformer`:
#
# - the **encoder** embeds the patches, adds the position embeddings, keeps only the visible tokens (and the class
#   token) and runs the ViT's own blocks on them: 25% of the tokens, so it is cheap;
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
encoder = VisionTransformer(0, S.vit, image_size=S.image_size, patch_size=S.patch_size, pool="mean")
mae = MaskedAutoencoder(encoder, mask_ratio=MASK_RATIO, decoder_dim=S.decoder_dim, decoder_depth=S.decoder_depth,
                        norm_pix_loss=NORM_PIX)
random_vit = VisionTransformer(0, encoder.config)  # the same architecture, another random initialisation
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


baseline_mask = mae.random_mask(len(probe_x), torch.Generator().manual_seed(seed + 7)).mask.cpu()
mae_before = held_out_mae_loss(mae.to(DEVICE), probe_x)
baseline = flat_patch_baseline(probe_x.to(DEVICE), baseline_mask.to(DEVICE))
t_mae = time.perf_counter()
mae_history = fit(mae, TensorImages(pool, torch.zeros(len(pool)), transform=v2.RandomHorizontalFlip()),
                  config=dict(epochs=S.mae_epochs, batch_size=S.mae_batch, lr=1.5e-3, optimizer="adamw",
                              weight_decay=0.05, scheduler="cosine", warmup_epochs=1, seed=seed, device=str(DEVICE),
                              progress=False),
                  forward=mae_forward, loss_fn=passthrough, metrics={})
mae_time = time.perf_counter() - t_mae
mae_after = held_out_mae_loss(mae, probe_x)
mae_losses = mae_history["train_loss"]
print(f"MAE: {S.mae_epochs} epochs over {len(pool)} images in {mae_time:.0f} s; training loss "
      f"{mae_losses[0]:.4f} -> {mae_losses[-1]:.4f}")
print(f"held-out masked-patch MSE: untrained {mae_before:.4f}, trained {mae_after:.4f}, "
      f"flat-patch baseline {baseline:.4f}")
assert all(np.isfinite(mae_losses)) and mae_losses[-1] < mae_losses[0]
if PROFILE != "smoke":  # two epochs on a hundred images (smoke) prove nothing either way
    assert mae_after < mae_before and mae_after < baseline, "the trained MAE should beat flat patches"
record("mae_train_loss_first", mae_losses[0])
record("mae_train_loss_last", mae_losses[-1])
record("mae_heldout_mse", mae_after)
record("mae_heldout_mse_untrained", mae_before)
record("mae_heldout_mse_flat_patch", baseline)
_ = record("mae_time_s", mae_time, unit="s")

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

# %%
backbone = create_embedding(S.cnn, image_size=S.image_size)
random_cnn = create_embedding(S.cnn, image_size=S.image_size)  # the same architecture, another initialisation
simclr = SimCLR(backbone, feature_dim=backbone.embedding_dim, temperature=TEMPERATURE)


def simclr_forward(model, batch, device):
    views = batch[0].to(device)  # (B, 2, C, H, W) from TwoViews
    return model(views[:, 0], views[:, 1]), batch[1]


t_simclr = time.perf_counter()
simclr_history = fit(simclr, TensorImages(pool, torch.zeros(len(pool)), transform=TwoViews(AUGMENT)),
                     config=dict(epochs=S.simclr_epochs, batch_size=S.simclr_batch, lr=1e-3, optimizer="adamw",
                                 weight_decay=1e-4, scheduler="cosine", warmup_epochs=1, seed=seed,
                                 device=str(DEVICE), progress=False),
                     forward=simclr_forward, loss_fn=passthrough, metrics={})
simclr_time = time.perf_counter() - t_simclr
simclr_losses = simclr_history["train_loss"]
chance = float(np.log(2 * S.simclr_batch - 1))
print(f"SimCLR ({S.cnn}, {count_parameters(backbone):,} parameters): {S.simclr_epochs} epochs over {len(pool)} "
      f"images in {simclr_time:.0f} s; NT-Xent {simclr_losses[0]:.3f} -> {simclr_losses[-1]:.3f} "
      f"(all views equally similar: log(2B - 1) = {chance:.3f})")
assert all(np.isfinite(simclr_losses)) and simclr_losses[-1] < simclr_losses[0]
record("simclr_loss_first", simclr_losses[0])
record("simclr_loss_last", simclr_losses[-1])
record("simclr_time_s", simclr_time, unit="s")

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
# identifies people well above chance, and so do raw pixels of these small, centred faces. The cell prints the
# gains over both and a verdict for each comparison with random initialisation.

# %%
@torch.no_grad()
def embed(fn, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([fn(images[i:i + batch].to(DEVICE)).float().cpu() for i in range(0, len(images), batch)])


def probe(features: torch.Tensor) -> dict:
    y = probe_y.numpy()
    gallery = (np.arange(len(y)) % S.probe_per_id) < S.probe_per_id // 2
    knn = identification(features[gallery], y[gallery], features[~gallery], y[~gallery]).rank1
    linear = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=2000))
    linear.fit(features[gallery].numpy(), y[gallery])
    return {"1-NN rank-1": knn, "linear probe": linear.score(features[~gallery].numpy(), y[~gallery])}


for net in (encoder, random_vit, backbone, random_cnn):
    net.to(DEVICE).eval()
rows = {
    "pixels": probe(probe_x.flatten(1)),
    "ViT, random init": probe(embed(random_vit.features, probe_x)),
    "ViT, MAE-pretrained": probe(embed(encoder.features, probe_x)),
    f"{S.cnn}, random init": probe(embed(random_cnn.forward_unnormalized, probe_x)),
    f"{S.cnn}, SimCLR-pretrained": probe(embed(backbone.forward_unnormalized, probe_x)),
}
table = pd.DataFrame(rows).T
table["chance"] = 1 / S.probe_identities
display(table.style.format("{:.3f}"))
for name, r in rows.items():
    key = name.split(",")[0].lower().replace(" ", "_") + ("" if name == "pixels" else
                                                           "_pretrained" if "pretrained" in name else "_random")
    record(f"knn_rank1[{key}]", round(r["1-NN rank-1"], 4))
    record(f"linear_probe[{key}]", round(r["linear probe"], 4))

gain = {
    "MAE over random ViT": {k: rows["ViT, MAE-pretrained"][k] - rows["ViT, random init"][k] for k in rows["pixels"]},
    "SimCLR over random CNN": {k: rows[f"{S.cnn}, SimCLR-pretrained"][k] - rows[f"{S.cnn}, random init"][k]
                               for k in rows["pixels"]},
}
vs_pixels = {name: {k: r[k] - rows["pixels"][k] for k in r} for name, r in rows.items() if "pretrained" in name}
print("gain over random init of the same architecture:\n" + pd.DataFrame(gain).T.round(3).to_string())
print("gain over raw pixels (the bar any learned feature should clear):\n"
      + pd.DataFrame(vs_pixels).T.round(3).to_string())
n_test = S.probe_identities * (S.probe_per_id - S.probe_per_id // 2)
TOLERANCE = 2 / n_test  # two test images: a gain smaller than this is noise at this size
for method, g in gain.items():
    verdict = {k: "better than" if v > TOLERANCE else "worse than" if v < -TOLERANCE else "no different from"
               for k, v in g.items()}
    print(f"{method}: 1-NN {verdict['1-NN rank-1']} random init, linear probe {verdict['linear probe']} random init "
          f"(differences within +-{TOLERANCE:.3f}, two test images, count as no difference)")
if PROFILE != "smoke":  # at smoke sizes (a few images, two epochs) the probes are noise
    simclr_knn_gain = gain["SimCLR over random CNN"]["1-NN rank-1"]
    assert simclr_knn_gain > TOLERANCE, f"SimCLR's features should beat a random CNN's at 1-NN: {simclr_knn_gain:.3f}"
record("mae_linear_probe_gain", round(gain["MAE over random ViT"]["linear probe"], 4))
_ = record("simclr_linear_probe_gain", round(gain["SimCLR over random CNN"]["linear probe"], 4))

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
    "heldout_mse": mae_after, "seconds": mae_time, "probe": rows["ViT, MAE-pretrained"], **pool_info})
simclr_path = save_pretrained(backbone, "simclr_cnn.pt", PROFILE, meta={
    "method": "simclr", "backbone": S.cnn, "temperature": TEMPERATURE, "epochs": S.simclr_epochs,
    "batch_size": S.simclr_batch, "train_losses": [float(v) for v in simclr_losses], "seconds": simclr_time,
    "probe": rows[f"{S.cnn}, SimCLR-pretrained"], **pool_info})

vit_back, vit_meta = load_pretrained("mae_vit.pt", PROFILE)
cnn_back, cnn_meta = load_pretrained("simclr_cnn.pt", PROFILE)
check = probe_x[:4]
with torch.no_grad():
    torch.testing.assert_close(vit_back.eval().features(check), encoder.eval().features(check))
    torch.testing.assert_close(cnn_back.eval()(check), backbone.eval()(check))
assert type(vit_back) is VisionTransformer and vit_meta["method"] == "mae" and cnn_meta["method"] == "simclr"
for path in (mae_path, simclr_path):
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB); reloaded, same outputs")
print(f"the whole notebook took {time.perf_counter() - T0:.0f} s at profile {PROFILE}")
_ = record("total_time_s", time.perf_counter() - T0, unit="s")

# %% [markdown]
# ## What this chapter showed, and what it did not
#
# - Masking per sample is a sort of random numbers; the MAE encoder is an unchanged ViT that never sees hidden
#   pixels (checked to the last bit above), and its loss counts hidden patches only.
# - Both pretraining losses fell; at the cpu and gpu profiles the notebook asserts that the MAE predicts hidden
#   patches of faces it never saw better than flat patches (the numbers are printed in section 3).
# - Section 5 measures how much identity information each self-supervised task put into the features compared with
#   a random network of the same shape, on people outside the pretraining pool, and prints the verdict. At the cpu
#   profile the notebook asserts that SimCLR's features beat the random CNN's at nearest-neighbour identification.
#   It asserts nothing of the kind for the MAE: whatever the table says for it, a linear probe or a nearest
#   neighbour is not how MAE features are meant to be used, and chapter 6 fine-tunes them.
# - Not shown here: that pretraining then fine-tuning gives **higher accuracy with fewer labels and in less time**,
#   as the source article claims. That needs fine-tuning runs against training from scratch at several label
#   fractions; chapter 6 does them with the two checkpoints written above.
