"""Declared parameters: type, range, default, unit, and whether they may change while running."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: Any
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    unit: str = ""
    live: bool = False
    help: str = ""
    optional: bool = False  # the value may be None (absent)

    def describe_range(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.min is not None and self.max is not None:
            return f"{self.type.__name__} in [{self.min}, {self.max}]"
        if self.min is not None:
            return f"{self.type.__name__} >= {self.min}"
        if self.max is not None:
            return f"{self.type.__name__} <= {self.max}"
        return self.type.__name__

    def validate(self, value: Any, where: str) -> Any:
        """Return the value converted to this parameter's type, or raise ConfigError naming `where`."""
        if value is None:
            if self.optional:
                return None
            raise ConfigError(f"{where}: key '{self.name}' is required ({self.describe_range()})")
        expected = self.describe_range()
        if self.type is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: key '{self.name}' must be true or false, got {value!r}")
            return value
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}: key '{self.name}' must be a {expected}, got {value!r}")
            if self.type is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ConfigError(f"{where}: key '{self.name}' must be an integer, got {value!r}")
                value = int(value)
            else:
                value = float(value)
                if not math.isfinite(value):
                    raise ConfigError(f"{where}: key '{self.name}' must be finite, got {value!r}")
            if (self.min is not None and value < self.min) or (
                self.max is not None and value > self.max
            ):
                raise ConfigError(
                    f"{where}: key '{self.name}' = {value!r} is out of range (expected {expected}"
                    f"{' ' + self.unit if self.unit else ''})"
                )
            return value
        if self.type is str:
            if not isinstance(value, str):
                raise ConfigError(f"{where}: key '{self.name}' must be a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise ConfigError(f"{where}: key '{self.name}' = {value!r}: expected {expected}")
            return value
        raise ConfigError(f"{where}: key '{self.name}' has unsupported type {self.type.__name__}")


def parse_scalar(text: str) -> Any:
    """Parse a value written on the command line (`db=-6`, `window=hann`, `on=true`)."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text
