"""Chapter 8: int-k quantisation of face embeddings by hand, against their cosine to fp32 and verification accuracy.

Each embedding is stored as k-bit codes with an affine scale and zero point (the chapter's by-hand formula,
:func:`facekit.compress.quantize.affine_qparams` and :func:`~facekit.compress.quantize.fake_quantize` with
``qmin=0, qmax=2**k - 1``): one range for the whole matrix (``per-tensor``) or one per embedding
(``per-embedding``, what a face database would store). Every bits level is quantised and evaluated once.

>>> import torch
>>> emb = torch.randn(20, 8)
>>> codes, hat = quantize_embeddings(emb, bits=8)
>>> int(codes.max()) <= 255 and float((emb - hat).abs().max()) <= float(emb.max() - emb.min()) / 255 / 2 + 1e-6
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facekit.config import ConfigError
from facekit.explore.core import Choice, Exploration, Slider

__all__ = ["SCHEMES", "BitsSweep", "quantize_embeddings", "bits_sweep", "draw_bits", "explore_bits"]

SCHEMES = ("per-embedding", "per-tensor")
MAX_BITS = 16


def quantize_embeddings(emb, bits: int, scheme: str = "per-embedding") -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) float embeddings -> (codes (N, D) int64 in [0, 2^bits - 1], dequantised (N, D) float)."""
    from facekit.compress.quantize import affine_qparams, fake_quantize

    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= MAX_BITS:
        raise ConfigError(f"bits={bits!r} is not accepted; use an int in [1, {MAX_BITS}]")
    if scheme not in SCHEMES:
        raise ConfigError(f"scheme={scheme!r} is not accepted; use one of: {', '.join(SCHEMES)}")
    emb = torch.as_tensor(emb, dtype=torch.float32).detach().cpu()
    if emb.ndim != 2:
        raise ValueError(f"expected (N, D) embeddings, got shape {tuple(emb.shape)}")
    qmax = 2 ** int(bits) - 1
    rows = [emb] if scheme == "per-tensor" else list(emb)
    codes, hats = [], []
    for row in rows:
        scale, zero_point = affine_qparams(float(row.min()), float(row.max()), 0, qmax)
        q, hat = fake_quantize(row, scale, zero_point, 0, qmax)
        codes.append(q)
        hats.append(hat)
    if scheme == "per-tensor":
        return codes[0], hats[0]
    return torch.stack(codes), torch.stack(hats)


@dataclass(frozen=True)
class BitsSweep:
    bits: np.ndarray  # (B,) bit widths
    cosine: dict  # scheme -> (B,) mean cosine of each quantised embedding to its fp32 original
    accuracy: dict  # scheme -> (B,) k-fold verification accuracy of the quantised embeddings
    accuracy_std: dict  # scheme -> (B,) its standard deviation over the folds
    fp32_accuracy: float
    fp32_std: float
    example: torch.Tensor  # (D,) one fp32 embedding
    example_hat: dict  # (scheme, bits) -> (D,) that embedding dequantised


def bits_sweep(emb, pair_a, pair_b, is_same, bits=range(1, 9), folds=10) -> BitsSweep:
    """Quantise at every bit width and scheme once; cosine to fp32 and k-fold accuracy on the pairs.

    Args:
        emb: (N, D) fp32 embeddings; pair_a, pair_b: (P,) indices of each pair's two faces; is_same: (P,) bool.
        bits: the bit widths to evaluate; folds: what :func:`facekit.metrics.kfold_accuracy` accepts.
    """
    from facekit.metrics.verification import cosine_scores, kfold_accuracy

    emb = torch.as_tensor(emb, dtype=torch.float32).detach().cpu()
    a, b = np.asarray(pair_a), np.asarray(pair_b)
    bits = np.array(sorted(set(int(x) for x in bits)))
    if len(bits) == 0:
        raise ConfigError("bits must name at least one bit width")
    ref = kfold_accuracy(cosine_scores(emb[a].numpy(), emb[b].numpy()), is_same, folds=folds)
    cosine, accuracy, std, hats = {}, {}, {}, {}
    for scheme in SCHEMES:
        cosine[scheme], accuracy[scheme], std[scheme] = [], [], []
        for k in bits:
            _, hat = quantize_embeddings(emb, int(k), scheme)
            cosine[scheme].append(float(torch.nn.functional.cosine_similarity(hat, emb, dim=1).mean()))
            result = kfold_accuracy(cosine_scores(hat[a].numpy(), hat[b].numpy()), is_same, folds=folds)
            accuracy[scheme].append(result.mean)
            std[scheme].append(result.std)
            hats[(scheme, int(k))] = hat[0]
        cosine[scheme], accuracy[scheme], std[scheme] = map(np.array, (cosine[scheme], accuracy[scheme], std[scheme]))
    return BitsSweep(bits, cosine, accuracy, std, ref.mean, ref.std, emb[0], hats)


def draw_bits(fig, sweep: BitsSweep, bits: int, scheme: str) -> dict:
    """One embedding's values and their 2^bits levels (left); cosine and accuracy against bits (right)."""
    i = int(np.searchsorted(sweep.bits, bits))
    ax_v, ax_c = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
    x, hat = sweep.example.numpy(), sweep.example_hat[(scheme, int(bits))].numpy()
    shown = min(len(x), 64)
    ax_v.plot(np.arange(shown), x[:shown], ".", color="grey", ms=4, label="fp32")
    ax_v.step(np.arange(shown), hat[:shown], where="mid", color="tab:blue", lw=1, label=f"int{bits}")
    if bits <= 6:
        for level in np.unique(hat):
            ax_v.axhline(level, color="tab:blue", lw=0.3, alpha=0.5)
    ax_v.set(xlabel=f"dimension (first {shown})", ylabel="value",
             title=f"one embedding at {bits} bits ({2 ** bits} levels, {scheme})")
    ax_v.legend(fontsize=7, loc="upper right")
    cos, acc = sweep.cosine[scheme], sweep.accuracy[scheme]
    ax_c.plot(sweep.bits, cos, "o-", color="tab:blue", ms=3, label="cosine to fp32")
    ax_c.plot(sweep.bits, acc, "s-", color="tab:green", ms=3, label="verification accuracy")
    ax_c.axhline(sweep.fp32_accuracy, color="tab:green", ls=":", lw=1, label=f"fp32 accuracy {sweep.fp32_accuracy:.3f}")
    ax_c.axvline(bits, color="k", lw=1)
    ax_c.set(xlabel="bits per value", ylim=(min(0.45, float(np.nanmin(acc)) - 0.05), 1.02),
             title=f"{bits} bits: cosine {cos[i]:.4f}, accuracy {acc[i]:.3f}")
    ax_c.legend(fontsize=7, loc="lower right")
    for ax in (ax_v, ax_c):
        ax.title.set_fontsize(9)
    return {"bits": int(bits), "cosine": float(cos[i]), "accuracy": float(acc[i])}


def explore_bits(emb, pair_a, pair_b, is_same, *, folds=10, bits: int = 4, max_bits: int = 8) -> Exploration:
    """A bits slider (1 to ``max_bits``) and a scheme choice against embedding cosine and verification accuracy.

    Args:
        emb: (N, D) fp32 face embeddings; pair_a, pair_b: (P,) pair indices; is_same: (P,) bool; folds: as
            :func:`facekit.metrics.kfold_accuracy`. bits: the starting bit width.
    """
    sweep = bits_sweep(emb, pair_a, pair_b, is_same, range(1, max_bits + 1), folds)
    return Exploration(
        lambda fig, bits, scheme: draw_bits(fig, sweep, bits, scheme),
        {"bits": Slider(1, max_bits, 1, bits, integer=True, description="bits"),
         "scheme": Choice(SCHEMES, SCHEMES[0], description="range")},
        figsize=(8.4, 3.0),
        static_grid=[{"bits": k} for k in (2, 3, 8) if k <= max_bits],
        grid_title="2, 3 and 8 bits",
    )
