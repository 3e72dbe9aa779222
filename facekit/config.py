"""Typed, frozen configurations whose unknown keys are an error that names them."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration key or value that is not accepted; the message says which and what is."""


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def check_keys(keys, accepted, *, what: str) -> None:
    """Raise ConfigError naming every key of `keys` not in `accepted` (with a close match if any)."""
    accepted = list(accepted)
    unknown = [k for k in keys if k not in accepted]
    if not unknown:
        return
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(k, accepted, n=1)
        hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ConfigError(
        f"unknown {what}: {', '.join(hints)}; accepted: {', '.join(sorted(accepted))}"
    )


def make_config(cls: type[T], values: Mapping[str, Any] | None = None, /, **overrides) -> T:
    """Build the dataclass `cls` from a mapping and keyword overrides, rejecting unknown keys.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class C:
    ...     lr: float = 0.1
    >>> make_config(C, lr=0.5)
    C(lr=0.5)
    >>> make_config(C, lrr=0.5)
    Traceback (most recent call last):
    ...
    facekit.config.ConfigError: unknown C key: 'lrr' (did you mean 'lr'?); accepted: lr
    """
    merged = {**(dict(values) if values else {}), **overrides}
    check_keys(merged, field_names(cls), what=f"{cls.__name__} key")
    return cls(**merged)


def replace(config: T, **changes) -> T:
    """`dataclasses.replace` that names a mistyped key instead of a bare TypeError."""
    check_keys(changes, field_names(type(config)), what=f"{type(config).__name__} key")
    return dataclasses.replace(config, **changes)


def config_from(cls: type[T], config: T | Mapping[str, Any] | str | None = None, /, **overrides) -> T:
    """`cls` from an instance, a mapping of its fields, None (the defaults) or, when `cls` has a ``preset``
    classmethod, a preset name; keyword `overrides` on top (a mistyped key is a ConfigError naming it).

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class C:
    ...     lr: float = 0.1
    >>> config_from(C, None, lr=0.5), config_from(C, {"lr": 0.2}), config_from(C, C(0.3), lr=0.4)
    (C(lr=0.5), C(lr=0.2), C(lr=0.4))
    """
    if isinstance(config, cls):
        return replace(config, **overrides)
    if isinstance(config, str):
        if not hasattr(cls, "preset"):
            raise ConfigError(f"{cls.__name__} has no presets: pass a {cls.__name__}, a mapping or None, not {config!r}")
        return cls.preset(config, **overrides)
    return make_config(cls, config, **overrides)


def choice(value: str, accepted, *, name: str) -> str:
    """Return `value` if it is one of `accepted`, else raise ConfigError naming `name`."""
    accepted = list(accepted)
    if value not in accepted:
        raise ConfigError(f"{name}={value!r} is not accepted; use one of: {', '.join(map(repr, accepted))}")
    return value
