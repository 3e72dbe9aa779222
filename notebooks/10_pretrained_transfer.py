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
# # Chapter 10 — Two real pretrained face models: LFW, fine-tuning under a domain shift, few-shot enrolment
#
# The second source article says: take a model pretrained on a large dataset, fine-tune it on your task, and
# you get higher accuracy with fewer labels. This chapter tests that with two **real** face recognisers that
# `facekit` loads offline as PyTorch modules:
#
# - **dlib's ResNet** (`facekit.pretrained.load_dlib_resnet`): 29 layers, 128-d descriptors of 150x150 chips
#   aligned on 5 landmarks (dlib HOG detector + shape predictor), trained by Davis King with a metric loss;
# - **FaceNet** (`facekit.pretrained.load_facenet`): Sandberg's Inception-ResNet-v1 trained on CASIA-WebFace,
#   512-d embeddings of 160x160 MTCNN crops, converted from its frozen TensorFlow graph.
#
# Both are near the top of LFW as they are, so fine-tuning them on more LFW faces has nothing to fix. Fine-tuning
# matters when the faces a model meets differ from the faces it was trained on: a **domain shift**. The chapter
# makes one on purpose — faces shrunk to a few pixels and blown back up, as a surveillance camera sees them —
# measures how far each model falls, and then measures what fine-tuning on such faces of *other* people buys,
# and what it costs on ordinary faces.
#
# ## Learning outcomes
#
# After this chapter you can
#
# 1. build a face-crop pipeline (detect every face, choose one, crop with a margin) and check it against a library;
# 2. evaluate a pretrained model with LFW's k-fold protocol through one evaluator, and explain why the choice of
#    face in a photo with several faces matters;
# 3. measure a domain shift (low resolution) and fine-tune part of a pretrained network with ArcFace on it, with
#    hyper-parameters chosen on validation people only and training people disjoint from the evaluated ones;
# 4. judge the gain on the shifted faces and the loss on the original faces (forgetting) with paired intervals
#    that resample people;
# 5. enrol people from 1-5 images, identify probes and reject people who are not enrolled, with a threshold
#    chosen on other people.
#
# ## Prerequisites
#
# - Chapter 4: verification pairs, ROC and AUC, LFW's 10-fold protocol, the ArcFace margin head.
# - Chapter 1's `facekit.stats`: paired comparisons, bootstrap intervals that resample people, the noise rule.
# - Chapter 3: face detection and five-point alignment; chapter 5's transfer learning (frozen vs trained layers).

# %% tags=["parameters"]
profile = "auto"  # smoke | cpu | gpu | auto (auto: $FACEKIT_PROFILE, else gpu if CUDA, else cpu)
data_root = ""  # folder with lfw/, att_faces/; empty: FACEKIT_DATA, ./data, ../shared/datasets
low_res_px = 16  # section 3's domain shift: each face is shrunk to this many pixels a side, then resized back
seed = 0

# %%
import copy
import importlib.util
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import display
from torch import nn
from torch.utils.data import TensorDataset

import facekit as fk
import facekit.stats as st
from facekit.data import make_pairs
from facekit.data.images import read_image, resize
from facekit.data.lfw import evaluate_pairs, lfw_pair_subset, people_outside_folds
from facekit.losses import ArcFace, MarginClassifier, MarginModel, margin_forward
from facekit.metrics import choose_open_set_threshold, enrol, identify, open_set_metrics
from facekit.pretrained import (CropSettings, DlibSlice, FacenetSlice, crop_face, detect_faces, face_chip, face_crops,
                                few_shot_split, image_descriptors, image_embeddings, image_landmarks, keep_norm_stats,
                                select_face, standardize_faces)
from facekit.reports import record
from facekit.train import fit, param_groups


# %% [markdown]
# One set of sizes per profile: `smoke` checks the plumbing on a few images, `cpu` is a run of about ten minutes,
# `gpu` the full sizes.

# %%
@dataclass(frozen=True)
class Sizes:
    lfw_folds: tuple  # LFW folds evaluated in sections 2 and 3 (0-based); their people are never trained on
    lfw_pairs_per_fold: int  # the first n/2 genuine and n/2 impostor pairs of each fold (600 = all)
    train_people: int  # section 3: people outside the evaluated folds fine-tuned on (0 = all with >= 2 images)
    val_people: int  # of those, held out to choose the learning rate (never trained on)
    images_per_person: int  # at most this many images of each training or validation person
    lr_scales: tuple  # candidate learning-rate multipliers of the pretrained layers (chosen on validation people)
    epochs: int  # fine-tuning epochs (on cached trunk features: cheap)
    seeds: int  # fine-tuning runs with the chosen learning rate (>= 3 for a verdict over seeds)
    n_boot: int  # bootstrap resamples behind every interval
    orl_people: int  # section 4: the first n of ORL's 40 people
    orl_unknown: int  # open set: the last n of them are never enrolled
    shots: tuple  # images enrolled per person
    repeats: int  # random enrolment draws averaged


# %%
ctx = fk.notebook.setup(
    profile, data_root=data_root, seed=seed,
    smoke=Sizes(lfw_folds=(0, 1), lfw_pairs_per_fold=4, train_people=10, val_people=4, images_per_person=2,
                lr_scales=(0.1,), epochs=1, seeds=2, n_boot=200, orl_people=6, orl_unknown=2, shots=(1, 3),
                repeats=1),
    cpu=Sizes(lfw_folds=(0, 1, 2, 3, 4), lfw_pairs_per_fold=80, train_people=150, val_people=40,
              images_per_person=4, lr_scales=(0.01, 0.1, 1.0), epochs=6, seeds=3, n_boot=1000, orl_people=40,
              orl_unknown=10, shots=(1, 3, 5), repeats=5),
    gpu=Sizes(lfw_folds=(0, 1, 2, 3, 4), lfw_pairs_per_fold=600, train_people=0, val_people=100,
              images_per_person=20, lr_scales=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0), epochs=15, seeds=5, n_boot=2000,
              orl_people=40, orl_unknown=10, shots=(1, 3, 5), repeats=20))
PROFILE, S, DEVICE, ROOT, FOUND = ctx.profile, ctx.sizes, ctx.device, ctx.root, ctx.found
HAVE = {m: importlib.util.find_spec(m) is not None for m in ("facenet_pytorch", "dlib")}
print(f"optional packages: {HAVE}")

# %% [markdown]
# How long this chapter takes at each profile, read from the committed report runs:

# %%
fk.notebook.say(fk.notebook.durations_sentence("10_pretrained_transfer"))

# %% [markdown]
# Both models and the datasets are optional: without them the notebook says what it skips.

# %%
from facekit.pretrained import load_dlib_resnet, load_facenet

FACENET = DLIB = None
try:
    FACENET = load_facenet(device="cpu")  # converted from the frozen graph once, then read from the cache
except (ImportError, FileNotFoundError) as err:
    print("FaceNet skipped:", err)
try:
    DLIB = load_dlib_resnet() if HAVE["dlib"] else None
except (ImportError, FileNotFoundError) as err:
    print("dlib's ResNet skipped:", err)
LFW_OK = ctx.has("lfw") and FACENET is not None and HAVE["facenet_pytorch"]
ORL_OK = ctx.has("orl") and FACENET is not None and HAVE["facenet_pytorch"]
print(f"FaceNet: {FACENET is not None}, dlib ResNet: {DLIB is not None}, LFW sections: {LFW_OK}, ORL: {ORL_OK}")

# %% [markdown]
# ## 1. FaceNet's photo pipeline, by hand
#
# MTCNN returns every face it finds with a probability. LFW's photos are 250x250 and centred on the person the
# file is named after, but many show other people too. Three rules pick *the* face: the box nearest the image
# centre, the most confident box, the largest box. The crop then grows the box by `margin` pixels **of the final
# 160x160 crop** (facenet-pytorch's convention: $m_x = \text{margin} \cdot w / (160 - \text{margin})$ in image
# pixels), clips it to the image and resizes it bilinearly. The cell checks each step against the package.

# %%
if LFW_OK:
    LFW_DIR = lfw_pair_subset(ROOT, folds=[0], pairs_per_fold=2).images_dir
    DEMO = LFW_DIR / "Benjamin_Netanyahu" / "Benjamin_Netanyahu_0001.jpg"
    if not DEMO.is_file():  # another copy of LFW: the first image of the subset
        DEMO = lfw_pair_subset(ROOT, folds=[0], pairs_per_fold=2).images[0]
    from PIL import Image

    demo_img = Image.open(DEMO).convert("RGB")
    faces = detect_faces([DEMO])[0]

    def crop_by_hand(img, box, size=160, margin=32):
        w, h = box[2] - box[0], box[3] - box[1]
        mx, my = margin * w / (size - margin), margin * h / (size - margin)  # margin in image pixels
        ltrb = (int(max(box[0] - mx / 2, 0)), int(max(box[1] - my / 2, 0)),
                int(min(box[2] + mx / 2, img.width)), int(min(box[3] + my / 2, img.height)))
        return np.asarray(img.crop(ltrb).resize((size, size), Image.BILINEAR))

    centres = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
    by_hand = {"center": int(np.argmin(np.linalg.norm(centres - np.array([demo_img.width / 2, demo_img.height / 2]),
                                                      axis=1))),
               "confident": int(np.argmax(faces.probs)),
               "largest": int(np.argmax(np.prod(faces.boxes[:, 2:] - faces.boxes[:, :2], axis=1)))}
    for rule, i in by_hand.items():
        assert select_face(faces, demo_img.width, demo_img.height, rule) == i, rule
        assert np.array_equal(crop_by_hand(demo_img, faces.boxes[i].astype(np.float64)),
                              crop_face(demo_img, faces.boxes[i], 160, 32))
    print(f"{DEMO.name}: {len(faces.boxes)} faces, probabilities {np.round(faces.probs, 4).tolist()}; "
          f"chosen: {by_hand} (by hand = facekit)")

# %% [markdown]
# The photo with every face MTCNN found, and the crop each rule chooses:

# %%
if LFW_OK:
    fig, axes = plt.subplots(1, 1 + len(by_hand), figsize=(3 * (1 + len(by_hand)), 3))
    axes[0].imshow(demo_img)
    for k, (b, p) in enumerate(zip(faces.boxes, faces.probs)):
        axes[0].add_patch(plt.Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, color=f"C{k}", lw=2))
        axes[0].text(b[0], b[1] - 3, f"{k}: p={p:.3f}", color=f"C{k}", fontsize=8)
    for ax, (rule, i) in zip(axes[1:], by_hand.items()):
        ax.imshow(crop_face(demo_img, faces.boxes[i], 160, 32))
        ax.set_title(f"{rule}: face {i}")
    for ax in axes:
        ax.axis("off")
    plt.show()

# %% [markdown]
# ## 2. LFW's k-fold protocol, both models, and the choice of face
#
# The same pairs for every row: the first `lfw_pairs_per_fold` pairs (half genuine, half impostor) of each
# evaluated fold of `pairs.txt`. Each model is cut in two at a fixed stage (`FacenetSlice`, `DlibSlice` of
# `facekit.pretrained.transfer`): a **trunk** and a **head** whose composition is the whole network. Section 3
# fine-tunes the head on cached trunk features, so the trunk features of every image are computed once, here.
# The one evaluator, `facekit.data.lfw.evaluate_pairs`, embeds each image once and chooses each fold's threshold
# on the other folds. FaceNet's pairs are scored by cosine, dlib's by Euclidean distance (its own rule).

# %%
def facenet_crops(paths):
    """(N, 3, 160, 160) uint8 MTCNN crops of the face nearest the centre (detections cached) and found (N,)."""
    crops, found, _ = face_crops(paths, CropSettings(select="center"))
    return torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(), found


def dlib_chips(paths):
    """(N, 3, 150, 150) uint8 chips aligned on dlib's 5 landmarks (landmarks cached) and found (N,)."""
    landmarks, found = image_landmarks(paths)
    chips = np.stack([face_chip(read_image(p, channels=3).permute(1, 2, 0).numpy(), pts)
                      for p, pts in zip(paths, landmarks)])
    return torch.from_numpy(chips).permute(0, 3, 1, 2).contiguous(), found


def run(module, x):
    """(N, D) float32 outputs of a module over uint8 images or float features, 64 at a time."""
    return fk.models.embed(module, x, batch_size=64, device=DEVICE, transform=lambda b: b.float())


class Standardized(nn.Module):
    """FaceNet's fixed input scaling as a layer, so both models take uint8 crops."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(standardize_faces(x))


@dataclass(frozen=True)
class Candidate:
    name: str
    net: nn.Module  # the whole pretrained model: (B, 3, H, W) uint8 crops -> embedding
    trunk: nn.Module  # its first stages (always frozen here), sharing net's parameters
    head: nn.Module  # the rest: trunk features -> embedding (fine-tuned in section 3)
    inputs: object  # image paths -> ((N, 3, H, W) uint8, found (N,))
    lr_unit: float  # scales the candidate learning rates of its pretrained layers (see section 3)
    distance: str  # section 2's pair score


# %%
CANDIDATES = []
if LFW_OK:
    CANDIDATES.append(Candidate("FaceNet", Standardized(FACENET), Standardized(FacenetSlice(FACENET, stop="block8")),
                                FacenetSlice(FACENET, start="block8"), facenet_crops, 1.0, "cosine"))
if LFW_OK and DLIB is not None:
    CANDIDATES.append(Candidate("dlib ResNet", DLIB, DlibSlice(DLIB, stop="block10"),
                                DlibSlice(DLIB, start="block10"), dlib_chips, 0.1, "euclidean"))
X, FEAT, EMB = {}, {}, {}  # model -> uint8 inputs, trunk features, embeddings of the evaluated images
if LFW_OK:
    SUB = lfw_pair_subset(ROOT, folds=S.lfw_folds, pairs_per_fold=S.lfw_pairs_per_fold)
    IMAGES = SUB.images
    PERSON = np.unique([p.parent.name for p in SUB.paths_a], return_inverse=True)[1]  # (P,) person of each pair
    for c in CANDIDATES:
        X[c.name], found = c.inputs(IMAGES)
        FEAT[c.name] = run(c.trunk, X[c.name])
        EMB[c.name] = run(c.head, FEAT[c.name])  # trunk then head = the whole network
        print(f"{c.name}: {len(IMAGES)} images, face found in {int(found.sum())}, trunk features "
              f"{tuple(FEAT[c.name].shape[1:])}, embeddings {tuple(EMB[c.name].shape[1:])}")
    # the split network reproduces each package pipeline on a few images
    few = IMAGES[:4]
    assert np.allclose(EMB["FaceNet"][:4], image_embeddings(few, CropSettings(select="center"), device=DEVICE)[0],
                       atol=1e-4)
    if DLIB is not None:
        assert np.allclose(EMB["dlib ResNet"][:4], image_descriptors(few, device=DEVICE)[0], atol=1e-3)


def lookup(emb):
    """An embedding function for evaluate_pairs from (N, D) embeddings of IMAGES."""
    table = dict(zip(IMAGES, np.asarray(emb)))
    return lambda paths: np.stack([table[p] for p in paths])


# %% [markdown]
# Now the choice of face. Only images where MTCNN found several faces can change with the rule, so only those
# are embedded again with the other two rules; the rest keep the centre rule's embedding.

# %%
LFW_ROWS = []
if LFW_OK:
    num_faces = np.array([len(f.boxes) for f in detect_faces(IMAGES)])
    MULTI = np.flatnonzero(num_faces > 1)
    for rule in ("center", "confident", "largest"):
        emb = EMB["FaceNet"].numpy().copy()
        if rule != "center" and len(MULTI):
            emb[MULTI] = image_embeddings([IMAGES[i] for i in MULTI], CropSettings(select=rule), device=DEVICE)[0]
        r = evaluate_pairs(SUB, lookup(emb), distance="cosine")
        LFW_ROWS.append({"model": "FaceNet", "faces": f"MTCNN, {rule}", "accuracy %": 100 * r.kfold.mean,
                         "± % (over folds)": 100 * r.kfold.std, "AUC": fk.metrics.auc(r.scores, SUB.is_same)})
        if rule == "confident":
            changed = int((np.abs(emb - EMB["FaceNet"].numpy()).max(1) > 1e-3).sum())  # another face, not rounding
    if DLIB is not None:
        r = evaluate_pairs(SUB, lookup(EMB["dlib ResNet"]), distance="euclidean")
        LFW_ROWS.append({"model": "dlib ResNet", "faces": "HOG, center, 5 landmarks",
                         "accuracy %": 100 * r.kfold.mean,
                         "± % (over folds)": 100 * r.kfold.std, "AUC": fk.metrics.auc(r.scores, SUB.is_same)})
    lfw_table = pd.DataFrame(LFW_ROWS).set_index(["model", "faces"])
    display(lfw_table.round(4))
    fk.notebook.say(f"{len(SUB.is_same)} pairs in {len(SUB.folds)} folds, {len(IMAGES)} images; MTCNN found several "
                    f"faces in {len(MULTI)} of them ({len(MULTI) / len(IMAGES):.1%}); the 'confident' rule picks "
                    f"another face than 'center' in {changed}.")
    acc = lfw_table["accuracy %"]
    record("lfw_pairs_evaluated", len(SUB.is_same))
    record("facenet_lfw_center", round(acc["FaceNet", "MTCNN, center"], 2), unit="%", key=True)
    record("facenet_lfw_confident", round(acc["FaceNet", "MTCNN, confident"], 2), unit="%")
    assert np.isfinite(lfw_table["accuracy %"]).all()
    if PROFILE != "smoke":
        assert acc["FaceNet", "MTCNN, center"] > 95 and (DLIB is None or acc["dlib ResNet"].iloc[0] > 95), \
            "both pretrained models should verify LFW's faces well as they are"
        assert acc["FaceNet", "MTCNN, center"] >= acc["FaceNet", "MTCNN, confident"] - 0.5, "the centre rule lost"

# %% [markdown]
# In LFW the named person is the centred face by construction; the most confident (often the sharpest or least
# occluded) face is sometimes a bystander, and then a genuine pair compares two different people. A photo
# pipeline outside LFW has no such prior and must choose by other means (size, tracking, or asking the user).
# Both models are near the ceiling here: this is the pretraining domain (adult faces from press photos, at a
# good resolution), and no fine-tuning on more of the same has much to fix.

# %% [markdown]
# ## 3. A domain shift, and fine-tuning where it can matter
#
# Four words first.
#
# - **Domain shift**: the test images come from a different distribution than the training images (here: the
#   same people and photos, at a far lower resolution). A model's accuracy on its own domain says little about
#   its accuracy after the shift; it has to be measured.
# - **Fine-tuning**: continuing to train a pretrained network on the new data. A *linear probe* trains only a new
#   layer on frozen features; a *partial* fine-tune trains the last stages; a *full* one trains every weight.
#   The more it trains, the more it can adapt, and the more it can lose.
# - **ArcFace** (chapter 4): the classification loss on unit embeddings $x$ and unit class weights $w_y$ with
#   the logit of the true class $s \cos(\theta_y + m)$ instead of $s \cos\theta_y$, where $\theta_y$ is the
#   angle between them; here $s = 32$ and $m = 0.5$ radians.
# - **Forgetting**: what the fine-tuned model loses on the original domain. It is measured on the same pairs as
#   the gain, with the same paired test.
#
# A camera across a hall sees a face a few pixels wide. We simulate that on the same evaluated pairs: each crop or
# chip is shrunk to `low_res_px` pixels a side (antialiased, so the detail is really gone) and resized back to the
# model's input size. Detection and alignment still use the original photo, so only the recogniser is tested.

# %%
def low_resolution(x: torch.Tensor, px: int = low_res_px) -> torch.Tensor:
    """(N, 3, S, S) uint8 faces shrunk to px x px (bilinear, antialiased) and resized back to S x S."""
    return resize(resize(x, px), x.shape[-1])


if LFW_OK:
    demo_faces = X["FaceNet"][:4]
    sizes = (None, 24, low_res_px, 12)
    fig, axes = plt.subplots(len(demo_faces), len(sizes), figsize=(1.9 * len(sizes), 1.9 * len(demo_faces)))
    for j, px in enumerate(sizes):
        shown = demo_faces if px is None else low_resolution(demo_faces, px)
        for i in range(len(demo_faces)):
            axes[i, j].imshow(shown[i].permute(1, 2, 0))
            axes[i, j].axis("off")
        axes[0, j].set_title("original" if px is None else f"{px} px, resized back", fontsize=9)
    fig.suptitle("What the recogniser receives at each resolution")
    plt.show()

# %% [markdown]
# Before running the next cell, guess from the figure: at which size would *you* stop recognising these people?
# A network has no more pixels to work with than you do, but it was never shown a blurred face in training.
#
# What to look for below: each model's pairs scored on the original and on the shrunk faces, and a paired verdict
# (`facekit.stats.compare_scores`, the AUC difference on the same pairs, people resampled). The trunk features of
# the shrunk faces are computed once and reused by every fine-tuning run.

# %%
LOW_FEAT, LOW_EMB, SHIFT = {}, {}, {}
for c in CANDIDATES:
    LOW_FEAT[c.name] = run(c.trunk, low_resolution(X[c.name]))
    LOW_EMB[c.name] = run(c.head, LOW_FEAT[c.name])
    orig = evaluate_pairs(SUB, lookup(EMB[c.name]), distance="cosine")
    low = evaluate_pairs(SUB, lookup(LOW_EMB[c.name]), distance="cosine")
    SHIFT[c.name] = st.compare_scores(low.scores, orig.scores, SUB.is_same, "auc", groups=PERSON, n_boot=S.n_boot,
                                      names=(f"{c.name} at {low_res_px} px", f"{c.name} on the original faces"))
    fk.notebook.say(f"{c.name}: k-fold accuracy {orig.kfold.mean:.2%} on the original faces, {low.kfold.mean:.2%} at "
                    f"{low_res_px} px. {SHIFT[c.name].text}")
    record(f"shift_{c.name.split()[0].lower()}_lowres_acc", round(100 * low.kfold.mean, 2), unit="%", key=True)
    if PROFILE != "smoke":
        assert low.kfold.mean < orig.kfold.mean - 0.01, f"{c.name}: {low_res_px} px should be a real domain shift"

# %% [markdown]
# ### What is trained
#
# Why cut the network at all? The trunk holds most of the computation: run once per image, its features are
# cached, and each fine-tuning epoch then costs only the head's forward and backward passes — a small share of
# the whole network's cost, which is what lets a CPU run several learning rates and seeds. The price is that the
# trunk cannot adapt: whatever its early filters lose at low resolution is lost for the head too.
#
# The **partial** regime: the trunk stays frozen (its features are cached), the head's pretrained layers are
# trained at a reduced learning rate, and a new ArcFace classifier over the training people is trained at the
# full rate. ArcFace's class weights start at each training person's mean pretrained embedding (a prototype
# start), so training begins from the pretrained model's own solution. The figure shows the cut for each model.

# %%
if CANDIDATES:
    fig, axes = plt.subplots(len(CANDIDATES), 1, figsize=(12, 1.7 * len(CANDIDATES)), squeeze=False)
    for ax, c in zip(axes[:, 0], CANDIDATES):
        stages = [(n, False) for n in getattr(c.trunk, "net", c.trunk).names]  # FaceNet's trunk: Standardized
        stages += [(n, True) for n in c.head.names] + [("ArcFace", True)]  # the new classes
        for k, (name, trained) in enumerate(stages):
            ax.add_patch(plt.Rectangle((k, 0), 0.9, 1, color="C1" if trained else "0.8"))
            ax.text(k + 0.45, 0.5, name, ha="center", va="center", rotation=90 if len(name) > 8 else 0, fontsize=7)
        ax.set_title(f"{c.name}: grey frozen (features cached), orange trained (ArcFace: new classes)", fontsize=10)
        ax.set(xlim=(0, len(stages)), ylim=(0, 1))
        ax.axis("off")
    plt.show()

# %% [markdown]
# **Who is trained on, who chooses the learning rate, who is tested.** Training people are LFW people with at
# least two images who appear in **none** of the evaluated folds (`people_outside_folds`; LFW's folds are disjoint
# in people). A validation group of them is held out and never trained on: its genuine and impostor pairs choose
# the learning rate. The evaluated folds choose nothing. Training and validation faces are shrunk like the test
# faces.

# %%
if LFW_OK:
    pool = people_outside_folds(ROOT, folds=S.lfw_folds, min_images=2)
    names = np.random.default_rng(seed).permutation(sorted(pool))
    val_names = names[:S.val_people]
    n_train = fk.profiles.capped(S.train_people or len(names) - S.val_people)  # 0: all (a dry run caps that too)
    train_names = names[S.val_people:S.val_people + n_train]
    assert not (set(train_names) | set(val_names)) & SUB.people and not set(train_names) & set(val_names)

    def images_of(people):
        paths, labels = [], []
        for k, name in enumerate(people):
            paths += pool[name][:S.images_per_person]
            labels += [k] * len(pool[name][:S.images_per_person])
        return paths, torch.tensor(labels)

    train_paths, train_labels = images_of(train_names)
    val_paths, val_labels = images_of(val_names)
    n_val_same = int(sum(k * (k - 1) // 2 for k in np.bincount(val_labels.numpy())))
    VAL = make_pairs(val_labels.numpy(), min(200, n_val_same), min(200, n_val_same), seed=seed)
    fk.notebook.say(f"Training: {len(train_names)} people, {len(train_paths)} images; validation: {len(val_names)} "
                    f"people, {len(VAL)} pairs; evaluated: {len(SUB.people)} people of folds {list(S.lfw_folds)} "
                    f"(of {len(pool)} people with two or more images outside them; outside all ten folds there are "
                    f"only {len(people_outside_folds(ROOT, min_images=2))}, which is why only some folds are "
                    "evaluated).")

# %% [markdown]
# **The learning rate of the pretrained layers is a per-model choice.** Adam moves every weight by roughly the
# learning rate per step, whatever the weight's size. dlib's convolution weights are tiny (its folded batch norms
# carry large gains instead), so dlib's candidate multipliers are FaceNet's times `lr_unit = 0.1`. The cell prints
# the size of one Adam step relative to the mean weight of each head, for the smallest candidate.

# %%
LR = 1e-3  # Adam, for the new ArcFace classes; the head's pretrained layers get LR x lr_scale x lr_unit
DROPOUT = 0.2  # FaceNet, before the bottleneck while fine-tuning: Sandberg's keep probability 0.8
for c in CANDIDATES:
    weights = [p for n, p in c.head.named_parameters() if n.endswith("weight") and p.ndim > 1]
    size = float(torch.cat([w.detach().abs().flatten() for w in weights]).mean())
    step = LR * min(S.lr_scales) * c.lr_unit
    print(f"{c.name}: mean |weight| of the head {size:.2e}; one Adam step at lr {step:.0e} = {step / size:.3f} of it")


def prototype_classifier(embeddings, labels, head):
    """An ArcFace classifier whose class weights start at each person's mean unit embedding."""
    clf = MarginClassifier(embeddings.shape[1], int(labels.max()) + 1, head)
    with torch.no_grad():
        clf.weight.copy_(torch.stack([F.normalize(embeddings[labels == k], dim=1).mean(0)
                                      for k in range(int(labels.max()) + 1)]))
    return clf


def fine_tune(c, train_f, lr_scale, run_seed, epochs=None):
    """A trained copy of c.head (the pretrained model itself is untouched) and its training history."""
    head = copy.deepcopy(c.head)
    keep_norm_stats(head)  # FaceNet's batch norms keep their stored statistics
    for m in head.modules():
        if isinstance(m, nn.Dropout):
            m.p = DROPOUT
    arcface = ArcFace(s=32.0, margin_rad=0.5)
    model = MarginModel(head, prototype_classifier(run(c.head, train_f), train_labels, arcface))
    hist = fit(model, TensorDataset(train_f, train_labels), forward=margin_forward, epochs=epochs or S.epochs, lr=LR,
               batch_size=64, seed=run_seed, device=str(DEVICE), progress=False,
               param_groups=param_groups(model, {"backbone": lr_scale * c.lr_unit}))
    return head.cpu().eval(), hist


def val_auc(head, val_f):
    e = F.normalize(run(head, val_f), dim=1)
    return fk.metrics.auc((e[VAL.a] * e[VAL.b]).sum(1).numpy(), VAL.is_same)

# %% [markdown]
# The next cell computes the trunk features of the (shrunk) training and validation faces, then trains one run per
# candidate learning rate and keeps the one with the best **validation** AUC. Look at the validation row of the
# pretrained model as it is: a candidate has to beat it on people the evaluation never sees.

# %%
TRAIN_F, VAL_F, CHOSEN, LR_ROWS = {}, {}, {}, []
for c in CANDIDATES:
    pretrained = {k: v.clone() for k, v in c.net.state_dict().items()}
    TRAIN_F[c.name] = run(c.trunk, low_resolution(c.inputs(train_paths)[0]))
    VAL_F[c.name] = val_f = run(c.trunk, low_resolution(c.inputs(val_paths)[0]))
    LR_ROWS.append({"model": c.name, "lr scale": 0.0, "validation AUC": val_auc(c.head, val_f), "final loss": np.nan})
    runs = {}
    for lr_scale in S.lr_scales:
        runs[lr_scale] = fine_tune(c, TRAIN_F[c.name], lr_scale, seed)
        LR_ROWS.append({"model": c.name, "lr scale": lr_scale, "validation AUC": val_auc(runs[lr_scale][0], val_f),
                        "final loss": runs[lr_scale][1].last("train_loss")})
    best = max((r for r in LR_ROWS if r["model"] == c.name and r["lr scale"] > 0), key=lambda r: r["validation AUC"])
    CHOSEN[c.name] = (best["lr scale"], runs[best["lr scale"]][0])
    assert all(torch.equal(v, pretrained[k]) for k, v in c.net.state_dict().items()), f"{c.name} changed"
if LR_ROWS:
    display(pd.DataFrame(LR_ROWS).set_index(["model", "lr scale"]).round(4))
    print("chosen on validation people:", {m: s for m, (s, _) in CHOSEN.items()})

# %% [markdown]
# A note on the table: the row with `lr scale` 0 is the pretrained model as it is. If no candidate beats it on
# the validation people, the best candidate is still kept (the point is to measure fine-tuning), and the
# verdicts below will say whether it differs from the model as is on the evaluated pairs.
#
# With the learning rate fixed, the chosen recipe runs with `seeds` seeds (the first is the run above). Each run is
# evaluated by the k-fold rule on the shrunk pairs (the gain) and on the original pairs (forgetting).

# %%
FT = {}  # model -> {"low": [PairEvaluation per seed], "orig": [...]}
for c in CANDIDATES:
    lr_scale, head0 = CHOSEN[c.name]
    heads = [head0] + [fine_tune(c, TRAIN_F[c.name], lr_scale, seed + s)[0]
                       for s in range(1, fk.profiles.capped(S.seeds, "steps"))]  # a dry run: 2 seeds
    FT[c.name] = {"low": [evaluate_pairs(SUB, lookup(run(h, LOW_FEAT[c.name])), distance="cosine") for h in heads],
                  "orig": [evaluate_pairs(SUB, lookup(run(h, FEAT[c.name])), distance="cosine") for h in heads]}
AS_IS = {c.name: {"low": evaluate_pairs(SUB, lookup(LOW_EMB[c.name]), distance="cosine"),
                  "orig": evaluate_pairs(SUB, lookup(EMB[c.name]), distance="cosine")} for c in CANDIDATES}

# %% [markdown]
# The verdicts. For each model and each kind of face: the AUC difference of the first seed's fine-tuned model
# against the model as is, on the same pairs, resampling people (`compare_scores`); and the k-fold accuracy over
# seeds against the model as is (`compare_seeds`, a paired t interval; the model as is has no seed, so its
# accuracy is the same in every pair).

# %%
VERDICTS, FT_ROWS = {}, []
for m in FT:
    for kind, label in (("low", f"{low_res_px} px"), ("orig", "original")):
        ft, base = FT[m][kind], AS_IS[m][kind]
        accs = [r.kfold.mean for r in ft]
        VERDICTS[m, kind, "auc"] = st.compare_scores(ft[0].scores, base.scores, SUB.is_same, "auc", groups=PERSON,
                                                     n_boot=S.n_boot, names=(f"{m} fine-tuned", f"{m} as is"))
        VERDICTS[m, kind, "seeds"] = st.compare_seeds(accs, [base.kfold.mean] * len(accs), metric="k-fold accuracy",
                                                      names=(f"{m} fine-tuned", f"{m} as is"))
        FT_ROWS.append({"model": m, "faces": label, "as is: accuracy %": 100 * base.kfold.mean,
                        "fine-tuned: accuracy % (mean of seeds)": 100 * np.mean(accs),
                        "± % (over seeds)": 100 * np.std(accs),
                        "as is: AUC": fk.metrics.auc(base.scores, SUB.is_same),
                        "fine-tuned: AUC (seed 0)": fk.metrics.auc(ft[0].scores, SUB.is_same)})
        fk.notebook.say(f"**{m}, {label} faces.** AUC: {VERDICTS[m, kind, 'auc'].text} Over {len(accs)} seeds: "
                        f"{VERDICTS[m, kind, 'seeds'].text}")
if FT_ROWS:
    display(pd.DataFrame(FT_ROWS).set_index(["model", "faces"]).round(4))

# %% [markdown]
# The same numbers as a picture: each model's AUC with its 95% interval (people resampled), before and after
# fine-tuning, on the shrunk and on the original faces. A gain on the left panel bought with a loss on the right
# one is forgetting.

# %% tags=["key-figure"]
if FT:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
    for ax, (kind, label) in zip(axes, (("low", f"{low_res_px} px faces"), ("orig", "original faces"))):
        for k, m in enumerate(FT):
            for dx, (regime, r) in zip((-0.12, 0.12), (("as is", AS_IS[m][kind]), ("fine-tuned", FT[m][kind][0]))):
                iv = st.auc_interval(r.scores, SUB.is_same, groups=PERSON, n_boot=S.n_boot)
                ax.errorbar(k + dx, iv.estimate, yerr=[[iv.estimate - iv.low], [iv.high - iv.estimate]], fmt="o",
                            capsize=3, color="0.5" if regime == "as is" else "C1", label=regime if k == 0 else None)
        ax.set(xticks=range(len(FT)), xticklabels=list(FT), title=label, ylabel="AUC (95% interval)")
        ax.legend(loc="lower right")
    plt.show()
    for (m, kind, what), v in VERDICTS.items():
        record(f"ft_{m.split()[0].lower()}_{kind}_{what}_diff", round(float(v.difference.estimate), 4))
    assert all(np.isfinite(r["fine-tuned: AUC (seed 0)"]) for r in FT_ROWS)
    assert len(FT_ROWS) == 2 * len(FT)
    if PROFILE != "smoke":
        # not wrecked: within 0.05 AUC of the model as is (at 16 px the model as is may itself be below 0.9)
        assert all(r["fine-tuned: AUC (seed 0)"] > r["as is: AUC"] - 0.05 for r in FT_ROWS), \
            "fine-tuning should not wreck a model"

# %% [markdown]
# How to read the verdicts. A gain on the shrunk faces says the head learned to use what survives at
# `low_res_px` pixels, from people it is never tested on. The trunk is frozen, so whatever detail the first stages
# discard at this resolution stays lost; training the trunk too (on a GPU) is the next step. A loss on the
# original faces is the price of moving the head towards the new domain; mixing original faces into the training
# set, or keeping the pretrained head for good images, avoids paying it. "Fine-tuning improves accuracy" is a
# claim about a domain the model has not seen; on its own domain (section 2) the pretrained model leaves little
# to gain.
#
# Two details of the protocol matter when reading the numbers. Section 3 scores both models by cosine, because
# the fine-tuned head is trained for cosine (ArcFace); dlib's own rule is the Euclidean distance of its raw
# descriptors (section 2), so its "as is" row here can sit below section 2's. And with a few hundred pairs, the
# k-fold accuracy moves in steps of one pair: seeds can tie exactly, and then the paired t interval over seeds
# has zero width. Read the seed verdicts beside the pair-level ones, which resample people.

# %% [markdown]
# ## 4. Few-shot enrolment on ORL, and rejecting people who are not enrolled
#
# Enrolment needs no training: each person's template is the mean of their `shots` embeddings, and a probe gets
# the name of the nearest template by cosine (`facekit.metrics.enrol`, `identify`). ORL's images are 92x112
# grayscale close crops: MTCNN and dlib's HOG detector are run on them as on any photo, and where they find no
# face the fixed-crop fallback is used (FaceNet: the centred square resized to 160; dlib: a centred box for the
# landmarks); the table counts those.

# %%
ORL_MODELS = {}  # model -> (N, D) embeddings of ORL's images
if ORL_OK:
    ORL = fk.data.load_dataset("orl", root=ROOT)
    orl_paths = [p for p, y in ORL.samples if y < S.orl_people]
    orl_labels = np.array([y for p, y in ORL.samples if y < S.orl_people])
    orl_x, orl_found = facenet_crops(orl_paths)
    ORL_MODELS["FaceNet"] = run(Standardized(FACENET), orl_x).numpy()
    print(f"ORL: {len(orl_paths)} images of {S.orl_people} people; MTCNN found a face in {int(orl_found.sum())}")
    if DLIB is not None:
        ORL_MODELS["dlib ResNet"], found_hog = image_descriptors(orl_paths, device=DEVICE)
        print(f"dlib HOG found a face in {int(found_hog.sum())} of {len(orl_paths)} ORL images "
              f"(the rest: the centred fallback box)")

# %% [markdown]
# Closed set first: every probe belongs to an enrolled person; rank-1 is the share named correctly. Each row
# averages `repeats` random draws of which images are enrolled; the spread over draws says how much the luck of
# the enrolment photo matters, which is largest with one image per person.
#
# What to look for: how much a second and third enrolment image add, and whether the two models, trained on
# different data with different losses, rank ORL's grey close crops in the same order as LFW's colour photos.

# %%
ORL_ROWS = []
for name, emb in ORL_MODELS.items():
    for shots in S.shots:
        acc = []
        for r in range(S.repeats):
            e, p = few_shot_split(orl_labels, shots, seed=r)
            pred, _ = identify(enrol(emb[e], orl_labels[e]), emb[p])
            acc.append(np.mean(pred == orl_labels[p]))
        ORL_ROWS.append({"model": name, "shots": shots, "rank-1 %": 100 * np.mean(acc),
                         "± % (over draws)": 100 * np.std(acc), "probes": len(p)})
if ORL_ROWS:
    orl_table = pd.DataFrame(ORL_ROWS)
    display(orl_table.round(2))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, g in orl_table.groupby("model"):
        ax.errorbar(g["shots"], g["rank-1 %"], yerr=g["± % (over draws)"], marker="o", capsize=3, label=name)
    ax.set(xlabel="images enrolled per person", ylabel="rank-1 identification %", title="ORL few-shot enrolment")
    ax.legend()
    plt.show()
    for r in ORL_ROWS:
        record(f"orl_{r['model'].split()[0].lower()}_{r['shots']}shot", round(r["rank-1 %"], 2), unit="%")
    fn = orl_table[orl_table["model"] == "FaceNet"].set_index("shots")["rank-1 %"]
    fk.notebook.say(f"FaceNet names {fn[min(S.shots)]:.1f}% of ORL's probes from {min(S.shots)} image(s) per person "
                    f"and {fn[max(S.shots)]:.1f}% from {max(S.shots)}.")
    if PROFILE != "smoke":
        assert fn[max(S.shots)] >= fn[min(S.shots)] - 1, "more enrolment images should not hurt"
        assert fn[min(S.shots)] > 70, "a pretrained face model should identify ORL from one image"

# %% [markdown]
# **Open set.** The last `orl_unknown` people are never enrolled. The threshold on the best cosine is chosen on a
# calibration split — half of the unknown people and half of each enrolled person's probes — to maximise
# open-set accuracy (a known probe counts when accepted with the right name, an unknown one when rejected), then
# measured on the other half: other unknown people and other probes.

# %%
def open_set_run(emb, shots, r):
    """One draw: enrol `shots` images of each known person, choose the threshold on calibration people, test."""
    known = np.arange(S.orl_people - S.orl_unknown)
    rng = np.random.default_rng(100 + r)
    unk = rng.permutation(np.arange(S.orl_people - S.orl_unknown, S.orl_people))
    unk_cal, unk_test = unk[:len(unk) // 2], unk[len(unk) // 2:]
    idx_known = np.flatnonzero(np.isin(orl_labels, known))
    e, p = few_shot_split(orl_labels[idx_known], shots, seed=r)
    e, p = idx_known[e], rng.permutation(idx_known[p])
    gallery = enrol(emb[e], orl_labels[e])
    scored = {}
    for split, kp, people in (("cal", p[:len(p) // 2], unk_cal), ("test", p[len(p) // 2:], unk_test)):
        pred, score = identify(gallery, emb[kp])
        _, uscore = identify(gallery, emb[np.flatnonzero(np.isin(orl_labels, people))])
        scored[split] = (score, pred == orl_labels[kp], uscore)
    return open_set_metrics(choose_open_set_threshold(*scored["cal"]), *scored["test"])


OPEN_ROWS = []
for name, emb in ORL_MODELS.items():
    shots = S.shots[len(S.shots) // 2]  # the middle number of shots
    res = [open_set_run(emb, shots, r) for r in range(S.repeats)]
    OPEN_ROWS.append({"model": name, "shots": shots, "enrolled": S.orl_people - S.orl_unknown,
                      "unknown": S.orl_unknown, "threshold (cosine)": np.mean([x.threshold for x in res]),
                      "open-set accuracy %": 100 * np.mean([x.accuracy for x in res]),
                      "unknown rejected %": 100 * np.mean([x.unknown_rejection for x in res]),
                      "known rejected %": 100 * np.mean([x.known_false_rejection for x in res]),
                      "known accepted + named %": 100 * np.mean([x.known_identification for x in res])})
if OPEN_ROWS:
    display(pd.DataFrame(OPEN_ROWS).round(3))
    for r in OPEN_ROWS:
        record(f"orl_open_{r['model'].split()[0].lower()}_unknown_rejected", round(r["unknown rejected %"], 2),
               unit="%")

# %% [markdown]
# The open-set rows show the trade-off a single threshold makes: raising it rejects more unknown people and more
# enrolled ones too. The threshold was chosen on people who are not the unknowns it is tested on, so the rejection
# rate is an honest estimate, with the spread of a few people per split.

# %% [markdown]
# ## Exercises
#
# Graded by difficulty: ★ a few minutes, ★★ a little thought or code, ★★★ an open design question. Each has a
# solution in a folded cell below it (click to expand); try first. The check cells tell you whether you are right.
#
# **Exercise 1 ★ (predict, then run).** Section 3 shrank faces to `low_res_px` pixels. At 24 pixels, will
# FaceNet's AUC as it is be closer to its AUC on the original faces or to its AUC at `low_res_px`? Predict, then
# compute it on the pairs of the first evaluated fold (the trunk and head of section 2, `low_resolution`).

# %%
ex1 = None  # FaceNet's AUC as is on the first fold's pairs, faces at 24 px

# %% tags=["solution"] jupyter={"source_hidden": true}
if LFW_OK:
    row = {p: i for i, p in enumerate(IMAGES)}
    f0 = SUB.folds[0]
    ia, ib = [row[SUB.paths_a[k]] for k in f0], [row[SUB.paths_b[k]] for k in f0]
    used = sorted(set(ia) | set(ib))
    e24 = torch.zeros(len(IMAGES), EMB["FaceNet"].shape[1])
    e24[used] = run(CANDIDATES[0].net, low_resolution(X["FaceNet"][used], 24))
    ex1 = fk.metrics.auc(F.cosine_similarity(e24[ia], e24[ib]).numpy(), SUB.is_same[f0])
    for name, e in (("original", EMB["FaceNet"]), (f"{low_res_px} px", LOW_EMB["FaceNet"])):
        print(f"{name}: AUC {fk.metrics.auc(F.cosine_similarity(e[ia], e[ib]).numpy(), SUB.is_same[f0]):.4f}")
    print(f"24 px: AUC {ex1:.4f}")
# The loss need not be linear in pixels: a 24-pixel face still keeps the eyes, nose and mouth as a few pixels
# each, while at 16 and below they start to merge. Compare the three printed AUCs with your prediction.

# %% [markdown]
# **Exercise 2 ★★ (implement from scratch).** Write the prototype start of section 3: for embeddings (N, D) and
# labels (N,) in 0..K-1, return (K, D) class weights, each the mean of that class's L2-normalised embeddings. The
# check compares it with the weights of `prototype_classifier`.

# %%
def prototype_weights(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, D) mean unit embedding of each class."""
    return None  # your code here

# %% tags=["solution"] jupyter={"source_hidden": true}
def prototype_weights(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, D) mean unit embedding of each class."""
    unit = embeddings / embeddings.norm(dim=1, keepdim=True)  # (N, D)
    one_hot = F.one_hot(labels).float()  # (N, K)
    return (one_hot.T @ unit) / one_hot.sum(0)[:, None]  # (K, D)

# %%
torch.manual_seed(seed)
ex_emb, ex_labels = torch.randn(20, 8), torch.arange(5).repeat(4)
fk.notebook.check("prototype weights", prototype_weights(ex_emb, ex_labels).numpy(),
                  prototype_classifier(ex_emb, ex_labels, ArcFace()).weight.detach().numpy(), atol=1e-6);

# %% [markdown]
# **Exercise 3 ★★ (implement from scratch).** The AUC is the probability that a random genuine pair scores higher
# than a random impostor pair (ties count one half): the Mann-Whitney statistic. Write it with two broadcast
# comparisons, no sorting; the check compares it with `fk.metrics.auc` on section 3's scores.

# %%
def auc_mann_whitney(scores: np.ndarray, is_same: np.ndarray) -> float:
    return None  # your code here

# %% tags=["solution"] jupyter={"source_hidden": true}
def auc_mann_whitney(scores: np.ndarray, is_same: np.ndarray) -> float:
    genuine, impostor = scores[is_same][:, None], scores[~is_same][None, :]  # (G, 1), (1, I)
    return float(np.mean((genuine > impostor) + 0.5 * (genuine == impostor)))

# %%
ex3_scores = FT["FaceNet"]["low"][0].scores if FT else np.random.default_rng(seed).normal(size=40)
ex3_same = SUB.is_same if FT else np.arange(40) % 2 == 0
fk.notebook.check("AUC (Mann-Whitney)", auc_mann_whitney(ex3_scores, ex3_same), fk.metrics.auc(ex3_scores, ex3_same),
                  atol=1e-9);

# %% [markdown]
# **Exercise 4 ★★ (change a parameter and explain).** Fine-tune FaceNet's head once more with a learning-rate scale
# ten times the largest candidate and read its **validation** AUC beside the table of section 3. What happens to
# the pretrained solution, and why does the prototype start not protect it? (Only the validation people may be
# used to decide: the evaluated folds stay untouched.)

# %%
ex4 = None  # FaceNet's validation AUC with lr scale 10 x max(S.lr_scales)

# %% tags=["solution"] jupyter={"source_hidden": true}
if FT:
    c = CANDIDATES[0]
    ex4 = val_auc(fine_tune(c, TRAIN_F[c.name], 10 * max(S.lr_scales), seed)[0], VAL_F[c.name])
    print(f"validation AUC at lr scale {10 * max(S.lr_scales):g}: {ex4:.4f}; the candidates:")
    display(pd.DataFrame([r for r in LR_ROWS if r["model"] == c.name]).round(4))
# A much larger step moves the head's weights by a larger fraction of their size at every step (section 3 printed
# that fraction for the smallest candidate). If the validation AUC falls, the head has left the pretrained
# solution, and a few hundred training people cannot teach what the pretraining taught from far more faces.
# The prototype start only places the new classes well; it does not
# limit how far the pretrained layers move. Smaller steps, fewer epochs, or a penalty on the distance to the
# pretrained weights (L2-SP) keep the model close to where it started.

# %% [markdown]
# **Exercise 5 ★★★ (open question).** The trunk stayed frozen in section 3. Design the experiment that tells whether
# training the trunk too would recover more of the low-resolution loss, and whether mixing original faces into
# the training set removes the forgetting. Which sizes, which splits, which verdicts, and what would it cost?

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# *One answer.* Keep everything that made section 3 honest: the same evaluated pairs, training people outside the
# evaluated folds, a validation group for every choice (learning rates of trunk and head, epochs, the share of
# original faces). Compare four recipes — head only, head + last trunk stages, whole network, whole network with
# half the batch original faces — each over at least three seeds, with `compare_scores` on the same pairs
# (people resampled) for the shrunk and the original faces, and `compare_seeds` for the k-fold accuracy. Training
# the trunk means running it forward and backward on every image at every epoch (no cached features): on a CPU
# that is tens of times the cost of section 3, so it belongs to the `gpu` profile. Expect the trunk to matter more
# at lower resolution, because the first layers are what see the missing detail.

# %% [markdown]
# ## Summary
#
# - A face pipeline is detection, a choice of face, alignment or cropping, then the network; each step is checked
#   here against the package, and the choice of face changes the pairs whose photos show several people.
# - Both pretrained models are near the ceiling of LFW as they are: their pretraining domain.
# - Shrinking faces to a few pixels is a domain shift that pulls both models below the ceiling, measured by a
#   paired verdict on the same pairs.
# - Fine-tuning the head with ArcFace on shrunk faces of other people, with the learning rate chosen on
#   validation people only, is judged on the shifted faces (the gain) and on the original faces (forgetting).
# - Few-shot enrolment needs no training; an open-set threshold must be chosen on people other than those it
#   is tested on.
#
# This run's numbers:

# %%
lines = []
if LFW_OK:
    lines.append(f"LFW, {len(SUB.is_same)} pairs of folds {list(S.lfw_folds)}: " + "; ".join(
        f"{m} ({faces}) {a:.2f}%" for (m, faces), a in lfw_table["accuracy %"].items()) + ".")
for m in FT:
    lines.append(f"{m} at {low_res_px} px as is: {SHIFT[m].text}")
    lines.append(f"{m} fine-tuned (lr scale {CHOSEN[m][0]:g}, chosen on validation people), {low_res_px} px faces: "
                 f"{VERDICTS[m, 'low', 'auc'].text} Over seeds: {VERDICTS[m, 'low', 'seeds'].text}")
    lines.append(f"{m} fine-tuned, original faces (forgetting): {VERDICTS[m, 'orig', 'auc'].text}")
for r in OPEN_ROWS:
    lines.append(f"ORL open set, {r['model']}, {r['shots']} shots: {r['unknown rejected %']:.1f}% of unknown people "
                 f"rejected, {r['known accepted + named %']:.1f}% of enrolled ones accepted and named.")
fk.notebook.say("\n".join("- " + line for line in lines) or "No pretrained model or dataset was found: nothing ran.")
_ = record("runtime_s", round(ctx.elapsed(), 1), unit="s")

# %% [markdown]
# ## Pitfalls
#
# - **Fine-tuning where the model is already at its ceiling.** On its own domain a pretrained face model leaves
#   a few pairs to fix; a gain there is within the noise of a few hundred pairs. Find the shift first.
# - **Training on the people you test on.** LFW's folds are disjoint in people; train only on people outside the
#   evaluated folds, and check it with a set intersection.
# - **Choosing hyper-parameters on the evaluated pairs.** A learning rate picked by looking at the test folds
#   makes the test optimistic; hold out validation people.
# - **Forgetting.** A head tuned to blurred faces may lose on sharp ones; measure both, on the same pairs.
# - **One learning rate for every pretrained model.** Adam's step is about the learning rate whatever the weight
#   size; models with small weights (dlib's folded batch norms) need smaller rates.
# - **Batch norms in training mode on small batches.** Keep the stored statistics (`keep_norm_stats`).
# - **The wrong face in a group photo.** The most confident face is not always the person the photo is about.
#
# ## Further reading
#
# - G. B. Huang, M. Ramesh, T. Berg, E. Learned-Miller, *Labeled Faces in the Wild*, UMass technical report, 2007.
# - F. Schroff, D. Kalenichenko, J. Philbin, *FaceNet: a unified embedding for face recognition and clustering*,
#   CVPR, 2015.
# - K. Zhang, Z. Zhang, Z. Li, Y. Qiao, *Joint face detection and alignment using multitask cascaded convolutional
#   networks* (MTCNN), IEEE Signal Processing Letters, 2016.
# - D. E. King, *High quality face recognition with deep metric learning*, dlib blog, 2017.
# - J. Deng, J. Guo, N. Xue, S. Zafeiriou, *ArcFace: additive angular margin loss for deep face recognition*,
#   CVPR, 2019.
# - J. Yosinski, J. Clune, Y. Bengio, H. Lipson, *How transferable are features in deep neural networks?*,
#   NeurIPS, 2014.
# - J. Kirkpatrick et al., *Overcoming catastrophic forgetting in neural networks*, PNAS, 2017.
# - X. Li, Y. Grandvalet, F. Davoine, *Explicit inductive bias for transfer learning with convolutional networks*
#   (L2-SP), ICML, 2018.
# - Z. Cheng, X. Zhu, S. Gong, *Surveillance face recognition challenge* (QMUL-SurvFace), arXiv, 2018.
# - F. Samaria, A. Harter, *Parameterisation of a stochastic model for human face identification* (ORL), IEEE
#   Workshop on Applications of Computer Vision, 1994.
