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
# # Appendix — Evaluate your own faces: a verification report for any pair list
#
# The chapters measure face models on LFW. A team with its own photos wants the same protocol on *its* data:
# which model, which threshold, how sure, and where it fails. This appendix is that report. Give it
#
# - `pairs`: a pair list, either LFW's `pairs.txt` or a CSV/TSV with the columns `path1, path2, same` and an
#   optional `fold` (paths relative to `images`);
# - `images`: the folder those paths are relative to;
# - `model`: `dlib` (the port of dlib's ResNet, with a detector chain that survives turned heads) or `facenet`;
# - optionally `gallery` and `probes`: two folders `root/<person>/<image>` for identification.
#
# From the command line: `facekit report 11 -p pairs=/path/pairs.csv -p images=/path/photos -p model=dlib`.
# Without a pair list, the report makes a small one from LFW, so it runs (and is tested) as it stands.
# Everything runs through `facekit.verify`; embeddings are cached by image content in `$FACEKIT_CACHE`.

# %% [markdown]
# ## Learning outcomes
#
# 1. Run the 10-fold verification protocol on any pair list, with per-fold thresholds chosen on the other folds.
# 2. Read a verification report: ROC, score histograms, AUC, EER and TAR@FAR with intervals that resample people.
# 3. Tell from the per-stage table how each photo's face was found, and what the fallbacks cost in accuracy.
# 4. Find the hardest genuine and impostor pairs and the bad inputs, and decide what to fix first.
# 5. Measure closed-set and open-set identification on a gallery and a probe folder.
#
# ## Prerequisites
#
# Chapter 4 (genuine and impostor pairs, ROC, EER, TAR@FAR, the k-fold rule), chapter 3 (face detection and
# alignment) and chapter 10 (the two pretrained models and the choice of face). Chapter 1's section on deciding
# which model is better explains the intervals.

# %% tags=["parameters"]
profile = "auto"  # smoke | cpu | gpu | auto (auto: $FACEKIT_PROFILE, else gpu if CUDA, else cpu)
data_root = ""  # folder with lfw/; empty: FACEKIT_DATA, ./data, ../shared/datasets
pairs = ""  # pair list: LFW pairs.txt, or CSV/TSV with path1, path2, same[, fold]; empty: a list made from LFW
images = ""  # folder the pair paths are relative to; empty: the pair list's folder
model = "dlib"  # dlib | facenet
detectors = "hog,mtcnn"  # dlib's face-finding chain, tried in order: hog, cnn, mtcnn
select = "center"  # several faces in a photo: center | largest | confident
on_error = "skip"  # raise: stop at the first bad input; skip: leave it out and count it
gallery = ""  # identification: enrol root/<person>/<image>; empty: made from LFW when pairs is empty too
probes = ""  # identification: query root/<person>/<image> (known and unknown people)
far = 0.01  # target false alarm rate of the open-set threshold
seed = 0

# %%
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

import facekit as fk
from facekit.reports import record
from facekit.verify import (NO_FACE_WARN, identify_folders, pairs_from_folder, read_pair_list, verify_pairs,
                            write_pair_list)


@dataclass(frozen=True)
class Sizes:
    pairs_per_fold: int  # the made-up list: the first n/2 genuine and n/2 impostor pairs of each LFW fold
    n_boot: int  # bootstrap resamples per interval
    gallery_people: int  # the made-up gallery: enrolled LFW people (one photo each, the rest are probes)
    unknown_people: int  # ... and people never enrolled (all their photos are probes)


CTX = fk.notebook.setup(profile, data_root=data_root, seed=seed,
                        smoke=Sizes(pairs_per_fold=6, n_boot=200, gallery_people=6, unknown_people=6),
                        cpu=Sizes(pairs_per_fold=60, n_boot=1000, gallery_people=60, unknown_people=60),
                        gpu=Sizes(pairs_per_fold=600, n_boot=2000, gallery_people=300, unknown_people=300))
S = CTX.sizes
CHAIN = tuple(d.strip() for d in detectors.split(",") if d.strip())
OPTIONS = {"detectors": CHAIN, "select": select, "device": CTX.device} if model == "dlib" else \
    {"select": select, "device": CTX.device}
WORK = Path(tempfile.mkdtemp(prefix="facekit-verify-"))  # made-up lists and folders (links, never copies)

# %% [markdown]
# Path parameters may be absolute or relative to the folder where `facekit report` was typed.

# %%
def given_path(text):
    """A path parameter: absolute, or relative to where `facekit report` was typed ($PWD), or to the repository."""
    if not text:
        return None
    from facekit.data.registry import REPO_ROOT

    places = [Path.cwd(), Path(os.environ.get("PWD", ".")), REPO_ROOT]
    for base in places:
        if (base / text).exists():
            return (base / text).resolve()
    raise FileNotFoundError(f"{text!r} not found (looked in {', '.join(dict.fromkeys(map(str, places)))})")

# %% [markdown]
# ## 1. The pair list
#
# Without a `pairs` parameter the report writes a CSV from LFW's own folds (the same pairs for every model), so
# the CSV reader, the fold column and the images folder are all exercised. A pair list names its problems with
# the file and the line; with `on_error="skip"` each bad line is left out and counted, never dropped silently.
# Without LFW on disk, it draws pairs from the course's synthetic faces instead (`pairs_from_folder` does the
# same for any folder of people without a pair list).

# %%
def synthetic_people(folder, people, photos):
    """Without LFW: the course's synthetic faces written as a folder of people (drawings, not people)."""
    from facekit.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(people, photos, image_size=160, seed=seed, difficulty="easy")
    for i in range(len(faces)):
        image, label = faces[i]
        path = folder / f"person{int(label):03d}" / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return folder


if pairs:
    PAIRS, IMAGES = given_path(pairs), given_path(images)
elif CTX.has("lfw"):
    from facekit.data.lfw import lfw_pair_subset

    lfw_subset = lfw_pair_subset(CTX.root, pairs_per_fold=S.pairs_per_fold)
    PAIRS, IMAGES = write_pair_list(lfw_subset, WORK / "lfw_pairs.csv"), lfw_subset.images_dir
else:
    print("LFW not found: the report runs on synthetic faces (pass -p pairs=... for your own photos)")
    IMAGES = synthetic_people(WORK / "synthetic", 2 * S.gallery_people, 4)
    half = 5 * S.pairs_per_fold
    PAIRS = write_pair_list(pairs_from_folder(IMAGES, half, half, seed=seed), WORK / "synthetic_pairs.csv")
PAIR_LIST = read_pair_list(PAIRS, IMAGES, on_error=on_error)
sub = PAIR_LIST.subset
fk.notebook.say(f"`{PAIRS.name}`: **{len(PAIR_LIST)}** usable pairs ({int(sub.is_same.sum())} genuine, "
                f"{int((~sub.is_same).sum())} impostor) of {len(set(PAIR_LIST.people))} people, "
                f"{len(sub.images)} distinct photos, {len(sub.folds)} folds "
                f"({'given by the file' if PAIR_LIST.folds_given else 'made: balanced, disjoint in people'}); "
                f"{len(PAIR_LIST.errors)} line(s) left out.")

# %% [markdown]
# ## 2. Scores, thresholds and the protocol
#
# `verify_pairs` embeds every distinct photo once, scores each pair by minus the distance of its embeddings, and
# applies the k-fold rule: each fold's threshold maximises accuracy on the *other* folds and is then applied,
# unchanged, to the fold. The intervals resample people (each pair counts for the person of its first photo),
# because pairs of one person succeed or fail together.

# %%
RESULT = verify_pairs(PAIR_LIST, model, on_error=on_error, n_boot=S.n_boot, **OPTIONS)
rep, iv = RESULT.report, RESULT.intervals
acc_iv = iv.get("accuracy")
record("verify_accuracy", RESULT.kfold.mean, key=True)
record("verify_auc", rep.auc, key=True)
record("verify_eer", rep.eer)
record("verify_pairs_scored", int(RESULT.kept.sum()))
metrics = pd.DataFrame([{"metric": name, "value": v.estimate, "95% interval": f"[{v.low:.4f}, {v.high:.4f}]"}
                        for name, v in iv.items()])
display(metrics)
fk.notebook.say(f"With `{RESULT.model}`, {len(RESULT.kfold.accuracies)}-fold accuracy is "
                f"**{RESULT.kfold.mean:.3f}** (95% interval {acc_iv.low:.3f} to {acc_iv.high:.3f}); AUC "
                f"{rep.auc:.3f}, EER {rep.eer:.3f}." if acc_iv else
                f"{len(RESULT.kfold.accuracies)}-fold accuracy {RESULT.kfold.mean:.3f} (too few people for an "
                f"interval).")

# %% [markdown]
# The TAR@FAR table flags an operating point the list cannot measure: with fewer than `1 / FAR` impostor pairs,
# not even one false accept is observable there, and the value is an interpolation.

# %%
display(pd.DataFrame([{"FAR": r.far_target, "TAR": r.tar, "threshold": r.threshold,
                       "measurable": r.supported} for r in rep.tar_at_far]))

# %% [markdown]
# What to look for: the ROC should rise steeply near FAR 0 (on a log axis, the left part matters for security);
# the two histograms should overlap little, and the vertical lines are the thresholds the folds chose.

# %%
genuine, impostor = RESULT.scores[RESULT.kept & RESULT.is_same], RESULT.scores[RESULT.kept & ~RESULT.is_same]
fig, (ax_roc, ax_hist) = plt.subplots(1, 2, figsize=(11, 4))
floor = 0.5 / rep.num_impostor  # FAR 0 drawn at half of one false accept: a log axis has no 0
ax_roc.plot(np.maximum(rep.roc.far, floor), rep.roc.tar)
ax_roc.set(xscale="log", xlim=(floor, 1), xlabel="false accept rate (log; left edge: none)",
           ylabel="true accept rate", title=f"ROC, AUC {rep.auc:.3f}")
bins = np.linspace(min(genuine.min(), impostor.min()), max(genuine.max(), impostor.max()), 40)
ax_hist.hist(genuine, bins, alpha=0.6, label="genuine")
ax_hist.hist(impostor, bins, alpha=0.6, label="impostor")
for t in RESULT.kfold.thresholds:
    ax_hist.axvline(t, color="k", lw=0.5, alpha=0.5)
ax_hist.set(xlabel=f"score (minus {RESULT.distance} distance)", ylabel="pairs", title="score histograms")
ax_hist.legend()
plt.show()

# %% [markdown]
# ## 3. How each face was found
#
# dlib's HOG detector finds frontal faces and misses most turned heads. The dlib pipeline therefore tries a chain
# (`detectors`): HOG first, then MTCNN (or dlib's CNN detector) for the photos HOG missed, and only then a centred
# box, which is right for photos centred on one face and wrong for any other. A pair belongs to the *later* stage
# of its two photos; the accuracy of a stage is that of its pairs' held-out decisions.

# %%
STAGES = RESULT.stage_table()
display(STAGES)
fallback = float(np.mean(RESULT.image_stages == "center"))
record("verify_no_face_rate", fallback)
fk.notebook.say(f"A detector found the face in {np.mean(RESULT.image_stages != 'center'):.1%} of the "
                f"{len(RESULT.images)} photos; the centred fallback was used for {fallback:.1%}."
                + (f" **Warning:** that is more than {NO_FACE_WARN:.0%}; the centred box is right only for photos "
                   f"centred on one face: add detectors (`-p detectors=hog,mtcnn,cnn`) and look at the hardest pairs."
                   if fallback > NO_FACE_WARN else ""))

# %% [markdown]
# ## 4. The hardest pairs
#
# The genuine pairs with the lowest scores and the impostor pairs with the highest are where the model fails
# first: look for turned heads, occlusion, wrong faces picked in group photos, or a mislabelled pair.

# %% tags=["key-figure"]
def show_pairs(indices, title):
    fig, axes = plt.subplots(2, len(indices), figsize=(2.4 * len(indices), 5), squeeze=False)
    for col, i in enumerate(indices):
        for row, path in enumerate((sub.paths_a[i], sub.paths_b[i])):
            with Image.open(path) as im:
                axes[row, col].imshow(im.convert("RGB"))
            axes[row, col].axis("off")
        axes[0, col].set_title(f"{RESULT.scores[i]:.3f}\nline {PAIR_LIST.lines[i]}", fontsize=8)
    fig.suptitle(title)
    plt.show()


show_pairs(RESULT.hardest(genuine=True), "hardest genuine pairs (lowest scores)")
show_pairs(RESULT.hardest(genuine=False), "hardest impostor pairs (highest scores)")

# %% [markdown]
# ## 5. What went wrong
#
# Every input left out, by kind: lines that could not be read, images that are missing or do not open, photos
# where no face was found (with the fallback `none`).

# %%
ERRORS = RESULT.error_table()
record("verify_inputs_left_out", len(RESULT.errors))
display(ERRORS if len(ERRORS) else pd.DataFrame([{"kind": "none", "count": 0, "first": ""}]))

# %% [markdown]
# ## 6. Identification: enrol a gallery, query probes
#
# With `gallery` and `probes`, each gallery person gets one template (the normalised mean of their embeddings);
# each probe is named by its nearest template. Known probes give rank-1 and the CMC; unknown people must be
# rejected, with a threshold set for the target false alarm rate `far` on *half* of the unknown people and
# measured on the other half. Without them (and without a pair list) the report makes both folders from LFW.

# %%
def lfw_folders(n_known, n_unknown, rng):
    from facekit.data.lfw import people_outside_folds

    people = people_outside_folds(CTX.root, min_images=3)
    names = rng.permutation(sorted(people))[:n_known + n_unknown]
    g_dir, p_dir = WORK / "gallery", WORK / "probes"
    for k, name in enumerate(names):
        for j, photo in enumerate(people[name]):
            dest = (g_dir if k < n_known and j == 0 else p_dir) / name / photo.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(photo, dest)
    return g_dir, p_dir


GALLERY, PROBES = (given_path(gallery), given_path(probes)) if gallery and probes else (None, None)
if GALLERY is None and not pairs and CTX.has("lfw"):
    GALLERY, PROBES = lfw_folders(S.gallery_people, S.unknown_people, np.random.default_rng(seed))
IDENT = identify_folders(GALLERY, PROBES, model, far=far, **OPTIONS) if GALLERY else None

# %% [markdown]
# The CMC curve is the share of known probes whose person is among the first $r$ candidates.

# %%
if IDENT is not None and IDENT.closed_set is not None:
    cs = IDENT.closed_set
    record("identification_rank1", cs.rank1, key=True)
    plt.figure(figsize=(4.5, 3.2))
    plt.plot(np.arange(1, len(cs.cmc) + 1), cs.cmc, marker=".")
    plt.xlabel("rank r"), plt.ylabel("identified within rank r"), plt.title("CMC")
    plt.show()
    fk.notebook.say(f"{IDENT.gallery_people} people enrolled; rank-1 on {IDENT.known_probes} known probes: "
                    f"**{cs.rank1:.3f}**.")
if IDENT is not None and IDENT.open_set is not None:
    os_ = IDENT.open_set
    record("open_set_dir", os_.dir)
    fk.notebook.say(f"At the threshold set for a false alarm rate of {far:g} on {IDENT.threshold_people} unknown "
                    f"people, the other unknown people are accepted at a rate of {os_.false_alarm_rate:.3f} and "
                    f"known probes are named and accepted at a rate of {os_.dir:.3f} (closed-set rank-1 "
                    f"{os_.rank1:.3f}).")
elif IDENT is None:
    print("identification skipped: give -p gallery=... -p probes=...")

# %% [markdown]
# ## Exercises
#
# **Exercise 1 ★ (implement from scratch).** Recompute the k-fold accuracy from `RESULT.scores`,
# `RESULT.is_same` and `RESULT.folds` (index arrays of the scored pairs): for each fold, choose the threshold with
# `fk.metrics.best_accuracy_threshold` on the pairs of the other folds, apply it to the fold's pairs ("same" when
# the score is above it), and average the fold accuracies.

# %%
ex1_accuracy = None  # your mean fold accuracy

# %% tags=["solution"] jupyter={"source_hidden": true}
fold_acc = []
for i, test in enumerate(RESULT.folds):
    train = np.concatenate([f for j, f in enumerate(RESULT.folds) if j != i])
    t, _ = fk.metrics.best_accuracy_threshold(RESULT.scores[train], RESULT.is_same[train])
    fold_acc.append(np.mean((RESULT.scores[test] > t) == RESULT.is_same[test]))
ex1_accuracy = float(np.mean(fold_acc))

# %%
fk.notebook.check("k-fold accuracy", ex1_accuracy, RESULT.kfold.mean);

# %% [markdown]
# **Exercise 2 ★ (predict, then run).** The EER is where the false accept and false reject rates meet. Predict
# whether the EER threshold lies above or below the median of the fold thresholds, then find it on the ROC:
# the first ROC point where `far >= 1 - tar`, and check the rate against `rep.eer` (the report interpolates
# between two ROC points, so allow one step of the staircase).

# %%
ex2_eer = None  # the EER read off the ROC

# %% tags=["solution"] jupyter={"source_hidden": true}
j = int(np.argmax(rep.roc.far >= 1 - rep.roc.tar))
ex2_eer = float(rep.roc.far[j])

# %%
fk.notebook.check("EER from the ROC", ex2_eer, rep.eer, atol=1 / min(rep.num_genuine, rep.num_impostor) + 1e-9);

# %% [markdown]
# **Exercise 3 ★★ (change a parameter).** Set a threshold for a false accept rate of one in ten on the impostor
# scores with `fk.metrics.threshold_at_far`, then measure the share of genuine pairs it accepts (score at or
# above it). Compare with the TAR@FAR table of section 2.

# %%
ex3_tar = None  # the share of genuine pairs accepted at that threshold

# %% tags=["solution"] jupyter={"source_hidden": true}
t10 = fk.metrics.threshold_at_far(impostor, 0.1)
ex3_tar = float(np.mean(genuine >= t10))

# %%
fk.notebook.check("FAR on the impostor scores", float(np.mean(impostor >= fk.metrics.threshold_at_far(impostor, 0.1)))
                  <= 0.1, True)
fk.notebook.check("TAR at that threshold", ex3_tar, float(np.mean(genuine >= t10)));

# %% [markdown]
# **Exercise 4 ★★ (open question).** Rerun the report with `-p detectors=hog` and then with
# `-p detectors=hog,cnn,mtcnn`. Which photos move from the `center` row to a detector's row, and why can the
# accuracy of the `center` pairs be high on LFW but low on your own photos?

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# HOG misses turned heads, strong occlusion and small faces; MTCNN and dlib's CNN detector find many of them, so
# those photos leave the `center` row. On LFW every photo is centred on its subject, so the centred box still
# lands on the right face and the accuracy of the fallback pairs stays high; on photos that are not centred on
# one face, the centred box cuts background or the wrong person, and those pairs fail.

# %% [markdown]
# ## Summary

# %%
fk.notebook.say(f"- The pair list gave {len(PAIR_LIST)} pairs; {int(RESULT.kept.sum())} were scored by `{model}` "
                f"(chain `{'+'.join(CHAIN)}`), {len(RESULT.errors)} input(s) were left out and counted.\n"
                f"- {len(RESULT.kfold.accuracies)}-fold accuracy **{RESULT.kfold.mean:.3f}**, AUC {rep.auc:.3f}, "
                f"EER {rep.eer:.3f}.\n"
                f"- The centred fallback was used for {fallback:.1%} of the photos.\n"
                f"- Report run in {CTX.elapsed():.0f} s at profile `{CTX.profile}`.")

# %% [markdown]
# ## Pitfalls
#
# - A threshold chosen on the pairs it is tested on is optimistic; the k-fold rule never lets a fold choose its own.
# - Pairs of one person are not independent: an interval that resamples pairs is too narrow; resample people.
# - A TAR at a FAR below one over the number of impostor pairs is an interpolation, not a measurement.
# - A centred fallback box is only right for photos centred on one face; read the per-stage table first.
# - A cache keyed by file name returns another photo's result after a file is replaced; `facekit` keys by content.
#
# ## Further reading
#
# - Huang, Ramesh, Berg and Learned-Miller (2007), Labeled Faces in the Wild: the pairs protocol and its folds.
# - King (2009), Dlib-ml: a machine learning toolkit (HOG detector, shape predictor, face recognition model).
# - Zhang, Zhang, Li and Qiao (2016), Joint face detection and alignment using multitask cascaded networks (MTCNN).
# - Schroff, Kalenichenko and Philbin (2015), FaceNet: a unified embedding for face recognition and clustering.
# - Efron and Tibshirani (1993), An Introduction to the Bootstrap.
# - Grother, Ngan and Hanaoka (2019), Face Recognition Vendor Test part 3: demographic effects (NIST IR 8280).
