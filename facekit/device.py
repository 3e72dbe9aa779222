"""Device choice: the one place that turns ``"auto"`` (or a name) into a :class:`torch.device`.

Every room that places tensors (training, benchmarks, privacy, notebooks) takes a ``device`` argument
and resolves it here; nothing in facekit assumes CUDA.
"""

from __future__ import annotations

import torch

from facekit.config import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``mps`` when available, else ``cpu``.

    Args:
        device: ``"auto"``, a torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) or a
            :class:`torch.device` (returned as is).

    Raises:
        ConfigError: ``device`` is not a torch device; the message lists the accepted forms.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
