"""Checkpoints written atomically and loaded with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path

import torch

from facekit.io import atomic_path


def save_checkpoint(path, state: dict) -> Path:
    """Write `state` (tensors, numbers, strings, lists, dicts) to `path` in one rename."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint without unpickling arbitrary objects (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise RuntimeError(f"checkpoint {path} could not be read ({err}); delete it to start afresh") from err
