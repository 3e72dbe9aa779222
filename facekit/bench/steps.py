"""The timed work of a benchmark: a training step, an inference pass, and how many images/s they reach.

A *training step* is forward + backward + optimizer step on one batch, the unit that decides how
long training takes. The loss is a proxy (the mean of every floating output of the model, so a
classifier, an embedding network and a detector all fit), which keeps the cost that of the backbone,
not of a particular head. Inputs are seeded ``randn``, never zeros: some kernels and some hardware
take shortcuts on zeros, and a benchmark must not measure them.

>>> from torch import nn
>>> from facekit.bench.timer import Timer
>>> r = train_step_rate(nn.Conv2d(3, 4, 3), (3, 8, 8), batch_size=2, timer=Timer(warmup=1, repeats=2))
>>> r.images_per_s > 0
True
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from facekit.bench.timer import Timer, Timing
from facekit.device import resolve_device
from facekit.train.optim import make_optimizer

DEFAULT_LR = 1e-3  # SGD with momentum: the step's cost does not depend on the rate
BENCH_MOMENTUM = 0.9  # the timed SGD step keeps a momentum buffer, as real training does


def random_inputs(shape: Sequence[int], *, device="cpu", dtype=torch.float32, seed: int = 0,
                  channels_last: bool = False) -> torch.Tensor:
    """Seeded standard-normal inputs of `shape` on `device` (the same values on every device).

    >>> x = random_inputs((2, 3, 4, 4))
    >>> bool((x != 0).all()), torch.equal(x, random_inputs((2, 3, 4, 4)))
    (True, True)
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tuple(shape), generator=g, dtype=torch.float32).to(device=resolve_device(device), dtype=dtype)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def proxy_loss(output) -> torch.Tensor:
    """A scalar from any model output: the sum of the means of its floating tensors (tuples, dicts, named tuples).

    >>> proxy_loss((torch.ones(2, 3), {"b": torch.full((4,), 2.0)}, torch.tensor([7])))
    tensor(3.)
    """
    tensors: list[torch.Tensor] = []

    def walk(o):
        if isinstance(o, torch.Tensor):
            if o.is_floating_point():
                tensors.append(o.float().mean())
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    walk(output)
    if not tensors:
        raise TypeError(f"the model returned no floating tensor to build a loss from ({type(output).__name__})")
    return torch.stack(tensors).sum()


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` on `device` with `dtype`, or a no-op context when `dtype` is None (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_train_step(model: nn.Module, x: torch.Tensor, *, autocast_dtype: torch.dtype | None = None,
                    lr: float = DEFAULT_LR) -> Callable[[], None]:
    """A closure doing one forward + backward + SGD step of `model` (put in train mode) on `x`.

    fp16 autocast gets a ``GradScaler`` (as fp16 training needs one); bf16 and fp32 do not.
    """
    device = x.device
    model.train()
    opt = make_optimizer("sgd", [p for p in model.parameters() if p.requires_grad], lr=lr, momentum=BENCH_MOMENTUM)
    scaler = torch.amp.GradScaler(device.type) if autocast_dtype == torch.float16 else None

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast_context(device, autocast_dtype):
            loss = proxy_loss(model(x))
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    return step


def make_inference(model: nn.Module, x: torch.Tensor, *,
                   autocast_dtype: torch.dtype | None = None) -> Callable[[], object]:
    """A closure running `model` (put in eval mode) on `x` without gradients."""
    device = x.device
    model.eval()

    def run():
        with torch.no_grad(), autocast_context(device, autocast_dtype):
            return model(x)

    return run


@dataclass(frozen=True)
class Rate:
    """Images per second of a timed call on `batch_size` images."""

    batch_size: int
    timing: Timing  # seconds per call

    @property
    def images_per_s(self) -> float:
        return self.timing.rate(self.batch_size)

    @property
    def images_per_s_p95(self) -> float:
        """Throughput at the 95th-percentile call time (a slow call): a pessimistic figure."""
        return self.batch_size / max(self.timing.p95_s, 1e-12)


def train_step_rate(model: nn.Module, image_shape: Sequence[int], *, batch_size: int, device="cpu",
                    timer: Timer = Timer(), autocast_dtype: torch.dtype | None = None, seed: int = 0) -> Rate:
    """Training throughput: images/s of forward + backward + optimizer step at `batch_size`.

    Args:
        model: moved to `device` and left in train mode (its parameters are updated).
        image_shape: ``(C, H, W)`` of one input.
        batch_size: images per step.
        timer: warm-up, repeats (see :class:`Timer`).
        autocast_dtype: None (fp32), ``torch.bfloat16`` or ``torch.float16``.
    """
    device = resolve_device(device)
    model.to(device)
    x = random_inputs((batch_size, *image_shape), device=device, seed=seed)
    return Rate(batch_size, timer.measure(make_train_step(model, x, autocast_dtype=autocast_dtype), device=device))


def inference_rate(model: nn.Module, image_shape: Sequence[int], *, batch_size: int, device="cpu",
                   timer: Timer = Timer(), autocast_dtype: torch.dtype | None = None, seed: int = 0) -> Rate:
    """Inference throughput (eval mode, no gradients) at `batch_size`; at batch 1 its timing is the latency."""
    device = resolve_device(device)
    model.to(device)
    x = random_inputs((batch_size, *image_shape), device=device, seed=seed)
    return Rate(batch_size, timer.measure(make_inference(model, x, autocast_dtype=autocast_dtype), device=device))


def inference_sweep(model: nn.Module, image_shape: Sequence[int], batch_sizes: Iterable[int], *, device="cpu",
                    timer: Timer = Timer(), seed: int = 0) -> list[dict]:
    """Inference throughput at each batch size: rows of ``batch_size, images_per_s, median_ms, p95_ms, iqr_ms``.

    A batch size that runs out of device memory ends the sweep (the row says so) instead of failing the run.
    """
    rows = []
    for b in batch_sizes:
        if b < 1:
            raise ValueError(f"batch sizes must be >= 1, got {b}")
        try:
            r = inference_rate(model, image_shape, batch_size=b, device=device, timer=timer, seed=seed)
        except torch.OutOfMemoryError:
            rows.append({"batch_size": b, "images_per_s": float("nan"), "median_ms": float("nan"),
                         "p95_ms": float("nan"), "iqr_ms": float("nan"), "note": "out of memory"})
            torch.cuda.empty_cache()
            break
        rows.append({"batch_size": b, "images_per_s": r.images_per_s, "median_ms": 1e3 * r.timing.median_s,
                     "p95_ms": 1e3 * r.timing.p95_s, "iqr_ms": 1e3 * r.timing.iqr_s, "note": ""})
    return rows


__all__ = ["random_inputs", "proxy_loss", "autocast_context", "make_train_step", "make_inference", "Rate",
           "train_step_rate", "inference_rate", "inference_sweep", "DEFAULT_LR"]
