"""Peak memory of a piece of work: the CUDA allocator's high-water mark, or an honest 'n/a' on the CPU.

On a GPU, ``torch.cuda.max_memory_allocated`` is the peak of the bytes held by tensors (weights,
activations kept for backward, gradients, optimizer state, workspaces), reset before the work.
On the CPU torch keeps no such statistic, and the process's resident set also counts the Python
interpreter, libraries and freed-but-cached pages, so no figure is given rather than a wrong one.

>>> peak_memory(lambda: torch.ones(4), device="cpu").peak_bytes is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from facekit.device import resolve_device

CPU_NOTE = "n/a on the CPU: torch keeps no allocator statistics there, and the process RSS is not the model's"


@dataclass(frozen=True)
class MemoryPeak:
    peak_bytes: int | None  # allocator high-water mark during the work (None: not measurable on this device)
    before_bytes: int | None  # bytes allocated before it (weights and inputs already on the device)
    note: str  # how it was measured, or why it was not

    @property
    def peak_mib(self) -> float:
        return float("nan") if self.peak_bytes is None else self.peak_bytes / 2**20


def peak_memory(fn: Callable[[], object], *, device="cpu", calls: int = 2) -> MemoryPeak:
    """Peak allocated bytes while running ``fn()`` `calls` times (2: the optimizer state exists from step 1).

    Args:
        fn: the work (a training step or an inference pass).
        device: where it runs; on the CPU the result is 'n/a' (see :data:`CPU_NOTE`) and `fn` is not run.
        calls: how many times to run it.
    """
    device = resolve_device(device)
    if device.type != "cuda":
        return MemoryPeak(None, None, CPU_NOTE if device.type == "cpu" else f"n/a on {device.type}")
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    for _ in range(calls):
        fn()
    torch.cuda.synchronize(device)
    return MemoryPeak(int(torch.cuda.max_memory_allocated(device)), int(before), "torch.cuda.max_memory_allocated")


__all__ = ["MemoryPeak", "peak_memory", "CPU_NOTE"]
