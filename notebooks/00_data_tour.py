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
# ## Learning outcomes
#
# After this chapter you can
#
# 1. draw synthetic people and images of them with `facekit.data.SyntheticFaces`, and say which properties
#    belong to a person and which change from one image to the next (the *nuisance factors*);
# 2. set the generator's difficulty and measure what a setting does with a baseline that needs no training;
# 3. split face data the two ways the course needs, **per identity** (closed set: new images of known people)
#    and **per person** (open set: people never seen), and check that nothing leaks across the split;
# 4. read the real datasets' counts (LFW, ORL, dlib's photos) and the structure of LFW's `pairs.txt`.
#
# ## Prerequisites
#
# None: this is the first chapter. You need Python, NumPy and a first look at PyTorch tensors and datasets
# (`dataset[i]` returns an `(image, label)` pair).
# %% tags=["parameters"]
profile = "auto"  # smoke | cpu | gpu | auto (auto: $FACEKIT_PROFILE, else gpu if CUDA, else cpu)
dataset = "synthetic"  # accepted like every chapter; the tour shows the synthetic data and each real set found
data_root = ""  # folder with lfw/, att_faces/, dlib_faces/; empty: FACEKIT_DATA, ./data, ../shared/datasets
seed = 0

# %%
import dataclasses
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import facekit as fk
from facekit.data import (DlibFaceBoxes, LFWPairs, SyntheticFaces, SyntheticScenes, load_dataset, read_pairs,
                          split_people, split_per_identity)
from facekit.data.synthetic import OCCLUDERS, Difficulty, Nuisance, render_face, sample_identity
from facekit.data.transforms import train_transform
from facekit.reports import record


@dataclass(frozen=True)
class Sizes:
    probe_identities: int  # people in the difficulty measurement
    probe_train: int  # images per person to build class means
    probe_test: int  # images per person to classify
    image_size: int


ctx = fk.notebook.setup(profile, seed=seed, data_root=data_root,
                        smoke=Sizes(probe_identities=10, probe_train=5, probe_test=3, image_size=48),
                        cpu=Sizes(probe_identities=40, probe_train=15, probe_test=10, image_size=64),
                        gpu=Sizes(probe_identities=100, probe_train=30, probe_test=20, image_size=64))
PROFILE, S, ROOT, FOUND = ctx.profile, ctx.sizes, ctx.root, ctx.found

# %% [markdown]
# How long this chapter takes at each profile, read from the committed report runs (`reports/*/summary.json`):

# %%
fk.notebook.say(fk.notebook.durations_sentence("00_data_tour"))

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
# the grid spacing is set above (tight_layout would warn about it); the inline backend crops to the labels
plt.show()

# %% [markdown]
# ## 3. Difficulty knobs, and what they do
#
# The ranges of all factors live in one frozen dataclass, `Difficulty`, with three presets. How hard is
# each? A cheap yardstick that needs no training: classify held-out images by the **nearest class mean** of
# raw pixels. It is far from a good face recogniser, but it tells how much the nuisance hides identity.

# %% tags=["key-figure"]
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
    record(f"pixel_ncm_accuracy[{name}]", round(acc, 4), key=True)
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
# **Explore it:** each slider is one field of `Difficulty`, starting at the medium preset; the grid redraws images
# 0-7 of one person exactly as `SyntheticFaces` would render them with those ranges.

# %% tags=["exploration"]
from facekit.explore import explore_generator

explore_generator(seed=seed)

# %% [markdown]
# Chapter 1 checks the other side: a trained CNN separates the default ("medium") identities far above
# chance without reaching perfect accuracy on held-out images.
#
# ## 4. Two ways to split faces, and leakage
#
# A test set is only a test if nothing in it was seen in training. With faces, "seen" has two levels, and the
# course uses both:
#
# - **per identity** (closed set, chapters 1-2): every person appears on both sides, in *different images*.
#   `facekit.data.split_per_identity(labels, n_test, n_val=...)` takes `n_test` images of each person for the
#   test set (an int is images per person, a float a fraction). The question it answers: *which of the known
#   people is this?*
# - **per person** (open set, chapter 4 onwards): the test people are **never seen** in training. The question:
#   *are these two images the same person?*, for people the model has never met. This is face verification, and
#   it is what LFW measures. `facekit.data.split_people(people, n_train, n_test)` draws the two sets of people.
#
# The figure draws both for 8 people with 8 images each: one row per person, one square per image, coloured by
# the split it lands in. Look for the difference: on the left every row has all three colours; on the right
# each row has one.

# %%
split_labels = torch.arange(8).repeat_interleave(8)  # 8 people x 8 images, the label of every image
tr, va, te = split_per_identity(split_labels, n_test=2, n_val=1, seed=seed)
closed = np.zeros(64, dtype=int)
closed[va], closed[te] = 1, 2
_, test_people = split_people(range(8), n_train=6, n_test=2, seed=seed)  # the open set: 2 whole people held out
opened = np.isin(split_labels.numpy(), test_people).astype(int) * 2
fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
cmap = plt.matplotlib.colors.ListedColormap(["#4c72b0", "#dd8452", "#55a868"])
for ax, grid, title in zip(axes, (closed, opened), ("per identity (closed set)", "per person (open set)")):
    ax.imshow(grid.reshape(8, 8), cmap=cmap, vmin=0, vmax=2)
    ax.set(title=title, xlabel="image of the person", ylabel="person", xticks=range(8), yticks=range(8))
    ax.set_xticks(np.arange(-0.5, 8), minor=True), ax.set_yticks(np.arange(-0.5, 8), minor=True)
    ax.grid(which="minor", color="white", lw=1.5)
fig.legend(handles=[plt.matplotlib.patches.Patch(color=cmap(i), label=n) for i, n in enumerate(("train", "val", "test"))],
           loc="center right")
fig.tight_layout(rect=(0, 0, 0.86, 1))
plt.show()
in_both = set(split_labels[tr].tolist()) & set(split_labels[te].tolist())
assert len(in_both) == 8 and not set(tr) & set(te), "closed set: every person on both sides, no image on both"
assert not set(test_people) & set(split_labels[opened == 0].tolist()), "open set: no person on both sides"

# %% [markdown]
# **Leakage** is anything that lets test information into training. The two classic forms with faces:
# the *same image* (or a near-duplicate, such as two frames of one video) on both sides of a split, which
# inflates a closed-set accuracy; and the *same person* on both sides of an open-set split, which turns
# verification of strangers into recognition of acquaintances. The asserts above are the checks to write
# every time you split; exercise 2 measures how much the first form inflates an accuracy.
#
# ## 5. Detection scenes
#
# For the detection chapter the same generator composes scenes: several faces of varied size on clutter,
# sometimes none, with ground-truth boxes and five landmarks per face, in torchvision's detection format.

# %%
scenes = SyntheticScenes(6, 192, seed=seed)
drawn, faces_per_scene = [], []
for i in range(len(scenes)):
    img, target = scenes[i]
    faces_per_scene.append(len(target["boxes"]))
    drawn.append(fk.viz.draw_detections(img, target["boxes"], target["landmarks"]))
    assert target["boxes"].shape == (faces_per_scene[-1], 4) and target["landmarks"].shape == (faces_per_scene[-1], 5, 2)
fk.viz.image_grid(torch.stack(drawn), nrow=3, scale=2.4, titles=[f"{c} face{'' if c == 1 else 's'}" for c in faces_per_scene])
plt.show()
record("scene_faces_mean", float(np.mean(faces_per_scene)))

# %% [markdown]
# ## 6. Augmentation
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
# ## 7. Real faces (when on disk)
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
    record("lfw_images", summary["images"], key=True)
    record("lfw_people", summary["people"], key=True)
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
# ## Exercises
#
# Graded ★ (a few minutes) to ★★★ (open-ended). Each solution is the collapsed cell right after the exercise
# (tagged `solution`); it defines the same names as your attempt, so to test your own answer run the check
# cell before expanding and running the solution. Every exercise runs in seconds.
#
# **Exercise 1 ★ (predict, then run).** 12 people with 10 images each are split with
# `split_per_identity(labels, n_test=3, n_val=0.2)`. How many images land in train, val and test? Write
# your prediction as a tuple, then run the check.

# %%
ex1_labels = torch.arange(12).repeat_interleave(10)
ex1_prediction = None  # your prediction: (train, val, test)

# %% tags=["solution"] jupyter={"source_hidden": true}
# n_test=3 is an int: 3 images per person; n_val=0.2 is a fraction: round(0.2 * 10) = 2 per person.
ex1_prediction = (12 * (10 - 3 - 2), 12 * 2, 12 * 3)

# %%
ex1_split = split_per_identity(ex1_labels, n_test=3, n_val=0.2, seed=seed)
fk.notebook.check("images in train, val, test", ex1_prediction, tuple(len(part) for part in ex1_split));

# %% [markdown]
# **Exercise 2 ★ (predict, then run): leakage.** Measure the nearest-class-mean accuracy of section 3 on the
# medium preset twice: on held-out images, and on the *training images themselves* (what happens when a test
# set leaks into training). Predict which is higher and by roughly how much, then compute both as
# `ex2_heldout` and `ex2_leaked`.

# %%
ex2_heldout, ex2_leaked = None, None  # your two accuracies

# %% tags=["solution"] jupyter={"source_hidden": true}
kw = dict(num_identities=S.probe_identities, image_size=S.image_size, seed=seed, channels=1)
seen_x, seen_y = SyntheticFaces(images_per_identity=S.probe_train, **kw).tensors()
means = torch.stack([seen_x[seen_y == k].mean(0) for k in range(S.probe_identities)]).flatten(1)
ex2_leaked = (torch.cdist(seen_x.flatten(1), means).argmin(1) == seen_y).float().mean().item()
ex2_heldout = probe["medium"]  # section 3 measured it on images the means never saw
# Each training image pulled its own class mean towards itself, so testing on it flatters the model.

# %%
fk.notebook.check("testing on training images flatters the accuracy", ex2_leaked > ex2_heldout, True)
fk.notebook.say(f"Held-out **{ex2_heldout:.2f}**, leaked **{ex2_leaked:.2f}**: the leak adds "
                f"{ex2_leaked - ex2_heldout:+.2f} with no better model.")

# %% [markdown]
# **Exercise 3 ★★ (change a parameter and explain).** Start from the medium preset and switch off one nuisance
# at a time with `dataclasses.replace(Difficulty(), ...)`: occlusion (`occlusion_prob=0`), background clutter
# (`clutter=0`) and head turn (`yaw=0`). Measure each with `nearest_class_mean_accuracy`. Which knob hides
# identity from raw pixels the most, and why would that be so for a pixel-distance classifier?

# %%
ex3 = None  # your dict: knob -> accuracy

# %% tags=["solution"] jupyter={"source_hidden": true}
ex3 = {"medium": probe["medium"]}
for knob in ("occlusion_prob", "clutter", "yaw"):
    ex3[f"{knob}=0"] = nearest_class_mean_accuracy(dataclasses.replace(Difficulty(), **{knob: 0}))
print(pd.Series(ex3, name="nearest-class-mean accuracy").round(3).to_string())
# A pixel distance compares every pixel at the same place: whatever moves features around (yaw) or covers
# large areas with unrelated values (clutter fills the whole background) adds distance that has nothing to
# do with identity. A CNN learns to ignore much of this; the raw-pixel yardstick cannot.

# %%
fk.notebook.check("three knobs measured", sorted(ex3), sorted(["medium", "occlusion_prob=0", "clutter=0", "yaw=0"]))
n_probe = S.probe_identities * S.probe_test
fk.notebook.say(f"Each accuracy here rests on {n_probe} test images, so one image moves it by {1 / n_probe:.3f}; "
                "before naming the knob that matters most, chapter 1's section on deciding which model is better "
                "tells whether such a difference is more than noise.");

# %% [markdown]
# **Exercise 4 ★★ (implement and check).** Write `split_by_person(labels, n_test_people, seed)`: an open-set
# split of *images* that returns `(train_indices, test_indices)` with `n_test_people` whole people in the test
# set and every image of the others in train, chosen at random with `numpy.random.default_rng(seed)` (section
# 4's `split_people` splits a list of people; this one works from the label of every image). The check
# verifies that no person is on both sides, that every image is used once, and that scikit-learn's
# `GroupShuffleSplit` (which splits by group the same way) puts the same number of images on each side.

# %%
def split_by_person(labels, n_test_people: int, seed: int = 0):
    """Your open-set split: (train_indices, test_indices), no person on both sides."""
    return None


# %% tags=["solution"] jupyter={"source_hidden": true}
def split_by_person(labels, n_test_people: int, seed: int = 0):
    """Open-set split: `n_test_people` people, all of their images, in test; everyone else in train."""
    labels = np.asarray(labels)
    people = np.unique(labels)
    if not 0 < n_test_people < len(people):
        raise ValueError(f"n_test_people={n_test_people} must be between 1 and {len(people) - 1}")
    test_people = np.random.default_rng(seed).choice(people, size=n_test_people, replace=False)
    in_test = np.isin(labels, test_people)
    return np.flatnonzero(~in_test).tolist(), np.flatnonzero(in_test).tolist()


# %%
from sklearn.model_selection import GroupShuffleSplit

ex4_labels = np.repeat(np.arange(15), 6)  # 15 people x 6 images
ex4 = split_by_person(ex4_labels, 5, seed=seed)
assert ex4 is not None, "split_by_person returned None: write it above and re-run"
ex4_train, ex4_test = map(np.asarray, ex4)
sk_train, sk_test = next(GroupShuffleSplit(n_splits=1, test_size=5, random_state=seed).split(ex4_labels, groups=ex4_labels))
fk.notebook.check("people on both sides", len(set(ex4_labels[ex4_train]) & set(ex4_labels[ex4_test])), 0)
fk.notebook.check("every image used exactly once", sorted(np.concatenate([ex4_train, ex4_test])), np.arange(len(ex4_labels)))
fk.notebook.check("test images (as scikit-learn)", len(ex4_test), len(sk_test));

# %% [markdown]
# **Exercise 5 ★★★ (implement and check against the library).** The yardstick of section 3 is scikit-learn's
# `NearestCentroid` classifier written by hand. Fit `sklearn.neighbors.NearestCentroid` on the flattened
# training pixels of the easy preset and score it on the held-out images; it must give the same accuracy as
# `probe["easy"]`. (Hint: rebuild the two `SyntheticFaces` sets exactly as the function does.)

# %%
ex5_accuracy = None  # NearestCentroid's held-out accuracy on the easy preset

# %% tags=["solution"] jupyter={"source_hidden": true}
from sklearn.neighbors import NearestCentroid

kw = dict(num_identities=S.probe_identities, image_size=S.image_size, seed=seed, difficulty="easy", channels=1)
fit_x, fit_y = SyntheticFaces(images_per_identity=S.probe_train, **kw).tensors()
new_x, new_y = SyntheticFaces(images_per_identity=S.probe_test, image_offset=S.probe_train, **kw).tensors()
ex5_accuracy = NearestCentroid().fit(fit_x.flatten(1).numpy(), fit_y.numpy()).score(new_x.flatten(1).numpy(), new_y.numpy())

# %%
fk.notebook.check("NearestCentroid equals the hand-written yardstick", ex5_accuracy, probe["easy"], atol=1e-9);

# %% [markdown]
# **Exercise 6 ★★★ (open question).** The generator draws every person with the same number of images and
# nuisance that is independent from image to image. Real collections are not like that. Name two ways in which
# LFW differs from the synthetic people, say how each could change what a model trained here learns, and
# propose a measurement that would tell. The solution measures one difference when LFW is on disk.

# %% tags=["solution"] jupyter={"source_hidden": true}
# One difference: images per person. The generator gives everybody the same count; LFW is long-tailed.
# Others: nuisance is correlated within a person in real data (one press event, one camera, one haircut),
# so two images of one person share more than identity; ages, ethnicities and genders are unevenly
# represented; labels can be wrong. A measurement: train on synthetic data, test on LFW (chapter 4 does).
if FOUND.get("lfw"):
    lfw_counts = per_person  # images per person, counted in section 7
    share_top = lfw_counts.sort_values(ascending=False).head(10).sum() / lfw_counts.sum()
    fk.notebook.say(f"In LFW, **{(lfw_counts == 1).mean():.0%}** of people have one image and the 10 most "
                    f"photographed hold **{share_top:.0%}** of all images; a synthetic set has no such tail.")
else:
    print("LFW not found: the measurement needs it (set FACEKIT_DATA or data_root)")

# %% [markdown]
# ## Summary
#
# Computed in this run:

# %%
fk.notebook.say("\n".join([
    "- The generator is deterministic and random-access: image *j* of person *i* depends only on the seed, *i* "
    "and *j*, so held-out images of known people come from `image_offset`.",
    f"- The difficulty presets are ordered on raw pixels: nearest-class-mean accuracy easy {probe['easy']:.2f}, "
    f"medium {probe['medium']:.2f}, hard {probe['hard']:.2f} with {S.probe_identities} people (chance {chance:.2f}).",
    f"- Testing on training images inflated that yardstick from {ex2_heldout:.2f} to {ex2_leaked:.2f} (exercise 2).",
    f"- Detection scenes held {np.mean(faces_per_scene):.1f} faces on average, each with a box and five landmarks.",
    f"- Real data found: {', '.join(k for k, v in FOUND.items() if v) or 'none'}.",
]))

# %% [markdown]
# ## Pitfalls
#
# - **Leakage across splits.** The same image, a near-duplicate or two frames of one video on both sides of a
#   split inflate accuracy (exercise 2 measures by how much). Split first, augment after, and assert that
#   the index sets are disjoint.
# - **Identity overlap in open-set evaluation.** A verification test must hold people never seen in training;
#   a per-image split of LFW would test acquaintances, not strangers. Assert that the sets of people are
#   disjoint (exercise 4).
# - **Choosing on the test set.** Every choice (epochs, learning rate, difficulty) made by looking at the test
#   accuracy makes it optimistic: choose on a validation split and look at the test set once.
# - **Too few people to generalise from.** A model trained on a handful of people learns those people; chance
#   level and the number of people belong next to every accuracy.
# - **Synthetic is not real.** The generator's nuisance is independent from image to image and every person
#   has the same number of images; real data is correlated and long-tailed (exercise 6).
#
# ## Further reading
#
# - G. B. Huang, M. Ramesh, T. Berg, E. Learned-Miller, *Labeled Faces in the Wild: A Database for Studying
#   Face Recognition in Unconstrained Environments*, UMass Amherst technical report 07-49, 2007: the LFW
#   images, the per-person folds of `pairs.txt` and the protocol chapter 4 follows.
# - F. Samaria and A. Harter, *Parameterisation of a stochastic model for human face identification*, IEEE
#   Workshop on Applications of Computer Vision, 1994: the ORL faces.
# - D. E. King, *Max-Margin Object Detection*, arXiv:1502.00046, 2015: the detector behind dlib's face boxes,
#   trained on photos like the ones shown above.
# - A. Kortylewski et al., *Analyzing and Reducing the Damage of Dataset Bias to Face Recognition with
#   Synthesized Data*, CVPR Workshops, 2019, and E. Wood et al., *Fake It Till You Make It: Face Analysis in the
#   Wild Using Synthetic Data Alone*, ICCV, 2021: what synthetic faces can and cannot replace.
# - C. Shorten and T. M. Khoshgoftaar, *A survey on Image Data Augmentation for Deep Learning*, Journal of Big
#   Data, 2019.
#
# Next: chapter 1 trains a CNN on these people and measures every remedy for overfitting.

# %%
record("chapter_seconds", round(ctx.elapsed(), 1))
