"""Images per second: inference timed with ``time.perf_counter`` after a warm-up, training from ``fit``'s history.

Timings on a shared machine are noisy: ``inference_throughput`` keeps the fastest of ``repeats``
timed passes (as ``timeit`` does), the one least disturbed by other work.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from facekit.device import resolve_device


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def inference_throughput(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256, warmup_batches: int = 1,
                         repeats: int = 1, device="auto") -> float:
    """Images per second of ``model(images)`` in eval mode without gradients.

    Args:
        model: the network; moved to `device`, its train/eval mode restored afterwards.
        images: ``(N, C, H, W)`` inputs, cut into batches of `batch_size` (the host-to-device copy is timed too).
        batch_size: images per forward pass.
        warmup_batches: untimed batches first (allocator, kernel selection, caches).
        repeats: timed passes over all of `images`; the fastest counts.
        device: 'auto', 'cpu', 'cuda', ...

    Returns:
        ``N / seconds`` of the fastest timed pass.

    >>> ips = inference_throughput(nn.Linear(8, 2), torch.zeros(64, 8), batch_size=16, device="cpu")
    >>> ips > 0
    True
    """
    if images.ndim < 2 or len(images) == 0:
        raise ValueError(f"images must be a non-empty batch (N, ...), got shape {tuple(images.shape)}")
    if batch_size < 1 or repeats < 1 or warmup_batches < 0:
        raise ValueError(f"need batch_size >= 1, repeats >= 1, warmup_batches >= 0; got {batch_size}, {repeats}, "
                         f"{warmup_batches}")
    device = resolve_device(device)
    was_training = model.training
    model.to(device).eval()
    try:
        batches = images.split(batch_size)  # (<= batch_size, C, H, W) views, no copy
        for b in batches[:warmup_batches]:
            model(b.to(device))
        _synchronize(device)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for b in batches:
                model(b.to(device))
            _synchronize(device)
            best = min(best, time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return len(images) / max(best, 1e-12)


def train_throughput(history, num_train: int) -> float:
    """Training images per second of a ``fit`` run: ``num_train * epochs / sum of the epochs' time_s``.

    ``time_s`` of an epoch covers its training steps and its validation pass (not the callbacks), so
    this slightly underestimates the pure training speed when there is a validation set.

    >>> from facekit.train import History
    >>> train_throughput(History([{"time_s": 1.0}, {"time_s": 2.0}]), num_train=30)
    20.0
    """
    seconds = [r["time_s"] for r in history.records]
    if not seconds:
        raise ValueError("the history has no epochs: nothing was trained")
    if num_train < 1:
        raise ValueError(f"num_train={num_train} must be >= 1")
    return num_train * len(seconds) / max(sum(seconds), 1e-12)


__all__ = ["inference_throughput", "train_throughput"]
