"""`TrainConfig`: every setting of :func:`facekit.train.fit`, checked when it is built."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from facekit.config import ConfigError, choice
from facekit.train.optim import OPTIMIZERS, SCHEDULERS

AMP_MODES = ("auto", "off", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`facekit.train.fit`; a bad value is a ConfigError naming the field when built.

    >>> TrainConfig(optimizer="adagrad")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    facekit.config.ConfigError: TrainConfig.optimizer='adagrad' is not accepted; use one of: 'adam', 'adamw', 'sgd'...
    """

    epochs: int = 10  # passes over the training data
    batch_size: int = 64  # used when fit builds the loaders from datasets
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # L2 penalty (decoupled for adamw)
    optimizer: str = "adam"  # one of facekit.train.optim.OPTIMIZERS
    momentum: float = 0.9  # sgd only
    scheduler: str = "none"  # one of facekit.train.optim.SCHEDULERS; cosine decays over `epochs`
    warmup_epochs: int = 0  # linear warm-up before the schedule
    grad_clip: float | None = None  # max global gradient norm, None = off
    seed: int = 0  # the same seed gives the same numbers on the CPU
    device: str = "auto"  # 'auto', 'cpu', 'cuda', 'cuda:1', ... (or a torch.device)
    amp: str = "auto"  # 'auto' = bf16 (or fp16 + scaler) on CUDA, off elsewhere; one of AMP_MODES
    num_workers: int = 0  # DataLoader workers when fit builds the loaders
    checkpoint: str | None = None  # file written after every epoch; resumed from if present
    resume: bool = True  # continue from `checkpoint` when it exists
    progress: bool = True  # a tqdm bar over epochs and one line of metrics per epoch

    def __post_init__(self):
        choice(self.optimizer, OPTIMIZERS, name="TrainConfig.optimizer")
        choice(self.scheduler, SCHEDULERS, name="TrainConfig.scheduler")
        choice(self.amp, AMP_MODES, name="TrainConfig.amp")
        _whole(self, "epochs", 0)
        _whole(self, "batch_size", 1)
        _whole(self, "warmup_epochs", 0)
        _whole(self, "num_workers", 0)
        _whole(self, "seed", 0)
        for name in ("lr", "weight_decay", "momentum"):
            value = getattr(self, name)
            finite = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            if not (finite and value >= 0):
                raise ConfigError(f"TrainConfig.{name}={value!r} is not accepted; use a finite number >= 0")
        if self.grad_clip is not None and not (isinstance(self.grad_clip, numbers.Real) and self.grad_clip > 0):
            raise ConfigError(f"TrainConfig.grad_clip={self.grad_clip!r} is not accepted; use a number > 0 or None")
        _check_device(self.device)


def _whole(config, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{type(config).__name__}.{name}={value!r} is not accepted; use a whole number >= {minimum}")


def _check_device(device) -> None:
    if isinstance(device, torch.device) or device == "auto":
        return
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"TrainConfig.device={device!r} is not accepted; use 'auto', 'cpu', 'cuda', 'cuda:N' "
                          f"or 'mps'") from err


__all__ = ["TrainConfig", "AMP_MODES"]
