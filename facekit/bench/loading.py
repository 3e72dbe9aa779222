"""Data-loading overlap: does the input pipeline keep the model busy? Workers and pinned memory, measured.

A training step waits for its batch. With ``num_workers=0`` the main process decodes and
augments every batch between steps; with workers, other processes prepare the next batches while
the device computes. ``pin_memory=True`` puts batches in page-locked host memory, from which a
GPU copies asynchronously (``.to(device, non_blocking=True)``); on the CPU there is nothing to copy.
:class:`SyntheticImages` stands in for a decoded image folder: each item costs real CPU work
(seeded random uint8 pixels, a random flip, a conversion to float), as decoding and augmenting would.

>>> ds = SyntheticImages(num_images=4, image_size=8)
>>> x, y = ds[1]
>>> x.shape, x.dtype, 0.0 <= float(x.min()) and float(x.max()) <= 1.0
(torch.Size([3, 8, 8]), torch.float32, True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from facekit.device import resolve_device


class SyntheticImages(Dataset):
    """`num_images` RGB images of ``image_size`` pixels, made on the fly (the same for an index), label: index % 10."""

    def __init__(self, num_images: int, image_size: int, num_classes: int = 10):
        if num_images < 1 or image_size < 1:
            raise ValueError(f"num_images={num_images} and image_size={image_size} must be >= 1")
        self.num_images, self.image_size, self.num_classes = num_images, image_size, num_classes

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        pixels = torch.randint(0, 256, (3, self.image_size, self.image_size), generator=g, dtype=torch.uint8)
        if torch.rand((), generator=g) < 0.5:
            pixels = pixels.flip(-1)  # the augmentation
        return pixels.float().div_(255.0), i % self.num_classes  # (3, S, S) in [0, 1]


@dataclass(frozen=True)
class LoaderResult:
    num_workers: int
    pin_memory: bool
    images_per_s: float  # nan when skipped
    seconds: float  # median seconds per epoch
    skipped: str | None  # reason, or None


def loading_skip_reason(pin_memory: bool, device) -> str | None:
    """Why a loader setting is not measured on `device`, or None."""
    if pin_memory and resolve_device(device).type != "cuda":
        return "pinned memory only speeds host-to-GPU copies; there is no copy on the CPU"
    return None


def loader_throughput(dataset: Dataset, consume: Callable[[torch.Tensor], object], *, batch_size: int,
                      num_workers: int = 0, pin_memory: bool = False, device="cpu", epochs: int = 2,
                      synchronize: Callable[[], None] | None = None) -> LoaderResult:
    """Images/s of a whole pipeline: load each batch, copy it to `device`, run ``consume(batch)``.

    One untimed epoch first (it starts the workers, kept alive with ``persistent_workers``), then the
    median of `epochs` timed epochs.
    """
    device = resolve_device(device)
    reason = loading_skip_reason(pin_memory, device)
    if reason is not None:
        return LoaderResult(num_workers, pin_memory, float("nan"), float("nan"), reason)
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1")
    sync = synchronize or ((lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=pin_memory, persistent_workers=num_workers > 0, drop_last=False)

    def epoch():
        for x, _ in loader:
            consume(x.to(device, non_blocking=pin_memory))
        sync()

    epoch()  # warm-up: worker start, allocator
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        epoch()
        seconds.append(time.perf_counter() - t0)
    del loader  # stops the persistent workers
    median = sorted(seconds)[len(seconds) // 2]
    return LoaderResult(num_workers, pin_memory, len(dataset) / median, median, None)


def loading_grid(dataset: Dataset, consume: Callable[[torch.Tensor], object], *, batch_size: int,
                 workers: Sequence[int] = (0, 2), pins: Sequence[bool] = (False, True), device="cpu",
                 epochs: int = 2) -> list[LoaderResult]:
    """:func:`loader_throughput` for every (num_workers, pin_memory) pair; inapplicable ones skipped with a reason."""
    return [loader_throughput(dataset, consume, batch_size=batch_size, num_workers=w, pin_memory=p, device=device,
                              epochs=epochs) for w in workers for p in pins]


__all__ = ["SyntheticImages", "LoaderResult", "loading_skip_reason", "loader_throughput", "loading_grid"]
