"""What the device can do, measured, and how much of it a model uses: model FLOP utilisation and a roofline.

- The compute peak is the FLOP/s of a large square matrix product (``2 n^3`` FLOPs), in bf16 on a
  GPU (tensor cores) and fp32 on a CPU: the best a dense model could reach on this machine, measured
  in the same run rather than read from a data sheet. A ceiling is what the device *can* do, so it is
  taken at the fastest repeat (other work on a shared machine only slows repeats down).
- A 3x3 convolution (:func:`conv_peak`) goes through another library than the matrix product, and on some
  CPUs it is faster per FLOP; :func:`peak_sweep` takes the best over matrix sizes, convolutions and thread
  counts, and :mod:`facekit.bench.cpu_spec` gives the hard ceiling from the CPU's specification.
- The memory bandwidth is the bytes/s of a large tensor copy (each byte is read once and written
  once, so ``2 * nbytes`` per copy).
- A training step costs about 3x the forward FLOPs (the backward computes the gradients with respect
  to the activations and to the weights, each about one forward), so the model FLOP utilisation
  (MFU) of training is ``3 * forward FLOPs per image * images/s / peak``.
- The roofline: a model with arithmetic intensity ``FLOPs / bytes moved`` below the device's ridge
  point ``peak / bandwidth`` cannot be compute-bound; its ceiling is ``intensity * bandwidth``.

>>> mfu(achieved_flops_per_s=2e12, peak_flops_per_s=8e12)
0.25
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from facekit.bench.timer import Timer, Timing
from facekit.device import resolve_device

TRAIN_FLOPS_FACTOR = 3  # forward + backward (activation grads + weight grads, each ~ one forward)


@dataclass(frozen=True)
class Peak:
    """A measured device ceiling: `per_s` units (FLOP or bytes) per second at the fastest repeat."""

    what: str  # e.g. "matmul bf16 n=8192" or "copy 1024 MiB"
    per_s: float
    timing: Timing


def matmul_peak(*, device="cpu", dtype: torch.dtype | None = None, n: int = 4096, timer: Timer = Timer()) -> Peak:
    """FLOP/s of ``a @ b`` for two ``(n, n)`` random matrices (``2 n^3`` FLOPs per product).

    Args:
        dtype: None = bf16 on CUDA, fp32 elsewhere.
        n: matrix side; large enough to saturate the device (8192 on a GPU, 1-2k on a CPU: on the idle
            2-core CPU here n=1024 and n=2048 gave the same 0.18-0.19 TFLOP/s).
    """
    device = resolve_device(device)
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    t = timer.measure(lambda: torch.matmul(a, b, out=out), device=device)
    return Peak(f"matmul {str(dtype).removeprefix('torch.')} n={n}", 2 * n**3 / t.min_s, t)


def conv_peak(*, device="cpu", dtype: torch.dtype | None = None, channels: int = 128, side: int = 56,
              batch: int = 1, timer: Timer = Timer()) -> Peak:
    """FLOP/s of a 3x3 convolution (stride 1, padding 1), ``channels`` in and out, on ``(batch, channels, side, side)``.

    A convolution runs through a different library than ``torch.matmul`` (oneDNN on a CPU, cuDNN on a GPU; the
    matrix product uses MKL or OpenBLAS on a CPU), and on some CPUs it is the faster of the two: a model made of
    convolutions can then exceed a peak measured with matrix products alone. Its FLOPs are
    ``2 * batch * channels^2 * 9 * side^2``.
    """
    device = resolve_device(device)
    if min(channels, side, batch) < 1:
        raise ValueError(f"channels={channels}, side={side} and batch={batch} must be >= 1")
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, side, side, generator=g).to(device, dtype)
    w = torch.randn(channels, channels, 3, 3, generator=g).to(device, dtype)
    t = timer.measure(lambda: torch.nn.functional.conv2d(x, w, padding=1), device=device)
    flops = 2 * batch * channels**2 * 9 * side**2
    return Peak(f"conv3x3 {str(dtype).removeprefix('torch.')} c={channels} {side}x{side}", flops / t.min_s, t)


@dataclass(frozen=True)
class PeakSweep:
    """The compute peak measured over kernels, sizes and thread counts; ``best`` is the fastest of them all."""

    rows: tuple  # dicts: kernel, size, threads, tflop_s, relative_spread, what
    best: Peak
    best_matmul: Peak


def peak_sweep(*, device="cpu", matmul_sizes: Sequence[int] = (512, 1024, 2048), conv_channels: Sequence[int] = (),
               conv_side: int = 56, threads: Sequence[int] | None = None, timer: Timer = Timer()) -> PeakSweep:
    """The best FLOP/s over matrix sizes, 3x3 convolutions and CPU thread counts (the practical peak).

    Args:
        matmul_sizes: sides ``n`` of the square products (too small: overheads dominate; too large: the cache).
        conv_channels: channel counts of :func:`conv_peak` (empty: matrix products only).
        threads: CPU intra-op thread counts tried (None: the current one); restored afterwards. Ignored on a GPU.
        timer: each measurement's timer (a ceiling is taken at its fastest repeat).
    """
    device = resolve_device(device)
    if not matmul_sizes:
        raise ValueError("matmul_sizes must name at least one matrix side")
    before = torch.get_num_threads()
    thread_counts = [before] if threads is None or device.type != "cpu" else list(threads)
    if any(t < 1 for t in thread_counts):
        raise ValueError(f"threads={threads} must all be >= 1")
    rows, peaks = [], []
    try:
        for t in thread_counts:
            torch.set_num_threads(t)
            runs = [("matmul", n, lambda n=n: matmul_peak(device=device, n=n, timer=timer)) for n in matmul_sizes]
            runs += [("conv3x3", c, lambda c=c: conv_peak(device=device, channels=c, side=conv_side, timer=timer))
                     for c in conv_channels]
            for kernel, size, run in runs:
                p = run()
                peaks.append((kernel, p))
                rows.append({"kernel": kernel, "size": size, "threads": t, "tflop_s": p.per_s / 1e12,
                             "relative_spread": p.timing.relative_spread, "what": p.what})
    finally:
        torch.set_num_threads(before)
    best = max((p for _, p in peaks), key=lambda p: p.per_s)
    best_matmul = max((p for k, p in peaks if k == "matmul"), key=lambda p: p.per_s)
    return PeakSweep(tuple(rows), best, best_matmul)


def copy_bandwidth(*, device="cpu", nbytes: int = 256 * 2**20, timer: Timer = Timer()) -> Peak:
    """Bytes/s of copying a tensor of `nbytes` into another (read + write: ``2 * nbytes`` per copy)."""
    device = resolve_device(device)
    numel = max(1, nbytes // 4)
    src = torch.randn(numel, device=device)
    dst = torch.empty_like(src)
    t = timer.measure(lambda: dst.copy_(src), device=device)
    return Peak(f"copy {numel * 4 / 2**20:.0f} MiB", 2 * numel * 4 / t.min_s, t)


def mfu(achieved_flops_per_s: float, peak_flops_per_s: float) -> float:
    """Model FLOP utilisation: achieved / peak (0.4 = 40% of the measured matmul peak)."""
    if peak_flops_per_s <= 0:
        raise ValueError(f"peak_flops_per_s={peak_flops_per_s} must be > 0")
    return achieved_flops_per_s / peak_flops_per_s


def achieved_flops(forward_flops_per_image: float, images_per_s: float, *, training: bool) -> float:
    """FLOP/s a model achieves: forward FLOPs per image x images/s, x3 for a training step.

    >>> achieved_flops(1e9, 100.0, training=True)
    300000000000.0
    """
    return forward_flops_per_image * images_per_s * (TRAIN_FLOPS_FACTOR if training else 1)


def activation_bytes(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Bytes a forward pass writes: the input plus every leaf module's output tensors, in the model's dtype.

    A lower bound of the memory traffic of inference (each output is written once and read at least
    once again: count ``2x`` for traffic), ignoring the weights (read once per batch, amortised).
    """
    sizes: list[int] = []

    def hook(_module, _inputs, output):
        stack = [output]
        while stack:
            o = stack.pop()
            if isinstance(o, torch.Tensor):
                sizes.append(o.numel() * o.element_size())
            elif isinstance(o, (list, tuple)):
                stack.extend(o)
            elif isinstance(o, dict):
                stack.extend(o.values())

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    p = next(model.parameters(), None)
    x = torch.randn(tuple(input_shape), device=p.device if p is not None else "cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return int(x.numel() * x.element_size() + sum(sizes))


@dataclass(frozen=True)
class Roofline:
    intensity: float  # FLOPs per byte moved
    ridge: float  # peak FLOP/s / bandwidth: intensities below it are memory-bound
    bound: str  # "memory" or "compute"
    ceiling_flops_per_s: float  # min(peak, intensity * bandwidth)


def roofline(flops: float, bytes_moved: float, *, peak_flops_per_s: float, bytes_per_s: float) -> Roofline:
    """Where a workload of `flops` and `bytes_moved` sits on the device's roofline.

    >>> roofline(1e9, 1e8, peak_flops_per_s=1e12, bytes_per_s=1e10).bound  # 10 FLOP/B < ridge 100
    'memory'
    """
    if bytes_moved <= 0 or peak_flops_per_s <= 0 or bytes_per_s <= 0:
        raise ValueError("bytes_moved, peak_flops_per_s and bytes_per_s must be > 0")
    intensity = flops / bytes_moved
    ridge = peak_flops_per_s / bytes_per_s
    return Roofline(intensity, ridge, "memory" if intensity < ridge else "compute",
                    min(peak_flops_per_s, intensity * bytes_per_s))


__all__ = ["Peak", "matmul_peak", "conv_peak", "PeakSweep", "peak_sweep", "copy_bandwidth", "mfu", "achieved_flops",
           "activation_bytes", "Roofline",
           "roofline", "TRAIN_FLOPS_FACTOR"]
