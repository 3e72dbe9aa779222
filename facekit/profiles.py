"""Profiles: one `profile` parameter sets every size in a notebook.

- ``smoke``: for nbval and CI, each notebook in about a minute on 2 CPU cores;
- ``cpu``: a laptop run with meaningful results, each notebook in at most ~10 minutes;
- ``gpu``: full sizes on a GPU, the numbers that go into benchmark reports;
- ``auto``: ``$FACEKIT_PROFILE`` when it is set, else ``gpu`` when CUDA is available, else ``cpu``.

**Dry runs** prove a profile (usually ``gpu``) on a CPU before it meets its hardware: with ``$FACEKIT_MAX_STEPS``
set (``facekit report --dry-run``), a notebook runs with the profile's configuration (models, image sizes,
batch sizes, losses, presets) but

- every training and evaluation loop stops after that many steps: ``facekit.train.fit`` runs at most that many
  epochs of at most that many optimiser steps, ``evaluate`` and ``predict`` read at most that many batches
  (:func:`max_steps`);
- the **count-like sizes** are capped by :func:`pick`: how many people, images, pairs, scenes or faces are
  made and evaluated. A field of the sizes dataclass is count-like when it is marked with :func:`count`
  (``identities: int = profiles.count()``), or, unmarked, when its name says so (:data:`ITEM_NAMES`: e.g.
  ``identities``, ``train_per_id``, ``pairs_per_kind``, ``test_scenes``; names holding ``min``, ``size``,
  ``dim``, ``batch``, ``fold`` or ``epoch`` never are). Such an int is capped at ``$FACEKIT_DRY_ITEMS``
  (default :data:`DEFAULT_DRY_ITEMS`); a field whose name ends in ``_steps``, ``repeats``, ``rounds`` or
  ``warmup`` (a loop a notebook writes itself), or marked ``count("steps")``, at :func:`max_steps`. ``0``
  (often "all") is left alone, as are bools, floats, strings and tuples. Mark a field ``count(None)`` to keep
  it whatever its name, or ``count(floor=n)`` when the notebook needs at least ``n`` (e.g. P-K batches).
- a count a notebook computes itself is capped with :func:`capped`: ``n = profiles.capped(len(photos))``.

So a shape error, a missing key or an API missing from the pinned torch fails in minutes on a CPU, not on the
GPU. A dry run's metrics are not results; the report summary says it was a dry run, and the report runner
skips ``assert`` statements in it (``PYTHONOPTIMIZE=1``: a claim about accuracy cannot hold after two steps).
Code that must behave differently in a dry run asks :func:`dry_run`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, TypeVar

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

    In a dry run (``$FACEKIT_MAX_STEPS`` set) a dataclass of sizes comes back with its count-like fields
    capped (:func:`cap_sizes`, see the module docstring) and one line saying what was capped.

    >>> pick("smoke", smoke=1, cpu=2, gpu=3)
    ('smoke', 1)
    """
    missing = [p for p in PROFILES if p not in sizes]
    extra = [p for p in sizes if p not in PROFILES]
    if missing or extra:
        raise ConfigError(f"pick() needs exactly the profiles {PROFILES}; missing {missing}, unknown {extra}")
    name = resolve_profile(profile)
    chosen = sizes[name]
    if max_steps() is not None and dataclasses.is_dataclass(chosen) and not isinstance(chosen, type):
        chosen, changed = cap_sizes(chosen)
        if changed:
            shown = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
            print(f"dry run (${MAX_STEPS_VAR}={max_steps()}): {name} sizes capped: {shown}")
    return name, chosen


MAX_STEPS_VAR = "FACEKIT_MAX_STEPS"


def max_steps() -> int | None:
    """The dry-run cap from ``$FACEKIT_MAX_STEPS``: at most this many steps per loop, or None (no cap).

    A dry run executes a notebook with a profile's sizes and configuration but caps every training and
    evaluation loop, so that a shape error or a missing key fails on the CPU in minutes, not on the GPU.

    >>> import os; os.environ.pop("FACEKIT_MAX_STEPS", None) and None; max_steps() is None
    True
    """
    return _positive_int_env(MAX_STEPS_VAR)


def _positive_int_env(var: str) -> int | None:
    """``$var`` as a whole number >= 1, or None when unset or blank; anything else is a ConfigError naming it."""
    raw = os.environ.get(var, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"${var}={raw!r} is not accepted; use a whole number >= 1, or unset it")
    return value


DRY_ITEMS_VAR = "FACEKIT_DRY_ITEMS"
DEFAULT_DRY_ITEMS = 32  # people, images per person, pairs... in a dry run: enough for P-K batches and 2 steps
COUNT_KEY = "facekit_count"  # dataclass field metadata: "items", "steps" or None (see count())
COUNT_KINDS = ("items", "steps", None)
ITEM_NAMES = re.compile(r"(^|_)(identities|people|per_id|per_person|per_kind|per_group|per_fold|images|pairs|"
                        r"impostors|genuine|scenes|faces|chips|train|test|val|heldout|unknown|known)($|_)")
STEP_NAMES = re.compile(r"(^|_)(steps|repeats|rounds|warmup)$")
NEVER_NAMES = re.compile(r"(^|_)(min|size|dim|batch|batches|epoch|epochs|patience|seed)($|_)|(^|_)folds?$")


def dry_run() -> bool:
    """Whether this is a dry run (``$FACEKIT_MAX_STEPS`` set).

    >>> import os; os.environ.pop("FACEKIT_MAX_STEPS", None) and None; dry_run()
    False
    """
    return max_steps() is not None


def count(kind: str | None = "items", *, floor: int = 1) -> Any:
    """Mark a field of a sizes dataclass for dry runs: ``"items"`` (capped at :func:`dry_items`), ``"steps"``
    (capped at :func:`max_steps`) or None (never capped); a capped value never goes below `floor`.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Sizes:
    ...     people: int = count(floor=40)  # P-K batches need 40 people
    ...     width: int = count(None)
    >>> Sizes(100, 64).people
    100
    """
    if kind not in COUNT_KINDS:
        raise ConfigError(f"count(kind={kind!r}) is not accepted; use one of: {', '.join(map(repr, COUNT_KINDS))}")
    if isinstance(floor, bool) or not isinstance(floor, int) or floor < 1:
        raise ConfigError(f"count(floor={floor!r}) is not accepted; use a whole number >= 1")
    return dataclasses.field(metadata={COUNT_KEY: kind, "floor": floor})


def dry_items() -> int | None:
    """The cap on count-like sizes in a dry run (``$FACEKIT_DRY_ITEMS``, default :data:`DEFAULT_DRY_ITEMS`), or
    None outside a dry run."""
    if max_steps() is None:
        return None
    value = _positive_int_env(DRY_ITEMS_VAR)
    return DEFAULT_DRY_ITEMS if value is None else value


def count_kind(name: str, f: dataclasses.Field | None = None) -> str | None:
    """How a sizes field is capped in a dry run: its :func:`count` mark, else by its name (module docstring).

    >>> [count_kind(n) for n in ["train_identities", "pairs_per_fold", "text_steps", "test_fold", "lfw_min_images"]]
    ['items', 'items', 'steps', None, None]
    """
    if f is not None and COUNT_KEY in f.metadata:
        return f.metadata[COUNT_KEY]
    if STEP_NAMES.search(name):
        return "steps"
    if NEVER_NAMES.search(name) and not name.endswith("per_fold"):  # test_fold is an index, pairs_per_fold a count
        return None
    return "items" if ITEM_NAMES.search(name) else None


def capped(n: int, kind: str = "items", *, floor: int = 1) -> int:
    """`n`, or in a dry run at most the cap of `kind` (``items`` or ``steps``) but not below `floor`.

    >>> import os; os.environ.pop("FACEKIT_MAX_STEPS", None) and None; capped(5000)
    5000
    """
    cap = dry_items() if kind == "items" else max_steps() if kind == "steps" else None
    if kind not in ("items", "steps"):
        raise ConfigError(f"capped(kind={kind!r}) is not accepted; use 'items' or 'steps'")
    if cap is None or isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        return n
    return min(n, max(cap, floor))


def cap_sizes(sizes: T) -> tuple[T, dict]:
    """A copy of the sizes dataclass with its count-like ints capped for a dry run, and ``{field: (old, new)}``
    of what changed. Outside a dry run `sizes` comes back unchanged."""
    changes, changed = {}, {}
    for f in dataclasses.fields(sizes):
        value = getattr(sizes, f.name)
        kind = count_kind(f.name, f)
        if kind is None or isinstance(value, bool) or not isinstance(value, int):
            continue
        new = capped(value, kind, floor=f.metadata.get("floor", 1))
        if new != value:
            changes[f.name], changed[f.name] = new, (value, new)
    return (dataclasses.replace(sizes, **changes) if changes else sizes), changed
