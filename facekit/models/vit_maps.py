"""Where a vision transformer looks: attention rollout (Abnar & Zuidema 2020) and the class token's map.

Both take the per-layer (B, nh, T, T) attention weights that
:meth:`facekit.models.VisionTransformer.attention_maps` returns (token 0 is the class token).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from facekit.config import ConfigError, choice

HEAD_FUSIONS = {"mean": lambda a: a.mean(1), "max": lambda a: a.amax(1), "min": lambda a: a.amin(1)}  # over nh


def attention_rollout(attentions: Sequence[torch.Tensor], head_fusion: str = "mean",
                      discard_ratio: float = 0.0) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each input token flows into each output token.

    Each layer's (B, nh, T, T) weights are fused over heads (mean/max/min), optionally the smallest
    `discard_ratio` of each map is zeroed (never the class token's own entry), the identity is added
    for the residual connection, rows are renormalised, and the layers are multiplied,
    ``R = A_L ... A_2 A_1``. Returns (B, T, T) whose rows sum to 1.

    >>> uniform = [torch.full((1, 2, 4, 4), 0.25)] * 3
    >>> attention_rollout(uniform)[0, 0]  # (I/2^3 + (1 - 1/2^3) U) for uniform U
    tensor([0.3438, 0.2188, 0.2188, 0.2188])
    """
    choice(head_fusion, HEAD_FUSIONS, name="head_fusion")
    if not 0.0 <= discard_ratio < 1.0:
        raise ConfigError(f"discard_ratio={discard_ratio} must be in [0, 1)")
    result = None
    for a in attentions:
        a = HEAD_FUSIONS[head_fusion](a)
        B, T, _ = a.shape  # (B, T, T)
        if discard_ratio > 0:
            flat = a.reshape(B, T * T).clone()
            n = int(T * T * discard_ratio)
            idx = flat.topk(n, dim=-1, largest=False).indices  # (B, n)
            flat.scatter_(1, idx, 0.0)
            flat[:, 0] = a.reshape(B, T * T)[:, 0]  # keep class -> class
            a = flat.view(B, T, T)
        eye = torch.eye(T, device=a.device, dtype=a.dtype)
        a = a + eye  # the residual stream carries each token to itself
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    if result is None:
        raise ValueError("attention_rollout needs at least one layer of attention")
    return result


def cls_attention_map(attentions_or_rollout, grid_hw: tuple[int, int], size: tuple[int, int] | None = None,
                      normalize: bool = True) -> torch.Tensor:
    """The class token's attention to the patches as a map (B, H_p, W_p), or (B, *size) if `size` is given.

    Args:
        attentions_or_rollout: a (B, T, T) rollout, one layer's (B, nh, T, T) weights (heads averaged),
            or a list of layers (rolled out with ``attention_rollout``). Token 0 is the class token.
        grid_hw: the patch grid (H_p, W_p), H_p * W_p = T - 1.
        size: upsample bilinearly to this (H, W), e.g. the image size for an overlay.
        normalize: scale each map to [0, 1].
    """
    a = attentions_or_rollout
    if isinstance(a, (list, tuple)):
        a = attention_rollout(a)
    elif a.dim() == 4:
        a = a.mean(dim=1)
    hp, wp = grid_hw
    if a.shape[-1] != 1 + hp * wp:
        raise ValueError(f"{a.shape[-1]} tokens do not match 1 class token + a {hp}x{wp} grid")
    m = a[:, 0, 1:].reshape(-1, hp, wp)  # (B, H_p, W_p)
    if size is not None:
        m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    if normalize:
        lo = m.flatten(1).amin(1)[:, None, None]
        hi = m.flatten(1).amax(1)[:, None, None]
        m = (m - lo) / (hi - lo).clamp_min(torch.finfo(m.dtype).tiny)
    return m


__all__ = ["HEAD_FUSIONS", "attention_rollout", "cls_attention_map"]
