"""Timing done right: warm up, synchronise the device, repeat, and report the median with its spread.

GPU work is asynchronous: ``model(x)`` returns as soon as the kernels are queued, so a host clock
read right after it measures the queueing, not the work. :class:`Timer` therefore waits for the
device before every clock read (``torch.cuda.synchronize``), or times with CUDA events recorded
on the stream; on the CPU it reads ``time.perf_counter``. The first calls pay for allocation,
kernel selection and caches, so they are run untimed (``warmup``). Other work on a shared machine
only ever makes a run slower, so the median (robust to a few slow outliers) and the spread (the
interquartile range) are reported, with the minimum for reference.

>>> import time
>>> t = Timer(warmup=1, repeats=5).measure(lambda: time.sleep(0.001))
>>> t.n, t.median_s >= 0.001
(5, True)
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from facekit.config import ConfigError


@dataclass(frozen=True)
class Timing:
    """Seconds per call of ``repeats`` timed calls (each possibly of several inner calls)."""

    median_s: float  # the reported time: robust to a few slow outliers
    p95_s: float  # 95th percentile (linear interpolation): the tail a user sees
    min_s: float  # the least disturbed call
    iqr_s: float  # spread: 75th minus 25th percentile
    n: int  # timed samples

    @property
    def relative_spread(self) -> float:
        """IQR / median: 0.05 means the middle half of the samples lies within 5% of the median."""
        return self.iqr_s / self.median_s if self.median_s > 0 else float("nan")

    def rate(self, items: float) -> float:
        """Items per second at the median time, e.g. images/s for a batch of `items` images."""
        return items / max(self.median_s, 1e-12)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of an ascending sequence."""
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples_s: Sequence[float]) -> Timing:
    """A :class:`Timing` from raw per-call seconds.

    >>> summarize([1.0, 2.0, 3.0, 4.0, 100.0]).median_s
    3.0
    """
    if not samples_s:
        raise ValueError("no timing samples: repeats must be >= 1")
    s = sorted(float(v) for v in samples_s)
    return Timing(median_s=statistics.median(s), p95_s=_quantile(s, 0.95), min_s=s[0],
                  iqr_s=_quantile(s, 0.75) - _quantile(s, 0.25), n=len(s))


def device_synchronizer(device) -> Callable[[], None]:
    """A function that waits for all queued work on `device` (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps" and hasattr(torch, "mps"):
        return torch.mps.synchronize
    return lambda: None


@dataclass(frozen=True)
class Timer:
    """Time a callable: `warmup` untimed calls, then `repeats` timed samples of `inner` calls each.

    Attributes:
        warmup: untimed calls first (allocator, cuDNN/kernel selection, caches, torch.compile).
        repeats: timed samples; the median and spread are taken over them.
        inner: calls per sample (for very short calls); every statistic is per call.
        use_cuda_events: on CUDA, time with ``torch.cuda.Event`` pairs on the current stream instead of
            synchronise + ``perf_counter`` (same answer, without the host clock's resolution limits).

    >>> Timer(repeats=0)
    Traceback (most recent call last):
    ...
    facekit.config.ConfigError: Timer: repeats=0 must be >= 1
    """

    warmup: int = 2  # untimed calls first
    repeats: int = 10  # timed samples
    inner: int = 1  # calls per timed sample
    use_cuda_events: bool = True  # on CUDA: event timing on the stream (else synchronise + perf_counter)

    def __post_init__(self):
        for name, low in (("warmup", 0), ("repeats", 1), ("inner", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"Timer: {name}={getattr(self, name)} must be >= {low}")

    def measure(self, fn: Callable[[], object], *, device="cpu",
                synchronize: Callable[[], None] | None = None) -> Timing:
        """Seconds per call of ``fn()``.

        Args:
            fn: the work, with its inputs bound (``lambda: model(x)``).
            device: where `fn` runs; decides how to wait for it.
            synchronize: override the wait (tests pass a fake one); then the host clock is used.
        """
        device = torch.device(device)
        use_events = synchronize is None and self.use_cuda_events and device.type == "cuda"
        sync = synchronize if synchronize is not None else device_synchronizer(device)
        for _ in range(self.warmup):
            fn()
        sync()
        samples = []
        for _ in range(self.repeats):
            if use_events:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(self.inner):
                    fn()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) / 1e3 / self.inner)  # ms -> s
            else:
                t0 = time.perf_counter()
                for _ in range(self.inner):
                    fn()
                sync()
                samples.append((time.perf_counter() - t0) / self.inner)
        return summarize(samples)


__all__ = ["Timer", "Timing", "summarize", "device_synchronizer"]
