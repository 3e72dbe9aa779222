"""Size on disk and CPU latency of a model, the two costs a compression method trades against accuracy.

Latency is the median of timed calls after untimed warm-up calls (a median ignores the few calls that
another process delays); throughput is images per second of the median batch call. To compare models on a
machine whose load drifts, :func:`compare_latency` times them round-robin (one call of each in turn), so
that a busy minute slows all of them alike instead of whichever was timed then.

>>> r = latency(nn.Linear(8, 2), torch.zeros(1, 8), batch_size=4, warmup=1, repeats=3)
>>> r.batch1_ms > 0 and r.throughput_ips > 0
True
"""

from __future__ import annotations

import io
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

MB = 1e6  # sizes in decimal megabytes


def state_dict_mb(model: nn.Module) -> float:
    """Megabytes of ``torch.save(model.state_dict())`` (int8 layers store packed int8 weights)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / MB


def _median_seconds(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@dataclass(frozen=True)
class Latency:
    batch1_ms: float  # median time of one call on a single image, milliseconds
    batch_size: int  # images per call in the throughput measurement
    batch_ms: float  # median time of one call on `batch_size` images
    throughput_ips: float  # images per second at `batch_size`


@torch.inference_mode()
def latency(model: nn.Module | callable, example: torch.Tensor, *, batch_size: int = 32, warmup: int = 3,
            repeats: int = 10) -> Latency:
    """Median single-image latency and batch throughput of ``model`` on the CPU.

    Args:
        model: an ``nn.Module`` (put in eval mode) or any callable on a batch (e.g. an onnxruntime wrapper).
        example: one input ``(1, ...)``; the batch repeats it ``batch_size`` times.
        batch_size: images per call for the throughput.
        warmup, repeats: untimed and timed calls for each of the two measurements.
    """
    if example.ndim < 1 or len(example) != 1:
        raise ValueError(f"example must be one input of shape (1, ...), got {tuple(example.shape)}")
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need batch_size >= 1, repeats >= 1, warmup >= 0; got {batch_size}, {repeats}, {warmup}")
    if isinstance(model, nn.Module):
        model.eval()
    batch = example.expand(batch_size, *example.shape[1:]).contiguous()
    one = _median_seconds(lambda: model(example), warmup, repeats)
    many = _median_seconds(lambda: model(batch), max(1, warmup // 2), repeats)
    return Latency(one * 1e3, batch_size, many * 1e3, batch_size / many)


def _rounds_for(call_s: float, rounds: int, max_seconds: float) -> int:
    return max(3, min(rounds, int(max_seconds / max(call_s, 1e-9))))


@torch.inference_mode()
def compare_latency(models: Mapping[str, Callable], example: torch.Tensor, *, batch_size: int = 32, warmup: int = 2,
                    rounds: int = 10, max_seconds: float = 10.0) -> dict[str, Latency]:
    """:func:`latency` of several models, timed round-robin so that load changes hit them alike.

    Args:
        models: name -> ``nn.Module`` or callable on a batch.
        example: one input ``(1, ...)``; the batch repeats it ``batch_size`` times.
        warmup: untimed calls of each model at each size before timing.
        rounds: timed calls of each model at each size (the median counts).
        max_seconds: a slow model gets fewer rounds (at least 3), about this many seconds of timed calls per size.

    >>> out = compare_latency({"a": nn.Linear(4, 2), "b": nn.Linear(4, 8)}, torch.zeros(1, 4), batch_size=2, rounds=3)
    >>> sorted(out), out["a"].batch_size
    (['a', 'b'], 2)
    """
    if example.ndim < 1 or len(example) != 1:
        raise ValueError(f"example must be one input of shape (1, ...), got {tuple(example.shape)}")
    if batch_size < 1 or rounds < 1 or warmup < 0:
        raise ValueError(f"need batch_size >= 1, rounds >= 1, warmup >= 0; got {batch_size}, {rounds}, {warmup}")
    for model in models.values():
        if isinstance(model, nn.Module):
            model.eval()
    batch = example.expand(batch_size, *example.shape[1:]).contiguous()
    medians = {}
    for size, x in (("one", example), ("batch", batch)):
        todo = {}
        for name, model in models.items():
            t0 = time.perf_counter()
            for _ in range(max(1, warmup)):
                model(x)
            todo[name] = _rounds_for((time.perf_counter() - t0) / max(1, warmup), rounds, max_seconds)
        times: dict[str, list[float]] = {name: [] for name in models}
        for r in range(max(todo.values())):
            for name, model in models.items():
                if r < todo[name]:
                    t0 = time.perf_counter()
                    model(x)
                    times[name].append(time.perf_counter() - t0)
        medians[size] = {name: statistics.median(t) for name, t in times.items()}
    return {name: Latency(medians["one"][name] * 1e3, batch_size, medians["batch"][name] * 1e3,
                          batch_size / medians["batch"][name]) for name in models}


__all__ = ["state_dict_mb", "latency", "compare_latency", "Latency", "MB"]
