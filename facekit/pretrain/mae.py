"""A masked autoencoder (He et al. 2022, MAE) whose encoder is a plain facekit ``VisionTransformer``.

Most patches of each image are hidden; the encoder sees only the visible ones (no mask tokens, so it
is cheap); a light decoder gets the encoded visible tokens plus a shared learned *mask token* at every
hidden position and predicts the pixels of every patch; the loss is the mean squared error on the
**masked patches only**, optionally against per-patch normalised pixels (``norm_pix_loss``). After
pretraining the decoder is thrown away and ``mae.encoder`` is a ready ViT backbone for fine-tuning
(``facekit.pretrain.save_pretrained(mae.encoder, ...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple

import torch
from torch import nn

from facekit.config import ConfigError, config_from
from facekit.models.vit import Block, VisionTransformer, ViTConfig
from facekit.pretrain.masking import PatchMask, gather_tokens, patchify, random_masking, unpatchify

NORM_PIX_EPS = 1e-6  # added to the per-patch variance of the normalised-pixel target (MAE's value)


@dataclass(frozen=True)
class MAEConfig:
    mask_ratio: float = 0.75  # fraction of the patches hidden from the encoder, per image
    decoder_dim: int = 64  # width of the decoder's tokens (MAE: 512 for ViT-B; light on purpose)
    decoder_depth: int = 2  # transformer blocks in the decoder (MAE: 8)
    decoder_heads: int = 4  # attention heads per decoder block; must divide decoder_dim
    norm_pix_loss: bool = False  # target = each patch's pixels standardised by its own mean and variance

    def __post_init__(self):
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio={self.mask_ratio} must be in [0, 1)")
        for name in ("decoder_dim", "decoder_depth", "decoder_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.decoder_dim % self.decoder_heads:
            raise ConfigError(f"decoder_dim={self.decoder_dim} must be divisible by decoder_heads={self.decoder_heads}")


class MAEOutput(NamedTuple):
    loss: torch.Tensor  # () mean squared error over the masked patches
    pred: torch.Tensor  # (B, N, P*P*C) predicted patches (in the target's space: normalised if norm_pix_loss)
    mask: PatchMask  # the mask used


class MaskedAutoencoder(nn.Module):
    """MAE with a facekit ViT encoder and a light transformer decoder.

    Args:
        encoder: a ``VisionTransformer`` (its head is not used), or a ``ViTConfig`` / preset name / mapping
            to build one with ``num_classes=0``. Must use the patchify convolution (``conv_stem=False``):
            a conv stem's overlapping 3x3 kernels would carry hidden pixels into visible tokens.
        config: an ``MAEConfig`` or a mapping of its fields; None = the defaults.
        **overrides: fields of ``MAEConfig`` (a typo is a ConfigError naming it).

    >>> mae = MaskedAutoencoder({"image_size": 32, "patch_size": 8, "dim": 48, "depth": 1, "num_heads": 2},
    ...                         decoder_dim=32, decoder_depth=1)
    >>> out = mae(torch.rand(2, 3, 32, 32))
    >>> out.pred.shape, out.mask.mask.sum(1).tolist(), out.loss.ndim
    (torch.Size([2, 16, 192]), [12.0, 12.0], 0)
    """

    def __init__(self, encoder: VisionTransformer | ViTConfig | str | Mapping | None = None,
                 config: MAEConfig | Mapping | None = None, **overrides):
        super().__init__()
        if not isinstance(encoder, VisionTransformer):
            encoder = VisionTransformer(0, encoder)
        if encoder.config.conv_stem:
            raise ConfigError("MaskedAutoencoder needs an encoder with conv_stem=False: the conv stem's overlapping "
                              "kernels would leak the pixels of masked patches into visible tokens")
        self.encoder = encoder
        self.config = c = config_from(MAEConfig, config, **overrides)
        e = encoder.config
        self.patch_size, self.in_channels = e.patch_size, e.in_channels
        self.num_patches = e.grid_size ** 2
        self.decoder_embed = nn.Linear(e.dim, c.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 1 + self.num_patches, c.decoder_dim))
        self.decoder_blocks = nn.ModuleList(Block(c.decoder_dim, c.decoder_heads, e.mlp_ratio, fused=e.fused_attention)
                                            for _ in range(c.decoder_depth))
        self.decoder_norm = nn.LayerNorm(c.decoder_dim)
        self.decoder_pred = nn.Linear(c.decoder_dim, e.patch_size ** 2 * e.in_channels)
        self._init_decoder()

    def _init_decoder(self):
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos_embed, std=0.02)
        for m in [self.decoder_embed, self.decoder_pred, *self.decoder_blocks.modules()]:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def random_mask(self, batch_size: int, generator: torch.Generator | None = None,
                    mask_ratio: float | None = None) -> PatchMask:
        """A fresh ``PatchMask`` for `batch_size` images at ``config.mask_ratio`` (or `mask_ratio`)."""
        ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        return random_masking(batch_size, self.num_patches, ratio, device=self.mask_token.device, generator=generator)

    def forward_encoder(self, images: torch.Tensor, mask: PatchMask) -> torch.Tensor:
        """(B, C, H, W) images -> (B, 1 + K, dim): the class token and the K visible patches, encoded.

        The patchify convolution maps each patch on its own, so embedding every patch and then keeping
        the visible ones equals embedding only the visible ones; masked patches never reach a block.
        """
        enc = self.encoder
        if images.shape[-2:] != (enc.config.image_size,) * 2:
            raise ValueError(f"MAE expects {enc.config.image_size}x{enc.config.image_size} images, "
                             f"got {tuple(images.shape[-2:])}")
        t = enc.patch_embed(images) + enc.pos_embed[:, 1:]  # (B, N, dim)
        t = gather_tokens(t, mask.ids_keep)  # (B, K, dim): the visible patches only
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(t.shape[0], -1, -1)  # (B, 1, dim)
        t = enc.pos_drop(torch.cat([cls, t], dim=1))  # (B, 1 + K, dim)
        for block in enc.blocks:
            t = block(t)
        return enc.norm(t)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """(B, 1 + K, dim) encoded tokens -> (B, N, P*P*C) predicted patches in patch order."""
        x = self.decoder_embed(latent)  # (B, 1 + K, dd)
        B, N = ids_restore.shape
        masks = self.mask_token.expand(B, N - (x.shape[1] - 1), -1)  # (B, N - K, dd)
        x_ = torch.cat([x[:, 1:], masks], dim=1)  # (B, N, dd) in shuffled order: visible first
        x_ = gather_tokens(x_, ids_restore)  # (B, N, dd) back in patch order
        x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed  # (B, 1 + N, dd)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # drop the class token

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, P*P*C) reconstruction targets: the patches' pixels, standardised per patch if norm_pix_loss."""
        target = patchify(images, self.patch_size)
        if self.config.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + NORM_PIX_EPS).sqrt()
        return target

    def loss(self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error per patch, averaged over the **masked** patches only (mask (B, N), 1 = masked)."""
        per_patch = ((pred - self.targets(images)) ** 2).mean(dim=-1)  # (B, N)
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)

    def forward(self, images: torch.Tensor, mask: PatchMask | None = None,
                generator: torch.Generator | None = None) -> MAEOutput:
        """Mask (a fresh random mask unless `mask` is given), encode, decode, and score the hidden patches."""
        if mask is None:
            mask = self.random_mask(images.shape[0], generator)
        pred = self.forward_decoder(self.forward_encoder(images, mask), mask.ids_restore)
        return MAEOutput(self.loss(images, pred, mask.mask), pred, mask)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor,
                    paste_visible: bool = True) -> torch.Tensor:
        """(B, C, H, W) pictures of the prediction, clamped to [0, 1].

        With ``norm_pix_loss`` the predictions are standardised patches; to draw them each is rescaled with the
        *true* patch's mean and standard deviation (as in the MAE paper's figures), so the picture shows the
        predicted structure, not a predicted colour. With `paste_visible` the visible patches are the originals.
        """
        patches = patchify(images, self.patch_size)
        if self.config.norm_pix_loss:
            mean, var = patches.mean(dim=-1, keepdim=True), patches.var(dim=-1, keepdim=True)
            pred = pred * (var + NORM_PIX_EPS).sqrt() + mean
        if paste_visible:
            pred = torch.where(mask.bool().unsqueeze(-1), pred, patches)
        H, W = images.shape[-2:]
        out = unpatchify(pred, self.patch_size, self.in_channels, (H // self.patch_size, W // self.patch_size))
        return out.clamp(0.0, 1.0)


__all__ = ["MAEConfig", "MAEOutput", "MaskedAutoencoder", "NORM_PIX_EPS"]
