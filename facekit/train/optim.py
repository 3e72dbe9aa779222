"""The one optimiser and learning-rate-schedule registry of facekit.

:func:`facekit.train.fit`, DP-SGD (:func:`facekit.privacy.train_private`), FedAvg's clients
(:func:`facekit.privacy.local_train`) and the benchmarks' training step all build their optimiser here,
so a name means the same optimiser everywhere. Add one with :func:`register_optimizer`.

>>> import torch
>>> opt = make_optimizer("sgd", [torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.0)
>>> type(opt).__name__, opt.param_groups[0]["lr"]
('SGD', 0.1)
>>> [round(lr_at("cosine", 1.0, e, epochs=4, warmup_epochs=1), 3) for e in range(4)]
[0.5, 1.0, 0.75, 0.25]
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from facekit.config import choice

OptimizerFactory = Callable[..., torch.optim.Optimizer]  # (params, *, lr, weight_decay, momentum) -> optimizer
Schedule = Callable[[float, int, int], float]  # (peak lr, step after warm-up, steps after warm-up) -> lr


def _adam(params, *, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _adamw(params, *, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)  # decoupled weight decay


def _sgd(params, *, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


OPTIMIZERS: dict[str, OptimizerFactory] = {"adam": _adam, "adamw": _adamw, "sgd": _sgd}


def _constant(lr: float, epoch: int, span: int) -> float:
    return lr


def _cosine(lr: float, epoch: int, span: int) -> float:
    return 0.5 * lr * (1 + math.cos(math.pi * epoch / max(1, span)))  # half a cosine: 0 would be the epoch after the last


SCHEDULERS: dict[str, Schedule] = {"none": _constant, "cosine": _cosine}


def register_optimizer(name: str, factory: OptimizerFactory) -> None:
    """Add ``factory(params, *, lr, weight_decay, momentum) -> Optimizer`` under ``name`` (an error if taken)."""
    if name in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} is already registered; pick another name")
    OPTIMIZERS[name] = factory


def make_optimizer(name: str, params: Iterable, *, lr: float, weight_decay: float = 0.0,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """The optimiser registered as ``name`` over ``params`` (tensors or param-group dicts).

    Args:
        name: one of :data:`OPTIMIZERS` (``adam``, ``adamw``, ``sgd``).
        lr: learning rate; weight_decay: L2 penalty (decoupled for ``adamw``); momentum: ``sgd`` only.

    Raises:
        ConfigError: unknown ``name``, listing the accepted ones.
    """
    choice(name, OPTIMIZERS, name="optimizer")
    return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, momentum=momentum)


def lr_at(scheduler: str, lr: float, epoch: int, *, epochs: int, warmup_epochs: int = 0) -> float:
    """Learning rate of 0-based ``epoch``: linear warm-up over ``warmup_epochs``, then the ``scheduler``.

    Warm-up epoch ``e`` runs at ``lr * (e + 1) / (warmup_epochs + 1)``; the schedule then spans the
    remaining ``epochs - warmup_epochs`` epochs.
    """
    choice(scheduler, SCHEDULERS, name="scheduler")
    if epoch < warmup_epochs:
        return lr * (epoch + 1) / (warmup_epochs + 1)
    return SCHEDULERS[scheduler](lr, epoch - warmup_epochs, epochs - warmup_epochs)


def check_param_groups(model: nn.Module, param_groups: Sequence[Mapping]) -> list[dict]:
    """Copies of ``param_groups`` (each with ``params`` and an optional ``lr_scale``), checked against ``model``.

    Frozen parameters are dropped, ``lr_scale`` defaults to 1, and empty groups are left out.

    Raises:
        ValueError: a group without ``params``, a parameter not in ``model`` or in two groups, or no
            trainable parameter at all.
    """
    owned = {id(p) for p in model.parameters()}
    groups, seen = [], set()
    for i, g in enumerate(param_groups):
        if not isinstance(g, Mapping) or "params" not in g:
            raise ValueError(f"param_groups[{i}] must be a dict with 'params' (see facekit.train.param_groups)")
        g = dict(g)
        g["params"] = [p for p in g["params"] if p.requires_grad]
        for p in g["params"]:
            if id(p) not in owned:
                raise ValueError(f"param_groups[{i}] ({g.get('name', 'unnamed')}) holds a parameter that is not "
                                 f"in the model being trained")
            if id(p) in seen:
                raise ValueError(f"param_groups[{i}] ({g.get('name', 'unnamed')}) repeats a parameter of an "
                                 f"earlier group")
            seen.add(id(p))
        g.setdefault("lr_scale", 1.0)
        if g["params"]:
            groups.append(g)
    if not groups:
        raise ValueError("param_groups holds no trainable parameter")
    return groups


__all__ = ["OPTIMIZERS", "SCHEDULERS", "register_optimizer", "make_optimizer", "lr_at", "check_param_groups"]
