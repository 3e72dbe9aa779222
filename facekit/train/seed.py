"""Seeding (device choice lives in :mod:`facekit.device`; ``resolve_device`` is re-exported here)."""

from __future__ import annotations

import random

import numpy as np
import torch

from facekit.device import resolve_device

__all__ = ["seed_everything", "epoch_seed", "resolve_device"]

_MIX = 1_000_003  # a prime that spreads (seed, epoch) pairs apart


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: training resumed at `epoch` draws the same numbers as an unbroken run."""
    return (seed * _MIX + epoch) % 2**63
