"""Chapter 2: choose a query patch, a layer and a head of a trained ViT and see its attention over the face.

The attention weights of every block and head are computed once
(:meth:`facekit.models.VisionTransformer.attention_maps`); a moved control only picks one row of one map.
Query ``(row, col)`` is a patch; the class token is the query with ``cls=True`` ("class token").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facekit.config import ConfigError
from facekit.explore.core import Choice, Exploration, Slider

__all__ = ["AttentionMaps", "attention_maps_of", "query_attention", "draw_attention", "explore_attention"]

MEAN = "mean"  # the head choice that averages the heads


@dataclass(frozen=True)
class AttentionMaps:
    image: torch.Tensor  # (C, H, W) the face, in [0, 1]
    maps: list  # depth x (nh, 1 + N, 1 + N) attention weights, rows sum to 1
    grid: tuple  # (H_p, W_p) patches per column and row
    patch: int  # patch side in pixels


def attention_maps_of(vit, image: torch.Tensor) -> AttentionMaps:
    """Every block's attention weights for one (C, H, W) face through a ``VisionTransformer`` (once)."""
    image = torch.as_tensor(image).detach().cpu().float()
    if image.ndim != 3:
        raise ValueError(f"expected one (C, H, W) image, got shape {tuple(image.shape)}")
    p = vit.config.patch_size
    h, w = image.shape[-2:]
    if h % p or w % p:
        raise ConfigError(f"image {h}x{w} is not a multiple of the ViT's patch size {p}")
    was_training = vit.training
    vit.eval()
    try:
        device = next(vit.parameters()).device
        maps = [m[0].detach().cpu() for m in vit.attention_maps(image[None].to(device))]  # depth x (nh, T, T)
    finally:
        vit.train(was_training)
    return AttentionMaps(image.cpu(), maps, (h // p, w // p), p)


def query_attention(maps: AttentionMaps, layer: int, head, row: int | None, col: int | None) -> torch.Tensor:
    """(H_p, W_p) attention of one query token over the patches (the class token's column left out).

    Args:
        layer: block index (0 = first). head: a head index or ``"mean"``. row, col: the query patch; both None:
            the class token.
    """
    depth = len(maps.maps)
    if not 0 <= layer < depth:
        raise ConfigError(f"layer={layer} is not accepted; the ViT has layers 0..{depth - 1}")
    a = maps.maps[layer]  # (nh, T, T)
    if head == MEAN:
        a = a.mean(0)
    elif isinstance(head, (int, np.integer)) and 0 <= head < a.shape[0]:
        a = a[int(head)]
    else:
        raise ConfigError(f"head={head!r} is not accepted; use 0..{a.shape[0] - 1} or {MEAN!r}")
    hp, wp = maps.grid
    if row is None and col is None:
        q = 0
    elif row is not None and col is not None and 0 <= row < hp and 0 <= col < wp:
        q = 1 + int(row) * wp + int(col)
    else:
        raise ConfigError(f"query (row={row}, col={col}) is not a patch of the {hp}x{wp} grid (both None: class token)")
    return a[q, 1:].reshape(hp, wp)


def draw_attention(fig, maps: AttentionMaps, layer: int, head, query: str, row: int, col: int) -> dict:
    """The face with the query's attention over it (left) and the attention as a patch grid (right)."""
    from matplotlib.patches import Rectangle

    cls = query == "class token"
    att = query_attention(maps, layer, head, None if cls else row, None if cls else col)  # (hp, wp)
    img = maps.image.permute(1, 2, 0).squeeze(-1).numpy()
    h, w = img.shape[:2]
    ax_f, ax_a = fig.subplots(1, 2)
    ax_f.imshow(img, vmin=0, vmax=1, cmap="gray")
    ax_f.imshow(att.numpy(), cmap="jet", alpha=0.5, extent=(0, w, h, 0), interpolation="nearest")
    ax_a.imshow(att.numpy(), cmap="viridis", interpolation="nearest")
    if not cls:
        p = maps.patch
        ax_f.add_patch(Rectangle((col * p, row * p), p, p, fill=False, color="white", lw=2))
        ax_a.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, color="red", lw=2))
    who = "class token" if cls else f"patch ({row}, {col})"
    top = float(att.max())
    ax_f.set_title(f"layer {layer}, head {head}: {who}", fontsize=9)
    ax_a.set_title(f"weights over the {att.shape[0]}x{att.shape[1]} patches (max {top:.2f})", fontsize=9)
    for ax in (ax_f, ax_a):
        ax.set_axis_off()
    return {"max_weight": top, "patch_share": float(att.sum())}


def explore_attention(vit, image: torch.Tensor, *, layer: int | None = None) -> Exploration:
    """Query patch (row, col) or the class token, layer and head (or their mean) of a trained ViT on one face.

    Args:
        vit: a :class:`facekit.models.VisionTransformer`; image: (C, H, W) face in [0, 1].
        layer: the starting layer (default: the last).
    """
    maps = attention_maps_of(vit, image)
    depth, heads = len(maps.maps), maps.maps[0].shape[0]
    hp, wp = maps.grid
    last = depth - 1 if layer is None else int(layer)
    return Exploration(
        lambda fig, layer, head, query, row, col: draw_attention(fig, maps, layer, head, query, row, col),
        {"query": Choice(("class token", "patch"), "class token", description="query"),
         "row": Slider(0, hp - 1, 1, hp // 2, integer=True, description="patch row"),
         "col": Slider(0, wp - 1, 1, wp // 2, integer=True, description="patch column"),
         "layer": Slider(0, depth - 1, 1, last, integer=True, description="layer"),
         "head": Choice((MEAN,) + tuple(range(heads)), MEAN, description="head")},
        figsize=(6.4, 3.2),
        static_grid=[{"query": "patch", "row": hp // 3, "col": wp // 3, "layer": 0},
                     {"query": "patch", "row": hp // 3, "col": wp // 3},
                     {"layer": 0}],
        grid_title=f"patch ({hp // 3}, {wp // 3}) in the first and the last layer; the class token in the first",
    )
