"""An exploration's controls: a numeric :class:`Slider` or a :class:`Choice` of named options."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from facekit.config import ConfigError


@dataclass(frozen=True)
class Slider:
    """A numeric control: ``lo`` to ``hi`` in steps of ``step``, starting at ``default``; ``integer`` for ints."""

    lo: float
    hi: float
    step: float
    default: float
    integer: bool = False
    description: str = ""

    def __post_init__(self):
        if not (self.lo <= self.default <= self.hi and self.step > 0):
            raise ConfigError(f"Slider needs lo <= default <= hi and step > 0, got lo={self.lo}, "
                              f"default={self.default}, hi={self.hi}, step={self.step}")

    def values(self) -> list:
        """Every value the slider can take, lo to hi."""
        n = int(math.floor((self.hi - self.lo) / self.step + 1e-9)) + 1
        vals = [min(self.lo + i * self.step, self.hi) for i in range(n)]
        return [int(round(v)) for v in vals] if self.integer else vals

    def check(self, name: str, value) -> Any:
        slack = 1e-9 * max(1.0, abs(self.hi - self.lo))  # a widget's float rounding at either end
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or not self.lo - slack <= value <= self.hi + slack):
            raise ConfigError(f"{name}={value!r} is not accepted; use a number in [{self.lo}, {self.hi}]")
        value = min(max(value, self.lo), self.hi)
        return int(round(value)) if self.integer else float(value)


@dataclass(frozen=True)
class Choice:
    """A control with named options (a dropdown or toggle buttons); ``default`` is one of ``options``."""

    options: tuple
    default: Any
    description: str = ""

    def __post_init__(self):
        if self.default not in self.options:
            raise ConfigError(f"Choice default {self.default!r} is not one of {self.options!r}")

    def values(self) -> list:
        return list(self.options)

    def check(self, name: str, value) -> Any:
        if value not in self.options:
            raise ConfigError(f"{name}={value!r} is not accepted; use one of: {', '.join(map(repr, self.options))}")
        return value


Control = Slider | Choice
