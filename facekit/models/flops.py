"""Counting the FLOPs of one forward pass with ``torch.utils.flop_counter.FlopCounterMode``.

A FLOP here is one multiply or one add: a multiply-accumulate (MAC) counts 2, so
``Linear(n_in, n_out)`` on B rows is ``2 * B * n_in * n_out`` FLOPs. torch counts the matrix
products and convolutions (``mm``, ``addmm``, ``bmm``, ``convolution``, the fused attention
kernels, ...), which dominate; causal attention counts as full attention, and element-wise
work (activations, norms, softmax, bias adds) is not counted. Papers that quote "FLOPs" for
ResNets and ViTs often mean MACs: divide by 2.
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """q k^T and weights @ v of an attention kernel, (B, nh, T, d) shapes: 2 * B nh T_q T_k (d_k + d_v)."""
    *batch, t_q, d_k = query_shape
    t_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * math.prod(batch) * t_q * t_k * (d_k + d_v)


# torch registers formulas for the CUDA attention kernels but not for the CPU flash kernel that
# F.scaled_dot_product_attention picks on the CPU (d_k == d_v, no mask), which would count as 0.
_EXTRA_FORMULAS = {getattr(torch.ops.aten, name): _sdpa_flops
                   for name in ("_scaled_dot_product_flash_attention_for_cpu",) if hasattr(torch.ops.aten, name)}


def _counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)


@contextlib.contextmanager
def _eval_no_grad(model: nn.Module):
    """Eval mode (so batch-norm statistics are not updated) and no autograd, restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _example_input(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    return torch.zeros(tuple(input_shape), device=device, dtype=dtype)


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs (2 per multiply-accumulate) of one forward pass of `model` on a zero tensor of `input_shape`.

    The model runs once, in eval mode and without gradients, on its own device; its mode is restored.

    >>> count_flops(nn.Linear(10, 4), (8, 10))  # 2 * 8 * 10 * 4
    640
    """
    x = _example_input(model, input_shape)
    with _eval_no_grad(model), _counter() as counter:
        model(x)
    return int(counter.get_total_flops())


def flops_by_module(model: nn.Module, input_shape: Sequence[int], depth: int = 1) -> dict[str, int]:
    """FLOPs per submodule of `model`, down to `depth` dots in the name (the model itself is ``"total"``).

    >>> net = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 4))
    >>> flops_by_module(net, (1, 10))
    {'total': 560, '0': 400, '2': 160}
    """
    x = _example_input(model, input_shape)
    with _eval_no_grad(model), _counter() as counter:
        model(x)
    counts = counter.get_flop_counts()
    root = type(model).__name__  # FlopCounterMode names the outer module by its class, submodules "Class.a.b"
    out = {"total": int(counter.get_total_flops())}
    for name, per_op in counts.items():
        if not name.startswith(root + "."):
            continue  # "Global" and the root itself: the total
        rel = name[len(root) + 1:]
        if rel.count(".") < depth:
            out[rel] = int(sum(per_op.values()))
    return out


__all__ = ["count_flops", "flops_by_module"]
