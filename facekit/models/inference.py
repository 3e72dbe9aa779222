"""Run a trained network over many images: :func:`embed`.

>>> net = torch.nn.Flatten()
>>> embed(net, torch.ones(5, 1, 2, 2), batch_size=2, device="cpu").shape
torch.Size([5, 4])
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from facekit.device import resolve_device

DEFAULT_BATCH = 256  # images per forward pass


@torch.no_grad()
def embed(model: Callable[[torch.Tensor], torch.Tensor], images, *, batch_size: int = DEFAULT_BATCH,
          device="auto", normalize: bool = False, transform: Callable | None = None) -> torch.Tensor:
    """(N, D) float32 outputs of ``model`` over (N, C, H, W) ``images``, ``batch_size`` at a time, on the CPU.

    Args:
        model: an ``nn.Module`` (moved to ``device`` and run in eval mode; its train/eval mode is restored
            afterwards) or any callable on a batch, e.g. ``net.features`` or an encoder function.
        images: a tensor (N, C, H, W), or a Dataset of ``(image, ...)`` items.
        batch_size: images per forward pass (>= 1).
        device: where the batches run ("auto", "cpu", "cuda", ...).
        normalize: L2-normalise each output row (unit vectors, for cosine scores).
        transform: applied to each batch on the CPU before it moves (e.g. uint8 -> float).

    Returns:
        (N, D) float32 on the CPU (outputs of more than two dimensions are returned as they come).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is not accepted; use a whole number >= 1")
    device = resolve_device(device)
    module = model if isinstance(model, nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.to(device).eval()
    try:
        outs = [_run(model, x, device, transform) for x in _batches(images, batch_size)]
    finally:
        if module is not None:
            module.train(was_training)
    if not outs:
        raise ValueError("embed got no images")
    out = torch.cat(outs)
    return F.normalize(out, dim=1) if normalize else out


def _batches(images, batch_size: int):
    if isinstance(images, torch.Tensor):
        for s in range(0, len(images), batch_size):
            yield images[s:s + batch_size]
        return
    from torch.utils.data import DataLoader

    for batch in DataLoader(images, batch_size=batch_size, shuffle=False):
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def _run(model, x: torch.Tensor, device: torch.device, transform) -> torch.Tensor:
    if transform is not None:
        x = transform(x)
    return model(x.to(device)).float().cpu()


__all__ = ["embed"]
