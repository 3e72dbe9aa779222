"""The levers that make a model faster, each measured on and off against the same fp32 eager baseline.

====================  =============================================================  ============
lever                 what it changes                                                devices
====================  =============================================================  ============
``fp32``              the baseline: fp32, eager, NCHW                                all
``tf32``              fp32 matmuls/convolutions on tensor cores with a 10-bit        CUDA, sm80+
                      mantissa (``set_float32_matmul_precision('high')``, cuDNN)
``bf16_autocast``     ``torch.autocast(dtype=bfloat16)``                             all
``fp16_autocast``     ``torch.autocast(dtype=float16)`` (+ ``GradScaler`` in         CUDA
                      training)
``channels_last``     NHWC memory layout of the weights and the input                all
``compile``           ``torch.compile`` (TorchInductor kernels, fusion)              all (slow to
                                                                                     compile on CPU)
``cuda_graphs``       the whole forward captured once and replayed                   CUDA,
                      (``torch.cuda.CUDAGraph``): no per-kernel launch cost          inference
====================  =============================================================  ============

A lever that does not apply is reported as skipped with the reason, never silently left out.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from facekit.bench.steps import make_inference, make_train_step, random_inputs
from facekit.bench.timer import Timer
from facekit.config import ConfigError, check_keys
from facekit.device import resolve_device

LEVERS = ("fp32", "tf32", "bf16_autocast", "fp16_autocast", "channels_last", "compile", "cuda_graphs")
MODES = ("inference", "train")
_AUTOCAST = {"bf16_autocast": torch.bfloat16, "fp16_autocast": torch.float16}
TF32_MIN_CAPABILITY = 8  # Ampere (sm80) and newer have TF32 tensor cores


def skip_reason(lever: str, device, mode: str = "inference", *, allow_compile: bool = True) -> str | None:
    """Why `lever` is not measured on `device` in `mode`, or None when it applies.

    >>> skip_reason("cuda_graphs", "cpu")
    'CUDA graphs need a CUDA device'
    >>> skip_reason("channels_last", "cpu") is None
    True
    """
    check_keys([lever], LEVERS, what="lever")
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} is not accepted; use one of: {', '.join(MODES)}")
    device = resolve_device(device)
    cuda = device.type == "cuda"
    if lever == "tf32":
        if not cuda:
            return "TF32 is a CUDA tensor-core format; CPU fp32 matmuls are unaffected"
        if torch.cuda.get_device_capability(device)[0] < TF32_MIN_CAPABILITY:
            return f"TF32 needs compute capability >= {TF32_MIN_CAPABILITY}.0 (Ampere or newer)"
    if lever == "fp16_autocast" and not cuda:
        return "fp16 autocast targets GPU tensor cores; CPUs have no fast fp16 matmul (bf16 is measured instead)"
    if lever == "bf16_autocast" and cuda and not torch.cuda.is_bf16_supported():
        return "this GPU has no bf16 support"
    if lever == "compile" and not allow_compile:
        return "torch.compile skipped by the profile (compiling takes minutes on a CPU)"
    if lever == "cuda_graphs":
        if not cuda:
            return "CUDA graphs need a CUDA device"
        if mode != "inference":
            return "CUDA graphs are measured for small-batch inference only"
    return None


@contextlib.contextmanager
def tf32(enabled: bool):
    """Allow (or forbid) TF32 in fp32 matmuls and cuDNN convolutions; the previous settings are restored."""
    old_matmul, old_cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch prefers fp32_precision; these calls still work up to 2.11+
        torch.set_float32_matmul_precision("high" if enabled else "highest")
        torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.set_float32_matmul_precision(old_matmul)
            torch.backends.cudnn.allow_tf32 = old_cudnn


def cuda_graph_inference(model: nn.Module, x: torch.Tensor, *, warmup: int = 3) -> Callable[[], object]:
    """Capture ``model(x)`` (eval, no grad) in a CUDA graph; the returned closure replays it.

    The graph reads from a static input buffer and writes to static outputs: to run on new data,
    copy it into the buffer first (a serving loop would do ``static_x.copy_(batch)``; the timed
    closure includes that copy).
    """
    if x.device.type != "cuda":
        raise ValueError("cuda_graph_inference needs a model and input on a CUDA device")
    model.eval()
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(stream):  # warm up on a side stream, as the docs require
        for _ in range(warmup):
            model(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        static_out = model(static_x)

    def replay():
        static_x.copy_(x)
        graph.replay()
        return static_out

    return replay


def prepare(model: nn.Module, lever: str, image_shape: Sequence[int], *, batch_size: int, device="cpu",
            mode: str = "inference", seed: int = 0) -> Callable[[], object]:
    """The timed closure of `model` with `lever` on (``fp32``: the baseline), on a deep copy of the model."""
    device = resolve_device(device)
    model = copy.deepcopy(model).to(device)
    channels_last = lever == "channels_last"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = random_inputs((batch_size, *image_shape), device=device, seed=seed, channels_last=channels_last)
    if lever == "cuda_graphs":
        return cuda_graph_inference(model, x)
    if lever == "compile":
        model = torch.compile(model)
    make = make_train_step if mode == "train" else make_inference
    return make(model, x, autocast_dtype=_AUTOCAST.get(lever))


@dataclass(frozen=True)
class LeverResult:
    lever: str
    mode: str  # "inference" or "train"
    batch_size: int
    baseline_images_per_s: float  # fp32 eager: the median over rounds
    images_per_s: float  # with the lever on: the median over rounds (nan when skipped)
    skipped: str | None  # the reason, or None when measured
    baseline_rounds: tuple = ()  # fp32 eager images/s in each round
    lever_rounds: tuple = ()  # images/s with the lever in each round, measured right after that round's baseline

    @property
    def speedup(self) -> float:
        """images/s with the lever / images/s without it (medians over rounds; nan when skipped)."""
        return self.images_per_s / self.baseline_images_per_s if self.skipped is None else float("nan")

    @property
    def round_speedups(self) -> tuple:
        """The speed-up of each round (lever and baseline timed back to back: a paired measurement)."""
        return tuple(a / b for a, b in zip(self.lever_rounds, self.baseline_rounds))


def _median(values) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def measure_levers(model: nn.Module, image_shape: Sequence[int], *, levers: Sequence[str] = LEVERS,
                   batch_size: int, device="cpu", mode: str = "inference", timer: Timer = Timer(),
                   compile_timer: Timer | None = None, allow_compile: bool = True,
                   rounds: int = 1) -> list[LeverResult]:
    """Each lever on, against the fp32 eager baseline, at one batch size; the model itself is not changed.

    With ``rounds > 1`` the baseline and every lever are timed again in each round, the lever right after the
    round's baseline, so that a machine whose load drifts slows both sides of a pair alike: the round speed-ups
    (:attr:`LeverResult.round_speedups`) are paired measurements, ready for a paired test over rounds.

    Args:
        levers: names of :data:`LEVERS` (``fp32`` is the baseline row, speed-up 1).
        compile_timer: the timer for ``compile`` (its warm-up must cover compilation); default: `timer`
            with at least 2 warm-up calls.
        allow_compile: False skips ``compile`` with a reason (the smoke profile on a CPU).
        rounds: repetitions of the whole comparison (>= 1).
    """
    check_keys(list(levers), LEVERS, what="lever")
    if rounds < 1:
        raise ConfigError(f"rounds={rounds} must be >= 1")
    device = resolve_device(device)

    def precision(lever):  # on CUDA every row but "tf32" runs true fp32 (cuDNN allows TF32 by default)
        return tf32(lever == "tf32") if device.type == "cuda" else contextlib.nullcontext()

    def timed(lever, run, t):
        with precision(lever):
            return t.measure(run, device=device).rate(batch_size)

    with precision("fp32"):
        base_run = prepare(model, "fp32", image_shape, batch_size=batch_size, device=device, mode=mode)
    reasons = {lv: skip_reason(lv, device, mode, allow_compile=allow_compile) for lv in levers}
    runs, timers = {}, {}
    for lever in levers:
        if reasons[lever] is None and lever != "fp32":
            with precision(lever):
                runs[lever] = prepare(model, lever, image_shape, batch_size=batch_size, device=device, mode=mode)
            t = compile_timer or Timer(max(2, timer.warmup), timer.repeats, timer.inner, timer.use_cuda_events)
            timers[lever] = t if lever == "compile" else timer
    base_rounds: list[float] = []
    lever_rounds: dict[str, list[float]] = {lv: [] for lv in runs}
    pair_base: dict[str, list[float]] = {lv: [] for lv in runs}
    for r in range(rounds):
        base = timed("fp32", base_run, timer)
        base_rounds.append(base)
        for lever, run in runs.items():
            warm = timers[lever] if r == 0 else Timer(1, timers[lever].repeats, timers[lever].inner,
                                                      timers[lever].use_cuda_events)
            lever_rounds[lever].append(timed(lever, run, warm))
            pair_base[lever].append(base)
    return [_lever_result(lever, mode, batch_size, reasons[lever], base_rounds, lever_rounds.get(lever),
                          pair_base.get(lever)) for lever in levers]


def _lever_result(lever: str, mode: str, batch_size: int, reason: str | None, base_rounds: list[float],
                  rounds: list[float] | None, pair_base: list[float] | None) -> LeverResult:
    """One row of :func:`measure_levers`: skipped (with its reason), the fp32 baseline, or a lever's rounds."""
    base_median = _median(base_rounds)
    if reason is not None:
        return LeverResult(lever, mode, batch_size, base_median, float("nan"), reason, tuple(base_rounds), ())
    if lever == "fp32":
        return LeverResult(lever, mode, batch_size, base_median, base_median, None, tuple(base_rounds),
                           tuple(base_rounds))
    return LeverResult(lever, mode, batch_size, base_median, _median(rounds), None, tuple(pair_base), tuple(rounds))


__all__ = ["LEVERS", "MODES", "skip_reason", "tf32", "cuda_graph_inference", "prepare", "LeverResult",
           "measure_levers"]
