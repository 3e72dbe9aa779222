"""Chapter 1: pick a trained filter of any convolution layer, see its feature map on a face, and the receptive
field of one output unit drawn on the input.

The feature maps of every convolution are computed in one forward pass (forward hooks) when the exploration is
built. The receptive field of a unit is the set of input pixels its value depends on: the pixels with a non-zero
gradient in a copy of the network made *positive and linear* (weights replaced by their absolute values, biases
and batch-norm shifts removed, max pooling replaced by average pooling, input of ones), so that no ReLU or
max-pool hides a path. That works for any architecture, residual ones included; for a plain chain it equals the
textbook recursion ``r_out = r_in + (k - 1) * jump_in``, ``jump_out = jump_in * stride`` (tested). It is
computed once per layer for the centre unit and slid with the unit (:class:`FieldTemplate`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facekit.config import ConfigError
from facekit.explore.core import Choice, Exploration, Slider

__all__ = ["FeatureMaps", "FieldTemplate", "conv_layers", "feature_maps", "receptive_field", "field_templates",
           "draw_conv",
           "explore_conv"]


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the model's ``nn.Conv2d`` modules, in definition order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _module(model: nn.Module, name: str) -> nn.Module:
    names = conv_layers(model)
    if name not in names:
        raise ConfigError(f"layer={name!r} is not a convolution of this model; use one of: {', '.join(names)}")
    return dict(model.named_modules())[name]


@dataclass(frozen=True)
class FeatureMaps:
    image: torch.Tensor  # (C, H, W) the input face
    maps: dict  # layer name -> (C_out, h, w) the convolution's output (before any activation)
    weights: dict  # layer name -> (C_out, C_in, k, k) the filters


class _Stop(Exception):
    pass


@torch.no_grad()
def feature_maps(model: nn.Module, image: torch.Tensor) -> FeatureMaps:
    """The output of every convolution for one (C, H, W) image, from one forward pass (eval mode)."""
    image = torch.as_tensor(image).detach().cpu().float()
    if image.ndim != 3:
        raise ValueError(f"expected one (C, H, W) image, got shape {tuple(image.shape)}")
    names = conv_layers(model)
    if not names:
        raise ConfigError(f"{type(model).__name__} has no nn.Conv2d layer to explore")
    out = {}
    modules = dict(model.named_modules())
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: out.__setitem__(n, o[0].detach().cpu()))
             for n in names]
    was_training = model.training
    model.eval()
    try:
        model(image[None].to(next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return FeatureMaps(image.cpu(), out, {n: modules[n].weight.detach().cpu() for n in names})


def _positive_linear(model: nn.Module) -> nn.Module:
    """A float64 copy whose every path is open: |weights|, no biases, BN as identity, max pool as average pool."""
    net = copy.deepcopy(model).double().eval().cpu()
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.data = m.weight.data.abs() + 1e-3  # strictly positive: a zero weight does not cut a path
            if m.bias is not None:
                m.bias.data.zero_()
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()  # running mean 0, var 1, weight 1, bias 0: identity up to eps
        elif isinstance(m, nn.MaxPool2d):
            m.register_forward_hook(lambda mod, inp, out: F.avg_pool2d(inp[0], mod.kernel_size, mod.stride,
                                                                        mod.padding, ceil_mode=mod.ceil_mode))
    return net


def _unit_grad(model: nn.Module, image: torch.Tensor, layer: str, channel: int, row: int, col: int) -> torch.Tensor:
    """d output[channel, row, col] of ``layer`` / d input, for a (1, C, H, W) input; (C, H, W)."""
    x = image.clone().requires_grad_(True)
    captured = {}

    def hook(m, i, o):
        captured["o"] = o
        raise _Stop

    h = dict(model.named_modules())[layer].register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        h.remove()
    o = captured["o"]
    if not (0 <= channel < o.shape[1] and 0 <= row < o.shape[2] and 0 <= col < o.shape[3]):
        raise ConfigError(f"unit (channel {channel}, row {row}, col {col}) is outside {layer}'s output "
                          f"{tuple(o.shape[1:])}")
    (grad,) = torch.autograd.grad(o[0, channel, row, col], x)
    return grad[0]


def receptive_field(model: nn.Module, image_shape, layer: str, row: int, col: int, *, _net=None) -> np.ndarray:
    """(H, W) bool: the input pixels that output unit (row, col) of conv ``layer`` depends on (any channel).

    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, padding=1))
    >>> rf = receptive_field(net, (1, 16, 16), "2", 4, 4)
    >>> rows, cols = np.nonzero(rf); int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)  # 3+1+2*2
    (8, 8)
    """
    _module(model, layer)
    net = _net if _net is not None else _positive_linear(model)
    ones = torch.ones((1, *tuple(image_shape)), dtype=torch.float64)
    grad = _unit_grad(net, ones, layer, 0, row, col)
    return (grad.abs().sum(0) > 0).numpy()


@dataclass(frozen=True)
class FieldTemplate:
    """A layer's receptive field as a box that slides with the unit (convolutions are translation-equivariant)."""

    top: int  # box of unit (row0, col0) in input pixels, inclusive
    left: int
    bottom: int
    right: int
    row0: int
    col0: int
    jump: tuple  # (dy, dx) input pixels between neighbouring units
    size: tuple  # (H, W) of the input

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of unit (row, col), inclusive, clipped to the image."""
        dy, dx = round((row - self.row0) * self.jump[0]), round((col - self.col0) * self.jump[1])
        h, w = self.size
        return (max(self.top + dy, 0), max(self.left + dx, 0), min(self.bottom + dy, h - 1),
                min(self.right + dx, w - 1))


def field_templates(model: nn.Module, image_shape, fmaps: FeatureMaps) -> dict:
    """Per convolution layer, the receptive field of its centre unit (one gradient of the positive net each)."""
    net = _positive_linear(model)
    out = {}
    for layer, fmap in fmaps.maps.items():
        h, w = fmap.shape[1:]
        r0, c0 = h // 2, w // 2
        rows, cols = np.nonzero(receptive_field(model, image_shape, layer, r0, c0, _net=net))
        out[layer] = FieldTemplate(int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max()), r0, c0,
                                   (image_shape[-2] / h, image_shape[-1] / w), tuple(image_shape[-2:]))
    return out


def draw_conv(fig, fmaps: FeatureMaps, fields: dict, layer: str, filter: int, unit_row: float,
              unit_col: float) -> dict:
    """Input with the unit's receptive field (left), the filter's feature map (middle), the filter."""
    from matplotlib.patches import Rectangle

    fmap = fmaps.maps[layer]  # (C_out, h, w)
    c = min(int(filter), fmap.shape[0] - 1)
    h, w = fmap.shape[1:]
    r, q = int(round(unit_row * (h - 1))), int(round(unit_col * (w - 1)))
    y0, x0, y1, x1 = fields[layer].box(r, q)
    ax_i, ax_m, ax_k = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 0.6]})
    img = fmaps.image.permute(1, 2, 0).squeeze(-1).numpy()
    ax_i.imshow(img, cmap="gray", vmin=0, vmax=1)
    ax_i.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, color="cyan", lw=1.5))
    ax_i.set_title(f"receptive field {y1 - y0 + 1}x{x1 - x0 + 1} px", fontsize=9)
    ax_m.imshow(fmap[c].numpy(), cmap="magma")
    ax_m.add_patch(Rectangle((q - 0.5, r - 0.5), 1, 1, fill=False, color="cyan", lw=1.5))
    ax_m.set_title(f"{layer}, filter {c} of {fmap.shape[0]}: {h}x{w} map", fontsize=9)
    kernel = fmaps.weights[layer][c].mean(0).numpy()  # (k, k), averaged over the input channels
    lim = float(np.abs(kernel).max()) or 1.0
    ax_k.imshow(kernel, cmap="coolwarm", vmin=-lim, vmax=lim)
    ax_k.set_title(f"its {kernel.shape[0]}x{kernel.shape[1]} kernel\n(mean over inputs)", fontsize=8)
    for ax in (ax_i, ax_m, ax_k):
        ax.set_axis_off()
    return {"rf_box": (y0, x0, y1, x1), "unit": (r, q), "filter": c}


def explore_conv(model: nn.Module, image: torch.Tensor, *, layer: str | None = None) -> Exploration:
    """Layer, filter and output unit of a trained CNN against the feature map and the unit's receptive field.

    Args:
        model: any network with ``nn.Conv2d`` layers (ArticleCNN, SmallResNet, ...); image: (C, H, W) in [0, 1],
            the size the model expects.
        layer: the starting layer (default: the last convolution with a kernel larger than 1x1).
    """
    fmaps = feature_maps(model, image)
    names = conv_layers(model)
    fields = field_templates(model, tuple(fmaps.image.shape), fmaps)
    widest = max(fmaps.maps[n].shape[0] for n in names)
    spatial = [n for n in names if max(fmaps.weights[n].shape[-2:]) > 1]  # not a 1x1 projection
    start = (spatial or names)[-1] if layer is None else layer
    _module(model, start)
    return Exploration(
        lambda fig, layer, filter, unit_row, unit_col: draw_conv(fig, fmaps, fields, layer, filter,
                                                                 unit_row, unit_col),
        {"layer": Choice(tuple(names), start, description="layer"),
         "filter": Slider(0, widest - 1, 1, 0, integer=True, description="filter"),
         "unit_row": Slider(0.0, 1.0, 0.05, 0.5, description="unit row (fraction)"),
         "unit_col": Slider(0.0, 1.0, 0.05, 0.5, description="unit column (fraction)")},
        figsize=(7.6, 2.9),
        static_grid=[{"layer": names[0]}, {"layer": names[0], "filter": 1}, {"filter": 1}],
        grid_title="the first layer's filters 0 and 1 and the last layer's filter 1",
    )
