"""The pieces every loop of :mod:`facekit.train` shares: loaders, the forward call, autocast, the dry-run cap."""

from __future__ import annotations

import contextlib
import itertools
from typing import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from facekit.profiles import max_steps
from facekit.train.seed import epoch_seed

Forward = Callable[[nn.Module, object, torch.device], tuple]  # (model, batch, device) -> (outputs, targets)


def default_forward(model: nn.Module, batch, device: torch.device):
    """``(model(x), y)`` for a batch ``(x, y, ...)``, both moved to ``device``."""
    x, y = batch[0], batch[1]
    x = x.to(device, non_blocking=True)
    y = y.to(device, non_blocking=True)
    return model(x), y


def autocast_for(device: torch.device, amp: str):
    """(context-manager factory, GradScaler or None) for the requested mixed precision.

    ``auto`` is bf16 on CUDA when supported (fp16 with a scaler otherwise) and off elsewhere.
    """
    mode = amp
    if amp == "auto":
        if device.type != "cuda":
            mode = "off"
        else:
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode == "off":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None
    return (lambda: torch.autocast(device_type=device.type, dtype=dtype)), scaler


def make_loader(data, *, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
                num_workers: int = 0, device: torch.device | None = None) -> Iterable:
    """The batches of one epoch of ``data``.

    Args:
        data: a Dataset (batched here; shuffled with a generator seeded from ``(seed, epoch)``, so a
            resumed run draws the same order), a DataLoader (used as it is), or a function
            ``epoch -> iterable of batches`` (the caller decides each epoch's order).
    Raises:
        TypeError: anything else.
    """
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Dataset):
        gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        sampler = RandomSampler(data, generator=gen) if shuffle else None
        return DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                          pin_memory=device is not None and device.type == "cuda", persistent_workers=False)
    if callable(data):
        return data(epoch)
    raise TypeError(f"expected a torch Dataset or DataLoader (or a function epoch -> batches), "
                    f"got {type(data).__name__}")


def batch_size_of(batch) -> int | None:
    """Examples in ``batch`` (the length of its first tensor), or None when it cannot tell."""
    first = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    return len(first) if isinstance(first, torch.Tensor) and first.dim() > 0 else None


def capped(batches: Iterable, limit: int | None = None) -> Iterator:
    """At most ``limit`` batches (default: the dry-run cap :func:`facekit.profiles.max_steps`, None = all)."""
    limit = max_steps() if limit is None else limit
    return iter(batches) if limit is None else itertools.islice(batches, limit)


__all__ = ["default_forward", "autocast_for", "make_loader", "batch_size_of", "capped"]
