"""Attention from the formula up: scaled dot-product attention, multi-head self-attention,
and the channel / spatial / pooling attention modules that plug into a CNN.

``scaled_dot_product_attention`` is ``softmax(Q K^T / sqrt(d_k)) V`` written out, with the
mask conventions of ``torch.nn.functional.scaled_dot_product_attention`` (tests check both
agree). ``MultiHeadSelfAttention`` has the nanoGPT/timm two paths: the fused SDPA kernel and
the manual one, switchable at run time; only the manual one can keep the attention weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NEG_INF = float("-inf")


def _safe_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim whose fully masked rows (all -inf) are 0 instead of NaN.

    This is what the math backend of ``F.scaled_dot_product_attention`` does (``aten::_safe_softmax``);
    the -inf rows are replaced before the softmax so that the gradient there is 0, not NaN.
    """
    dead = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., T_q, 1)
    weights = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1)
    return weights.masked_fill(dead, 0.0)


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, *, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 return_weights: bool = False):
    """``softmax(q k^T * scale + mask) v``, the manual twin of ``F.scaled_dot_product_attention``.

    Args:
        q: queries ``(..., T_q, d_k)``.
        k: keys ``(..., T_k, d_k)``.
        v: values ``(..., T_k, d_v)``.
        mask: broadcastable to ``(..., T_q, T_k)``. A bool mask: True = the key takes part in
            attention, False = masked out. A float mask: added to the scores (use -inf to mask).
        dropout_p: dropout on the attention weights (pass 0 in eval; the random draws differ
            from the fused kernel's, so only p=0 is comparable).
        is_causal: query i sees keys j <= i (top-left aligned ``ones(T_q, T_k).tril()``, as in
            torch); cannot be combined with ``mask``.
        scale: multiplies the scores; default ``1 / sqrt(d_k)``.
        return_weights: also return the weights ``(..., T_q, T_k)`` (after dropout).

    A query whose keys are all masked gets all-zero weights, hence a zero output row and a zero
    gradient: this matches ``F.scaled_dot_product_attention`` (torch >= 2.5), which returns zeros
    there, not the NaN a plain softmax of a row of -inf would give.

    Returns:
        ``(..., T_q, d_v)``, or ``(output, weights)`` when ``return_weights``.

    >>> q, k, v = torch.randn(2, 4, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 5)
    >>> out, w = scaled_dot_product_attention(q, k, v, return_weights=True)
    >>> out.shape, w.shape
    (torch.Size([2, 4, 5]), torch.Size([2, 4, 6]))
    >>> torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6)
    True
    """
    if is_causal and mask is not None:
        raise ValueError("pass either mask or is_causal=True, not both (as in F.scaled_dot_product_attention)")
    t_q, t_k = q.size(-2), k.size(-2)
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T_q, T_k)
    if is_causal:
        mask = torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, NEG_INF)
        else:
            scores = scores + mask
    weights = _safe_softmax(scores)  # (..., T_q, T_k), rows sum to 1 (or 0 if fully masked)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = weights @ v  # (..., T_q, d_v)
    return (out, weights) if return_weights else out


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with a fused (SDPA) and a manual path.

    Args:
        dim: token width; split into ``num_heads`` heads of ``dim // num_heads``.
        num_heads: number of heads.
        qkv_bias: bias of the joint q, k, v projection.
        attn_dropout: dropout on the attention weights (training only).
        proj_dropout: dropout after the output projection (training only).
        fused: use ``F.scaled_dot_product_attention`` (attribute, switchable at run time).
        store_attention: use the manual path and keep the weights ``(B, nh, T, T)``, detached,
            in ``self.last_attention`` (attribute, switchable at run time).

    The q, k, v rows of ``qkv.weight`` are laid out like ``nn.MultiheadAttention.in_proj_weight``,
    so ``copy_from_torch_mha`` / ``to_torch_mha`` move weights both ways.

    >>> attn = MultiHeadSelfAttention(dim=32, num_heads=4)
    >>> x = torch.randn(2, 10, 32)
    >>> attn(x).shape
    torch.Size([2, 10, 32])
    >>> attn.fused = False
    >>> attn.store_attention = True
    >>> _ = attn(x); attn.last_attention.shape
    torch.Size([2, 4, 10, 10])
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_dropout: float = 0.0,
                 proj_dropout: float = 0.0, fused: bool = True, store_attention: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout
        self.proj_drop = nn.Dropout(proj_dropout)
        self.fused = fused
        self.store_attention = store_attention
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) tokens -> (B, T, C).

        Args:
            attn_mask: SDPA convention (bool True = attend, or additive float), broadcastable
                to ``(B, nh, T, T)``.
            key_padding_mask: ``(B, T)`` bool, True = padding to ignore: the convention of
                ``nn.MultiheadAttention`` (the opposite of a bool ``attn_mask``).
        """
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hs)
        mask = attn_mask
        if key_padding_mask is not None:
            keep = ~key_padding_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
            if mask is None:
                mask = keep
            elif mask.dtype == torch.bool:
                mask = mask & keep
            else:
                mask = mask.masked_fill(~keep, NEG_INF)
        p = self.attn_dropout if self.training else 0.0
        if self.fused and not self.store_attention:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, nh, T, hs)
        else:
            y, w = scaled_dot_product_attention(q, k, v, mask, dropout_p=p, return_weights=True)
            if self.store_attention:
                self.last_attention = w.detach()  # (B, nh, T, T)
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble the heads side by side
        return self.proj_drop(self.proj(y))

    @torch.no_grad()
    def copy_from_torch_mha(self, mha: nn.MultiheadAttention) -> MultiHeadSelfAttention:
        """Load the weights of an ``nn.MultiheadAttention`` (same dim, heads and biases); returns self."""
        if mha.embed_dim != self.dim or mha.num_heads != self.num_heads:
            raise ValueError(f"nn.MultiheadAttention has dim={mha.embed_dim}, heads={mha.num_heads}; "
                             f"this module dim={self.dim}, heads={self.num_heads}")
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("only nn.MultiheadAttention without kdim/vdim, add_bias_kv and add_zero_attn")
        if (mha.in_proj_bias is None) != (self.qkv.bias is None):
            raise ValueError("qkv_bias differs between the two modules")
        self.qkv.weight.copy_(mha.in_proj_weight)  # (3C, C): rows [W_q; W_k; W_v] in both layouts
        if self.qkv.bias is not None:
            self.qkv.bias.copy_(mha.in_proj_bias)
        self.proj.weight.copy_(mha.out_proj.weight)
        if mha.out_proj.bias is None:
            self.proj.bias.zero_()
        else:
            self.proj.bias.copy_(mha.out_proj.bias)
        return self

    @torch.no_grad()
    def to_torch_mha(self) -> nn.MultiheadAttention:
        """An ``nn.MultiheadAttention(batch_first=True)`` with the same weights (on the same device)."""
        w = self.qkv.weight
        mha = nn.MultiheadAttention(self.dim, self.num_heads, dropout=self.attn_dropout,
                                    bias=self.qkv.bias is not None, batch_first=True,
                                    device=w.device, dtype=w.dtype)
        mha.in_proj_weight.copy_(w)
        if self.qkv.bias is not None:
            mha.in_proj_bias.copy_(self.qkv.bias)
        mha.out_proj.weight.copy_(self.proj.weight)
        if mha.out_proj.bias is None:  # bias=False there drops both biases: give out_proj ours back
            mha.out_proj.bias = nn.Parameter(self.proj.bias.detach().clone())
        else:
            mha.out_proj.bias.copy_(self.proj.bias)
        return mha


class SqueezeExcitation(nn.Module):
    """Channel attention (Hu et al. 2018): pool, bottleneck MLP, sigmoid, rescale channels.

    Args:
        channels: C of the feature map.
        reduction: bottleneck ratio r; hidden width ``max(C // r, min_hidden)``.
        min_hidden: smallest bottleneck width.
        use_max: also pool with max and add the two MLP outputs (CBAM's channel attention).

    >>> se = SqueezeExcitation(32, reduction=4)
    >>> se(torch.randn(2, 32, 8, 8)).shape
    torch.Size([2, 32, 8, 8])
    """

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8, use_max: bool = False):
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        self.fc1 = nn.Conv2d(channels, hidden, 1)  # 1x1 convs = per-pixel Linear, no reshape needed
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.use_max = use_max

    def _mlp(self, s):
        return self.fc2(F.relu(self.fc1(s)))

    def forward(self, x):
        logits = self._mlp(F.adaptive_avg_pool2d(x, 1))  # (B, C, 1, 1)
        if self.use_max:
            logits = logits + self._mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(logits)


class SpatialAttention(nn.Module):
    """CBAM spatial attention (Woo et al. 2018): channel avg + max, a k x k conv, sigmoid, rescale pixels.

    With ``store_attention=True`` the map ``(B, 1, H, W)`` is kept, detached, in ``self.last_attention``.

    >>> SpatialAttention()(torch.randn(2, 16, 12, 12)).shape
    torch.Size([2, 16, 12, 12])
    """

    def __init__(self, kernel_size: int = 7, store_attention: bool = False):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} must be odd to keep H, W")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        self.store_attention = store_attention
        self.last_attention: torch.Tensor | None = None

    def forward(self, x):
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # (B, 2, H, W)
        a = torch.sigmoid(self.conv(desc))  # (B, 1, H, W)
        if self.store_attention:
            self.last_attention = a.detach()
        return x * a


class CBAM(nn.Sequential):
    """Convolutional block attention module: channel attention (avg + max) then spatial attention.

    >>> CBAM(32)(torch.randn(1, 32, 8, 8)).shape
    torch.Size([1, 32, 8, 8])
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__(SqueezeExcitation(channels, reduction, use_max=True), SpatialAttention(kernel_size))


class AttentionPool2d(nn.Module):
    """Pool a feature map with a learned query attending over its H*W positions.

    Keys and values are projections of the pixels plus a learned position embedding of
    ``grid_size`` (resized bilinearly to other H, W). ``num_heads`` queries, one per head,
    give ``num_heads`` weighted means, concatenated and projected back to C.

    Args:
        channels: C (divisible by ``num_heads``).
        grid_size: (H, W) (or one int) of the expected feature map.
        num_heads: heads.
        store_attention: keep the weights ``(B, nh, H, W)``, detached, in ``self.last_attention``.

    >>> pool = AttentionPool2d(64, grid_size=4, num_heads=2)
    >>> pool(torch.randn(3, 64, 4, 4)).shape
    torch.Size([3, 64])
    """

    def __init__(self, channels: int, grid_size: int | tuple[int, int] = 7, num_heads: int = 1,
                 store_attention: bool = False):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels={channels} must be divisible by num_heads={num_heads}")
        gh, gw = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
        self.num_heads, self.head_dim = num_heads, channels // num_heads
        self.pos_embed = nn.Parameter(torch.zeros(1, channels, gh, gw))
        self.query = nn.Parameter(torch.zeros(1, num_heads, 1, self.head_dim))  # a learned query per head
        self.kv = nn.Linear(channels, 2 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.query, std=0.02)
        self.store_attention = store_attention
        self.last_attention: torch.Tensor | None = None

    def forward(self, x):
        B, C, H, W = x.shape
        pos = self.pos_embed
        if pos.shape[-2:] != (H, W):
            pos = F.interpolate(pos, size=(H, W), mode="bilinear", align_corners=False)
        tokens = (x + pos).flatten(2).transpose(1, 2)  # (B, HW, C)
        kv = self.kv(tokens).view(B, H * W, 2, self.num_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4)  # 2 x (B, nh, HW, hs)
        q = self.query.expand(B, -1, -1, -1)  # (B, nh, 1, hs)
        if self.store_attention:
            y, w = scaled_dot_product_attention(q, k, v, return_weights=True)
            self.last_attention = w.detach().view(B, self.num_heads, H, W)
        else:
            y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, 1, hs)
        return self.proj(y.reshape(B, C))  # (B, C)


__all__ = ["scaled_dot_product_attention", "MultiHeadSelfAttention", "SqueezeExcitation",
           "SpatialAttention", "CBAM", "AttentionPool2d"]
