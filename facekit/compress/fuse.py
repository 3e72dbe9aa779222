"""Fold inference-mode batch norms into the convolution or linear layer before them.

In eval mode a batch norm is a per-channel affine map, ``y = gamma * (x - mean) / sqrt(var + eps) + beta``;
after a convolution (or a linear layer) it can be folded into that layer's weights and bias:
``w' = w * gamma / sqrt(var + eps)`` per output channel, ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``
(``torch.nn.utils.fusion.fuse_conv_bn_eval`` / ``fuse_linear_bn_eval``). The network computes the same
function with one layer less; a statically quantised network then has the batch norm's offset inside its
int8 convolution (one float op less between two quantised layers, and the output range observed where it
is produced).

:func:`fold_batchnorm` folds, inside every module, each ``BatchNorm2d`` (``BatchNorm1d``) registered
**right after** a ``Conv2d`` (``Linear``) sibling, as in facenet-pytorch's ``BasicConv2d`` (conv, bn, relu)
and ``last_linear`` / ``last_bn``. Registration order is not always the order of the forward pass, so pass
``example`` to have the outputs compared: a difference raises instead of returning a different network.

>>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
>>> folded, count = fold_batchnorm(net, example=torch.randn(2, 3, 8, 8))
>>> count, type(folded[1]).__name__
(1, 'Identity')
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

FOLDABLE = ((nn.Conv2d, nn.BatchNorm2d), (nn.Linear, nn.BatchNorm1d))  # (layer, the batch norm that may follow it)


def _fold_children(module: nn.Module) -> int:
    count = 0
    children = list(module.named_children())
    for (name, layer), (bn_name, bn) in zip(children, children[1:]):
        for layer_type, bn_type in FOLDABLE:
            if type(layer) is layer_type and type(bn) is bn_type and bn.num_features == layer.weight.shape[0] \
                    and bn.track_running_stats:
                fused = fuse_conv_bn_eval(layer, bn) if layer_type is nn.Conv2d else fuse_linear_bn_eval(layer, bn)
                setattr(module, name, fused)
                setattr(module, bn_name, nn.Identity())
                count += 1
    for _, child in module.named_children():
        count += _fold_children(child)
    return count


def fold_batchnorm(model: nn.Module, *, example: torch.Tensor | None = None,
                   atol: float = 1e-4) -> tuple[nn.Module, int]:
    """A copy of ``model`` (eval mode) with batch norms folded into the layer before them; also their number.

    Args:
        model: a float model (left unchanged).
        example: an input batch; when given, the outputs of ``model`` and the copy are compared and a largest
            absolute difference above ``atol`` raises ``ValueError`` (a batch norm that is not applied
            right after the layer registered before it).
        atol: the tolerance of that comparison.

    Returns:
        ``(folded copy, number of batch norms folded)``; each folded batch norm is an ``nn.Identity``.
    """
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        count = _fold_children(folded)
    if example is not None:
        with torch.inference_mode():
            diff = float((model.eval()(example) - folded(example)).abs().max())
        if not diff <= atol:
            raise ValueError(f"folding {count} batch norms changed the output by up to {diff:.2e} > atol={atol}: "
                             f"a batch norm is not applied right after the layer registered before it")
    return folded, count


__all__ = ["fold_batchnorm", "FOLDABLE"]
