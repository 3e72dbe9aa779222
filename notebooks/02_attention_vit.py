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
# # Chapter 2 — Attention and vision transformers for faces
#
# Section 3.2 of the first source article introduces self-attention in five steps: encode the input sequence
# as vectors; pass the encodings through an MLP to get "attention scores"; normalise them with softmax into
# attention weights; multiply the weights with the encodings to get the "attended information"; add that to the
# original sequence to get an "attention-enhanced sequence". It then gives the formula
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right)V .$$
#
# The formula is right; the five steps are loose in four places, which this chapter makes precise:
#
# - **The scores do not come from an MLP on each encoding.** In self-attention the score of token $i$ for
#   token $j$ is a dot product $q_i \cdot k_j$ of a *query* of $i$ and a *key* of $j$, each a single linear map
#   of the encodings ($Q = XW_Q$, $K = XW_K$). A score depends on *both* tokens, so every token gets its own
#   distribution over the others. Scores from a function of one encoding at a time give one distribution shared
#   by every query: that is *attention pooling* with a fixed query, which we meet in section 8. (It is not
#   Bahdanau's *additive* attention, whose score $v^\top \tanh(W_q q + W_k k)$ also depends on the query:
#   section 1 writes both.)
# - **The weights multiply the values $V = XW_V$, not the raw encodings.**
# - **"Adding the attended information to the original sequence" is not part of the formula.** It is the
#   *residual connection* of a transformer block, which also has a layer norm, an output projection and an MLP.
# - **Why $\sqrt{d_k}$** is not explained: without it the softmax saturates and stops learning (section 2).
#
# Then we apply attention to faces: a vision transformer (ViT) cuts a face into patches and lets every patch
# attend to every other. We compare it with chapter 1's CNNs under the same budget, measure what helps it on
# small data, look at where it looks, and put attention inside a CNN.
#
# ## Learning outcomes
#
# After this chapter you can:
#
# 1. compute scaled dot-product attention by hand, explain what each step does and why the scores are divided by
#    $\sqrt{d_k}$, and tell dot-product, additive and pooling attention apart;
# 2. build multi-head attention, the pre-norm transformer block and a ViT (patches, class token, position
#    embeddings) and check each against PyTorch;
# 3. explain why attention needs position information, and compare fixed sinusoidal with learned position
#    embeddings;
# 4. compare a ViT with a CNN under one budget and decide, with a paired test over seeds, whether a difference is
#    larger than the noise;
# 5. read attention maps and attention rollout, and say what they do and do not show.
#
# ## Prerequisites
#
# - Chapter 1: the closed-set split, `fit` and `evaluate`, `SmallResNet` and the article's CNN, augmentation,
#   and the noise rule with McNemar's test and `facekit.stats`.
# - Linear algebra: matrix products, softmax; PyTorch tensors and `nn.Module`.
#
# The chapter has two halves. Sections 1 to 4 build attention and the transformer block on tiny tensors, each
# piece checked against PyTorch; they run in seconds. Sections 5 to 8 train models on faces and take most of the
# chapter's time: the comparisons there train every model of a verdict at several seeds, so a verdict means the
# same thing each time the chapter is run.
#
# How long this chapter takes, read from the committed report runs:

# %%
import facekit as fk

fk.notebook.say(fk.notebook.durations_sentence("02_attention_vit")
                + " (The cpu profile is written for at most about 10 minutes on 2 idle cores.)")

# %% tags=["parameters"]
profile = "auto"  # smoke | cpu | gpu | auto (auto: $FACEKIT_PROFILE, else gpu if CUDA, else cpu)
dataset = "synthetic"  # synthetic | orl | lfw | a path to an ImageFolder
real_dataset = "orl"  # repeat the CNN-vs-ViT comparison on this real set when found; empty to skip
data_root = ""  # folder with lfw/, att_faces/, dlib_faces/; empty: FACEKIT_DATA, ./data, ../shared/datasets
seed = 0

# %%
import copy
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from torch import nn

from facekit import stats
from facekit.bench import inference_throughput, train_throughput
from facekit.data import TensorImages, load_closed_set, split_per_identity
from facekit.data.transforms import train_transform
from facekit.models import (ArticleCNN, AttentionResNet, MultiHeadSelfAttention, SmallResNet, VisionTransformer,
                            attention_rollout, cls_attention_map, count_flops, count_parameters,
                            scaled_dot_product_attention)
from facekit.models.vit import Block
from facekit.reports import record
from facekit.train import Callback, evaluate, fit, predict


# %% [markdown]
# ### One parameter sets every size
#
# The `profile` chooses one row of sizes: `smoke` runs the whole chapter in about a minute to prove the code works
# (its numbers mean nothing), `cpu` gives meaningful numbers on a laptop in about ten minutes, `gpu` the full
# sizes. `seeds` is how many times each model of a verdict is trained; the noise rule needs at least three.
# `fk.notebook.setup` also seeds every generator, picks the device and finds the real datasets on disk.

# %%
@dataclass(frozen=True)
class Sizes:
    identities: int  # synthetic people
    train_per_id: int  # training images per person: small on purpose, the regime where ViTs struggle
    val_per_id: int  # validation images per person (learning curves, choosing the remedy to confirm)
    test_per_id: int  # held-out test images per person
    image_size: int  # side of the square input
    patch_size: int  # ViT patch side; the smaller-patch remedy halves it
    vit: str  # ViT preset (facekit.models.VIT_PRESETS)
    epochs: int  # training budget of every model in the comparison
    warmup_epochs: int  # linear learning-rate warm-up before the cosine decay
    batch_size: int
    seeds: int  # training seeds of every comparison that gives a verdict (SmallResNet, ViT, best remedy, SE-ResNet)
    probe_faces: int  # test faces whose attention maps are averaged in section 7
    real_epochs: int  # budget on the real set (ORL: 280 training images)
    lfw: bool  # also compare on LFW people with at least lfw_min_images images, when LFW is found
    lfw_min_images: int  # LFW's people with at least this many images (also when dataset='lfw')


ctx = fk.notebook.setup(
    profile, data_root=data_root, seed=seed,
    smoke=Sizes(identities=8, train_per_id=6, val_per_id=2, test_per_id=4, image_size=32, patch_size=8, vit="tiny",
                epochs=2, warmup_epochs=1, batch_size=16, seeds=2, probe_faces=16, real_epochs=2, lfw=True,
                lfw_min_images=100),  # LFW's 5 people with 100+ images: the gpu profile's LFW path, exercised
    cpu=Sizes(identities=40, train_per_id=10, val_per_id=4, test_per_id=20, image_size=64, patch_size=8, vit="tiny",
              epochs=20, warmup_epochs=2, batch_size=16, seeds=3, probe_faces=200, real_epochs=30, lfw=False,
              lfw_min_images=20),
    gpu=Sizes(identities=200, train_per_id=20, val_per_id=5, test_per_id=20, image_size=64, patch_size=8,
              vit="vit_ti", epochs=100, warmup_epochs=5, batch_size=128, seeds=3, probe_faces=1000, real_epochs=100,
              lfw=True, lfw_min_images=20),
)
PROFILE, S, DEVICE, ROOT, FOUND = ctx.profile, ctx.sizes, ctx.device, ctx.root, ctx.found
SEEDS = [seed + i for i in range(fk.profiles.capped(S.seeds, "steps"))]  # a dry run: 2

# %% [markdown]
# ## 1. Attention from the formula, on a tiny example
#
# Four tokens with four features each, $X \in \mathbb{R}^{4\times 4}$, and three weight matrices map them to
# queries, keys and values of width $d_k = 3$. Each step of the formula, printed:

# %%
g = torch.Generator().manual_seed(seed)
tokens = [f"t{i}" for i in range(4)]
X = torch.randn(4, 4, generator=g).round(decimals=1)  # (T=4 tokens, 4 features)
W_q, W_k, W_v = (torch.randn(4, 3, generator=g).round(decimals=1) for _ in range(3))  # (4, d_k=3)
Q, K, V = X @ W_q, X @ W_k, X @ W_v  # (4, 3) each
d_k = Q.shape[-1]
scores = Q @ K.T  # (4, 4): scores[i, j] = q_i . k_j, how well query i matches key j
scaled = scores / math.sqrt(d_k)
weights = torch.exp(scaled - scaled.max(dim=1, keepdim=True).values)  # stable softmax over each row
weights = weights / weights.sum(dim=1, keepdim=True)  # (4, 4), rows sum to 1
output = weights @ V  # (4, 3): row i is a weighted mean of the value rows


def show(name, t, rows=tokens, cols=None):
    cols = cols or [f"{i}" for i in range(t.shape[1])]
    print(f"{name}  {tuple(t.shape)}\n{pd.DataFrame(t.numpy(), index=rows, columns=cols).round(3).to_string()}\n")


show("X", X, cols=[f"x{i}" for i in range(4)])
show("Q = X W_q", Q, cols=["d0", "d1", "d2"])
show("K = X W_k", K, cols=["d0", "d1", "d2"])
show("scores = Q K^T", scores, cols=[f"k:{t}" for t in tokens])
show(f"scores / sqrt(d_k) = scores / {math.sqrt(d_k):.3f}", scaled, cols=[f"k:{t}" for t in tokens])
show("weights = softmax(row)", weights, cols=[f"k:{t}" for t in tokens])
show("output = weights V", output, cols=["d0", "d1", "d2"])
by_loop = sum(weights[0, j] * V[j] for j in range(4))  # token 0's output, one value row at a time
print("output of t0 as an explicit weighted sum of value rows:", by_loop.numpy().round(3))

torch.testing.assert_close(weights.sum(dim=1), torch.ones(4))
torch.testing.assert_close(output[0], by_loop)
torch.testing.assert_close(output, F.scaled_dot_product_attention(Q[None], K[None], V[None])[0])
torch.testing.assert_close(output, scaled_dot_product_attention(Q, K, V))
print("by hand == torch.nn.functional.scaled_dot_product_attention == facekit.models.scaled_dot_product_attention")

# %% [markdown]
# Read the printout from top to bottom. The raw scores can be any real numbers; a large positive score means
# that query and key point the same way. Dividing by $\sqrt{d_k}$ shrinks them all by the same factor, which
# changes how *peaked* each row of weights is but never their order. The softmax turns each row into
# non-negative weights that sum to 1, and the output of token $i$ is the weighted mean of the value rows: the
# explicit loop over $j$ gives the same numbers as the matrix product.
#
# **Attention is a weight matrix.** Row $i$ of the weights is token $i$'s distribution over the keys; the output
# row $i$ is that distribution applied to the value rows. Look for two things in the figure: every row of the
# weights sums to 1, and each output row is a blend of the value rows, closest to the values its query weights
# most.

# %%
fig, axes = plt.subplots(1, 3, figsize=(9, 2.6), gridspec_kw={"width_ratios": [4, 3, 3]})
for ax, (name, mat, cols) in zip(axes, [("weights = softmax(QK^T / sqrt(d_k))", weights, [f"k:{t}" for t in tokens]),
                                        ("V = X W_v", V, ["d0", "d1", "d2"]),
                                        ("output = weights V", output, ["d0", "d1", "d2"])]):
    sns.heatmap(mat.numpy(), annot=True, fmt=".2f", cbar=False, ax=ax, cmap="viridis" if ax is axes[0] else "coolwarm",
                annot_kws={"size": 7}, xticklabels=cols, yticklabels=tokens if ax is not axes[1] else tokens)
    ax.set_title(name, fontsize=8)
axes[0].set(xlabel="key", ylabel="query")
fig.text(0.445, 0.5, "@", fontsize=14, ha="center")
fig.text(0.72, 0.5, "=", fontsize=14, ha="center")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Three kinds of score.** The dot product above is one way to score a key against a query. Bahdanau et al.
# (2015) used **additive** attention, a one-hidden-layer MLP of query *and* key,
# $s(q, k) = v^\top \tanh(W_q q + W_k k)$: it lets queries and keys have different widths, and it still depends on
# the query. **Attention pooling** with a learned query $w$ scores each key alone, $s(k) = w \cdot k$: every
# "query" gets the same distribution, which pools a set into one vector (section 8 uses it inside a CNN). By hand,
# on the same tokens; what to look for: additive rows differ from query to query, pooling rows are all equal, and
# additive attention with $W_q = 0$ becomes query-independent too.

# %%
def additive_scores(q, k, W_q, W_k, v):
    """Bahdanau's score s[i, j] = v . tanh(W_q q_i + W_k k_j): (Tq, dq), (Tk, dk) -> (Tq, Tk)."""
    hidden = torch.tanh((q @ W_q)[:, None, :] + (k @ W_k)[None, :, :])  # (Tq, Tk, h)
    return hidden @ v  # (Tq, Tk)


W_qa, W_ka, v_a = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g), torch.randn(5, generator=g)
additive = torch.softmax(additive_scores(Q, K, W_qa, W_ka, v_a), dim=-1)  # (4, 4)
additive_no_q = torch.softmax(additive_scores(Q, K, torch.zeros_like(W_qa), W_ka, v_a), dim=-1)
w_pool = torch.randn(3, generator=g)  # one learned query, shared by every row
pooling = torch.softmax(K @ w_pool, dim=-1).expand(4, -1)  # (4, 4): the same row four times
loop = torch.tensor([[float(v_a @ torch.tanh(W_qa.T @ Q[i] + W_ka.T @ K[j])) for j in range(4)] for i in range(4)])
torch.testing.assert_close(additive_scores(Q, K, W_qa, W_ka, v_a), loop)
spread = lambda w: (w - w.mean(0)).abs().max().item()  # how much the rows differ from query to query
assert spread(additive) > 1e-3, "additive weights depend on the query"
assert spread(additive_no_q) < 1e-6, "with W_q = 0 the additive score no longer sees the query"
print(pd.DataFrame({"dot product": spread(weights), "additive": spread(additive), "additive, W_q = 0":
                    spread(additive_no_q), "pooling (fixed query)": spread(pooling)},
                   index=["max |row - mean row|"]).round(3).to_string())

# %% [markdown]
# `torch.nn.MultiheadAttention` packs $W_Q, W_K, W_V$ into one `in_proj_weight` and adds an output projection
# $W_O$. facekit's `MultiHeadSelfAttention` uses the same layout (one `qkv` linear layer), with two paths: the
# fused kernel `F.scaled_dot_product_attention`, and the manual formula above, which can also return the
# weights. With the weights copied over, all three agree to float32 tolerance (`torch.testing.assert_close`
# defaults for float32: `rtol=1.3e-6`, `atol=1e-5`):

# %%
torch.manual_seed(seed)
mha = nn.MultiheadAttention(embed_dim=16, num_heads=4, batch_first=True).eval()
ours = MultiHeadSelfAttention(dim=16, num_heads=4).copy_from_torch_mha(mha).eval()
x = torch.randn(2, 7, 16)  # (B, T, C)
with torch.no_grad():
    ref, ref_w = mha(x, x, x, need_weights=True, average_attn_weights=False)  # (B, T, C), (B, nh, T, T)
    fused = ours(x)
    ours.store_attention = True  # the manual path, keeping the weights
    manual = ours(x)
torch.testing.assert_close(fused, ref)
torch.testing.assert_close(manual, ref)
torch.testing.assert_close(ours.last_attention, ref_w)
print(f"nn.MultiheadAttention vs MultiHeadSelfAttention: max |diff| fused {(fused - ref).abs().max():.1e}, "
      f"manual {(manual - ref).abs().max():.1e}; weights {(ours.last_attention - ref_w).abs().max():.1e}")

# %% [markdown]
# ## 2. Why divide by $\sqrt{d_k}$
#
# If the entries of $q$ and $k$ are independent with mean 0 and variance 1, $q \cdot k = \sum_{i=1}^{d_k} q_i k_i$
# is a sum of $d_k$ terms of variance 1: its standard deviation is $\sqrt{d_k}$. Wider heads give larger scores,
# the softmax of large scores puts almost all the weight on the largest one (it *saturates*), and the gradient
# through a saturated softmax vanishes: its Jacobian $\partial w / \partial s = \mathrm{diag}(w) - w w^\top$ is
# zero when $w$ is one-hot. Dividing by $\sqrt{d_k}$ gives scores of variance 1 whatever $d_k$.
#
# We check the Jacobian formula against autograd, then measure, for one query and 16 random keys, repeated
# 1,000 times per width: the standard deviation of the scores, the mean largest weight, and the median norm of
# the softmax Jacobian (how strongly the weights respond to a change of the scores):

# %%
s0 = torch.randn(5, generator=g)
w0 = torch.softmax(s0, dim=0)
torch.testing.assert_close(torch.autograd.functional.jacobian(lambda s: torch.softmax(s, dim=0), s0),
                           torch.diag(w0) - torch.outer(w0, w0))
print("softmax Jacobian: diag(w) - w w^T == autograd")

# %% [markdown]
# Now the measurement. What to look for: the standard deviation of $q\cdot k$ tracks $\sqrt{d_k}$; unscaled, the
# largest weight climbs towards 1 and the Jacobian norm collapses as $d_k$ grows; scaled, both stay put.

# %%
N_QUERIES, N_KEYS = 1000, 16
rows = []
for d in (4, 16, 64, 256, 1024):
    q = torch.randn(N_QUERIES, 1, d, generator=g)
    k = torch.randn(N_QUERIES, N_KEYS, d, generator=g)
    raw = (q @ k.transpose(1, 2))[:, 0]  # (N_QUERIES, N_KEYS) unscaled scores
    row = {"d_k": d, "sqrt(d_k)": math.sqrt(d), "std of q.k": raw.std().item()}
    for name, s in (("unscaled", raw), ("scaled", raw / math.sqrt(d))):
        w = torch.softmax(s, dim=-1)
        jac = torch.diag_embed(w) - w[:, :, None] * w[:, None, :]  # (N, 16, 16) d weights / d scores
        row[f"max weight, {name}"] = w.amax(dim=-1).mean().item()
        row[f"|dw/ds|, {name}"] = jac.flatten(1).norm(dim=1).median().item()  # the typical query
    rows.append(row)
saturation = pd.DataFrame(rows).set_index("d_k")
print(saturation.round(3).to_string())
print(f"(uniform weights would be 1/{N_KEYS} = {1 / N_KEYS:.3f})")

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
for name, style in (("unscaled", "o-"), ("scaled", "s--")):
    axes[0].plot(saturation.index, saturation[f"max weight, {name}"], style, label=name)
    axes[1].plot(saturation.index, saturation[f"|dw/ds|, {name}"], style, label=name)
axes[0].set(xscale="log", xlabel="$d_k$", ylabel="mean largest weight", ylim=(0, 1.05))
axes[1].set(xscale="log", yscale="log", xlabel="$d_k$", ylabel="median Jacobian norm")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

ratio = saturation["std of q.k"] / saturation["sqrt(d_k)"]
assert ((ratio - 1).abs() < 0.05).all(), "the score std grows like sqrt(d_k)"
assert saturation.loc[1024, "max weight, unscaled"] > 0.9, "unscaled scores saturate the softmax"
assert saturation["max weight, scaled"].max() - saturation["max weight, scaled"].min() < 0.05, "scaled stay spread"
assert saturation.loc[1024, "|dw/ds|, unscaled"] < 0.1 * saturation.loc[1024, "|dw/ds|, scaled"]
print(f"at d_k=1024 the unscaled softmax gives {saturation.loc[1024, 'max weight, unscaled']:.3f} of the weight to "
      f"one key and its gradient is {saturation.loc[1024, '|dw/ds|, scaled'] / saturation.loc[1024, '|dw/ds|, unscaled']:.0f}"
      f"x smaller than with scaling; scaled, the largest weight stays near "
      f"{saturation['max weight, scaled'].mean():.2f} for every width")

# %% [markdown]
# The two panels tell the same story from two sides. Left: without scaling, a wide head gives almost all its weight
# to one key, whatever the other keys say. Right: the gradient that would teach the model to change that choice
# shrinks by orders of magnitude. With scaling both curves are flat: the softmax sees scores of the same spread
# at every width, so a ViT's heads can be made wider without retuning anything else.
#
# ## 3. Masking
#
# A mask removes keys from the softmax: their scores become $-\infty$, so their weights are exactly 0.
#
# - A **padding mask** lets sequences of different lengths share a batch: the padding tokens at the end of a
#   short sequence must not be attended to. `nn.MultiheadAttention`'s `key_padding_mask` marks them with True.
# - A **causal mask** lets token $i$ see only tokens $j \le i$, for models that generate a sequence left to right.
#
# A ViT on fixed-size images needs neither (every patch sees every patch), but both use the formula's mask term.

# %%
T = 5
lengths = torch.tensor([5, 3])  # the second sequence has 2 padding tokens
key_padding = torch.arange(T)[None, :] >= lengths[:, None]  # (B, T), True = padding
attn = MultiHeadSelfAttention(dim=16, num_heads=4, store_attention=True).eval()
x = torch.randn(2, T, 16)
with torch.no_grad():
    out_pad = attn(x, key_padding_mask=key_padding)
    ref_pad = attn.to_torch_mha()(x, x, x, key_padding_mask=key_padding, need_weights=False)[0]
w_pad = attn.last_attention  # (B, nh, T, T)
torch.testing.assert_close(out_pad, ref_pad)
assert (w_pad[1, :, :, 3:] == 0).all(), "padded keys get exactly zero weight"
torch.testing.assert_close(w_pad.sum(-1), torch.ones(2, 4, T))

q, k, v = torch.randn(3, 1, T, 8, generator=g)  # (1, T, 8) each
out_causal, w_causal = scaled_dot_product_attention(q, k, v, is_causal=True, return_weights=True)
torch.testing.assert_close(out_causal, F.scaled_dot_product_attention(q, k, v, is_causal=True))
assert (w_causal[0].triu(diagonal=1) == 0).all(), "a token never attends to later tokens"

fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
labels_t = [f"t{i}" for i in range(T)]
sns.heatmap((~key_padding).int(), annot=True, cbar=False, ax=axes[0], cmap="Greys", vmin=-0.5, vmax=1.5,
            xticklabels=labels_t, yticklabels=["seq 1", "seq 2"])
axes[0].set_title("key mask (1 = attend)", fontsize=9)
sns.heatmap(w_pad[1, 0], annot=True, fmt=".2f", cbar=False, ax=axes[1], cmap="viridis", annot_kws={"size": 7},
            xticklabels=labels_t, yticklabels=labels_t)
axes[1].set_title("seq 2, head 0: padding masked", fontsize=9)
sns.heatmap(w_causal[0], annot=True, fmt=".2f", cbar=False, ax=axes[2], cmap="viridis", annot_kws={"size": 7},
            xticklabels=labels_t, yticklabels=labels_t)
axes[2].set_title("causal mask", fontsize=9)
for ax in axes[1:]:
    ax.set(xlabel="key", ylabel="query")
fig.tight_layout()
plt.show()
print("masked weights are exactly 0; facekit with key_padding_mask == nn.MultiheadAttention; causal == F.sdpa")

# %% [markdown]
# In the figure, the left panel shows both masks at once: seq 2's last two tokens are padding, so its weight
# matrix has two columns of exact zeros, and every row still sums to 1 over the remaining keys. The causal mask
# makes the weights lower-triangular: the first token can only attend to itself.
#
# ## 4. Multi-head attention and the transformer block
#
# **Multi-head attention** splits the width $C$ into $h$ heads of $C/h$: each head computes its own scores and
# weights on its slice of $Q, K, V$, so different heads can attend to different things; the head outputs are
# concatenated and mixed by $W_O$. Written out with the package's pieces, and compared with the module:

# %%
B, T, C, nh = 2, 5, 12, 3
mhsa = MultiHeadSelfAttention(dim=C, num_heads=nh).eval()
x = torch.randn(B, T, C)
with torch.no_grad():
    q, k, v = mhsa.qkv(x).split(C, dim=-1)  # 3 x (B, T, C)
    heads = lambda t: t.view(B, T, nh, C // nh).transpose(1, 2)  # (B, T, C) -> (B, nh, T, C/nh)
    y_heads = scaled_dot_product_attention(heads(q), heads(k), heads(v))  # (B, nh, T, C/nh): one attention per head
    y = y_heads.transpose(1, 2).reshape(B, T, C)  # concatenate the heads: (B, T, C)
    by_hand = mhsa.proj(y)  # W_O mixes the heads
    torch.testing.assert_close(by_hand, mhsa(x))
print(pd.DataFrame([("x", tuple(x.shape)), ("q, k, v", tuple(q.shape)), ("per head", tuple(heads(q).shape)),
                    ("heads' outputs", tuple(y_heads.shape)), ("concatenated", tuple(y.shape)),
                    ("after W_O", tuple(by_hand.shape))], columns=["tensor", "shape"]).to_string(index=False))
one_head = MultiHeadSelfAttention(dim=C, num_heads=1)
assert count_parameters(one_head) == count_parameters(mhsa) == 4 * C * C + 4 * C
print(f"heads cost no parameters: {nh} heads or 1 head of width {C}, both {count_parameters(mhsa)} = 4C^2 + 4C")

# %% [markdown]
# Heads cost no parameters because the projections are the same size either way: $W_Q, W_K, W_V, W_O$ are each
# $C\times C$ whether they are read as one head of width $C$ or $h$ heads of width $C/h$. What the heads buy is
# $h$ separate softmaxes, so one head can attend to the eyes while another attends to the mouth; what they cost
# is width per head, which limits how much each head's dot product can express.
#
# **The transformer block** wraps attention the way the article's step 5 hints at: the attention output is
# *added* to its input (the residual connection, the article's "attention-enhanced sequence"), and so is the
# output of a small MLP applied to each token. ViTs use the *pre-norm* form, with a LayerNorm before each branch
# (the original transformer normalised after the addition):
#
# $$h = x + \mathrm{MSA}(\mathrm{LN}(x)), \qquad \mathrm{out} = h + \mathrm{MLP}(\mathrm{LN}(h)).$$
#
# LayerNorm standardises each token over its $C$ features, then scales and shifts them with learned
# parameters. By hand, against facekit's `Block`:

# %%
torch.manual_seed(seed)
block = Block(dim=C, num_heads=nh, mlp_ratio=4.0).eval()
with torch.no_grad():
    ln = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + block.ln1.eps)
    ln = ln * block.ln1.weight + block.ln1.bias
    torch.testing.assert_close(ln, block.ln1(x))
    h = x + block.attn(block.ln1(x))  # the residual: the attention output is added to the input
    out = h + block.mlp(block.ln2(h))  # (B, T, C): same shape in, same shape out
    torch.testing.assert_close(out, block(x))
assert out.shape == x.shape == (B, T, C)
print(f"LayerNorm by hand == nn.LayerNorm (token means {ln.mean(-1).abs().max():.1e}, stds "
      f"{ln.std(-1, unbiased=False).mean():.3f}); x + MSA(LN(x)) then + MLP(LN(.)) == Block(x), shape {tuple(out.shape)}")

# %% [markdown]
# Because each branch is *added*, a block can start as (nearly) the identity and learn a correction: the
# ViT initialises its linear layers with standard deviation `0.02`, so a fresh block changes its input by a few
# percent only. The *residual stream* carries every token through the network; blocks read from it and write to it.

# %%
torch.manual_seed(seed)
fresh = VisionTransformer(10, S.vit, image_size=S.image_size, patch_size=S.patch_size).eval()
t_in = torch.randn(4, 1 + fresh.config.grid_size ** 2, fresh.config.dim)  # (B, 1 + N, dim)
with torch.no_grad():
    change = [((blk(t_in) - t_in).norm() / t_in.norm()).item() for blk in fresh.blocks]
print("relative change ||block(x) - x|| / ||x|| of each fresh block:", np.round(change, 3))
assert max(change) < 0.2

# %% [markdown]
# A fresh block changing its input by only a few hundredths (relative) is what makes deep transformers trainable:
# at the start every block is close to the identity, the gradient reaches the first block through the residual
# path undiminished, and each block learns a small correction. Remove the residual additions and a stack of
# freshly initialised blocks would scramble its input instead.
#
# ## 5. A vision transformer for faces
#
# ### The data
#
# As in chapter 1: synthetic people by default (or `dataset`), a fixed number of images per person split
# **per person** into train, validation and test, so every test face shows someone seen in training. The
# training set is deliberately small, the regime of many face tasks and the one where transformers trained from
# scratch are known to struggle (Dosovitskiy et al., 2021).


# %%
class Split(NamedTuple):
    """A closed-set experiment: the same people in train, val and test."""
    train: TensorImages
    val: TensorImages
    test: TensorImages
    num_classes: int
    channels: int


def closed_set(name: str, channels: int = 3, lfw_min_images: int = 20):
    """All images of a closed set at this profile's sizes: (images, labels, class names, source dataset)."""
    return load_closed_set(name, identities=S.identities, per_identity=S.train_per_id + S.val_per_id + S.test_per_id,
                           image_size=S.image_size, seed=seed, channels=channels, root=ROOT,
                           lfw_min_images=lfw_min_images)


def make_split(x, y, n_test, n_val):
    tr, va, te = split_per_identity(y, n_test=n_test, n_val=n_val, seed=seed)
    return Split(TensorImages(x[tr], y[tr]), TensorImages(x[va], y[va]), TensorImages(x[te], y[te]),
                 int(y.max()) + 1, x.shape[1]), (tr, va, te)


t_data = time.perf_counter()
images, labels, class_names, source = closed_set(dataset, lfw_min_images=S.lfw_min_images)
synthetic = dataset == "synthetic"
data, (train_idx, val_idx, test_idx) = make_split(images, labels, S.test_per_id if synthetic else 0.2,
                                                  S.val_per_id if synthetic else 0.1)
CHANCE = 1 / data.num_classes
N_TEST = len(data.test)
print(f"{dataset}: {len(images)} images of {data.num_classes} people, {tuple(images.shape[1:])}; train "
      f"{len(data.train)}, val {len(data.val)}, test {N_TEST}; chance {CHANCE:.3f} ({time.perf_counter() - t_data:.1f} s)")
assert set(data.test.targets) <= set(data.train.targets)

# %% [markdown]
# Why per-person splits: in a closed set every test face belongs to someone the model was trained on, so the
# question is "which of these people is it?". Splitting per person guarantees each person appears in every part,
# and the chance level is one over the number of people. Chapter 4 turns to the open set, where the people at
# test time were never seen in training.
#
# ### Patches, tokens, class token, positions
#
# A ViT cuts the $S\times S$ image into $(S/P)^2$ non-overlapping $P\times P$ patches and maps each flattened
# patch linearly to a token of width `dim` (the *patch embedding*; a $P\times P$ convolution with stride $P$
# computes exactly that). Here is one face cut into its patches:

# %%
P = S.patch_size
GRID = S.image_size // P
face = data.test.images[0]  # (C, S, S)
patches = face.unfold(1, P, P).unfold(2, P, P)  # (C, S/P, S/P, P, P)
patches = patches.permute(1, 2, 0, 3, 4).reshape(GRID * GRID, face.shape[0], P, P)  # (N, C, P, P), row-major
fig, axes = plt.subplots(1, 2, figsize=(6.5, 3), gridspec_kw={"width_ratios": [1, 1.15]})
axes[0].imshow(face.permute(1, 2, 0).squeeze(-1), vmin=0, vmax=1)
for i in range(1, GRID):
    axes[0].axhline(i * P - 0.5, color="w", lw=0.6)
    axes[0].axvline(i * P - 0.5, color="w", lw=0.6)
axes[0].set_title(f"{S.image_size}x{S.image_size} face, {P}x{P} patches", fontsize=9)
axes[0].set_axis_off()
fk.viz.image_grid(patches, nrow=GRID, ax=axes[1], title=f"{GRID * GRID} tokens, row by row")
axes[1].title.set_fontsize(9)
plt.show()

vit_probe = VisionTransformer(data.num_classes, S.vit, image_size=S.image_size, patch_size=P,
                              in_channels=data.channels).eval()
conv = vit_probe.patch_embed.proj  # Conv2d(C, dim, P, stride=P)
with torch.no_grad():
    flat = patches.flatten(1)  # (N, C*P*P), each patch as one vector
    by_hand = flat @ conv.weight.flatten(1).T + conv.bias  # (N, dim): one linear map, shared by every patch
    torch.testing.assert_close(by_hand, vit_probe.patch_embed(face[None])[0])
print(f"patch embedding == flattened patches @ W^T + b: {tuple(flat.shape)} -> {tuple(by_hand.shape)}")

# %% [markdown]
# A learned **class token** is put in front of the patch tokens; after the last block its state is the image's
# feature vector, fed to the linear classifier (`pool="cls"`). Attention ignores order (permuting the tokens
# permutes the outputs), so a learned **position embedding** is added to each token. The shapes through the model:

# %%
batch = data.test.images[:8]
with torch.no_grad():
    t = vit_probe.patch_embed(batch)  # (B, N, dim)
    t_cls = torch.cat([vit_probe.cls_token.expand(len(batch), -1, -1), t], dim=1)  # (B, 1 + N, dim)
    t_pos = t_cls + vit_probe.pos_embed  # (B, 1 + N, dim)
    for blk in vit_probe.blocks:
        t_pos = blk(t_pos)
    feats = vit_probe.norm(t_pos)[:, 0]  # (B, dim): the class token
    logits = vit_probe.head(feats)  # (B, num_classes)
    torch.testing.assert_close(logits, vit_probe(batch))
print(pd.DataFrame([("images", tuple(batch.shape)), ("patch tokens", tuple(t.shape)),
                    ("+ class token", tuple(t_cls.shape)), ("+ positions, after the blocks", tuple(t_pos.shape)),
                    ("class token features", tuple(feats.shape)), ("logits", tuple(logits.shape))],
                   columns=["step", "shape"]).to_string(index=False))
parts = {"patch embedding": vit_probe.patch_embed, "blocks": vit_probe.blocks, "head": vit_probe.head}
param_parts = {k: count_parameters(m) for k, m in parts.items()}
param_parts["class token + positions"] = vit_probe.cls_token.numel() + vit_probe.pos_embed.numel()
param_parts["final norm"] = count_parameters(vit_probe.norm)
assert sum(param_parts.values()) == count_parameters(vit_probe)
print("parameters by part:", param_parts)

# %% [markdown]
# Where the parameters are: almost all in the blocks (each block holds $4C^2$ for attention and $8C^2$ for an MLP
# of ratio 4), very few in the class token and positions. The patch embedding is one linear map shared by every
# patch, so its size depends on the patch area, not on the image size.
#
# ### Why positions, and which
#
# Without position embeddings a transformer cannot tell where a patch came from: self-attention and the per-token
# MLP treat the tokens as a *set*. Permuting the input tokens of a block permutes its outputs the same way
# (*permutation equivariance*), and the class token, which attends to all of them, does not change at all. Checked
# on the untrained ViT's blocks:

# %%
with torch.no_grad():
    tokens_in = vit_probe.patch_embed(batch[:2])  # (2, N, dim), no positions added
    with_cls = torch.cat([vit_probe.cls_token.expand(2, -1, -1), tokens_in], dim=1)  # (2, 1 + N, dim)
    perm = torch.randperm(tokens_in.shape[1], generator=torch.Generator().manual_seed(seed))
    shuffled = torch.cat([with_cls[:, :1], with_cls[:, 1:][:, perm]], dim=1)  # patches shuffled, class token first
    out_a, out_b = with_cls, shuffled
    for blk in vit_probe.blocks:
        out_a, out_b = blk(out_a), blk(out_b)
# Tolerance 1e-4: the sums inside attention run in another order after shuffling, and float32 round-off grows
# through the blocks; a wrong permutation would differ by the size of the outputs themselves.
torch.testing.assert_close(out_b[:, 1:], out_a[:, 1:][:, perm], rtol=1e-4, atol=1e-4)  # outputs permuted alike
torch.testing.assert_close(out_b[:, 0], out_a[:, 0], rtol=1e-4, atol=1e-4)  # the class token cannot tell
print(f"shuffling {len(perm)} patch tokens leaves the class token's output unchanged (max |diff| "
      f"{(out_b[:, 0] - out_a[:, 0]).abs().max():.1e}): without positions a face and its scrambled patches look alike")

# %% [markdown]
# Two ways to add position. The original transformer (Vaswani et al. 2017) adds a **fixed sinusoidal** code:
# for position $p$ and channel pairs $i = 0, \dots, d/2 - 1$, with frequencies $\omega_i = 10000^{-2i/d}$,
#
# $$\mathrm{PE}(p)_{2i} = \sin(\omega_i p), \qquad \mathrm{PE}(p)_{2i+1} = \cos(\omega_i p).$$
#
# Its dot products depend only on the offset: $\mathrm{PE}(p)\cdot\mathrm{PE}(p+k) = \sum_i \cos(\omega_i k)$, so
# "how far apart" is built in. A ViT instead **learns** one vector per position (`pos_embed`, here initialised at
# random), and must discover the geometry from data; for a 2-D grid a fixed code uses half the channels for the
# row and half for the column (as MAE does, He et al. 2022). By hand, with the identity checked:

# %%
def sinusoidal(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(T,) positions -> (T, dim) codes: sin and cos of each position at dim/2 geometric frequencies."""
    omega = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    angles = positions.double()[:, None] * omega[None, :]  # (T, dim/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (T, dim): sin, cos interleaved


def sinusoidal_2d(grid: int, dim: int) -> torch.Tensor:
    """(grid*grid, dim) codes for a row-major patch grid: half the channels for the row, half for the column."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([sinusoidal(rows.flatten(), dim // 2), sinusoidal(cols.flatten(), dim // 2)], dim=1)


pe = sinusoidal(torch.arange(64), 32)  # (64, 32)
omega = 10000.0 ** (-torch.arange(0, 32, 2, dtype=torch.float64) / 32)
for k in (1, 5, 20):
    torch.testing.assert_close((pe[:-k] * pe[k:]).sum(1), torch.cos(omega * k).sum().expand(64 - k))
print("PE(p) . PE(p + k) == sum_i cos(omega_i k) for every p: the similarity depends on the offset only")

# %% [markdown]
# A picture of both codes. Left, the 1-D code: each row a channel, low channels oscillate fast with the position,
# high channels slowly, like the hands of a clock. Middle and right, a map per patch position: each small square
# is one position of the patch grid, and its pixels show that position's cosine similarity with every other
# position (the same layout section 7 uses for the trained ViT).

# %%
def similarity_canvas(codes: torch.Tensor, grid: int) -> torch.Tensor:
    """(grid*grid, dim) codes -> a canvas of grid x grid tiles, tile (r, c) = cosine similarity of position (r, c)
    with every position, NaN gaps between tiles."""
    unit = F.normalize(codes.float(), dim=-1)
    tiles = (unit @ unit.T).reshape(grid, grid, grid, grid)
    canvas = torch.full((grid * (grid + 1), grid * (grid + 1)), float("nan"))
    for r in range(grid):
        for c in range(grid):
            canvas[r * (grid + 1):r * (grid + 1) + grid, c * (grid + 1):c * (grid + 1) + grid] = tiles[r, c]
    return canvas


fig, axes = plt.subplots(1, 3, figsize=(9, 2.8))
axes[0].imshow(pe.T.numpy(), aspect="auto", cmap="coolwarm")
axes[0].set(xlabel="position p", ylabel="channel", title="1-D sinusoidal code")
for ax, (name, codes) in zip(axes[1:], [("2-D sinusoidal", sinusoidal_2d(GRID, vit_probe.config.dim)),
                                        ("learned, at initialisation", vit_probe.pos_embed[0, 1:].detach())]):
    ax.imshow(similarity_canvas(codes, GRID).numpy(), cmap="viridis", vmin=-1, vmax=1)
    ax.set_title(f"{name}: {GRID}x{GRID} grid", fontsize=9)
    ax.set_axis_off()
axes[0].title.set_fontsize(9)
fig.tight_layout()
plt.show()

# %% [markdown]
# In the two grids each small square is one patch position, and its pixels show that position's cosine similarity
# with every other position. The 2-D sinusoidal code has the geometry built in (a bright spot around each
# position's own place); the learned embeddings start as noise (only the diagonal is bright). Section 7 shows what
# training makes of them.

# %% [markdown]
# facekit's ViT has the two attention paths of nanoGPT and timm: the fused kernel for speed and the manual
# formula (which can return the weights). On a batch of faces they agree:

# %%
with torch.no_grad():
    out_fused = vit_probe.set_fused(True)(batch)
    out_manual = vit_probe.set_fused(False)(batch)
    vit_probe.set_fused(True)
torch.testing.assert_close(out_fused, out_manual, rtol=1e-5, atol=1e-5)
print(f"fused vs manual ViT on {len(batch)} faces: max |diff| {(out_fused - out_manual).abs().max():.1e}")

# %% [markdown]
# ## 6. CNN vs ViT under the same budget
#
# Every model gets the same people, splits, seed (set before each model is built), epochs and recipe: AdamW,
# learning rate $5\cdot 10^{-4}$ with a linear warm-up then a cosine decay, `weight_decay=0.05` (the DeiT recipe in
# miniature), and small batches, because a transformer trained from scratch needs many optimizer steps and a
# small training set gives few per epoch. For each model we measure parameters, FLOPs of one forward pass
# (`count_flops`, 2 per multiply-add), held-out accuracy, training throughput (training images per second over
# `fit`'s epochs, validation pass included) and inference throughput (test images per second, timed after a
# warm-up batch, in eval mode). A callback keeps copies of each ViT's weights during training for section 7.

# %%
RECIPE = dict(lr=5e-4, weight_decay=0.05, optimizer="adamw", scheduler="cosine", warmup_epochs=S.warmup_epochs,
              batch_size=S.batch_size, seed=seed, device=DEVICE, progress=False)
AUGMENT = {c: train_transform(S.image_size, channels=c, strength="light") for c in (1, 3)}


class Snapshots(Callback):
    """Copies of the model's weights at the given epochs (0 = before training)."""

    def __init__(self, epochs):
        self.epochs, self.states = set(epochs), {}

    def _keep(self, model, epoch):
        if epoch in self.epochs:
            self.states[epoch] = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})

    def on_fit_start(self, state):
        self._keep(state.model, 0)

    def on_epoch_end(self, state):
        self._keep(state.model, state.epoch + 1)


def vit_builder(**overrides):
    return lambda k, c: VisionTransformer(k, S.vit, image_size=S.image_size, patch_size=P, in_channels=c,
                                          **overrides)


BUILDERS = {
    "ArticleCNN": lambda k, c: ArticleCNN(k, c, image_size=S.image_size),
    "SmallResNet": lambda k, c: SmallResNet(k, c),
    "ViT": vit_builder(),
}


# %%
def run(name, build, split, *, augment=False, epochs=None, callbacks=(), run_seed=seed, light=False):
    """Train one model with the shared recipe; return its measurements, the per-image correctness on the test
    set, the model, its history and, for a ViT with P x P patches, snapshots of its weights. `light` skips the
    speed and training-accuracy measurements (for the extra seeds)."""
    torch.manual_seed(run_seed)  # the same initial weights whatever ran before
    net = build(split.num_classes, split.channels)
    epochs = epochs or S.epochs
    snapshots = Snapshots([0, 1, epochs // 4, epochs // 2, epochs])
    if isinstance(net, VisionTransformer) and net.config.patch_size == P and not light:
        callbacks = [*callbacks, snapshots]
    train = TensorImages(split.train.images, split.train.labels, AUGMENT[split.channels] if augment else None)
    t0 = time.perf_counter()
    hist = fit(net, train, split.val, epochs=epochs, callbacks=list(callbacks), **{**RECIPE, "seed": run_seed})
    seconds = time.perf_counter() - t0
    logits, targets = predict(net, split.test, device=DEVICE)  # (N_test, K), (N_test,)
    correct = (logits.argmax(1) == targets).numpy()  # (N_test,) bool: the input of the paired test
    shape = (1, split.channels, S.image_size, S.image_size)
    speed = {} if light else {
        "train accuracy": evaluate(net, split.train, device=DEVICE)["accuracy"],
        "train img/s": train_throughput(hist, len(train)),
        "inference img/s": inference_throughput(net, split.test.images[:fk.profiles.capped(len(split.test))],
                                                device=DEVICE)}  # a dry run times a few images only
    return {"model": name, "parameters (M)": count_parameters(net) / 1e6, "MFLOPs/image": count_flops(net, shape) / 1e6,
            "held-out accuracy": float(correct.mean()), **speed, "epochs": len(hist.records), "seconds": seconds,
            "net": net, "history": hist, "snapshots": snapshots.states, "correct": correct, "seed": run_seed}


def table(results):
    return pd.DataFrame(results).drop(columns=["net", "history", "snapshots", "correct", "seed"]).set_index("model")


# %% [markdown]
# The three models, trained once each at the first seed. Look at the parameter and FLOP columns before the
# accuracies: the ViT is not the larger model in compute.

# %%
main = {name: run(name, build, data) for name, build in BUILDERS.items()}
main_table = table(main.values())
print(f"{dataset}, {len(data.train)} training images ({len(data.train) // data.num_classes} per person), "
      f"{S.epochs} epochs, test {N_TEST} images, chance {CHANCE:.3f}")
print(main_table.round({"parameters (M)": 3, "MFLOPs/image": 1, "train accuracy": 3, "held-out accuracy": 3,
                        "train img/s": 0, "inference img/s": 0, "seconds": 1}).to_string())
cnn_acc, vit_acc = main["SmallResNet"]["held-out accuracy"], main["ViT"]["held-out accuracy"]
record("article_cnn_heldout_accuracy", round(main["ArticleCNN"]["held-out accuracy"], 4))
record("cnn_heldout_accuracy", round(cnn_acc, 4), key=True)
record("vit_heldout_accuracy", round(vit_acc, 4), key=True)
record("vit_train_images_per_s", round(main["ViT"]["train img/s"], 1))
record("cnn_train_images_per_s", round(main["SmallResNet"]["train img/s"], 1))

fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
for r in main.values():
    axes[0].plot(r["history"]["epoch"], r["history"]["train_loss"], label=r["model"])
    axes[1].plot(r["history"]["epoch"], r["history"]["val_accuracy"], label=r["model"])
axes[0].set(xlabel="epoch", ylabel="training loss", yscale="log")
axes[1].set(xlabel="epoch", ylabel="validation accuracy")
axes[1].axhline(CHANCE, color="k", ls=":", lw=1)
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the table before the curves. The CNN fits its training set almost perfectly; if the ViT does not, it is
# not yet overfitting but *underfitting*, and the learning curves show whether more epochs would close the gap
# (validation accuracy still rising at the end) or not (flat). Throughput is measured on this machine and
# depends on the load; the ratios between models are more stable than the numbers themselves.
#
# ### Is the difference larger than the noise?
#
# Two kinds of luck move a measured accuracy: *which test images* were drawn, and *which training run* we got
# (another seed gives other initial weights and another batch order). The course's noise rule (chapter 1,
# `facekit.stats`) handles both with **paired** comparisons, since both models meet the same images and seeds:
#
# - on one training run, **McNemar's test** looks only at the test images exactly one of the two models gets
#   right, and a paired bootstrap gives the interval of the accuracy difference: test-set noise only;
# - across `S.seeds` training seeds, a **paired t interval** of the per-seed differences covers both kinds of
#   luck. A verdict names one model only when that 95% interval excludes zero, with at least 3 seeds (the minimum of
#   the noise rule); the smoke profile's 2 seeds can never name one.
#
# So every verdict below trains each model again at the other seeds (the cpu profile: 3 seeds in all).

# %%
def with_seeds(first, build, split, **kw):
    """`first` (the run at `seed`) and the same recipe at the other seeds of SEEDS: one run per seed."""
    return [first] + [run(f"{first['model']}, seed {s}", build, split, run_seed=s, light=True, **kw)
                      for s in SEEDS[1:]]


def over_seeds(runs_a, runs_b, names):
    """The verdict over seeds: paired t of the per-seed held-out accuracies."""
    return stats.compare_seeds([r["held-out accuracy"] for r in runs_a], [r["held-out accuracy"] for r in runs_b],
                               names=names, metric="accuracy")


def on_images(run_a, run_b, names):
    """One training run each: McNemar and a paired bootstrap on the same test images (test-set noise only)."""
    return stats.compare_correct(run_a["correct"], run_b["correct"], names=names, unit="test images")


def one_seed(v):
    """A one-run comparison in words: the difference and its test-set interval, deliberately not a verdict."""
    return (f"{v.names[0]} minus {v.names[1]}: accuracy {v.difference:+.3f} on the same {v.n} test images, McNemar "
            f"p = {v.p_value:.2g} (one training run: test-set noise only, not a verdict)")


seed_runs = {name: with_seeds(main[name], BUILDERS[name], data) for name in ("SmallResNet", "ViT")}
vit_vs_cnn = over_seeds(seed_runs["ViT"], seed_runs["SmallResNet"], ("the plain ViT", "SmallResNet"))
print(pd.DataFrame({n: [r["held-out accuracy"] for r in runs] for n, runs in seed_runs.items()},
                   index=pd.Index(SEEDS, name="seed")).round(3).to_string())
fk.notebook.say(f"**Seed {seed}, same {N_TEST} test images:** "
                f"{one_seed(on_images(main['ViT'], main['SmallResNet'], ('the plain ViT', 'SmallResNet')))}.  \n"
                f"**Over {len(SEEDS)} seeds:** {vit_vs_cnn.text}.")

# %% [markdown]
# The verdict `no detectable difference at this size` does not mean the two are equal: it says that this test set
# and these seeds cannot tell. A gap that survives the paired test over seeds is one a reader can rely on when they
# retrain; a gap that only survives McNemar on one run may be the luck of that run's initial weights.
#
# The diagnosis, from the training accuracies: a model that does not even fit its training set *underfits*
# (what makes fitting easier should help: a convolutional stem, more steps), one that fits it but not the test
# set *overfits* (augmentation should help).

# %%
VIT_UNDERFITS = main["ViT"]["train accuracy"] < 0.9
fk.notebook.say(
    f"The plain ViT has {main['ViT']['parameters (M)'] / main['SmallResNet']['parameters (M)']:.1f}x the parameters "
    f"and {main['ViT']['MFLOPs/image'] / main['SmallResNet']['MFLOPs/image']:.2f}x the FLOPs of SmallResNet, and "
    f"fits its training set to {main['ViT']['train accuracy']:.3f} (SmallResNet "
    f"{main['SmallResNet']['train accuracy']:.3f}): "
    + ("it **underfits** in this budget, so a convolutional stem or more steps should matter more than "
       "augmentation, which makes fitting harder." if VIT_UNDERFITS else
       "it fits its training set but generalises worse: it **overfits**, so augmentation should help."))
if PROFILE != "smoke" and synthetic:
    assert vit_acc > 3 * CHANCE, "the ViT learns something"
    assert vit_vs_cnn.winner != "a", f"on small data the CNN beats the plain ViT over seeds: {vit_vs_cnn.text}"

# %% [markdown]
# ### What the ViT lacks on small data, and what might help
#
# A convolution builds in two assumptions about images: nearby pixels belong together (locality) and a pattern
# means the same thing wherever it appears (translation equivariance). A ViT has neither: its position
# embeddings start random, and it must learn from the data which patches relate to which. With a few images per
# person that is expensive. Four remedies, each switched on alone with everything else equal, and one pair:
#
# - **augmentation** (chapter 1's light crops, flips, rotations, colour jitter): more distinct training images;
# - **smaller patches** ($P/2$): four times as many tokens, finer detail, about five times the FLOPs;
# - **a convolutional stem** (`conv_stem=True`): stride-2 3×3 convolutions instead of the one big patchify
#   convolution, a little of the CNN's locality at the input (Xiao et al. 2021, *Early convolutions help
#   transformers see better*);
# - **longer training**: twice the epochs.
#
# Each remedy runs once (seed 0); the table's last column is its McNemar comparison with the plain ViT on the
# same test images, which covers test-set noise only. The remedy with the best *validation* accuracy (not test:
# choosing on the test set would bias its verdict) is then trained at the other seeds for a verdict.

# %%
REMEDIES = {
    "augmentation": dict(build=vit_builder(), augment=True),
    f"patch {P // 2}": dict(build=lambda k, c: VisionTransformer(k, S.vit, image_size=S.image_size, patch_size=P // 2,
                                                                 in_channels=c)),
    "conv stem": dict(build=vit_builder(conv_stem=True)),
    "2x epochs": dict(build=vit_builder(), epochs=2 * S.epochs),
    "conv stem + augmentation": dict(build=vit_builder(conv_stem=True), augment=True),
}
remedy_runs = {name: run(f"ViT + {name}", **opts, split=data) for name, opts in REMEDIES.items()}
remedy_tests = {name: on_images(r, main["ViT"], (f"ViT + {name}", "the plain ViT")) for name, r in remedy_runs.items()}
remedies = table([main["ViT"], *remedy_runs.values()])
remedies["vs plain ViT, seed 0 [95% CI]"] = [""] + [f"{v.difference:+.3f}" for v in remedy_tests.values()]
remedies["McNemar p"] = [np.nan] + [v.p_value for v in remedy_tests.values()]
show_cols = ["parameters (M)", "MFLOPs/image", "held-out accuracy", "train accuracy", "train img/s", "epochs",
             "seconds", "vs plain ViT, seed 0 [95% CI]", "McNemar p"]
print(remedies[show_cols].round(3).to_string())
for name, r in remedy_runs.items():
    record(f"vit_remedy_heldout_accuracy[{name}]", round(r["held-out accuracy"], 4))

# %% [markdown]
# Now the best remedy by validation accuracy, over seeds, against the plain ViT and against SmallResNet. The
# figure shows every seed as a dot, so the spread that the verdicts weigh is visible.

# %%
best_remedy = max(remedy_runs, key=lambda n: remedy_runs[n]["history"].last("val_accuracy"))
record("vit_best_remedy", best_remedy, key=True)
seed_runs["best ViT"] = with_seeds(remedy_runs[best_remedy], REMEDIES[best_remedy]["build"], data,
                                   **{k: v for k, v in REMEDIES[best_remedy].items() if k != "build"})
best_vit = remedy_runs[best_remedy]["held-out accuracy"]
remedy_vs_vit = over_seeds(seed_runs["best ViT"], seed_runs["ViT"], (f"ViT + {best_remedy}", "the plain ViT"))
remedy_vs_cnn = over_seeds(seed_runs["best ViT"], seed_runs["SmallResNet"], (f"ViT + {best_remedy}", "SmallResNet"))
fk.notebook.say(f"Chosen on validation: **{best_remedy}**. Over {len(SEEDS)} seeds: {remedy_vs_vit.text}.  \n"
                f"{remedy_vs_cnn.text}.")

fig, ax = plt.subplots(figsize=(5.5, 2.6))
for i, (name, runs) in enumerate(seed_runs.items()):
    accs = [r["held-out accuracy"] for r in runs]
    ax.scatter([i] * len(accs), accs, color="tab:blue" if name == "SmallResNet" else "tab:orange", zorder=3)
    ax.hlines(np.mean(accs), i - 0.25, i + 0.25, color="k")
ax.set_xticks(range(len(seed_runs)), [n if n != "best ViT" else f"ViT + {best_remedy}" for n in seed_runs], fontsize=8)
ax.axhline(CHANCE, color="k", ls=":", lw=1)
ax.set(ylabel="held-out accuracy", title=f"{len(SEEDS)} seeds each (dots), mean (bar)")
ax.title.set_fontsize(9)
plt.show()

# %%
aug_test = remedy_tests["augmentation"]
small_p = remedy_runs[f"patch {P // 2}"]
fk.notebook.say(
    f"Augmentation: {one_seed(aug_test)}; the ViT's training accuracy goes "
    f"{main['ViT']['train accuracy']:.3f} → {remedy_runs['augmentation']['train accuracy']:.3f}"
    + (" (consistent with the diagnosis of underfitting: no gain shows on this run)."
       if VIT_UNDERFITS and aug_test.winner != "a" else ".")
    + f" Patch {P // 2} costs {small_p['MFLOPs/image'] / main['ViT']['MFLOPs/image']:.1f}x the FLOPs of patch {P} "
    f"and changes the accuracy by {small_p['held-out accuracy'] - vit_acc:+.3f} on one run.")
if PROFILE != "smoke" and synthetic:
    assert best_vit > vit_acc + 0.05, "at least one remedy improves the ViT clearly"
    assert remedy_tests["conv stem"].winner != "b", remedy_tests["conv stem"].text
    assert remedy_vs_vit.winner != "b", f"the remedy chosen on validation beats the plain ViT: {remedy_vs_vit.text}"

# %% [markdown]
# What the remedies say about the diagnosis: a remedy that makes *fitting* easier (the conv stem, more epochs)
# should help an underfitting ViT, and one that makes fitting harder (augmentation) should not, until the model
# fits its training set; that is why the combination of a conv stem and augmentation can do more than either alone.
# Smaller patches give more tokens and finer detail, but also a longer sequence to learn relations over from the
# same few images, and several times the compute. Only the remedy confirmed over seeds carries a verdict.
#
# ### On real faces
#
# The same comparison on a real closed set when it is on disk: ORL (40 people, 10 grey 92×112 images each;
# a centre crop to 64×64, split per person with `n_test=0.2`, `n_val=0.1`) and, at the gpu profile, LFW people with
# enough images. ORL has 7 training images per person: smaller data still. One seed each here (the budget goes to
# the synthetic verdicts), so the comparisons are McNemar's on the same test images: test-set noise only.

# %%
real_sets = [real_dataset] if real_dataset else []
if S.lfw and "lfw" not in real_sets:
    real_sets.append("lfw")
real_results = {}
for name in real_sets:
    if not FOUND.get(name) or name == dataset:
        print(f"{name}: not run ({'not found; set FACEKIT_DATA' if not FOUND.get(name) else 'it is the main dataset'})")
        continue
    r_x, r_y, r_names, _ = closed_set(name, channels=1 if name == "orl" else 3, lfw_min_images=S.lfw_min_images)
    r_data, _ = make_split(r_x, r_y, 0.2, 0.1)
    builds = {"SmallResNet": BUILDERS["SmallResNet"], "ViT": BUILDERS["ViT"],
              "ViT + conv stem + augmentation": vit_builder(conv_stem=True)}
    rows = {m: run(m, b, r_data, augment="augmentation" in m, epochs=S.real_epochs) for m, b in builds.items()}
    real_results[name] = table(rows.values())
    print(f"{name}: {len(r_x)} images of {r_data.num_classes} people; train {len(r_data.train)}, test "
          f"{len(r_data.test)}; chance {1 / r_data.num_classes:.3f}; {S.real_epochs} epochs")
    print(real_results[name][["parameters (M)", "MFLOPs/image", "held-out accuracy", "train accuracy",
                              "train img/s", "inference img/s"]].round(3).to_string())
    for m, acc in real_results[name]["held-out accuracy"].items():
        record(f"{name}_heldout_accuracy[{m}]", round(acc, 4))
    real_tests = {m: on_images(rows[m], rows["SmallResNet"], (m, "SmallResNet")) for m in builds if m != "SmallResNet"}
    fk.notebook.say(f"On {name}: " + "  \n".join(one_seed(v) for v in real_tests.values()))
    if PROFILE != "smoke":
        assert real_results[name]["held-out accuracy"].max() > 3 / r_data.num_classes
        if name == "orl":
            assert rows["SmallResNet"]["held-out accuracy"] > 0.8, "ORL is an easy closed set for a small CNN"

# %% [markdown]
# ORL is small: a test set of a few dozen images is below the noise rule's minimum of 100 test images, so the
# comparison above can show a large gap and still name neither model. That is the rule working as intended: with so
# few test faces one wrong answer moves the accuracy by more than a point, and the rule refuses to rank models
# on that. The gpu profile adds LFW people with many images, where the test set is large enough.
#
# ## 7. Where the model looks
#
# ### Position embeddings
#
# Nothing told the ViT that patch 9 lies next to patch 10; if it learned the image's geometry, the position
# embeddings of neighbouring patches should have become similar. Each small square below is one patch position;
# its pixels show the cosine similarity of that position's embedding with every other position's:

# %%
candidates = {"ViT": main["ViT"], **{f"ViT + {n}": r for n, r in remedy_runs.items() if r["snapshots"]}}
analysed = max(candidates, key=lambda n: candidates[n]["history"].last("val_accuracy"))  # chosen on validation
vit = candidates[analysed]["net"].eval()
vit_snaps = candidates[analysed]["snapshots"]
record("attention_maps_model", analysed)
print(f"we look inside {analysed!r}, the ViT with {P}x{P} patches of best final validation accuracy "
      f"({candidates[analysed]['history'].last('val_accuracy'):.3f}; held-out "
      f"{candidates[analysed]['held-out accuracy']:.3f})")

# %% [markdown]
# A number for the picture: the mean similarity of neighbouring positions (one patch apart) against positions
# half the grid or more apart. Untrained embeddings give about the same for both; a model that learned the geometry
# gives neighbours clearly more. The fixed 2-D sinusoidal code is the reference of a code built to have it.

# %%
def position_similarity(model):
    pos = F.normalize(model.pos_embed[0, 1:].detach(), dim=-1)  # (N, dim), the class token left out
    return pos @ pos.T  # (N, N) cosine similarities


def neighbour_vs_far(sim):
    rr, cc = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
    r, c = rr.flatten(), cc.flatten()
    dist = (r[:, None] - r[None]).abs() + (c[:, None] - c[None]).abs()  # (N, N) city-block distance in patches
    return sim[dist == 1].mean().item(), sim[dist >= GRID // 2].mean().item()


sim = position_similarity(vit)
untrained_pos = neighbour_vs_far(position_similarity(vit_probe))
sine_pos = neighbour_vs_far(F.normalize(sinusoidal_2d(GRID, vit.config.dim).float(), dim=-1)
                            @ F.normalize(sinusoidal_2d(GRID, vit.config.dim).float(), dim=-1).T)
near, far = neighbour_vs_far(sim)
fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.2))
for ax, (name, codes) in zip(axes, [("learned, after training", vit.pos_embed[0, 1:].detach()),
                                    ("2-D sinusoidal (fixed)", sinusoidal_2d(GRID, vit.config.dim))]):
    im = ax.imshow(similarity_canvas(codes, GRID).numpy(), cmap="viridis", vmin=-1, vmax=1)
    ax.set_axis_off()
    ax.set_title(name, fontsize=9)
fig.colorbar(im, ax=axes, shrink=0.7)
plt.show()
record("pos_embed_neighbour_minus_far_similarity", round(near - far, 4))
fk.notebook.say(
    f"Mean cosine similarity of neighbouring positions **{near:.3f}**, of positions {GRID // 2}+ patches apart "
    f"**{far:.3f}** (untrained: {untrained_pos[0]:.3f} and {untrained_pos[1]:.3f}; the fixed 2-D sinusoidal code: "
    f"{sine_pos[0]:.3f} and {sine_pos[1]:.3f}): the trained model "
    + ("has learned that neighbours belong together." if near - far > 0.05 else "shows little spatial structure."))
if PROFILE != "smoke":
    assert near - far > 0.05, "learned position embeddings of neighbouring patches are more alike than distant ones"

# %% [markdown]
# ### Attention maps and attention rollout
#
# The class token's attention weights in the last block say which patches it reads from, but only one
# layer's worth: earlier blocks have already mixed information between patches. **Attention rollout**
# (Abnar & Zuidema 2020) follows the flow through all layers: average each layer's weights over heads, add the
# identity for the residual connection, renormalise, and multiply the layers' matrices. Row 0 of the product says
# how much of each input patch reaches the class token. `attention_maps` returns the weights of every block
# (through the manual path), `attention_rollout` multiplies them, `cls_attention_map` turns row 0 into an image.
# First we check, on the trained model, that its two attention paths still agree and that rollout matches the
# recipe written out:

# %%
probe = torch.linspace(0, N_TEST - 1, min(S.probe_faces, N_TEST)).long()  # spread over the people
probe_x = data.test.images[probe]
with torch.no_grad():
    torch.testing.assert_close(vit.set_fused(False)(probe_x[:16]), vit.set_fused(True)(probe_x[:16]),
                               rtol=1e-5, atol=1e-5)
    maps = vit.attention_maps(probe_x)  # depth x (B, nh, 1 + N, 1 + N)
rollout = torch.eye(maps[0].shape[-1])
for a in maps:
    a = a.mean(dim=1) + torch.eye(a.shape[-1])  # heads averaged, plus the residual
    rollout = (a / a.sum(-1, keepdim=True)) @ rollout
torch.testing.assert_close(rollout, attention_rollout(maps))
last_maps = cls_attention_map(maps[-1], (GRID, GRID), size=(S.image_size, S.image_size))  # (B, S, S) in [0, 1]
roll_maps = cls_attention_map(maps, (GRID, GRID), size=(S.image_size, S.image_size))


def to_hwc(img):
    return img.permute(1, 2, 0).squeeze(-1).numpy()


def overlay(ax, img, heat, title=None):
    ax.imshow(to_hwc(img), vmin=0, vmax=1)
    ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


probe_labels = data.test.labels[probe]
shown = [int((probe_labels == k).nonzero()[0]) for k in probe_labels.unique()[:6]]  # one face of each of 6 people
n_show = len(shown)
fig, axes = plt.subplots(3, n_show, figsize=(1.5 * n_show, 4.8), squeeze=False)
for j, i in enumerate(shown):
    axes[0, j].imshow(to_hwc(probe_x[i]), vmin=0, vmax=1)
    axes[0, j].set_axis_off()
    overlay(axes[1, j], probe_x[i], last_maps[i])
    overlay(axes[2, j], probe_x[i], roll_maps[i])
for i, name in enumerate(["face", "last block", "rollout"]):
    axes[i, 0].text(-0.1, 0.5, name, transform=axes[i, 0].transAxes, rotation=90, va="center", ha="right", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# How to read the three rows: the top row is the face, the middle row the class token's attention in the last
# block alone, the bottom row the rollout through all blocks. Red is where the class token reads from. The last
# block alone is often patchy and can single out a few background patches (attention *sinks* that collect weight
# without carrying much); rollout, which accounts for the residual path and every earlier layer, is smoother and
# usually covers the face. Neither is yet a measurement: "Which regions carry the weight" below turns "it looks at
# the eyes" into a number.

# %% [markdown]
# **Explore it:** choose a query (the class token or any patch), a layer and a head (or their mean) of the analysed
# ViT and see where that token looks on one test face; the maps of every layer and head are computed once.

# %% tags=["exploration"]
from facekit.explore import explore_attention

explore_attention(vit, probe_x[0])

# %% [markdown]
# ### Which regions carry the weight
#
# The synthetic generator knows where each face's eyes, nose tip and mouth corners are (`SyntheticFaces.render`
# returns five landmarks) and its face box (forehead to chin). We measure the share of the class token's rollout
# that falls in discs around them, and compare it with the share of the image those discs cover: an **enrichment**
# above 1 means the model reads from there more than from a random spot. We add the region above the eyes up to a
# little above the face box (forehead and hair: each synthetic person has a hair style and colour of their own).
# The regions overlap; the rows are not a partition. The map of a patch spreads its weight evenly over its $P\times P$
# pixels, so the shares are exact sums. (With a convolutional stem a token also sees a few pixels beyond its
# patch, so there the patch-to-pixel mapping is approximate.)

# %%
REGIONS = {"eyes": [0, 1], "nose": [2], "mouth": [3, 4]}
LANDMARK_RADIUS = 0.1  # disc radius, a fraction of the image side
HAIR_MARGIN = 0.25  # the forehead-and-hair region reaches this fraction of the box height above the box


def region_masks(landmarks, boxes, size, radius=LANDMARK_RADIUS):
    """(B, 5, 2) landmarks and (B, 4) boxes in pixels -> {region: (B, size, size) bool}."""
    centre = torch.arange(size) + 0.5  # pixel centres
    yy, xx = torch.meshgrid(centre, centre, indexing="ij")
    d2 = (xx - landmarks[..., 0, None, None]) ** 2 + (yy - landmarks[..., 1, None, None]) ** 2  # (B, 5, S, S)
    discs = d2 <= (radius * size) ** 2
    masks = {name: discs[:, idx].any(dim=1) for name, idx in REGIONS.items()}
    masks["all five landmarks"] = discs.any(dim=1)
    x0, y0, x1, y1 = (boxes[:, i, None, None] for i in range(4))
    eye_y = landmarks[:, :2, 1].mean(dim=1)[:, None, None] - radius * size  # above the eye discs
    masks["forehead and hair"] = (xx >= x0) & (xx <= x1) & (yy >= y0 - HAIR_MARGIN * (y1 - y0)) & (yy < eye_y)
    masks["inside the face box"] = (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
    masks["outside the face box"] = ~masks["inside the face box"]
    return masks

# %% [markdown]
# Two measurements per region: the share of the rollout map that falls in it, and the share of the image it
# covers. Their ratio is the enrichment. The untrained copy of the same ViT is the control: its enrichment should
# be near 1 everywhere, since its attention has learned nothing about faces.

# %%
def pixel_mass(model, x):
    """The class token's rollout over the patches as a (B, S, S) map that sums to 1 per image."""
    model.eval()
    m = cls_attention_map(model.attention_maps(x), (GRID, GRID), normalize=False)  # (B, GRID, GRID)
    m = m / m.sum(dim=(1, 2), keepdim=True)
    return m.repeat_interleave(P, dim=1).repeat_interleave(P, dim=2) / P**2  # (B, S, S)


def cls_entropy(model, x):
    """Mean entropy (nats) of the class token's attention over all tokens in the last block, per head."""
    w = model.eval().attention_maps(x)[-1][:, :, 0]  # (B, nh, 1 + N)
    return -(w * w.clamp_min(1e-12).log()).sum(-1).mean().item()


def enrichment_table(mass, masks):
    rows = {}
    for name, mask in masks.items():
        share, area = (mass * mask).sum(dim=(1, 2)).mean().item(), mask.float().mean().item()
        rows[name] = {"share of the map": share, "share of the image": area, "enrichment": share / area}
    return pd.DataFrame(rows).T


# %% [markdown]
# What to look for in the table: the untrained column near 1 in every row (the control), the trained column above
# 1 for the landmark discs if the model learned to read the face's parts, and below 1 outside the face box. The
# plain ViT, which learned much less (section 6), is the third column.

# %%
LANDMARKS = None
if synthetic:
    rendered = [source.render(test_idx[i]) for i in probe.tolist()]
    LANDMARKS = torch.from_numpy(np.stack([r[1] for r in rendered]))  # (B, 5, 2) x, y pixels
    BOXES = torch.from_numpy(np.stack([r[2] for r in rendered]))  # (B, 4) x1, y1, x2, y2
    masks = region_masks(LANDMARKS, BOXES, S.image_size)
    untrained = copy.deepcopy(vit)
    untrained.load_state_dict(vit_snaps[0])  # the analysed ViT's own initial weights
    with torch.no_grad():
        mass_trained, mass_untrained = pixel_mass(vit, probe_x), pixel_mass(untrained, probe_x)
        mass_plain = pixel_mass(main["ViT"]["net"], probe_x)
    regions = pd.concat({"trained": enrichment_table(mass_trained, masks),
                         "untrained": enrichment_table(mass_untrained, masks),
                         "plain ViT, trained": enrichment_table(mass_plain, masks)}, axis=1)
    print(f"class-token rollout of {analysed!r} over {len(probe)} test faces, discs of radius "
          f"{LANDMARK_RADIUS * S.image_size:.1f} px")
    print(regions.round(3).to_string())
    enrichment = regions.loc["all five landmarks", ("trained", "enrichment")]
    record("rollout_landmark_enrichment", round(enrichment, 3))
    top = regions[("trained", "enrichment")].loc[[*REGIONS, "forehead and hair"]].idxmax()
    plain_enrichment = regions.loc["all five landmarks", ("plain ViT, trained", "enrichment")]
    record("rollout_landmark_enrichment_plain_vit", round(plain_enrichment, 3))
    fk.notebook.say(f"Trained: the five landmark discs get **{enrichment:.2f}x** their share of the image "
                    f"(untrained {regions.loc['all five landmarks', ('untrained', 'enrichment')]:.2f}x); the most "
                    f"enriched region is {top} ({regions.loc[top, ('trained', 'enrichment')]:.2f}x); outside the face "
                    f"box gets {regions.loc['outside the face box', ('trained', 'enrichment')]:.2f}x its area. The "
                    f"plain ViT (held-out {vit_acc:.3f}) gives the landmarks {plain_enrichment:.2f}x.")
    if PROFILE != "smoke":
        assert enrichment > 1.0, "the trained ViT reads more from eyes, nose and mouth than from a random spot"
else:
    print(f"dataset={dataset!r} has no landmarks: the region measurement runs on synthetic faces only")

# %% [markdown]
# ### The average map, and how it changes with training
#
# Averaged over many test faces (the faces move a little from image to image, so the average is blurred),
# with the mean landmark positions marked. The snapshots kept during training show how the class token's
# attention moves from the uniform spread of the initial weights to the regions it learned to use; the entropy of
# the last block's class-token attention (uniform over $1 + N$ tokens: $\log(1+N)$ nats) measures how
# concentrated it is.

# %% tags=["key-figure"]
snap_epochs = sorted(vit_snaps)
evolution, avg_maps = [], {}
snap_model = copy.deepcopy(vit)
for ep in snap_epochs:
    snap_model.load_state_dict(vit_snaps[ep])
    with torch.no_grad():
        mass = pixel_mass(snap_model, probe_x)
        avg_maps[ep] = cls_attention_map(attention_rollout(snap_model.attention_maps(probe_x)), (GRID, GRID),
                                         size=(S.image_size, S.image_size), normalize=False).mean(0)
        row = {"epoch": ep, "entropy (nats)": cls_entropy(snap_model, probe_x)}
    if LANDMARKS is not None:
        row["landmark enrichment"] = enrichment_table(mass, masks).loc["all five landmarks", "enrichment"]
    row["val accuracy"] = candidates[analysed]["history"]["val_accuracy"][ep - 1] if ep > 0 else float("nan")
    evolution.append(row)
evolution = pd.DataFrame(evolution).set_index("epoch")
print(f"uniform attention over {GRID * GRID + 1} tokens: {math.log(GRID * GRID + 1):.3f} nats")
print(evolution.round(3).to_string())

mean_face = probe_x.mean(0)
rel = {ep: m / m.mean() for ep, m in avg_maps.items()}  # 1 = the uniform share, on one scale for every epoch
lo, hi = min(m.min().item() for m in rel.values()), max(m.max().item() for m in rel.values())
fig, axes = plt.subplots(1, len(snap_epochs) + 1, figsize=(1.8 * (len(snap_epochs) + 1), 2.3))
axes[0].imshow(to_hwc(mean_face), vmin=0, vmax=1)
axes[0].set_title("mean face", fontsize=8)
axes[0].set_axis_off()
for ax, ep in zip(axes[1:], snap_epochs):
    overlay(ax, mean_face, ((rel[ep] - lo) / max(hi - lo, 1e-12)).numpy(), f"epoch {ep}")
for ax in axes if LANDMARKS is not None else []:
    ax.scatter(*LANDMARKS.mean(0).T.numpy(), s=12, c="w", edgecolors="k", linewidths=0.5)
fig.suptitle(f"mean class-token rollout, one colour scale: {lo:.2f}x (blue) to {hi:.2f}x (red) the uniform share",
             fontsize=8)
fig.tight_layout()
plt.show()

entropy_drop = evolution["entropy (nats)"].iloc[0] - evolution["entropy (nats)"].iloc[-1]
record("cls_attention_entropy_drop", round(entropy_drop, 3))
print(f"training lowers the class token's attention entropy by {entropy_drop:.3f} nats "
      f"({evolution['entropy (nats)'].iloc[0]:.3f} -> {evolution['entropy (nats)'].iloc[-1]:.3f})")
if PROFILE != "smoke":
    assert entropy_drop > 0, "trained attention is more concentrated than the initial, near-uniform one"

# %% [markdown]
# Reading the evolution: the entropy column starts near the uniform value (every token attended to equally)
# and falls as the class token learns to concentrate; the landmark enrichment rises from 1 if the concentration
# goes to the parts of the face. Compare the epochs at which the validation accuracy rises with the epochs at
# which the maps change: the maps usually sharpen while the accuracy climbs, and change little once it has levelled
# off.
#
# Two cautions. Attention maps show where information is *read from*, not what the decision *depends on*: a
# patch can get weight and be ignored by the MLPs after it (occluding the region and measuring the change of the
# prediction answers that question). And rollout's averaging over heads and the added identity smooth the maps by
# construction.
#
# ## 8. Attention inside a CNN
#
# Attention is not only for transformers. Two small modules bring it into chapter 1's `SmallResNet`
# (`facekit.models.AttentionResNet`):
#
# - **squeeze-and-excitation** (SE, Hu et al. 2018) in every residual block: average-pool each channel to one
#   number, pass the $C$ numbers through a small MLP and a sigmoid, and rescale the channels with the result.
#   The weights depend on the whole image: channel attention.
# - **attention pooling** instead of global average pooling: a learned query scores every position of the
#   last feature map, a softmax turns the scores into weights, and the features are their weighted mean. This is
#   close to the article's five-step description: scores from the encodings, softmax, weighted sum.
#
# Same data, recipe and budget as `SmallResNet` in section 6:

# %%
CNN_ATTENTION = {
    "SE-ResNet": lambda k, c: AttentionResNet(k, c, attention="se"),
    "ResNet + attention pooling": lambda k, c: AttentionResNet(k, c, attention="none", pool="attention",
                                                               image_size=S.image_size),
}
cnn_att = {name: run(name, build, data) for name, build in CNN_ATTENTION.items()}
bridge = table([main["SmallResNet"], *cnn_att.values()])
print(bridge[["parameters (M)", "MFLOPs/image", "held-out accuracy", "train img/s", "inference img/s"]].round(3)
      .to_string())
se_acc = cnn_att["SE-ResNet"]["held-out accuracy"]
record("se_resnet_heldout_accuracy", round(se_acc, 4))
record("attention_pool_resnet_heldout_accuracy", round(cnn_att["ResNet + attention pooling"]["held-out accuracy"], 4))
extra = cnn_att["SE-ResNet"]["parameters (M)"] / main["SmallResNet"]["parameters (M)"] - 1
fk.notebook.say(f"SE adds {extra:.1%} parameters; SE-ResNet trains at "
                f"{cnn_att['SE-ResNet']['train img/s'] / main['SmallResNet']['train img/s']:.2f}x the speed of "
                "SmallResNet (the squeeze and the sigmoid cost few FLOPs, but not nothing in time).")

# %% [markdown]
# Does either module change the accuracy? A single run cannot say: the seed-to-seed spread of SmallResNet in
# section 6 is of the same order as the differences in the table. SE-ResNet is trained at the same seeds as
# SmallResNet and compared paired over seeds, with McNemar on seed 0's test images beside it for the test-set part
# of the noise. The attention-pooling ResNet runs once (the seeds of the cpu budget go to SE-ResNet): its line is
# the seed-0 difference with its test-set interval only, which is not a verdict.

# %%
seed_runs["SE-ResNet"] = with_seeds(cnn_att["SE-ResNet"], CNN_ATTENTION["SE-ResNet"], data)
se_one = on_images(cnn_att["SE-ResNet"], main["SmallResNet"], ("SE-ResNet", "SmallResNet"))
se_vs_cnn = over_seeds(seed_runs["SE-ResNet"], seed_runs["SmallResNet"], ("SE-ResNet", "SmallResNet"))
pool_one = on_images(cnn_att["ResNet + attention pooling"], main["SmallResNet"], ("attention pooling", "SmallResNet"))
record("se_resnet_minus_small_resnet_over_seeds", round(se_vs_cnn.difference.estimate, 4))
seed_spread = np.std([r["held-out accuracy"] for r in seed_runs["SmallResNet"]], ddof=1)
record("small_resnet_seed_std", round(float(seed_spread), 4))
fk.notebook.say(
    f"SmallResNet's held-out accuracy has a seed-to-seed standard deviation of **{seed_spread:.3f}** over "
    f"{len(SEEDS)} seeds.  \n**SE-ResNet**, seed {seed}: {one_seed(se_one)}.  \nOver {len(SEEDS)} seeds: {se_vs_cnn.text}."
    f"  \n**Attention pooling**, seed {seed}: {one_seed(pool_one)}.")

# %% [markdown]
# Squeeze-and-excitation re-weights channels, not positions, so it cannot add the spatial attention a ViT has; it
# lets the network turn feature detectors up or down per image. Attention pooling replaces the average over
# positions by a learned weighting, which can only help if some positions matter more than others for every
# face. On small, centred faces neither is expected to change much: the measurements say whether it did.
#
# Where does the attention pool look? Its query's weights over the last feature map, averaged over the probe
# faces:

# %%
pool_net = cnn_att["ResNet + attention pooling"]["net"].eval()
pool_net.pool.store_attention = True
with torch.no_grad():
    pool_net(probe_x)
pool_w = pool_net.pool.last_attention.mean(dim=1)  # (B, h, w), heads averaged
pool_net.pool.store_attention = False
pool_map = F.interpolate(pool_w.mean(0)[None, None], size=(S.image_size, S.image_size), mode="bilinear")[0, 0]
fig, axes = plt.subplots(1, 2, figsize=(4, 2.2))
axes[0].imshow(to_hwc(mean_face), vmin=0, vmax=1)
axes[0].set_axis_off()
axes[0].set_title("mean face", fontsize=8)
overlay(axes[1], mean_face, ((pool_map - pool_map.min()) / (pool_map.max() - pool_map.min()).clamp_min(1e-12)).numpy(),
        f"attention pool ({pool_w.shape[-1]}x{pool_w.shape[-2]})")
plt.show()
torch.testing.assert_close(pool_w.sum(dim=(1, 2)), torch.ones(len(probe_x)))
fk.notebook.say(f"Pool weights: the largest weight per face is {pool_w.amax(dim=(1, 2)).mean():.3f} on average, "
                f"against {1 / pool_w[0].numel():.3f} for a uniform pool.")

# %% [markdown]
# A single learned query gives the same kind of map for every face: the pool concentrates on the positions that are
# useful on average (the inner face on centred crops), and a face that is shifted sideways still gets weighted
# where faces usually are. That is the price of query-independent pooling; a class token in a ViT, which is
# updated by every block, can adapt its attention to each image.

# %% [markdown]
# ## Exercises
#
# Solutions are in the collapsed cells under each exercise (click the three dots to expand); try first. Each
# runs in a few seconds. An exercise that asks for a value has a placeholder cell (set the variable there), a
# hidden solution, and a check cell that prints a tick or says what was expected. The stars grade the
# difficulty: ★ needs only this chapter's formulas, ★★ asks you to write a piece yourself, ★★★ is open.
#
# **Exercise 1 ★ (predict, then run).** If all keys are identical, what are the attention weights of any query,
# whatever the query is? Predict, then compute them for the tiny example with `K` replaced by four copies of `K[0]`.

# %%
weights_same_keys = None  # your answer: the (4, 4) weights when every key equals K[0]

# %% tags=["solution"] jupyter={"source_hidden": true}
same_keys = K[0].expand(4, -1)  # (4, 3): four identical keys
weights_same_keys = torch.softmax(Q @ same_keys.T / math.sqrt(d_k), dim=-1)  # every score in a row is equal

# %%
fk.notebook.check("weights with identical keys", weights_same_keys, torch.full((4, 4), 0.25), atol=1e-6)

# %% [markdown]
# Why it comes out that way: with identical keys every score in a row is the same number, and the softmax of equal
# numbers is uniform, whatever the query. Attention can only discriminate between keys that differ.
#
# **Exercise 2 ★ (change a parameter and explain).** Divide the scores by $d_k$ instead of $\sqrt{d_k}$ and measure
# the mean largest weight at $d_k = 1024$ (16 keys, as in section 2). What happens as $d_k$ grows, and why is that
# as bad as saturation?

# %%
max_weight_over_dk = None  # your answer: mean largest weight at d_k = 1024 with scores / d_k

# %% tags=["solution"] jupyter={"source_hidden": true}
q_ex = torch.randn(N_QUERIES, 1, 1024, generator=g)
k_ex = torch.randn(N_QUERIES, N_KEYS, 1024, generator=g)
max_weight_over_dk = torch.softmax((q_ex @ k_ex.transpose(1, 2))[:, 0] / 1024, dim=-1).amax(-1).mean().item()
print(f"{max_weight_over_dk:.4f}: the scores now have std 1/sqrt(d_k), so the weights approach uniform "
      f"(1/{N_KEYS} = {1 / N_KEYS:.4f}) and attention stops choosing anything")

# %%
fk.notebook.check("max weight with scores / d_k (near uniform)", max_weight_over_dk, 1 / N_KEYS, rtol=0.1)

# %% [markdown]
# **Exercise 3 ★★ (implement from scratch).** Write `patchify(image, p)`: a `(C, H, W)` image to the `(N, C*p*p)`
# matrix of its flattened non-overlapping patches, row by row, each patch flattened channel first. The check
# compares it with `torch.nn.functional.unfold`, the operation the patch-embedding convolution performs.

# %%
def patchify(image, p):
    return None  # your code


# %% tags=["solution"] jupyter={"source_hidden": true}
def patchify(image, p):
    c, h, w = image.shape
    grid = image.reshape(c, h // p, p, w // p, p)  # (C, rows, p, cols, p)
    return grid.permute(1, 3, 0, 2, 4).reshape((h // p) * (w // p), c * p * p)  # (N, C*p*p)


# %%
fk.notebook.check("patchify", patchify(face, P), F.unfold(face[None], P, stride=P)[0].T)

# %% [markdown]
# **Exercise 4 ★★ (implement from scratch).** Write `softmax_jacobian(w)`, the $T\times T$ matrix
# $\partial w_i / \partial s_j$ of a softmax output `w` (section 2 gives the formula). The check compares it with
# autograd on random scores. *Hint:* differentiate $w_i = e^{s_i} / \sum_k e^{s_k}$ with respect to $s_j$ in two
# cases, $i = j$ and $i \neq j$, and write both as one matrix.

# %%
def softmax_jacobian(w):
    return None  # your code


# %% tags=["solution"] jupyter={"source_hidden": true}
def softmax_jacobian(w):
    return torch.diag(w) - torch.outer(w, w)  # diag(w) - w w^T


# %%
s_ex = torch.randn(6, generator=g)
fk.notebook.check("softmax Jacobian", softmax_jacobian(torch.softmax(s_ex, 0)),
                  torch.autograd.functional.jacobian(lambda s: torch.softmax(s, 0), s_ex), atol=1e-6)

# %% [markdown]
# **Exercise 5 ★★ (predict, then run).** Section 5 showed that without positions the class token cannot tell a face
# from its shuffled patches. *With* the trained ViT's learned position embeddings added, does shuffling the patches
# change its prediction on test faces? Predict the share of the first 32 test faces whose predicted person stays
# the same, then measure it (shuffle the patch tokens *after* the patch embedding, before the positions are added).

# %%
share_unchanged = None  # your answer: fraction of 32 test faces whose prediction survives the shuffle

# %% tags=["solution"] jupyter={"source_hidden": true}
plain = main["ViT"]["net"].eval()
with torch.no_grad():
    x_ex = data.test.images[:32]
    tok = plain.patch_embed(x_ex)[:, perm]  # patches shuffled, then the usual class token and positions
    tok = torch.cat([plain.cls_token.expand(len(x_ex), -1, -1), tok], dim=1) + plain.pos_embed
    for blk in plain.blocks:
        tok = blk(tok)
    shuffled_pred = plain.head(plain.norm(tok)[:, 0]).argmax(1)
    share_unchanged = (shuffled_pred == plain(x_ex).argmax(1)).float().mean().item()
print(f"{share_unchanged:.2f} of the predictions survive: the positions are how the ViT knows where a patch was")

# %%
imgs = data.test.images[:32]  # the check shuffles the image's pixel patches instead: the same thing for patchify
tiles = imgs.unfold(2, P, P).unfold(3, P, P).reshape(len(imgs), imgs.shape[1], GRID * GRID, P, P)[:, :, perm]
moved = tiles.reshape(len(imgs), imgs.shape[1], GRID, GRID, P, P).permute(0, 1, 2, 4, 3, 5).reshape(imgs.shape)
with torch.no_grad():
    expected_share = (main["ViT"]["net"](moved).argmax(1) == main["ViT"]["net"](imgs).argmax(1)).float().mean()
fk.notebook.check("share of predictions unchanged", share_unchanged, expected_share.item(), atol=1e-6)

# %% [markdown]
# **Exercise 6 ★★★ (open question).** Compare the rows of the convolutional stem and of augmentation in
# section 6's remedies table. Suppose the stem helps the ViT much more than augmentation. Is that because it adds
# *locality* (each token sees a small neighbourhood) or because it makes *optimisation* easier (smoother early
# layers, better-conditioned gradients)? Design an experiment that separates the two, say what each answer would
# predict, and what it would cost at the cpu profile.

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# *One answer.* Keep the stem's optimisation benefits and remove its locality: a stem of 1×1 convolutions with the
# same depth, normalisation and stride schedule (strided by pixel-unshuffle, so each token still sees only its own
# patch) trains as smoothly but is no more local than patchify. The reverse: the 3×3 stem with its weights frozen
# at initialisation keeps locality and removes the learned part. If the 1×1 stem recovers most of the gain,
# optimisation explains it; if only the 3×3 stems do, locality does. Compare each against the plain ViT over at
# least three seeds (`compare_seeds`), plus learning curves: an optimisation effect shows early in training, a
# locality effect in the final validation accuracy. At the cpu profile each extra ViT variant costs about as
# much as the plain ViT's runs above, times the seeds.

# %% [markdown]
# ## Summary
#
# - Attention written from the formula matches `F.scaled_dot_product_attention`, `nn.MultiheadAttention` and
#   facekit's modules to float32 tolerance; masks give exactly zero weight; the $\sqrt{d_k}$ scaling keeps the
#   softmax out of saturation. Dot-product and additive scores depend on the query; attention pooling's does not.
# - The article's "attention-enhanced sequence" is the residual connection of a transformer block.
# - Attention treats tokens as a set: positions must be added, as a fixed sinusoidal code or learned embeddings.
# - On faces, under the same budget, from this run:

# %%
cnn_seeds = [r["held-out accuracy"] for r in seed_runs["SmallResNet"]]
vit_seeds = [r["held-out accuracy"] for r in seed_runs["ViT"]]
lines = [
    f"data: {dataset}, {len(data.train)} training images of {data.num_classes} people, {N_TEST} test images, "
    f"{len(SEEDS)} seeds per verdict",
    f"SmallResNet {np.mean(cnn_seeds):.3f} and the plain ViT {np.mean(vit_seeds):.3f} (means over seeds; "
    f"{main['SmallResNet']['MFLOPs/image']:.0f} vs {main['ViT']['MFLOPs/image']:.0f} MFLOPs): {vit_vs_cnn.text}",
    f"best ViT remedy on validation, {best_remedy}: {remedy_vs_vit.text}; {remedy_vs_cnn.text}",
    f"SE-ResNet over seeds: {se_vs_cnn.text}; attention pooling, one seed: {pool_one.difference:+.3f} (no verdict)",
    f"learned position embeddings: neighbours {near:.3f} vs far {far:.3f} cosine similarity",
    *([f"class-token rollout on the five landmarks: {enrichment:.2f}x their share of the image"]
      if LANDMARKS is not None else []),
    *[f"{n}: " + ", ".join(f"{m} {a:.3f}" for m, a in t["held-out accuracy"].items()) for n, t in real_results.items()],
]
fk.notebook.say("\n".join(f"- {line}" for line in lines))
chapter_seconds = record("chapter_seconds", round(ctx.elapsed(), 1))

# %% [markdown]
# ## Pitfalls
#
# - **Forgetting the scale** (or dividing by $d_k$): the softmax saturates or flattens, and training stalls.
# - **Masks with the wrong polarity**: `nn.MultiheadAttention`'s `key_padding_mask` marks the tokens to *ignore*
#   with True, `F.scaled_dot_product_attention`'s boolean `attn_mask` marks the ones to *keep*.
# - **No positions, or positions for the wrong grid**: a ViT without them sees a bag of patches; changing the
#   image size changes the grid, and learned embeddings must then be interpolated.
# - **Judging a ViT on small data by one run**: seeds move small models' accuracies by several points; compare
#   over seeds with a paired test, and choose variants on validation, not on the test set.
# - **Reading attention maps as explanations**: they show where information is read from, not what the decision
#   depends on; rollout smooths by construction.
#
# ## Further reading
#
# - Bahdanau, Cho and Bengio (2015), *Neural machine translation by jointly learning to align and translate*:
#   additive attention.
# - Vaswani et al. (2017), *Attention is all you need*: scaled dot-product and multi-head attention, sinusoidal
#   positions.
# - Dosovitskiy et al. (2021), *An image is worth 16x16 words*: the ViT; it reports that ViTs trained on
#   ImageNet alone fall behind ResNets of similar size and overtake them only with pre-training on far larger sets.
# - Touvron et al. (2021), *Training data-efficient image transformers* (DeiT): the recipe used here in miniature.
# - Xiao et al. (2021), *Early convolutions help transformers see better*: the convolutional stem.
# - Hu, Shen and Sun (2018), *Squeeze-and-excitation networks*; Abnar and Zuidema (2020), *Quantifying attention
#   flow in transformers* (rollout).
#
# `facekit report 02 --profile gpu` repeats the chapter with more people, a DeiT-Ti-sized ViT, longer training and
# LFW. Next: face detection and alignment, then embeddings that recognise people never seen in training.
