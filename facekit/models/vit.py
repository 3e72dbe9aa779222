"""A vision transformer for faces (Dosovitskiy et al. 2021), sized for small face crops.

The image is cut into P x P patches (one strided conv, or a small conv stem reaching the same
grid, Xiao et al. 2021), each patch becomes a token, a class token is prepended, learned position
embeddings are added, and pre-norm transformer blocks mix the tokens. ``attention_maps`` and
``attention_rollout`` (Abnar & Zuidema 2020, :mod:`facekit.models.vit_maps`, re-exported here) show
where the class token looks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from facekit.config import ConfigError, choice, config_from, make_config
from facekit.models.attention import MultiHeadSelfAttention
from facekit.models.vit_maps import HEAD_FUSIONS, attention_rollout, cls_attention_map  # noqa: F401

POOLS = ("cls", "mean")


@dataclass(frozen=True)
class ViTConfig:
    image_size: int = 64  # side of the square training input; other sizes interpolate the position embedding
    patch_size: int = 8  # P: the image becomes (image_size / P)^2 tokens
    in_channels: int = 3  # 3 for RGB, 1 for grey
    dim: int = 192  # token width
    depth: int = 6  # transformer blocks
    num_heads: int = 3  # heads per block; dim / num_heads per head
    mlp_ratio: float = 4.0  # hidden width of the MLP = mlp_ratio * dim
    dropout: float = 0.0  # after the position embedding, in the MLP and after the attention projection
    attn_dropout: float = 0.0  # on the attention weights
    drop_path: float = 0.0  # stochastic depth of the last block, rising linearly from 0 in the first
    conv_stem: bool = False  # log2(P) stride-2 3x3 conv-BN-ReLU + a 1x1 conv instead of the P x P patchify conv
    pool: str = "cls"  # 'cls': the class token; 'mean': the mean of the patch tokens
    qkv_bias: bool = True  # bias of the q, k, v projection
    fused_attention: bool = True  # F.scaled_dot_product_attention, else the manual path

    def __post_init__(self):
        for name in ("image_size", "patch_size", "in_channels", "dim", "depth", "num_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size={self.image_size} must be divisible by patch_size={self.patch_size}")
        if self.dim % self.num_heads:
            raise ConfigError(f"dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if self.mlp_ratio <= 0:
            raise ConfigError(f"mlp_ratio={self.mlp_ratio} must be > 0")
        for name in ("dropout", "attn_dropout", "drop_path"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1)")
        if self.conv_stem and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            raise ConfigError(f"conv_stem=True needs a power-of-two patch_size >= 2, got patch_size={self.patch_size}")
        choice(self.pool, POOLS, name="pool")

    @property
    def grid_size(self) -> int:
        """Patches per side at ``image_size``."""
        return self.image_size // self.patch_size

    @classmethod
    def preset(cls, name: str, **overrides) -> ViTConfig:
        """A named configuration (see ``VIT_PRESETS``) with keyword overrides.

        >>> ViTConfig.preset("tiny", depth=2).depth
        2
        """
        if name not in VIT_PRESETS:
            raise ConfigError(f"unknown ViT preset {name!r}; accepted: {', '.join(VIT_PRESETS)}")
        return make_config(cls, VIT_PRESETS[name], **overrides)


VIT_PRESETS: dict[str, dict] = {
    "tiny": dict(dim=96, depth=4, num_heads=3),  # ~0.46 M parameters: trains on a CPU
    "small_cpu": dict(dim=192, depth=6, num_heads=3),  # ~2.7 M: the dataclass defaults, a long CPU run
    "vit_ti": dict(dim=192, depth=12, num_heads=3, drop_path=0.1),  # DeiT-Ti width and depth, ~5.4 M
    "vit_s": dict(dim=384, depth=12, num_heads=6, drop_path=0.1),  # ViT-S / DeiT-S, ~21 M: a GPU model
}


class PatchEmbed(nn.Module):
    """(B, C, H, W) images -> (B, N, dim) patch tokens, N = (H / P) * (W / P).

    >>> PatchEmbed(8, 3, 96)(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 64, 96])
    """

    def __init__(self, patch_size: int, in_channels: int, dim: int, conv_stem: bool = False):
        super().__init__()
        self.patch_size = patch_size
        if not conv_stem:
            self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)  # one linear map per patch
            return
        n = int(math.log2(patch_size))
        layers, ch = [], in_channels
        for i in range(n):  # each conv halves H, W; widths double up to dim / 2
            out = max(dim >> (n - i), 8)
            layers += [nn.Conv2d(ch, out, 3, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            ch = out
        self.proj = nn.Sequential(*layers, nn.Conv2d(ch, dim, 1))

    def forward(self, x):
        H, W = x.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"input {H}x{W} is not divisible by patch_size={self.patch_size}")
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, dim, H/P, W/P) -> (B, N, dim)


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability p, scale the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype)
        return x * keep.bernoulli_(1.0 - self.p) / (1.0 - self.p)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``, (B, T, dim) -> (B, T, dim)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, dropout: float = 0.0,
                 attn_dropout: float = 0.0, drop_path: float = 0.0, fused: bool = True):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.ln1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads, qkv_bias, attn_dropout, dropout, fused)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.ln1(x)))
        return x + self.drop_path(self.mlp(self.ln2(x)))


class VisionTransformer(nn.Module):
    """ViT classifier: patch embedding, class token, position embeddings, blocks, LayerNorm, linear head.

    Args:
        num_classes: number of identities; 0 = no head (``forward`` returns the features).
        config: a ``ViTConfig``, a preset name (``VIT_PRESETS``) or a mapping; None = the defaults.
        **overrides: fields of ``ViTConfig`` replacing those of `config` (a typo is a ConfigError).

    >>> model = VisionTransformer(num_classes=10, config="tiny", depth=2)
    >>> x = torch.zeros(2, 3, 64, 64)
    >>> model(x).shape, model.features(x).shape
    (torch.Size([2, 10]), torch.Size([2, 96]))
    >>> [a.shape for a in model.attention_maps(x)][0]  # (B, nh, 1 + N, 1 + N)
    torch.Size([2, 3, 65, 65])
    """

    def __init__(self, num_classes: int, config: ViTConfig | str | Mapping | None = None, **overrides):
        super().__init__()
        self.config = c = config_from(ViTConfig, config, **overrides)
        self.num_classes, self.feature_dim, self.num_prefix_tokens = num_classes, c.dim, 1
        self.patch_embed = PatchEmbed(c.patch_size, c.in_channels, c.dim, c.conv_stem)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + c.grid_size ** 2, c.dim))  # (1, 1 + N, dim)
        self.pos_drop = nn.Dropout(c.dropout)
        rates = [c.drop_path * i / max(c.depth - 1, 1) for i in range(c.depth)]
        self.blocks = nn.ModuleList(
            Block(c.dim, c.num_heads, c.mlp_ratio, c.qkv_bias, c.dropout, c.attn_dropout, r, c.fused_attention)
            for r in rates)
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, num_classes) if num_classes > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self):
        """trunc_normal(std 0.02) for the class token, position embeddings and Linear weights; zero biases;
        LayerNorm ones / zeros. Convolutions and batch norms keep torch's defaults."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _pos_embed_for(self, gh: int, gw: int) -> torch.Tensor:
        """The position embedding for a gh x gw patch grid, bicubically resized if it differs from training's."""
        g = self.config.grid_size
        if (gh, gw) == (g, g):
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patch_pos = patch_pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)  # (1, dim, g, g)
        patch_pos = F.interpolate(patch_pos, size=(gh, gw), mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, patch_pos.flatten(2).transpose(1, 2)], dim=1)  # (1, 1 + gh*gw, dim)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1 + N, dim) normalised tokens after the last block (class token first)."""
        B, _, H, W = x.shape
        p = self.config.patch_size
        t = self.patch_embed(x)  # (B, N, dim)
        t = torch.cat([self.cls_token.expand(B, -1, -1), t], dim=1)  # (B, 1 + N, dim)
        t = self.pos_drop(t + self._pos_embed_for(H // p, W // p))
        for block in self.blocks:
            t = block(t)
        return self.norm(t)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, dim) features: the class token, or the mean patch token if pool='mean'."""
        t = self.tokens(x)
        return t[:, 0] if self.config.pool == "cls" else t[:, self.num_prefix_tokens:].mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes) logits

    def attention_modules(self) -> list[MultiHeadSelfAttention]:
        """The attention of every block, first to last."""
        return [b.attn for b in self.blocks]

    def set_fused(self, fused: bool) -> VisionTransformer:
        """Switch every block between ``F.scaled_dot_product_attention`` and the manual path; returns self."""
        for attn in self.attention_modules():
            attn.fused = fused
        return self

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every block, a list of ``depth`` tensors (B, nh, 1 + N, 1 + N).

        Runs the manual path once (in the current train/eval mode: call ``eval()`` first to avoid dropout),
        then restores each block's previous setting.
        """
        modules = self.attention_modules()
        saved = [(m.store_attention, m.last_attention) for m in modules]
        try:
            for m in modules:
                m.store_attention = True
            self.tokens(x)
            return [m.last_attention for m in modules]
        finally:
            for m, (store, last) in zip(modules, saved):
                m.store_attention, m.last_attention = store, last


__all__ = ["ViTConfig", "VIT_PRESETS", "PatchEmbed", "DropPath", "Block", "VisionTransformer",
           "attention_rollout", "cls_attention_map"]
