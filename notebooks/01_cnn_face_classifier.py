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
# # Chapter 1 — A CNN face classifier, done right
#
# The first source article (sections 3.1 and 4) recognises faces with a small convolutional network:
# preprocess (crop, resize, grey), convolution and pooling extract features, a fully connected layer
# computes $y = \mathrm{softmax}(Wx + b)$, and cross-entropy trains it with Adam. Its code does not run
# as printed, and it never measures whether the model generalises, nor whether one model is really better
# than another. This chapter does all three.
#
# This is *closed-set identification*: every test face belongs to someone seen in training. Recognising
# people never seen before (verification) needs embeddings and other losses: that is chapter 4.
#
# ## Learning outcomes
#
# After this chapter you can
#
# 1. compute a convolution by hand with any padding and stride, predict its output size, and compute the
#    receptive field of a unit (and check it with a gradient);
# 2. write softmax, cross-entropy and batch normalisation from their formulas and check them against PyTorch;
# 3. fix and train the article's CNN, and read its learning curves, confusion matrix and first-layer filters;
# 4. measure remedies for overfitting (augmentation, dropout, weight decay, early stopping) over several seeds;
# 5. **decide which of two models is better** with an interval, McNemar's exact test and paired differences
#    over seeds, by the course's one noise rule, which every later chapter uses.
#
# ## Prerequisites
#
# Chapter 0 (the synthetic people and the per-identity split). Python and NumPy; PyTorch tensors, `nn.Module`
# and what a gradient is. For the statistics: what a mean and a standard deviation are; everything else is
# built here.
# %% tags=["parameters"]
profile = "auto"  # smoke | cpu | gpu | auto (auto: $FACEKIT_PROFILE, else gpu if CUDA, else cpu)
dataset = "synthetic"  # synthetic | orl | lfw | a path to an ImageFolder (root/<person>/<image>)
real_dataset = "orl"  # repeat the main experiment on this real set when found; empty to skip
data_root = ""  # folder with lfw/, att_faces/, dlib_faces/; empty: FACEKIT_DATA, ./data, ../shared/datasets
seed = 0

# %%
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from torch import nn

import facekit as fk
import facekit.stats as st
from facekit.data import SyntheticFaces, TensorImages, load_closed_set, split_per_identity
from facekit.data.transforms import preprocess, train_transform
from facekit.metrics import classification_result, plot_confusion
from facekit.models import ArticleCNN, SmallResNet, count_parameters
from facekit.reports import record
from facekit.train import EarlyStopping, PlotHistory, evaluate, fit, predict

# %% [markdown]
# One `Sizes` per profile holds every size of the chapter; `fk.notebook.setup` picks one, seeds everything,
# finds the real datasets and shows the three profiles side by side (the arrow marks the one in use).

# %%
@dataclass(frozen=True)
class Sizes:
    identities: int  # synthetic people
    train_per_id: int  # training images per person
    val_per_id: int  # validation images per person (early stopping, model choice)
    test_per_id: int  # held-out test images per person
    image_size: int  # side of the square input (the article's 64 on a GPU; 48 keeps the cpu profile in budget)
    epochs: int  # training budget of every run in this chapter
    patience: int  # early stopping: epochs without a better validation accuracy
    batch_size: int
    seeds: int  # training seeds per recipe (>= 3 for a verdict over seeds; smoke's 2 only runs the code)
    lfw_min_images: int  # LFW people with at least this many images (dataset="lfw")


ctx = fk.notebook.setup(
    profile, seed=seed, data_root=data_root,
    smoke=Sizes(identities=10, train_per_id=8, val_per_id=2, test_per_id=4, image_size=32, epochs=3, patience=1,
                batch_size=32, seeds=2, lfw_min_images=40),
    cpu=Sizes(identities=40, train_per_id=15, val_per_id=10, test_per_id=25, image_size=48, epochs=20, patience=5,
              batch_size=64, seeds=3, lfw_min_images=20),
    gpu=Sizes(identities=200, train_per_id=40, val_per_id=10, test_per_id=25, image_size=64, epochs=60, patience=8,
              batch_size=128, seeds=5, lfw_min_images=10),
)
PROFILE, S, DEVICE, ROOT, FOUND = ctx.profile, ctx.sizes, ctx.device, ctx.root, ctx.found
SEEDS = [seed + i for i in range(S.seeds)]

# %% [markdown]
# How long this chapter takes at each profile, read from the committed report runs (`reports/*/summary.json`):

# %%
fk.notebook.say(fk.notebook.durations_sentence("01_cnn_face_classifier"))

# %% [markdown]
# ## 1. The data: people, and held-out images of them
#
# By default the faces come from facekit's procedural generator (chapter 0 tours it): every identity is a
# fixed set of parameters, every image renders it under a new pose, light, expression, occlusion and
# background. `facekit.data.load_closed_set` draws `train_per_id + val_per_id + test_per_id` images of each
# person (or loads and preprocesses a real set), and `split_per_identity` splits them **per identity**, so every
# test image shows someone the model has seen, in a picture it has not.


# %%
def closed_set(name: str, channels: int = 3):
    """All images of `name` at this profile's sizes: (N, C, S, S) floats in [0, 1], labels and names."""
    return load_closed_set(name, identities=S.identities, per_identity=S.train_per_id + S.val_per_id + S.test_per_id,
                           image_size=S.image_size, seed=seed, channels=channels, root=ROOT,
                           lfw_min_images=S.lfw_min_images)[:3]


images, labels, class_names = closed_set(dataset)
train_idx, val_idx, test_idx = split_per_identity(labels, n_test=S.test_per_id if dataset == "synthetic" else 0.3,
                                                  n_val=S.val_per_id if dataset == "synthetic" else 0.1, seed=seed)
num_classes = len(class_names)
CHANCE = 1 / num_classes
print(f"{dataset}: {len(images)} images of {num_classes} people, {tuple(images.shape[1:])}; "
      f"train {len(train_idx)}, val {len(val_idx)}, test {len(test_idx)}; chance = {CHANCE:.3f}")
assert set(labels[test_idx].tolist()) <= set(labels[train_idx].tolist()), "closed set: test people are known"

train_labels = labels[train_idx]
first = [int(i) for k in range(min(6, num_classes)) for i in (train_labels == k).nonzero().flatten()[:8]]
fk.viz.image_grid(images[train_idx][first], nrow=8, scale=0.9, title="training images, one person per row")
plt.show()

# %% [markdown]
# ## 2. Preprocessing: crop, resize, grey
#
# The article crops, resizes and converts to grey before the network. `torchvision.transforms.v2` does each
# step; `facekit.data.transforms.preprocess` chains them. On a real LFW photo (250×250, the face in the
# middle half) the crop matters: it removes background that would otherwise dominate 64×64 pixels.

# %%
if FOUND.get("lfw"):
    from facekit.data import read_image

    photo = read_image(sorted(FOUND["lfw"].glob("*/*.jpg"))[0]).float() / 255
else:
    photo = SyntheticFaces(1, 1, 160, seed=seed, difficulty="easy")[0][0]
steps = {
    f"original {tuple(photo.shape[1:])}": photo,
    "centre crop (half)": preprocess(photo.shape[-1] // 2, crop=0.5)(photo),
    "resize 64×64": preprocess(64, crop=0.5)(photo),
    "grey 64×64": preprocess(64, crop=0.5, channels=1)(photo),
}
fig, axes = plt.subplots(1, 4, figsize=(9, 2.6))
for ax, (name, img) in zip(axes, steps.items()):
    ax.imshow(img.permute(1, 2, 0).squeeze(-1), vmin=0, vmax=1)
    ax.set_title(name, fontsize=9)
    ax.set_axis_off()
plt.show()
assert steps["grey 64×64"].shape == (1, 64, 64)

# %% [markdown]
# ## 3. Convolution and pooling, by hand, on a face
#
# A convolution layer slides a small $k \times k$ kernel over the image and, at each position, sums the
# products of the kernel with the pixels under it (deep-learning libraries compute *cross-correlation*: the
# kernel is not flipped). Two settings decide where the window goes:
#
# - **padding** $p$: zeros added around the image, so the window can be centred on border pixels;
#   $p = \lfloor k/2 \rfloor$ keeps the size ("same" padding);
# - **stride** $s$: how far the window moves between outputs; $s = 2$ halves the size.
#
# Along each axis an input of $n$ pixels gives $\lfloor (n + 2p - k) / s \rfloor + 1$ outputs. We write
# the convolution as a sum of $k^2$ shifted (and, with a stride, subsampled) copies of the padded image, one
# per kernel entry, and check it against `F.conv2d` for several settings. Sobel kernels, which respond to
# vertical and horizontal edges, are classic hand-made first-layer filters; section 5 shows what the
# trained network's first layer learns instead.

# %%
face = steps["grey 64×64"][0]  # (H, W)


def conv_output_size(n: int, k: int, stride: int = 1, padding: int = 0) -> int:
    """Outputs along one axis of a convolution (or pooling) over n inputs."""
    return (n + 2 * padding - k) // stride + 1


def conv2d_by_hand(img: torch.Tensor, kernel: torch.Tensor, stride: int = 1, padding: int | None = None) -> torch.Tensor:
    """Cross-correlation of one (H, W) image with one (k, k) kernel; padding None means 'same' (k // 2)."""
    k = kernel.shape[0]
    p = k // 2 if padding is None else padding
    padded = F.pad(img, (p, p, p, p))  # (H+2p, W+2p)
    h, w = conv_output_size(img.shape[0], k, stride, p), conv_output_size(img.shape[1], k, stride, p)
    out = torch.zeros(h, w)
    for dy in range(k):
        for dx in range(k):  # the pixel under kernel entry (dy, dx) for every output position at once
            out += kernel[dy, dx] * padded[dy : dy + stride * (h - 1) + 1 : stride, dx : dx + stride * (w - 1) + 1 : stride]
    return out


def max_pool_by_hand(img: torch.Tensor) -> torch.Tensor:
    """2×2 max pooling with stride 2 of an (H, W) image: the max of each 2×2 block."""
    h, w = img.shape
    return img[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).amax(dim=(1, 3))


kernel5 = torch.randn(5, 5, generator=torch.Generator().manual_seed(seed))
for k_, s_, p_ in [(3, 1, 1), (3, 2, 1), (5, 1, 0), (5, 2, 2), (5, 3, 1)]:
    mine = conv2d_by_hand(face, kernel5[:k_, :k_], stride=s_, padding=p_)
    torch.testing.assert_close(mine, F.conv2d(face[None, None], kernel5[None, None, :k_, :k_], stride=s_, padding=p_)[0, 0])
    assert mine.shape[0] == conv_output_size(face.shape[0], k_, s_, p_)
print("conv2d by hand matches F.conv2d for kernel 3 and 5, stride 1-3, padding 0-2; output sizes follow the formula")

# %% [markdown]
# On the face: Sobel x and y, the edge magnitude, and 2×2 max pooling, which keeps the strongest response of
# each 2×2 block and halves the size.

# %%
sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
edges_x = conv2d_by_hand(face, sobel_x)
edges_y = conv2d_by_hand(face, sobel_x.T)
magnitude = torch.sqrt(edges_x**2 + edges_y**2)
pooled = max_pool_by_hand(magnitude)
torch.testing.assert_close(pooled, F.max_pool2d(magnitude[None, None], 2)[0, 0])
print("max-pool by hand matches F.max_pool2d; pooled shape", tuple(pooled.shape))

fig, axes = plt.subplots(1, 5, figsize=(11, 2.5))
for ax, (name, img) in zip(axes, {"grey face": face, "Sobel x (vertical edges)": edges_x,
                                  "Sobel y (horizontal edges)": edges_y, "edge magnitude": magnitude,
                                  "2×2 max-pooled": pooled}.items()):
    ax.imshow(img, cmap="gray" if name == "grey face" else "magma")
    ax.set_title(name, fontsize=9)
    ax.set_axis_off()
plt.show()

# %% [markdown]
# ### The receptive field
#
# One output of a 3×3 convolution sees 3×3 input pixels. Stack layers and each unit sees more: its
# **receptive field** is the input region that can change it. Layer by layer, with $r$ the field and $j$
# the *jump* (input pixels between neighbouring units, the product of the strides so far),
#
# $$r_{\text{out}} = r_{\text{in}} + (k - 1)\, j_{\text{in}}, \qquad j_{\text{out}} = j_{\text{in}}\, s,$$
#
# starting from $r = j = 1$ at the input. We compute it for the article's network
# (conv 3×3, pool 2×2, conv 3×3, pool 2×2) and check it with a gradient: the input pixels whose gradient
# with respect to one unit is non-zero are exactly its receptive field. The field is a matter of geometry,
# not of weights, so the check uses all-positive weights and *average* pooling (max pooling passes the
# gradient through one pixel per window and would hide the rest).

# %%
ARTICLE_LAYERS = [("conv1", 3, 1), ("pool", 2, 2), ("conv2", 3, 1), ("pool", 2, 2)]  # (name, kernel, stride)


def receptive_fields(layers):
    """(name, receptive field r, jump j) after each layer, by the recurrence above."""
    r, j, rows = 1, 1, []
    for name, k, s in layers:
        r, j = r + (k - 1) * j, j * s
        rows.append((name, r, j))
    return rows


def gradient_receptive_field(layers, size: int = 48) -> tuple[int, torch.Tensor]:
    """Side of the input region that moves the centre unit of the last layer, measured with autograd."""
    modules = [nn.Conv2d(1, 1, k, padding=k // 2, bias=False) if name.startswith("conv") else nn.AvgPool2d(k, s)
               for name, k, s in layers]
    for m in modules:
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 1.0)
    x = torch.ones(1, 1, size, size, requires_grad=True)
    out = nn.Sequential(*modules)(x)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    rows = (x.grad[0, 0].abs() > 0).any(1).nonzero().flatten()
    return int(rows.max() - rows.min() + 1), x.grad[0, 0]


rf_table = pd.DataFrame(receptive_fields(ARTICLE_LAYERS), columns=["after", "receptive field r", "jump j"])
print(rf_table.to_string(index=False))
rf_article, rf_grad = gradient_receptive_field(ARTICLE_LAYERS)
assert rf_article == rf_table["receptive field r"].iloc[-1], (rf_article, rf_table)
fk.notebook.say(f"A unit after the second pooling sees **{rf_article}×{rf_article}** input pixels by the formula "
                f"and by the gradient; the network's input is {S.image_size}×{S.image_size}, so each of its "
                f"last-layer units sees a patch of the face, and only `fc1` combines them.")

# %% [markdown]
# The package does the same measurement on any network, trained or not, residual ones included:
# `facekit.explore.receptive_field` makes a positive, linear copy of the model (absolute weights, no biases,
# average instead of max pooling) and reads the non-zero gradient of one unit. On the article's own network
# it must agree with the recurrence's row for `conv2`:

# %%
from facekit.explore import receptive_field

article_net = ArticleCNN(num_classes, in_channels=images.shape[1], image_size=S.image_size)
field = receptive_field(article_net, tuple(images.shape[1:]), "conv2", S.image_size // 4, S.image_size // 4)
field_rows = np.flatnonzero(field.any(1))
assert field_rows.max() - field_rows.min() + 1 == rf_table.set_index("after").loc["conv2", "receptive field r"]
print(f"conv2: the package measures {field_rows.max() - field_rows.min() + 1} pixels, as the recurrence says")

# %% [markdown]
# The figure: the 3×3 window of one output of `conv1` on the face, and the receptive field of one unit after
# the second pooling, drawn on the input with the gradient that measured it (brighter pixels move the unit more:
# the centre of a field counts more than its edge).

# %%
face_in = F.interpolate(face[None, None], size=S.image_size, mode="bilinear", align_corners=False)[0, 0]
_, grad_map = gradient_receptive_field(ARTICLE_LAYERS, size=S.image_size)
ys, xs = (grad_map > 0).nonzero(as_tuple=True)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
axes[0].imshow(face_in, cmap="gray")
c = S.image_size // 3
axes[0].add_patch(plt.Rectangle((c - 1.5, c - 1.5), 3, 3, fill=False, ec="cyan", lw=1.5))
axes[0].set_title("conv1: one output sees a 3×3 window", fontsize=9)
axes[1].imshow(face_in, cmap="gray")
axes[1].add_patch(plt.Rectangle((int(xs.min()) - 0.5, int(ys.min()) - 0.5), rf_article, rf_article, fill=False, ec="red", lw=2))
axes[1].set_title(f"after pool2: one unit sees {rf_article}×{rf_article}", fontsize=9)
axes[2].imshow(grad_map, cmap="magma")
axes[2].set_title("|gradient| of that unit w.r.t. the input", fontsize=9)
for ax in axes:
    ax.set_axis_off()
plt.show()

# %% [markdown]
# Through the article's network the image shrinks by half at each pooling while the channels grow;
# `fc1` sees $64 \cdot (S/4)^2$ numbers for an $S \times S$ input (16,384 for the article's 64×64).
# Forward hooks print each shape:

# %%
probe = ArticleCNN(num_classes, in_channels=3, image_size=S.image_size)
shapes = []
hooks = [m.register_forward_hook(lambda m, i, o, name=name: shapes.append((name, tuple(o.shape))))
         for name, m in probe.named_children() if name != "drop"]
probe(torch.rand(2, 3, S.image_size, S.image_size))
for h in hooks:
    h.remove()
print(pd.DataFrame(shapes, columns=["layer (each call)", "output shape"]).to_string(index=False))
assert ("fc1", (2, 128)) in shapes and ("conv2", (2, 64, S.image_size // 2, S.image_size // 2)) in shapes

# %% [markdown]
# ## 4. The classifier $y = \mathrm{softmax}(Wx + b)$ and cross-entropy, by hand
#
# The last layer maps the 128 features $x$ to one score per person, $z = Wx + b$; softmax turns scores into
# probabilities $y_k = e^{z_k} / \sum_j e^{z_j}$. Computed naively, $e^{z}$ overflows for large scores, so we
# subtract the maximum first (the result is unchanged). Cross-entropy is the mean of $-\log y_{\text{true}}$.

# %%
torch.manual_seed(seed)
probe.eval()
batch = images[train_idx[:16]]
targets = labels[train_idx[:16]]
x = probe.features(batch)  # (16, 128)
W, b = probe.fc2.weight, probe.fc2.bias  # (K, 128), (K,)
z = x @ W.T + b  # (16, K) scores


def softmax_by_hand(z: torch.Tensor) -> torch.Tensor:
    z = z - z.max(dim=1, keepdim=True).values  # exp never overflows now
    e = torch.exp(z)
    return e / e.sum(dim=1, keepdim=True)


y = softmax_by_hand(z)
cross_entropy = -torch.log(y[torch.arange(len(targets)), targets]).mean()
torch.testing.assert_close(y, torch.softmax(probe(batch), dim=1))
torch.testing.assert_close(cross_entropy, F.cross_entropy(probe(batch), targets))
print(f"probabilities sum to 1: {y.sum(1)[:3].tolist()}; cross-entropy {cross_entropy:.4f} "
      f"= log(K) = {np.log(num_classes):.4f} for an untrained model, roughly")

big = torch.tensor([[1000.0, 0.0]])
naive = torch.exp(big) / torch.exp(big).sum()
print("naive softmax of [1000, 0]:", naive.tolist(), " stable:", softmax_by_hand(big).tolist())
assert torch.isnan(naive).any() and torch.isfinite(softmax_by_hand(big)).all()

# %% [markdown]
# ## 5. The article's network: two bugs, then training with Adam
#
# Run as printed, the article's `CNN` fails twice. It calls `F.relu` without `import torch.nn.functional as F`,
# and its last layer has 10 outputs whatever the number of people. We execute its class verbatim to show both:

# %%
ARTICLE_CODE = '''
class CNN(nn.Module):
    def __init__(self):
        super(CNN, self).__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(64 * 16 * 16, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 64 * 16 * 16)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return x
'''
namespace = {"nn": nn}  # the article imports torch.nn, torchvision and torch.optim, not F
exec(ARTICLE_CODE, namespace)
article = namespace["CNN"]()
sample = torch.rand(4, 3, 64, 64)
errors = {}
try:
    article(sample)
except NameError as err:
    errors["missing import"] = repr(err)
namespace["F"] = F
try:
    F.cross_entropy(article(sample), torch.tensor([0, 1, 2, 39]))  # person 39 of 40
except IndexError as err:
    errors["10 outputs for 40 people"] = repr(err)
for k, v in errors.items():
    print(f"{k:>25}: {v}")
assert set(errors) == {"missing import", "10 outputs for 40 people"}

# %% [markdown]
# `facekit.models.ArticleCNN` is the same network with both fixed (and the input size a parameter). The
# article also trains and tests without a validation set and reports a single number; we keep a
# validation split for model choices and report held-out accuracy with its chance level. Training uses
# facekit's one loop, `fit` (Adam, seeded, with a progress bar and a history).

# %%
def as_dataset(idx, transform=None):
    return TensorImages(images[idx], labels[idx], transform)


train_ds, val_ds, test_ds = as_dataset(train_idx), as_dataset(val_idx), as_dataset(test_idx)
channels = images.shape[1]


def run_variant(name, *, augment=None, dropout=0.0, weight_decay=0.0, early_stopping=False,
                architecture=ArticleCNN, callbacks=(), progress=False, run_seed=seed):
    """Train one model with `run_seed` (initial weights, batch order, augmentation); return its measurements.

    Every recipe of this chapter trained with the same `run_seed` starts from the same weights and sees the
    batches in the same order, so two recipes differ only in what is being compared.
    """
    kwargs = dict(image_size=S.image_size) if architecture is ArticleCNN else {}
    torch.manual_seed(run_seed)
    net = architecture(num_classes, in_channels=channels, dropout=dropout, **kwargs)
    stopper = EarlyStopping(monitor="val_accuracy", patience=S.patience) if early_stopping else None
    hist = fit(net, as_dataset(train_idx, augment), val_ds, epochs=S.epochs, batch_size=S.batch_size, lr=1e-3,
               weight_decay=weight_decay, seed=run_seed, device=DEVICE,
               callbacks=list(callbacks) + ([stopper] if stopper else []), progress=progress)
    test_logits, test_true = predict(net, test_ds, device=DEVICE)
    correct = (test_logits.argmax(1) == test_true).numpy()  # (N_test,) bool: right or wrong on each test image
    return {
        "variant": name, "seed": run_seed,
        "train accuracy": evaluate(net, train_ds, device=DEVICE)["accuracy"],
        "held-out accuracy": float(correct.mean()),
        "epochs run": len(hist.records),
        "best epoch": stopper.best_epoch if stopper else len(hist.records),
        "parameters": count_parameters(net),
        "correct": correct, "history": hist, "model": net,
    }


# %% [markdown]
# The first run: the fixed article network, no regularisation. What to look for in the learning curves: the
# training loss falls towards zero while the validation loss turns back up after a few epochs, and the
# training accuracy climbs above the validation accuracy. That widening gap is **overfitting**: the network
# memorises its training images instead of learning what makes a person recognisable.

# %%
baseline = run_variant("baseline", callbacks=[PlotHistory(title="ArticleCNN, Adam lr=1e-3, no regularisation")],
                       progress=PROFILE != "smoke")
plt.show()
model = baseline["model"]
train_acc, test_acc = baseline["train accuracy"], baseline["held-out accuracy"]
record("article_cnn_params", baseline["parameters"])
record("article_cnn_train_accuracy", round(train_acc, 4))
record("article_cnn_heldout_accuracy", round(test_acc, 4), key=True)
fk.notebook.say(f"Train accuracy **{train_acc:.3f}**, held-out accuracy **{test_acc:.3f}** on {len(test_idx)} "
                f"images of {num_classes} people (chance {CHANCE:.3f}), after {baseline['epochs run']} epochs.")

# %% [markdown]
# Two facts the rest of the course relies on, checked here: different people are **separable** (held-out
# accuracy far above chance), and the synthetic task is **not trivial** (held-out accuracy below perfect while
# the training set is fitted almost perfectly: the model overfits).

# %%
assert test_acc > 3 * CHANCE, "identities should be separable by a trained CNN"
if PROFILE != "smoke":
    assert test_acc > 10 * CHANCE
    if dataset == "synthetic":
        assert test_acc < 0.99, "the synthetic task should not be solved perfectly on held-out images"
        assert train_acc - test_acc > 0.1, "without regularisation the CNN should overfit"

# %% [markdown]
# ### Which people get confused?
#
# The confusion matrix (rows: true person, columns: prediction, normalised per row) shows where the errors
# are; the off-diagonal maxima are the most confused pairs.

# %%
logits, y_true = predict(model, test_ds, device=DEVICE)
result = classification_result(logits, y_true, num_classes=num_classes)
assert abs(result.accuracy - test_acc) < 1e-6
plot_confusion(result.confusion, class_names, title=f"held-out confusion, accuracy {result.accuracy:.3f}")
plt.show()
off = result.confusion.astype(float).copy()
np.fill_diagonal(off, 0)
pairs = np.dstack(np.unravel_index(np.argsort(off, axis=None)[::-1][:3], off.shape))[0]
for t, p in pairs:
    if off[t, p] > 0:
        print(f"{class_names[t]} taken for {class_names[p]}: {int(off[t, p])} of {result.confusion[t].sum()} images")
worst = np.nanargmin(result.per_class_accuracy)
print(f"hardest person: {class_names[worst]} ({result.per_class_accuracy[worst]:.2f} recall)")

# %% [markdown]
# ### What the first layer learned
#
# Section 3 used hand-made Sobel kernels. The trained network found its own: below are the 32 kernels of
# `conv1` (each 3×3 with one slice per input channel, shown as a small colour patch, scaled to its own
# range). Look for oriented edges (a bright side next to a dark side), colour-opponent kernels and
# blob detectors; the cosine similarity of each (channel-averaged) kernel to Sobel x and y measures the edges.

# %%
w1 = model.conv1.weight.detach().cpu()  # (32, C, 3, 3)
lo, hi = w1.amin(dim=(1, 2, 3), keepdim=True), w1.amax(dim=(1, 2, 3), keepdim=True)
fk.viz.image_grid((w1 - lo) / (hi - lo + 1e-8), nrow=16, scale=0.5, title="conv1 kernels after training")
plt.show()
flat = w1.mean(1).flatten(1)  # (32, 9) channel-averaged kernels
sobels = torch.stack([sobel_x.flatten(), sobel_x.T.flatten()])  # (2, 9)
cos = F.normalize(flat, dim=1) @ F.normalize(sobels, dim=1).T  # (32, 2)
best_k = int(cos.abs().max(1).values.argmax())
fk.notebook.say(f"The most edge-like trained kernel (number {best_k}) has cosine similarity "
                f"**{cos[best_k].abs().max():.2f}** with a Sobel kernel; the median kernel "
                f"{cos.abs().max(1).values.median():.2f} (0 is unrelated, 1 is a scaled Sobel).")

# %% [markdown]
# **Explore it:** pick any convolution layer and filter of the trained network to see its feature map on a
# held-out face, and move the output unit to see its receptive field (cyan) on the input.

# %% tags=["exploration"]
from facekit.explore import explore_conv

explore_conv(model, test_ds[0][0])

# %% [markdown]
# ## 6. Remedies for overfitting, each measured over seeds
#
# The second source article lists the usual remedies; here each one is switched on alone, with the same
# data and epoch budget, and then all together:
#
# - **augmentation**: random crops, flips, small rotations and colour jitter
#   (`facekit.data.transforms.train_transform`, "light"), so no two epochs see the same pixels;
# - **dropout** (`dropout=0.5`) before the last layer;
# - **weight decay** (an L2 penalty through Adam's `weight_decay=5e-4`);
# - **early stopping** when the validation accuracy has not improved for `patience` epochs, restoring the best
#   epoch's weights.
#
# One training run is one draw: another seed (initial weights, batch order, augmentation) gives another
# accuracy. So every recipe is trained with each seed in `SEEDS`, and recipes share seeds, which section 7
# uses to compare them fairly. This is the chapter's longest cell.

# %%
AUGMENT = train_transform(S.image_size, channels=channels, strength="light")
RECIPES = {
    "baseline": {},
    "augmentation": {"augment": AUGMENT},
    "dropout 0.5": {"dropout": 0.5},
    "weight decay 5e-4": {"weight_decay": 5e-4},
    "early stopping": {"early_stopping": True},
    "all four": {"augment": AUGMENT, "dropout": 0.5, "weight_decay": 5e-4, "early_stopping": True},
}
runs = {(name, s): (baseline if (name, s) == ("baseline", seed) else run_variant(name, run_seed=s, **opts))
        for name, opts in RECIPES.items() for s in SEEDS}
per_seed = pd.DataFrame([{k: v for k, v in r.items() if k not in ("correct", "history", "model")} for r in runs.values()])
per_seed["gap"] = per_seed["train accuracy"] - per_seed["held-out accuracy"]
remedies = per_seed.groupby("variant", sort=False)[["train accuracy", "held-out accuracy", "gap", "epochs run"]].agg(["mean", "std"])
print(remedies.round(3).to_string())
for name in RECIPES:
    record(f"remedy_heldout_accuracy[{name}]", round(float(remedies.loc[name, ("held-out accuracy", "mean")]), 4))

# %% [markdown]
# What to look for in the figure: on the left, the gap between the train (top) and held-out accuracy of each
# recipe, one dot per seed; on the right, the validation accuracy epoch by epoch (the learning curves) of the
# first seed, with the epoch early stopping chose marked by a cross.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
long = per_seed.melt(id_vars=["variant", "seed"], value_vars=["train accuracy", "held-out accuracy"], var_name="split",
                     value_name="accuracy")
sns.stripplot(long, x="variant", y="accuracy", hue="split", dodge=True, ax=axes[0])
axes[0].axhline(CHANCE, color="k", ls=":", lw=1, label="chance")
axes[0].tick_params(axis="x", rotation=30)
axes[0].set_xlabel("")
axes[0].legend(loc="lower left", fontsize=7)
for name in RECIPES:
    r = runs[(name, seed)]
    line, = axes[1].plot(r["history"]["epoch"], r["history"]["val_accuracy"], label=name)
    if RECIPES[name].get("early_stopping"):
        h, best = r["history"], r["best epoch"]
        axes[1].plot(best, h["val_accuracy"][h["epoch"].index(best)], "x", color=line.get_color(), ms=9, mew=2)
axes[1].set(xlabel="epoch", ylabel="validation accuracy", title=f"learning curves, seed {seed}")
axes[1].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 7. Deciding which model is better
#
# The table above holds differences of a few points between recipes. Are they real, or would another test set
# or another seed reverse them? This section builds the three tools the course uses for that question, each
# by hand and checked against a library, and the one rule that turns them into a verdict. Later chapters use
# them through `facekit.stats` and refer back here.
#
# ### An accuracy is an estimate: its interval
#
# A held-out accuracy is $\hat p = k/n$, with $k$ of $n$ test images right. Had we drawn another $n$ test images
# of the same people, $\hat p$ would have come out a little different: it is one draw from a distribution
# around the true accuracy $p$. Its **standard error** $\sqrt{\hat p (1 - \hat p)/n}$ is the typical size of that
# movement. A **95% confidence interval** is a range computed from the data by a recipe that, over many
# repetitions of the experiment, contains the true $p$ in 19 repetitions of 20. For a proportion the course uses
# the **Wilson** interval, which solves $|\hat p - p| \le z\sqrt{p(1-p)/n}$ for $p$ ($z = 1.96$):
#
# $$\frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}{1 + \frac{z^2}{n}}.$$
#
# Unlike $\hat p \pm 1.96\,\mathrm{SE}$ it never leaves $[0, 1]$ and keeps a sensible width near $0$ and $1$.

# %%
def wilson_by_hand(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p_hat = k / n
    centre = (p_hat + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p_hat * (1 - p_hat) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half


from statsmodels.stats.proportion import proportion_confint

k_base, n_test = int(baseline["correct"].sum()), len(baseline["correct"])
mine = wilson_by_hand(k_base, n_test)
np.testing.assert_allclose(mine, proportion_confint(k_base, n_test, method="wilson"), rtol=1e-6)
np.testing.assert_allclose(mine, (st.wilson(k_base, n_test).low, st.wilson(k_base, n_test).high), rtol=1e-6)
fk.notebook.say(f"The baseline's held-out accuracy with its 95% Wilson interval: **{st.wilson(k_base, n_test)}** "
                f"({k_base} of {n_test} images; standard error {st.standard_error(k_base / n_test, n_test):.3f}). "
                "By hand, statsmodels and `facekit.stats.wilson` agree.")

# %% [markdown]
# The figure makes "19 repetitions of 20" concrete. Pretend the true accuracy is the baseline's measured one and
# draw 50 new test sets of the same size: each gives its own $\hat p$ and its own interval. Look for the
# intervals that miss the true value (red): about 1 in 20.

# %%
rng = np.random.default_rng(seed)
p_true = k_base / n_test
draws = rng.binomial(n_test, p_true, size=50)
intervals = np.array([wilson_by_hand(k, n_test) for k in draws])
missed = (intervals[:, 0] > p_true) | (intervals[:, 1] < p_true)
fig, ax = plt.subplots(figsize=(9, 2.8))
for i, ((lo_, hi_), k, miss) in enumerate(zip(intervals, draws, missed)):
    ax.plot([i, i], [lo_, hi_], color="tab:red" if miss else "tab:blue", lw=2)
    ax.plot(i, k / n_test, "k.", ms=4)
ax.axhline(p_true, color="k", ls="--", lw=1, label="true accuracy (assumed)")
ax.set(xlabel="simulated test set", ylabel="accuracy", title=f"Wilson 95% intervals from 50 test sets of {n_test} images")
ax.legend(fontsize=8)
plt.show()
coverage = np.mean([(st.wilson(k, n_test).low <= p_true <= st.wilson(k, n_test).high) for k in rng.binomial(n_test, p_true, 4000)])
fk.notebook.say(f"Here {missed.sum()} of 50 intervals miss; over 4,000 simulated test sets the coverage is **{coverage:.3f}**.")

# %% [markdown]
# ### Two classifiers on the same images: McNemar's exact test
#
# To compare two models, do not compare their two intervals: both were scored on the **same** test images,
# and most of the variation between images (how hard each face is) is shared. Pair them instead. Cross the
# two models' right/wrong answers image by image:
#
# | | B right | B wrong |
# |---|---|---|
# | **A right** | both right | $b$ |
# | **A wrong** | $c$ | both wrong |
#
# Images both got right, or both wrong, say nothing about which is better. Only the $b + c$ *discordant* images
# do, and if the models were equally good each of them would be a fair coin: A's win with probability 1/2. So
# $\min(b, c)$ follows a Binomial$(b + c, 1/2)$, and the exact two-sided p-value is
# $\min(1, 2\,P[X \le \min(b, c)])$: how surprising so lopsided a split would be if there were no difference.
# Below, A is the article's CNN with augmentation and B the baseline, both trained with the first seed.

# %%
from scipy.stats import binom
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

right_a, right_b = runs[("augmentation", seed)]["correct"], runs[("baseline", seed)]["correct"]
table = np.array([[np.sum(right_a & right_b), np.sum(right_a & ~right_b)],
                  [np.sum(~right_a & right_b), np.sum(~right_a & ~right_b)]])
b_, c_ = int(table[0, 1]), int(table[1, 0])
p_mcnemar = min(1.0, 2 * binom.cdf(min(b_, c_), b_ + c_, 0.5)) if b_ + c_ else 1.0
np.testing.assert_allclose(p_mcnemar, sm_mcnemar(table, exact=True).pvalue, rtol=1e-9)
np.testing.assert_allclose(p_mcnemar, st.mcnemar(right_a, right_b).p_value, rtol=1e-9)
print(pd.DataFrame(table, index=["A right", "A wrong"], columns=["B right", "B wrong"]).to_string())
v_mcnemar = st.compare_correct(right_a, right_b, names=("augmentation", "baseline"), seed=seed)
fk.notebook.say(f"A alone got {b_} test images right, B alone {c_}: McNemar's exact p = **{p_mcnemar:.2g}** (by hand, "
                f"statsmodels and facekit agree). `facekit.stats.compare_correct` adds a paired bootstrap "
                f"interval of the accuracy difference and applies the rule below: *{v_mcnemar.text}*.")

# %% [markdown]
# ### Two recipes over seeds: paired differences
#
# McNemar's test answers "is *this trained model* better than *that one* on these images?". A recipe (say,
# "train with augmentation") is a different question: its result also depends on the seed, and one seed
# per recipe cannot tell the recipe from the luck of the draw. With the same seeds for both recipes, take
# the difference per seed, $d_i = a_i - b_i$; the seed's shared luck cancels in each $d_i$. The mean
# $\bar d$ has the **t interval** $\bar d \pm t_{0.975,\,m-1}\, s_d/\sqrt{m}$ over $m$ seeds ($s_d$: the
# standard deviation of the $d_i$). With few seeds $t$ is large ($t_{0.975,\,2} = 4.30$ for 3 seeds, against $1.96$ for many):
# the price of estimating the noise from three numbers.

# %%
from scipy.stats import t as student_t
from scipy.stats import ttest_rel


def accuracies(name):
    return np.array([runs[(name, s)]["held-out accuracy"] for s in SEEDS])


d = accuracies("augmentation") - accuracies("baseline")
half = student_t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
by_hand = (d.mean() - half, d.mean() + half)
iv = st.paired_seeds(accuracies("augmentation"), accuracies("baseline"))
np.testing.assert_allclose(by_hand, (iv.low, iv.high), rtol=1e-9)
np.testing.assert_allclose(st.paired_t(accuracies("augmentation"), accuracies("baseline")).p_value,
                           ttest_rel(accuracies("augmentation"), accuracies("baseline")).pvalue, rtol=1e-9)
fk.notebook.say(f"Augmentation minus baseline, per seed: {', '.join(f'{x:+.3f}' for x in d)}; mean with its 95% t "
                f"interval **{iv:+.3f}** (by hand, scipy's `ttest_rel` and `facekit.stats.paired_seeds` agree).")

# %% [markdown]
# ### The course's noise rule
#
# Every comparison in the course that names a winner follows one rule, written once in `facekit.stats`
# (quoted here from its docstring, so the course and the code cannot drift apart):

# %%
doc = st.__doc__
heading = "The noise rule\n--------------\n"
rule = doc[doc.index(heading) + len(heading):doc.index("\nWhy each part")].strip()
fk.notebook.say("> " + rule.replace("\n", " "))
fk.notebook.say(f"Here: ALPHA = {st.ALPHA}, MIN_ITEMS = {st.MIN_ITEMS}, MIN_SEEDS = {st.MIN_SEEDS}, "
                f"MIN_GROUPS = {st.MIN_GROUPS}; this run has {n_test} test images and {len(SEEDS)} seeds per recipe.")

# %% [markdown]
# Which tool for which question (all in `facekit.stats`; later chapters use them without re-deriving them):
#
# | the question | the tool |
# |---|---|
# | how precise is one accuracy? | `st.wilson(k, n)`: the Wilson interval |
# | is this trained model better than that one, on the same test images? | `st.compare_correct(correct_a, correct_b)`: McNemar's exact test and a paired bootstrap |
# | is this recipe better than that one, over training seeds? | `st.compare_seeds(values_a, values_b)`: the paired t interval |
# | is this verification model better on the same pairs? (chapter 4) | `st.compare_scores(scores_a, scores_b, is_same, groups=person)`: a paired bootstrap over people |
#
# Each returns a `Verdict` whose `.text` is the sentence the prose shows, with the interval of the difference,
# so no chapter types a verdict by hand.

# %% [markdown]
# ### The rule in action: which remedies help?
#
# For each remedy against the baseline, over the same seeds: the difference a single seed would have shown,
# what a loose rule (a difference above `LOOSE = 0.01` is "an effect") would conclude from it, and the verdict of the
# noise rule over all seeds. Look for rows where the two disagree: those are the claims one seed cannot make.

# %%
LOOSE = 0.01  # the loose rule's threshold, for contrast
verdicts, rows = {}, []
for name in list(RECIPES)[1:]:
    v = st.compare_seeds(accuracies(name), accuracies("baseline"), names=(name, "baseline"), metric="accuracy")
    verdicts[name] = v
    one_seed = runs[(name, seed)]["held-out accuracy"] - runs[("baseline", seed)]["held-out accuracy"]
    rows.append({"remedy": name, "one seed: difference": round(one_seed, 3),
                 f"loose rule (> {LOOSE})": "helped" if one_seed > LOOSE else "did not help",
                 f"over {len(SEEDS)} seeds: difference [95%]": f"{v.difference:+.3f}",
                 "noise rule": {"a": "helped", "b": "hurt", None: "no detectable difference"}[v.winner]})
    record(f"remedy_verdict[{name}]", v.winner or "none")
verdict_table = pd.DataFrame(rows).set_index("remedy")
print(verdict_table.to_string())
fk.notebook.say("\n".join(f"- {v.text}" for v in verdicts.values()))

# %% [markdown]
# The same verdicts as a figure: one dot per seed (the difference remedy minus baseline), the mean and its
# 95% interval as a bar. A remedy helps by the rule when its whole bar is right of zero.

# %% tags=["key-figure"]
fig, ax = plt.subplots(figsize=(7, 2.9))
for i, (name, v) in enumerate(verdicts.items()):
    diffs = accuracies(name) - accuracies("baseline")
    ax.plot(diffs, [i] * len(diffs), "o", color="grey", alpha=0.6, ms=4)
    colour = {"a": "tab:green", "b": "tab:red", None: "tab:blue"}[v.winner]
    ax.errorbar(v.difference.estimate, i, xerr=[[v.difference.estimate - v.difference.low],
                                               [v.difference.high - v.difference.estimate]], fmt="s", color=colour, capsize=4)
ax.axvline(0, color="k", lw=1)
ax.set_yticks(range(len(verdicts)), list(verdicts))
ax.set(xlabel="held-out accuracy: remedy − baseline", title="paired differences over seeds, 95% t intervals")
plt.show()
if PROFILE != "smoke" and dataset == "synthetic":  # augmentation narrows the train/held-out gap
    assert remedies.loc["augmentation", ("gap", "mean")] < remedies.loc["baseline", ("gap", "mean")]
helped = [n for n, v in verdicts.items() if v.winner == "a"]
record("remedies_that_helped", "; ".join(helped) or "none", key=True);

# %% [markdown]
# Why the loose rule misleads: a single seed's difference mixes the recipe's effect with the luck of one
# initialisation and one batch order, and with this many test images one image more or less right already
# moves an accuracy by a visible step. A threshold on that number, chosen without looking at the noise, names
# winners that the next seed takes back. The paired interval over seeds measures the noise instead of guessing
# it, and "no detectable difference at this size" is an honest answer, not a failure: it says what more data
# or more seeds it would take to decide.

# %% [markdown]
# ## 8. Batch normalisation, and a residual CNN
#
# The article's network spends most of its parameters in `fc1`, a dense map from every position of the last
# feature map to 128 features. A residual CNN (`facekit.models.SmallResNet`) replaces it with **global
# average pooling** (the mean of each channel over all positions) and adds two ingredients: residual blocks
# ($y = x + f(x)$, so a block only learns a correction), and **batch normalisation**. For each channel $c$,
# batch norm standardises the activations over the batch and all positions, then rescales with learned
# $\gamma_c, \beta_c$:
#
# $$\hat x = \frac{x - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}}, \qquad y = \gamma_c \hat x + \beta_c,$$
#
# with $\mu_c, \sigma_c^2$ the mean and (biased) variance over $(N, H, W)$ in training. It also keeps running
# averages, $\mu_{\text{run}} \leftarrow (1 - m)\,\mu_{\text{run}} + m\,\mu_c$ (momentum $m = 0.1$, and the
# unbiased variance for $\sigma^2_{\text{run}}$), which replace the batch statistics at evaluation time, so a
# test image's output does not depend on the other images in its batch.

# %%
def batch_norm_train_by_hand(x, gamma, beta, run_mean, run_var, momentum=0.1, eps=1e-5):
    """(N, C, H, W) -> normalised output, and the updated running mean and variance."""
    mu = x.mean(dim=(0, 2, 3))  # (C,)
    var = x.var(dim=(0, 2, 3), unbiased=False)  # (C,)
    y = gamma[None, :, None, None] * (x - mu[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + eps) \
        + beta[None, :, None, None]
    n = x.numel() / x.shape[1]
    new_mean = (1 - momentum) * run_mean + momentum * mu
    new_var = (1 - momentum) * run_var + momentum * var * n / (n - 1)
    return y, new_mean, new_var


bn = nn.BatchNorm2d(8)
nn.init.uniform_(bn.weight, 0.5, 1.5), nn.init.uniform_(bn.bias, -0.5, 0.5)
acts = torch.randn(16, 8, 6, 6) * 3 + 1
start_mean, start_var = bn.running_mean.clone(), bn.running_var.clone()
y_ref = bn.train()(acts)
y_mine, mean_mine, var_mine = batch_norm_train_by_hand(acts, bn.weight.detach(), bn.bias.detach(), start_mean, start_var)
torch.testing.assert_close(y_mine, y_ref.detach())
torch.testing.assert_close((mean_mine, var_mine), (bn.running_mean, bn.running_var))
print("batch norm by hand (output and running statistics) matches nn.BatchNorm2d in training mode")

# %% [markdown]
# Now the residual CNN against the article's CNN, both with augmentation, the same budget and the same seeds:
# the question is whether its design buys accuracy on this data. The noise rule decides.

# %%
resnet_runs = {s: run_variant("SmallResNet + augmentation", augment=AUGMENT, architecture=SmallResNet, run_seed=s)
               for s in SEEDS}
resnet_acc = np.array([resnet_runs[s]["held-out accuracy"] for s in SEEDS])
v_resnet = st.compare_seeds(resnet_acc, accuracies("augmentation"), names=("SmallResNet + augmentation",
                            "ArticleCNN + augmentation"), metric="accuracy")
comparison = pd.DataFrame({
    "parameters": [resnet_runs[seed]["parameters"], runs[("augmentation", seed)]["parameters"]],
    "held-out accuracy (mean over seeds)": [resnet_acc.mean(), accuracies("augmentation").mean()],
    "train accuracy (mean)": [np.mean([r["train accuracy"] for r in resnet_runs.values()]),
                              np.mean([runs[("augmentation", s)]["train accuracy"] for s in SEEDS])],
}, index=["SmallResNet + augmentation", "ArticleCNN + augmentation"])
print(comparison.round(3).to_string())
record("small_resnet_heldout_accuracy", round(float(resnet_acc.mean()), 4), key=True)
record("small_resnet_verdict", v_resnet.winner or "none")
assert resnet_runs[seed]["parameters"] < runs[("augmentation", seed)]["parameters"]
fk.notebook.say(f"**Verdict:** {v_resnet.text}.")

# %% [markdown]
# What the verdict means, and why it could come out this way:

# %%
explain = {
    "a": "The residual CNN is better here, with a fraction of the parameters: global pooling and batch norm "
         "pay off even on this small training set.",
    "b": "The article's CNN is better here, although the residual CNN has a fraction of its parameters. "
         "Plausible reasons: with few images per person and a short budget the deeper network with batch norm "
         "has not converged, and `fc1` can memorise position-specific patterns that work on centred faces.",
    None: "No detectable difference at this size: a fraction of the parameters did not buy accuracy on this "
          "data. Plausible reasons: with few images per person and a short budget the deeper network with batch "
          "norm has not converged, and `fc1` can memorise position-specific patterns that work on centred faces.",
}
fk.notebook.say(explain[v_resnet.winner] + " Exercise 6 asks how you would find out which explanation holds.")

# %% [markdown]
# ## 9. Real faces: ORL, 40 people
#
# The AT&T/ORL set has 10 grey images of each of 40 people (92×112). When it is on disk we run the same
# pipeline: a centre crop, grey at the chapter's image size, `n_test=0.2` and `n_val=0.1` per person, the article's CNN with and
# without augmentation, and the residual CNN, with the first seed. (Set `real_dataset=""` to skip; the section
# says so when the data are absent.) Before reading the result, note the size of the test set: with 2 test
# images per person it is small, and below `st.MIN_ITEMS` test images the noise rule names no winner at all.

# %%
real_results, real_correct = {}, {}
if real_dataset and FOUND.get(real_dataset) and real_dataset != dataset:
    r_images, r_labels, r_names = closed_set(real_dataset, channels=1)
    r_train, r_val, r_test = split_per_identity(r_labels, n_test=0.2, n_val=0.1, seed=seed)
    r_aug = train_transform(S.image_size, channels=1, strength="light")
    r_chance = 1 / len(r_names)
    r_test_ds = TensorImages(r_images[r_test], r_labels[r_test])
    for name, arch, aug in [("ArticleCNN", ArticleCNN, None), ("ArticleCNN + augmentation", ArticleCNN, r_aug),
                            ("SmallResNet + augmentation", SmallResNet, r_aug)]:
        torch.manual_seed(seed)
        net = arch(len(r_names), in_channels=1, **({"image_size": S.image_size} if arch is ArticleCNN else {}))
        fit(net, TensorImages(r_images[r_train], r_labels[r_train], aug),
            TensorImages(r_images[r_val], r_labels[r_val]), epochs=S.epochs,
            batch_size=min(S.batch_size, 32), lr=1e-3, seed=seed, device=DEVICE, progress=False)
        r_logits, r_true = predict(net, r_test_ds, device=DEVICE)
        real_correct[name] = (r_logits.argmax(1) == r_true).numpy()
        real_results[name] = st.wilson(int(real_correct[name].sum()), len(r_test))
        record(f"{real_dataset}_heldout_accuracy[{name}]", round(real_results[name].estimate, 4))
    print(pd.Series({k: str(v) for k, v in real_results.items()}, name="held-out accuracy [95% Wilson]").to_string())
    v_real = st.compare_correct(real_correct["ArticleCNN + augmentation"], real_correct["ArticleCNN"],
                                names=("augmentation", "no augmentation"), seed=seed)
    fk.notebook.say(f"{real_dataset}: {len(r_images)} images of {len(r_names)} people, {len(r_test)} test images "
                    f"(chance {r_chance:.3f}). **Verdict** on the same test images: {v_real.text}.")
    assert max(v.estimate for v in real_results.values()) > 3 * r_chance
    if PROFILE != "smoke" and real_dataset == "orl":
        assert max(v.estimate for v in real_results.values()) > 0.8, "ORL is an easy closed set: a small CNN should exceed 80%"
else:
    print(f"real_dataset={real_dataset!r}: not run ({'not found; set FACEKIT_DATA' if real_dataset else 'skipped'})")

# %% [markdown]
# Reading a small real-data result: ORL's people are photographed upright and frontal against a dark, plain
# background, so a small CNN separates them easily; but with two test images per person every accuracy above rests
# on few images and its interval is wide. To compare recipes on ORL you would need several seeds (as in section 6) or several splits of its
# images, each a repetition that the paired rule can use.

# %% [markdown]
# ## Exercises
#
# Graded ★ (a few minutes) to ★★★ (open-ended). Each solution is the collapsed cell right after the exercise
# (tagged `solution`); it defines the same names as your attempt, so to test your own answer run the check
# cell before expanding and running the solution. Every exercise runs in seconds.
#
# **Exercise 1 ★ (predict, then run).** A 64×64 image goes through `nn.Conv2d(1, 1, kernel_size=5, stride=2,
# padding=1)`. Predict the side of the output with the formula of section 3, then run the check.

# %%
ex1_side = None  # your prediction

# %% tags=["solution"] jupyter={"source_hidden": true}
ex1_side = (64 + 2 * 1 - 5) // 2 + 1  # floor((n + 2p - k) / s) + 1

# %%
fk.notebook.check("output side", ex1_side, nn.Conv2d(1, 1, 5, stride=2, padding=1)(torch.zeros(1, 1, 64, 64)).shape[-1]);

# %% [markdown]
# **Exercise 2 ★ (predict, then run).** Add a third block, conv 3×3 then pool 2×2, to the article's layers.
# Predict the receptive field of a unit after it with the recurrence, then check with the gradient.

# %%
ex2_rf = None  # your prediction

# %% tags=["solution"] jupyter={"source_hidden": true}
# After pool2: r = 10, j = 4. conv3 (k=3): r = 10 + 2*4 = 18, j = 4. pool3 (k=2, s=2): r = 18 + 1*4 = 22, j = 8.
ex2_rf = 22

# %%
fk.notebook.check("receptive field after a third block", ex2_rf,
                  gradient_receptive_field(ARTICLE_LAYERS + [("conv3", 3, 1), ("pool", 2, 2)], size=64)[0]);

# %% [markdown]
# **Exercise 3 ★★ (implement and check).** At evaluation time batch norm uses its running statistics instead
# of the batch's. Write `batch_norm_eval_by_hand(x, bn)` for an `nn.BatchNorm2d` `bn`; the check compares it
# with `bn.eval()(x)` on new activations.

# %%
def batch_norm_eval_by_hand(x, bn):
    return None  # your code


# %% tags=["solution"] jupyter={"source_hidden": true}
def batch_norm_eval_by_hand(x, bn):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C,)
    return (x - bn.running_mean[None, :, None, None]) * scale[None, :, None, None] + bn.bias[None, :, None, None]


# %%
new_acts = torch.randn(4, 8, 6, 6) * 2
fk.notebook.check("batch norm in eval mode", batch_norm_eval_by_hand(new_acts, bn), bn.eval()(new_acts), rtol=1e-4, atol=1e-5);

# %% [markdown]
# **Exercise 4 ★★ (change a parameter and explain).** For a measured accuracy of $\hat p = 0.8$ compute the
# width of the Wilson interval for 100, 400 and 1,600 test images. Predict the ratio of the widths for 100 and
# 400 images before you compute it, and explain it from the standard error. How many test images would make
# the interval about $\pm 0.01$ wide?

# %%
ex4_ratio = None  # width at n=100 divided by width at n=400

# %% tags=["solution"] jupyter={"source_hidden": true}
widths = {n: st.wilson(round(0.8 * n), n).width for n in (100, 400, 1600)}
ex4_ratio = widths[100] / widths[400]
n_for_001 = int(np.ceil(st.z_value() ** 2 * 0.8 * 0.2 / 0.01**2))  # solve 1.96 * SE = 0.01 for n
print({n: round(w, 3) for n, w in widths.items()}, f"-> about {n_for_001:,} images for ±0.01")
# The standard error is sqrt(p(1-p)/n): four times the images halve it, so the width halves.

# %%
fk.notebook.check("four times the images halve the width", ex4_ratio, 2.0, rtol=0.1);

# %% [markdown]
# **Exercise 5 ★★★ (implement and check): power.** Two classifiers are right with probability $0.80$ and
# $0.82$, independently on each image. Simulate 300 test sets for each of $n$ = 500, 2,000 and 8,000 images and
# estimate McNemar's **power**: the fraction of test sets in which the exact test gives $p < 0.05$. Store the
# three values in `ex5_power`. How large must a test set be to detect two points reliably?

# %%
ex5_power = None  # your three powers, for n = 500, 2000, 8000

# %% tags=["solution"] jupyter={"source_hidden": true}
sim = np.random.default_rng(seed)
ex5_power = []
for n in (500, 2000, 8000):
    a_right = sim.random((300, n)) < 0.80
    b_right = sim.random((300, n)) < 0.82
    b_, c_ = (a_right & ~b_right).sum(1), (~a_right & b_right).sum(1)
    p = np.minimum(1.0, 2 * binom.cdf(np.minimum(b_, c_), b_ + c_, 0.5))
    ex5_power.append(float((p < 0.05).mean()))
print(dict(zip((500, 2000, 8000), ex5_power)))
# Two points need thousands of test images; this chapter's test set detects only large effects.

# %%
fk.notebook.check("three powers", len(ex5_power), 3)
fk.notebook.check("power grows with the test set", bool(np.all(np.diff(ex5_power) > 0)), True);

# %% [markdown]
# **Exercise 6 ★★★ (open question).** Section 8's verdict on the residual CNN came with two possible
# explanations: it has not converged in the budget, or the article's `fc1` exploits position-specific patterns.
# Design measurements that tell them apart, using only what this chapter can run (budgets, learning curves,
# shifted test images). The solution makes a first measurement from the learning curves already computed.

# %% tags=["solution"] jupyter={"source_hidden": true}
# Convergence: is the validation accuracy still rising at the end? Compare the last epochs' slope.
# Position: shift the test images by a few pixels (torch.roll) and see which model loses more accuracy;
# global average pooling should make the residual CNN more tolerant. Budget: rerun both with 2x the epochs.
def late_slope(hist, last=5):
    acc = np.array(hist["val_accuracy"][-last:], dtype=float)
    return float(np.polyfit(np.arange(len(acc)), acc, 1)[0]) if len(acc) > 1 else float("nan")


slopes = {"SmallResNet + augmentation": np.mean([late_slope(r["history"]) for r in resnet_runs.values()]),
          "ArticleCNN + augmentation": np.mean([late_slope(runs[("augmentation", s)]["history"]) for s in SEEDS])}
fk.notebook.say("Validation accuracy per epoch over the last epochs (mean over seeds): " +
                "; ".join(f"{k} {v:+.4f}" for k, v in slopes.items()) + ". A clearly positive slope means still learning.")

# %% [markdown]
# ## Summary
#
# Computed in this run:

# %%
fk.notebook.say("\n".join([
    "- Convolution with any padding and stride, max pooling, softmax, cross-entropy and batch norm written by hand "
    "agree with PyTorch; the output size follows $\\lfloor (n + 2p - k)/s \\rfloor + 1$.",
    f"- A unit after the article's second pooling sees {rf_article}×{rf_article} input pixels (formula and gradient).",
    f"- The fixed article CNN: held-out accuracy {st.wilson(k_base, n_test)} (95% Wilson) against train "
    f"{train_acc:.3f} (a gap of {train_acc - test_acc:.3f}) and chance {CHANCE:.3f}, with "
    f"{baseline['parameters'] / 1e6:.2f} M parameters.",
    f"- Remedies over {len(SEEDS)} seeds, by the noise rule: "
    + "; ".join(f"{n} {({'a': 'helped', 'b': 'hurt', None: 'no detectable difference'})[v.winner]} "
                f"({v.difference:+.3f})" for n, v in verdicts.items()) + ".",
    f"- Residual CNN with {resnet_runs[seed]['parameters'] / 1e6:.2f} M parameters: {v_resnet.text}.",
    *([f"- {real_dataset}: {v_real.text}."] if real_results else []),
]))

# %% [markdown]
# ## Pitfalls
#
# - **Comparing two intervals, or one standard error, instead of pairing.** Two models scored on the same
#   images are correlated; use McNemar (one trained model each) or paired differences over seeds (recipes).
# - **One seed per recipe.** A recipe's effect and the luck of one initialisation are indistinguishable
#   from one run; use at least three seeds before naming a winner, and say "no detectable difference at this
#   size" otherwise, never "no difference".
# - **Model choices on the test set.** Early stopping, learning rate and epochs are chosen on the validation
#   split; the test set is read once, at the end.
# - **Forgetting `model.eval()`.** With batch norm and dropout a model in training mode gives outputs that
#   depend on the other images of the batch and on chance; `facekit.train.evaluate` and `predict` switch modes
#   for you, a hand-written loop must do it itself.
# - **Hard-coded shapes.** The article's `x.view(-1, 64 * 16 * 16)` and its 10 outputs broke as soon as the
#   input size or the number of people changed; compute sizes from the input (`torch.flatten`, the formula).
# - **An accuracy without its denominator.** Always give the number of test images and chance level next to it.
#
# ## Further reading
#
# - Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, *Gradient-based learning applied to document recognition*,
#   Proceedings of the IEEE, 1998: convolution, pooling and training end to end.
# - V. Dumoulin and F. Visin, *A guide to convolution arithmetic for deep learning*, arXiv:1603.07285, 2016:
#   padding, stride and output sizes with figures.
# - W. Luo, Y. Li, R. Urtasun, R. Zemel, *Understanding the Effective Receptive Field in Deep Convolutional
#   Neural Networks*, NeurIPS, 2016: why the centre of a receptive field counts most, as the gradient map showed.
# - S. Ioffe and C. Szegedy, *Batch Normalization*, ICML, 2015; K. He, X. Zhang, S. Ren, J. Sun, *Deep Residual
#   Learning for Image Recognition*, CVPR, 2016; N. Srivastava et al., *Dropout*, JMLR, 2014; D. P. Kingma and
#   J. Ba, *Adam*, ICLR, 2015.
# - E. B. Wilson, *Probable inference, the law of succession, and statistical inference*, JASA, 1927; Q. McNemar,
#   *Note on the sampling error of the difference between correlated proportions or percentages*,
#   Psychometrika, 1947.
# - T. G. Dietterich, *Approximate statistical tests for comparing supervised classification learning
#   algorithms*, Neural Computation, 1998: why McNemar's test suits two classifiers on one test set.
# - X. Bouthillier et al., *Accounting for Variance in Machine Learning Benchmarks*, MLSys, 2021: how much
#   seeds and data order move results, and how many runs a comparison needs.
#
# Next: chapter 2 replaces convolutions with attention, and chapter 4 turns the classifier into an
# embedding that recognises people it has never seen.

# %%
record("chapter_seconds", round(ctx.elapsed(), 1))
