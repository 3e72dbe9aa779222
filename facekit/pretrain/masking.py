"""Random patch masking for masked image modelling (He et al. 2022, MAE), and patchify / unpatchify.

Per sample, every patch gets uniform noise; sorting the noise shuffles the patches, the first
``N - round(ratio * N)`` of the shuffle are kept (visible) and the rest are masked. ``ids_restore``
is the inverse permutation: gathering ``[visible, mask tokens]`` with it puts every token back at its
own place, which is what the MAE decoder does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from facekit.config import ConfigError


@dataclass(frozen=True)
class PatchMask:
    """One random mask per sample of a batch of B images cut into N patches."""

    ids_keep: torch.Tensor  # (B, K) int64: indices of the visible patches, K = N - num_masked
    ids_restore: torch.Tensor  # (B, N) int64: inverse of the shuffle; x_shuffled.gather(ids_restore) = x
    mask: torch.Tensor  # (B, N) float: 1 = masked (hidden from the encoder, reconstructed), 0 = visible

    @property
    def num_masked(self) -> int:
        return self.mask.shape[1] - self.ids_keep.shape[1]


def num_masked_patches(num_patches: int, mask_ratio: float) -> int:
    """``round(mask_ratio * num_patches)``, leaving at least one visible patch.

    >>> num_masked_patches(16, 0.75), num_masked_patches(49, 0.75)
    (12, 37)
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ConfigError(f"mask_ratio={mask_ratio} must be in [0, 1): at least one patch must stay visible")
    if num_patches < 1:
        raise ValueError(f"num_patches={num_patches} must be >= 1")
    return min(int(round(mask_ratio * num_patches)), num_patches - 1)


def random_masking(batch_size: int, num_patches: int, mask_ratio: float, *, device=None,
                   generator: torch.Generator | None = None) -> PatchMask:
    """A fresh random mask per sample: ``round(mask_ratio * num_patches)`` masked patches in each row.

    >>> m = random_masking(2, 16, 0.75, generator=torch.Generator().manual_seed(0))
    >>> m.ids_keep.shape, m.mask.sum(1).tolist()
    (torch.Size([2, 4]), [12.0, 12.0])
    """
    n_mask = num_masked_patches(num_patches, mask_ratio)
    keep = num_patches - n_mask
    noise = torch.rand(batch_size, num_patches, generator=generator)  # (B, N) on CPU: reproducible everywhere
    ids_shuffle = noise.argsort(dim=1)  # ascending: the smallest noise is kept
    ids_restore = ids_shuffle.argsort(dim=1)
    mask = torch.ones(batch_size, num_patches)
    mask[:, :keep] = 0.0
    mask = mask.gather(1, ids_restore)  # back to patch order
    return PatchMask(ids_shuffle[:, :keep].to(device), ids_restore.to(device), mask.to(device))


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``x[b, ids[b]]`` for every b: (B, N, D) tokens and (B, K) indices -> (B, K, D)."""
    return x.gather(1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, P*P*C) patches in row-major order, each flattened as (P, P, C) like MAE.

    >>> patchify(torch.zeros(2, 3, 32, 32), 8).shape
    torch.Size([2, 16, 192])
    """
    B, C, H, W = images.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"images {H}x{W} are not divisible by patch_size={p}")
    x = images.reshape(B, C, H // p, p, W // p, p)
    x = torch.einsum("nchpwq->nhwpqc", x)  # (B, H/p, W/p, p, p, C)
    return x.reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int, grid_hw: tuple[int, int] | None = None
               ) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, N, P*P*C) -> (B, C, H, W); a square grid unless `grid_hw` is given.

    >>> x = torch.rand(2, 3, 32, 16)
    >>> torch.equal(unpatchify(patchify(x, 8), 8, 3, (4, 2)), x)
    True
    """
    B, N, D = patches.shape
    p, C = patch_size, channels
    if D != p * p * C:
        raise ValueError(f"patches of width {D} do not match patch_size={p} and channels={C}")
    if grid_hw is None:
        g = int(round(N ** 0.5))
        if g * g != N:
            raise ValueError(f"{N} patches do not form a square grid; pass grid_hw")
        grid_hw = (g, g)
    h, w = grid_hw
    x = patches.reshape(B, h, w, p, p, C)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(B, C, h * p, w * p)


def mask_image(images: torch.Tensor, mask: torch.Tensor, patch_size: int, fill: float = 0.5) -> torch.Tensor:
    """`images` with the masked patches (mask 1) replaced by `fill`, for showing what the encoder sees."""
    patches = patchify(images, patch_size)
    patches = torch.where(mask.bool().unsqueeze(-1), torch.full_like(patches, fill), patches)
    B, C, H, W = images.shape
    return unpatchify(patches, patch_size, C, (H // patch_size, W // patch_size))


__all__ = ["PatchMask", "num_masked_patches", "random_masking", "gather_tokens", "patchify", "unpatchify",
           "mask_image"]
