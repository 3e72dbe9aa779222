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
# # Chapter 0 — A tour of the data
#
# Face recognition is learned from many images of many people. This course runs anywhere, offline, so its
# default data is **procedural**: facekit draws synthetic people, each a fixed set of face parameters, and
# renders every image of them under new nuisance conditions. When real datasets are on disk (LFW, ORL,
# dlib's group photos) the chapters use them too; the last part of this tour shows them.
#
# What you will see: the generator's identities and what distinguishes them, each nuisance factor on its
# own, the difficulty knobs and a measurement of what they do, detection scenes with boxes and landmarks,
# augmentation, and the real datasets with their counts.

# %% tags=["parameters"]
profile = "auto"  # smoke | cpu | gpu | auto (auto: $FACEKIT_PROFILE, else gpu if CUDA, else cpu)
dataset = "synthetic"  # the data the tour starts with; the real sets below are shown whenever found
data_root = ""  # folder with lfw/, att_faces/, dlib_faces/; empty: FACEKIT_DATA, ./data, ../shared/datasets
seed = 0

# %%
import dataclasses
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import facekit as fk
from facekit.data import (DlibFaceBoxes, LFWPairs, SyntheticFaces, SyntheticScenes, available_datasets, load_dataset,
                          read_pairs)
from facekit.data.synthetic import OCCLUDERS, Difficulty, Nuisance, render_face, sample_identity
from facekit.data.transforms import train_transform
from facekit.reports import record

fk.viz.setup_notebook()
T0 = time.perf_counter()


@dataclass(frozen=True)
class Sizes:
    probe_identities: int  # people in the difficulty measurement
    probe_train: int  # images per person to build class means
    probe_test: int  # images per person to classify
    image_size: int


PROFILE, S = fk.profiles.pick(
    profile,
    smoke=Sizes(probe_identities=10, probe_train=5, probe_test=3, image_size=48),
    cpu=Sizes(probe_identities=40, probe_train=15, probe_test=10, image_size=64),
    gpu=Sizes(probe_identities=100, probe_train=30, probe_test=20, image_size=64),
)
ROOT = data_root or None
FOUND = available_datasets(ROOT)
record("profile", PROFILE)
print(f"profile={PROFILE}; real datasets found: { {k: str(v) for k, v in FOUND.items() if v} or 'none'}")

# %% [markdown]
# ## 1. Synthetic people
#
# `SyntheticFaces(num_identities, images_per_identity, image_size, seed=...)` is a PyTorch dataset. Each
# row below is one person: the face shape, eyes, brows, nose, mouth, skin and hair colour, hair style and
# accessories stay fixed; pose, light, expression, occlusion, blur, noise and background change from image
# to image.

# %%
people = SyntheticFaces(8, 8, 96, seed=seed)
x0, y0 = people[0]
print(f"{len(people)} images; one item is a {tuple(x0.shape)} {x0.dtype} tensor in [{x0.min():.2f}, {x0.max():.2f}] and label {y0}")
fk.viz.image_grid(torch.stack([people[i][0] for i in range(len(people))]), nrow=8, scale=1.0,
                  title="8 synthetic people (rows) x 8 images")
plt.show()
attributes = pd.DataFrame([people.attributes(k) for k in range(8)], index=people.classes)
print(attributes.to_string())

# %% [markdown]
# Everything is **deterministic from the seed** and random-access: image *j* of person *i* depends only on
# `(seed, i, j)`, not on how many people or images you ask for. That is what lets a held-out set draw new
# images of the same people (`image_offset`).

# %%
again = SyntheticFaces(8, 8, 96, seed=seed)
bigger = SyntheticFaces(20, 12, 96, seed=seed)
other_seed = SyntheticFaces(8, 8, 96, seed=seed + 1)
held_out = SyntheticFaces(8, 2, 96, seed=seed, image_offset=8)
assert torch.equal(people[13][0], again[13][0])
assert torch.equal(people[13][0], bigger[1 * 12 + 5][0])  # person 1, image 5 in a larger set
assert not torch.equal(people[13][0], other_seed[13][0])
assert held_out.identities[3] == people.identities[3]  # the same person 3 ...
assert held_out[3 * 2][1] == 3 and not torch.equal(held_out[3 * 2][0], people[3 * 8][0])  # ... in a new image
print("same seed -> identical images; person 1 image 5 is the same in an 8- and a 20-person set; image_offset gives new images of the same people")

# %% [markdown]
# ## 2. The nuisance factors, one at a time
#
# `render_face(identity, nuisance, size)` draws one person under an explicit `Nuisance`. Each row changes
# one factor and keeps the others neutral, so you can see what the model must learn to ignore. The renderer
# also returns five landmarks (eyes, nose tip, mouth corners) and the face box, transformed with the face.

# %%
person = sample_identity(seed, 3)
N = Nuisance()
factors = {
    "rotation": [dataclasses.replace(N, rotation=r) for r in (-25, -12, 0, 12, 25)],
    "scale": [dataclasses.replace(N, scale=s) for s in (0.75, 0.88, 1.0, 1.12, 1.25)],
    "yaw (head turn)": [dataclasses.replace(N, yaw=a) for a in (-35, -18, 0, 18, 35)],
    "lighting": [dataclasses.replace(N, light_angle=a, light_strength=0.6) for a in np.linspace(0, 2 * np.pi, 5, endpoint=False)],
    "expression": [dataclasses.replace(N, smile=-1.0), dataclasses.replace(N, eye_open=0.15), N,
                   dataclasses.replace(N, brow_raise=1.0, eye_open=1.2), dataclasses.replace(N, smile=1.0, mouth_open=0.8)],
    "occlusion": [dataclasses.replace(N, occluder=o) for o in (["none"] + list(OCCLUDERS))[:5]],
    "blur / noise": [dataclasses.replace(N, blur=0.02), dataclasses.replace(N, blur=0.01), N,
                     dataclasses.replace(N, noise=0.05), dataclasses.replace(N, noise=0.12)],
    "background clutter": [dataclasses.replace(N, clutter=c, seed=i) for i, c in enumerate((0.0, 0.25, 0.5, 0.75, 1.0))],
}
fig, axes = plt.subplots(len(factors), 5, figsize=(6.2, 1.1 * len(factors)), gridspec_kw=dict(wspace=0.04, hspace=0.06))
for row, (name, nuisances) in zip(axes, factors.items()):
    for ax, nz in zip(row, nuisances):
        img, landmarks, box = render_face(person, nz, 96)
        ax.imshow(img)
        if name == "rotation":
            ax.plot(landmarks[:, 0], landmarks[:, 1], "r.", ms=3)
        ax.set_xticks([]), ax.set_yticks([])
    row[0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Difficulty knobs, and what they do
#
# The ranges of all factors live in one frozen dataclass, `Difficulty`, with three presets. How hard is
# each? A cheap yardstick that needs no training: classify held-out images by the **nearest class mean** of
# raw pixels. It is far from a good face recogniser, but it tells how much the nuisance hides identity.

# %%
print(pd.DataFrame({name: dataclasses.asdict(Difficulty.preset(name)) for name in ("easy", "medium", "hard")}).to_string())


def nearest_class_mean_accuracy(difficulty) -> float:
    kw = dict(num_identities=S.probe_identities, image_size=S.image_size, seed=seed, difficulty=difficulty, channels=1)
    train_x, train_y = SyntheticFaces(images_per_identity=S.probe_train, **kw).tensors()
    test_x, test_y = SyntheticFaces(images_per_identity=S.probe_test, image_offset=S.probe_train, **kw).tensors()
    means = torch.stack([train_x[train_y == k].mean(0) for k in range(S.probe_identities)]).flatten(1)
    predicted = torch.cdist(test_x.flatten(1), means).argmin(1)
    return (predicted == test_y).float().mean().item()


probe = {name: nearest_class_mean_accuracy(name) for name in ("easy", "medium", "hard")}
chance = 1 / S.probe_identities
for name, acc in probe.items():
    record(f"pixel_ncm_accuracy[{name}]", round(acc, 4))
print(pd.Series(probe, name="nearest-class-mean accuracy on raw pixels").round(3).to_string(), f"\nchance: {chance:.3f}")
assert probe["easy"] > probe["hard"], "the presets should be ordered by difficulty"
assert probe["easy"] > 2 * chance, "easy identities should be separable even from raw pixels"
if PROFILE != "smoke":
    assert probe["medium"] < 0.9, "the default should not be solvable from raw pixels"

fig, axes = plt.subplots(3, 1, figsize=(7, 3.6))
for ax, name in zip(axes, ("easy", "medium", "hard")):
    row = SyntheticFaces(1, 8, 64, seed=seed, difficulty=name).tensors()[0]
    fk.viz.image_grid(row, nrow=8, ax=ax)
    ax.set_title(f"{name}: one person, 8 images", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# Chapter 1 checks the other side: a trained CNN separates the default ("medium") identities far above
# chance without reaching 100% on held-out images.
#
# ## 4. Detection scenes
#
# For the detection chapter the same generator composes scenes: several faces of varied size on clutter,
# sometimes none, with ground-truth boxes and five landmarks per face, in torchvision's detection format.

# %%
scenes = SyntheticScenes(6, 192, seed=seed)
drawn, counts = [], []
for i in range(len(scenes)):
    img, target = scenes[i]
    counts.append(len(target["boxes"]))
    drawn.append(fk.viz.draw_detections(img, target["boxes"], target["landmarks"]))
    assert target["boxes"].shape == (counts[-1], 4) and target["landmarks"].shape == (counts[-1], 5, 2)
fk.viz.image_grid(torch.stack(drawn), nrow=3, scale=2.4, titles=[f"{c} face{'' if c == 1 else 's'}" for c in counts])
plt.show()
record("scene_faces_mean", float(np.mean(counts)))

# %% [markdown]
# ## 5. Augmentation
#
# Augmentation shows the model a new version of each training image every epoch. facekit composes it from
# `torchvision.transforms.v2` (random resized crop, flip, rotation, colour jitter, erasing); chapter 1
# measures how much it helps.

# %%
face = people[0][0]
aug = train_transform(96, strength="medium")
torch.manual_seed(seed)
versions = torch.stack([face] + [aug(face) for _ in range(7)])
fk.viz.image_grid(versions, nrow=8, titles=["original"] + [f"aug {i}" for i in range(1, 8)], scale=1.0)
plt.show()
assert versions.shape == (8, 3, 96, 96) and not torch.equal(versions[1], versions[2])

# %% [markdown]
# ## 6. Real faces (when on disk)
#
# - **LFW** (Labeled Faces in the Wild): 13,233 photos of 5,749 people from the news, 250×250; the standard
#   face *verification* benchmark. Its protocol file `pairs.txt` has 10 folds of 300 same-person and 300
#   different-person pairs; `pairsDevTrain.txt` / `pairsDevTest.txt` are for model development.
# - **ORL** (AT&T): 40 people × 10 grey 92×112 images, small and clean: a closed-set classification task.
# - **dlib's PASCAL VOC photos**: group photos with hand-labelled face boxes, for detection.
#
# Each block runs only if the dataset was found and says so otherwise.

# %%
if FOUND.get("lfw"):
    lfw_dir = FOUND["lfw"]
    people_dirs = [d for d in lfw_dir.iterdir() if d.is_dir()]
    per_person = pd.Series({d.name: len(list(d.glob("*.jpg"))) for d in people_dirs})
    pairs = {name: read_pairs(lfw_dir / f"{name}.txt", lfw_dir) for name in ("pairs", "pairsDevTrain", "pairsDevTest")}
    summary = {
        "images": int(per_person.sum()), "people": len(per_person), "people with >= 2 images": int((per_person >= 2).sum()),
        **{f"{k}: pairs (same)": f"{sum(len(f) for f in v.folds)} ({sum(p.is_same for f in v.folds for p in f)})" for k, v in pairs.items()},
        "pairs.txt folds": len(pairs["pairs"].folds),
    }
    print(pd.Series(summary).to_string())
    record("lfw_images", summary["images"])
    record("lfw_people", summary["people"])
    assert summary["images"] == 13233 and summary["people"] == 5749 and summary["people with >= 2 images"] == 1680
    assert len(pairs["pairs"].folds) == 10 and all(len(f) == 600 for f in pairs["pairs"].folds)

    lfw_pairs = LFWPairs(ROOT, split="pairs", image_size=112)
    same = [i for i, p in enumerate(lfw_pairs.pairs) if p.is_same][:4]
    diff = [i for i, p in enumerate(lfw_pairs.pairs) if not p.is_same][:4]
    shown = [img for i in same + diff for img in lfw_pairs[i][:2]]
    fk.viz.image_grid(torch.stack(shown), nrow=8, scale=1.1,
                      titles=["same", ""] * 4 + ["different", ""] * 4)
    plt.show()
    print("most photographed:", per_person.sort_values(ascending=False).head(5).to_dict())
else:
    print("LFW not found: set FACEKIT_DATA or data_root, or run facekit.data.download_lfw()")

# %%
if FOUND.get("orl"):
    orl = load_dataset("orl", root=ROOT, channels=1)
    orl_counts = pd.Series(orl.targets).value_counts()
    print(f"ORL: {len(orl)} images of {len(orl.classes)} people, {orl_counts.min()}-{orl_counts.max()} each, "
          f"image shape {tuple(orl[0][0].shape)}")
    record("orl_images", len(orl))
    assert len(orl) == 400 and len(orl.classes) == 40
    fk.viz.image_grid(torch.stack([orl[i][0] for i in range(0, 80, 2)]), nrow=10, scale=0.9, title="ORL: 8 people x 5 images")
    plt.show()
else:
    print("ORL (att_faces) not found: set FACEKIT_DATA or data_root")

# %%
if FOUND.get("dlib"):
    boxes = DlibFaceBoxes(ROOT, split="testing")
    n_boxes = sum(len(boxes[i][1]["boxes"]) for i in range(len(boxes)))
    print(f"dlib testing set: {len(boxes)} photos, {n_boxes} face boxes")
    img, target = boxes[0]
    plt.figure(figsize=(6, 4))
    plt.imshow(fk.viz.draw_detections(img, target["boxes"], width=3).permute(1, 2, 0))
    plt.axis("off")
    plt.show()
    assert n_boxes >= 20
else:
    print("dlib_faces not found: set FACEKIT_DATA or data_root")

# %% [markdown]
# ## Summary
#
# - The generator gives any number of people and images, deterministically, at any resolution, with
#   documented difficulty knobs; on raw pixels the presets are ordered as the table above measured.
# - Detection scenes carry boxes and five landmarks per face.
# - The real datasets, when present, have the counts asserted above: the same numbers the literature uses.

# %%
record("chapter_seconds", round(time.perf_counter() - T0, 1))
