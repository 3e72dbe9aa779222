"""Profiles: one `profile` parameter sets every size in a notebook.

- ``smoke``: for nbval and CI, each notebook in about a minute on 2 CPU cores;
- ``cpu``: a laptop run with meaningful results, each notebook in at most ~10 minutes;
- ``gpu``: full sizes on a GPU, the numbers that go into benchmark reports;
- ``auto``: ``$FACEKIT_PROFILE`` when it is set, else ``gpu`` when CUDA is available, else ``cpu``.
"""

from __future__ import annotations

import os
from typing import TypeVar

from facekit.config import ConfigError

PROFILES = ("smoke", "cpu", "gpu")
ACCEPTED = PROFILES + ("auto",)
ENV_VAR = "FACEKIT_PROFILE"

T = TypeVar("T")


def resolve_profile(profile: str = "auto") -> str:
    """Turn ``auto`` into a concrete profile; reject anything not in :data:`ACCEPTED`.

    >>> resolve_profile("cpu")
    'cpu'
    """
    if profile not in ACCEPTED:
        raise ConfigError(f"profile={profile!r} is not accepted; use one of: {', '.join(ACCEPTED)}")
    if profile != "auto":
        return profile
    from_env = os.environ.get(ENV_VAR, "").strip()
    if from_env:
        if from_env not in PROFILES:
            raise ConfigError(f"${ENV_VAR}={from_env!r} is not accepted; use one of: {', '.join(PROFILES)}")
        return from_env
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def pick(profile: str, **sizes: T) -> tuple[str, T]:
    """Resolve `profile` and return ``(name, sizes[name])``; every profile must be given.

    >>> pick("smoke", smoke=1, cpu=2, gpu=3)
    ('smoke', 1)
    """
    missing = [p for p in PROFILES if p not in sizes]
    extra = [p for p in sizes if p not in PROFILES]
    if missing or extra:
        raise ConfigError(f"pick() needs exactly the profiles {PROFILES}; missing {missing}, unknown {extra}")
    name = resolve_profile(profile)
    return name, sizes[name]


MAX_STEPS_VAR = "FACEKIT_MAX_STEPS"


def max_steps() -> int | None:
    """The dry-run cap from ``$FACEKIT_MAX_STEPS``: at most this many steps per loop, or None (no cap).

    A dry run executes a notebook with a profile's sizes and configuration but caps every training and
    evaluation loop, so that a shape error or a missing key fails on the CPU in minutes, not on the GPU.

    >>> import os; os.environ.pop("FACEKIT_MAX_STEPS", None) and None; max_steps() is None
    True
    """
    raw = os.environ.get(MAX_STEPS_VAR, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"${MAX_STEPS_VAR}={raw!r} is not accepted; use a whole number >= 1, or unset it")
    return value
