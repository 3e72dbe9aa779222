"""One row per backbone: training and inference throughput, latency at batch 1, peak memory, FLOPs.

>>> from torch import nn
>>> from facekit.bench.timer import Timer
>>> row, sweep = measure_model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), "toy", (3, 8, 8),
...                            train_batch=2, sweep_batches=(1, 2), timer=Timer(warmup=1, repeats=2))
>>> round(row["forward_gflops"] * 1e9), [r["batch_size"] for r in sweep]  # 2 * 3*3*3 * 4 * 6*6 per image
(7776, [1, 2])
"""

from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from facekit.bench.memory import peak_memory
from facekit.bench.peak import achieved_flops, mfu
from facekit.bench.steps import inference_rate, inference_sweep, make_train_step, random_inputs, train_step_rate
from facekit.bench.timer import Timer
from facekit.models.flops import count_flops
from facekit.device import resolve_device


def measure_model(model: nn.Module, name: str, image_shape: Sequence[int], *, train_batch: int,
                  sweep_batches: Sequence[int], device="cpu", timer: Timer = Timer(),
                  latency_timer: Timer | None = None, peak_flops_per_s: float | None = None) -> tuple[dict, list[dict]]:
    """Measure one model: ``(row, sweep_rows)``.

    Args:
        model: any module taking ``(B, *image_shape)``; trained in place by the timed steps.
        name: its label in the tables.
        image_shape: ``(C, H, W)``.
        train_batch: batch size of the timed training steps.
        sweep_batches: batch sizes of the inference sweep.
        timer: warm-up and repeats of throughput measurements.
        latency_timer: the batch-1 latency's timer (more repeats, for a stable 95th percentile); default `timer`.
        peak_flops_per_s: the device's measured matmul peak; adds the MFU columns.

    Returns:
        ``row``: model, image_size, params_m, forward_gflops (per image), train_img_s, train_spread
        (IQR / median), infer_img_s (best of the sweep), latency_ms, latency_p95_ms, train_peak_mib,
        [train_mfu, infer_mfu]; ``sweep_rows``: see :func:`inference_sweep`, with the model's name.
    """
    device = resolve_device(device)
    model.to(device)
    flops = count_flops(model, (1, *image_shape))  # per image, forward
    train = train_step_rate(model, image_shape, batch_size=train_batch, device=device, timer=timer)
    x = random_inputs((train_batch, *image_shape), device=device)
    mem = peak_memory(make_train_step(model, x), device=device)
    sweep = inference_sweep(model, image_shape, sweep_batches, device=device, timer=timer)
    latency = inference_rate(model, image_shape, batch_size=1, device=device, timer=latency_timer or timer).timing
    best = max((r["images_per_s"] for r in sweep if not math.isnan(r["images_per_s"])), default=float("nan"))
    row = {
        "model": name,
        "image_size": int(image_shape[-1]),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "forward_gflops": flops / 1e9,
        "train_img_s": train.images_per_s,
        "train_spread": train.timing.relative_spread,
        "infer_img_s": best,
        "latency_ms": 1e3 * latency.median_s,
        "latency_p95_ms": 1e3 * latency.p95_s,
        "train_peak_mib": mem.peak_mib,
    }
    if peak_flops_per_s is not None:
        row["train_mfu"] = mfu(achieved_flops(flops, train.images_per_s, training=True), peak_flops_per_s)
        row["infer_mfu"] = mfu(achieved_flops(flops, best, training=False), peak_flops_per_s)
    return row, [{"model": name, **r} for r in sweep]


__all__ = ["measure_model"]
