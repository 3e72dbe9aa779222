"""What :func:`facekit.train.fit` returns (:class:`History`) and what its callbacks see (:class:`FitState`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from facekit.config import choice
from facekit.train.config import TrainConfig


@dataclass
class History:
    """One dict per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``train_<metric>``, ..., ``lr``, ``time_s``.

    ``stopped_epoch`` is the last epoch run when a callback (early stopping) ended training before
    ``config.epochs``, else None. ``time_to`` reads the time to reach a target from the records.

    >>> h = History([{"epoch": 1, "val_acc": 0.5, "time_s": 2.0}, {"epoch": 2, "val_acc": 0.8, "time_s": 3.0}])
    >>> h.time_to("val_acc", 0.7)
    (2, 5.0)
    """

    records: list[dict] = field(default_factory=list)
    stopped_epoch: int | None = None

    def first(self, key: str, target: float, mode: str = "max") -> dict | None:
        """The first record whose `key` reaches `target` (>= for mode 'max', <= for 'min'), or None."""
        choice(mode, ("min", "max"), name="mode")
        for r in self.records:
            if key in r and r[key] is not None and (r[key] >= target if mode == "max" else r[key] <= target):
                return r
        return None

    def time_to(self, key: str, target: float, mode: str = "max") -> tuple[int, float] | None:
        """(epochs, seconds) until `key` first reaches `target`: the 1-based epoch and the summed ``time_s``
        of the epochs up to it; None when it never does."""
        hit = self.first(key, target, mode)
        if hit is None:
            return None
        seconds = sum(r.get("time_s", 0.0) for r in self.records if r["epoch"] <= hit["epoch"])
        return hit["epoch"], seconds

    def total_time(self) -> float:
        """Seconds of all epochs (the sum of ``time_s``)."""
        return sum(r.get("time_s", 0.0) for r in self.records)

    def __getitem__(self, key: str) -> list:
        return [r.get(key) for r in self.records]

    def last(self, key: str):
        return self.records[-1][key]

    def best(self, key: str, mode: str = "max") -> dict:
        pick = max if mode == "max" else min
        return pick((r for r in self.records if key in r), key=lambda r: r[key])


@dataclass
class FitState:
    """The loop's state, handed to every :class:`facekit.train.Callback` hook.

    In ``on_fit_start`` a callback may replace ``model``, ``optimizer`` and ``train`` (the training data:
    a Dataset, a DataLoader or an ``epoch -> batches`` function) with wrapped ones; this is how
    Opacus's ``make_private`` runs inside ``fit`` (:class:`facekit.privacy.dp.MakePrivate`).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: History
    config: TrainConfig
    device: torch.device
    epoch: int = 0  # 0-based epoch being run
    stop: bool = False  # set by a callback to end training after this epoch
    train: Any = None  # the training data the loop draws each epoch's batches from
    steps: int = 0  # optimiser steps taken in this call of fit (empty batches are not steps)
    last_loss: float = float("nan")  # the loss of the latest step (what on_step_end sees)


__all__ = ["History", "FitState"]
