"""Magnitude pruning: zero the smallest weights of the whole network (global, unstructured) and make it permanent.

``torch.nn.utils.prune.global_unstructured`` ranks |w| over all the chosen layers together and masks
the smallest `amount`; :func:`global_magnitude_prune` then removes the masks (``prune.remove``) so the
zeros are plain weights. Dense kernels still multiply by those zeros: a pruned model is no faster and,
saved as a dense state dict, no smaller (the notebook measures both); only sparse formats or structured
pruning (whole channels) turn sparsity into speed.

>>> net = global_magnitude_prune(nn.Sequential(nn.Linear(10, 10)), 0.3)
>>> round(sparsity(net), 2)
0.3
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune

PRUNABLE = (nn.Conv2d, nn.Linear)


def _weights(model: nn.Module, layer_types) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, tuple(layer_types))
            and isinstance(getattr(m, "weight", None), torch.Tensor)]


def global_magnitude_prune(model: nn.Module, amount: float, layer_types=PRUNABLE) -> nn.Module:
    """A copy of `model` whose `amount` fraction of smallest-magnitude weights (over all `layer_types`) are 0.

    Args:
        model: left unchanged.
        amount: fraction in [0, 1) of the weights of `layer_types` set to zero (biases are kept).
        layer_types: the layers whose weights are ranked together.
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount={amount} must be in [0, 1)")
    pruned = copy.deepcopy(model)
    params = _weights(pruned, layer_types)
    if not params:
        raise ValueError(f"the model has no layer of type {[t.__name__ for t in layer_types]} to prune")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in params:
        prune.remove(module, name)  # weight = weight_orig * mask, as a plain parameter
    return pruned


def sparsity(model: nn.Module, layer_types=PRUNABLE) -> float:
    """Fraction of exactly-zero weights in the layers of `layer_types`."""
    weights = [m.weight for m, _ in _weights(model, layer_types)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total if total else 0.0


__all__ = ["global_magnitude_prune", "sparsity", "PRUNABLE"]
