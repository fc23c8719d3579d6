"""The common base of sources, stages and sinks: declared, validated parameters."""

from __future__ import annotations

from typing import Any, ClassVar

from .errors import ConfigError
from .params import Param


class Component:
    """Something a pipeline names by `kind` and configures with declared parameters."""

    kind: ClassVar[str] = ""
    role: ClassVar[str] = ""  # "source", "stage" or "sink"
    params: ClassVar[tuple[Param, ...]] = ()
    summary: ClassVar[str] = ""

    def __init__(self, where: str | None = None, **values: Any) -> None:
        where = where or f"{self.role} '{self.kind}'"
        declared = {p.name: p for p in self.params}
        for key in values:
            if key not in declared:
                known = ", ".join(declared) or "none"
                raise ConfigError(f"{where}: unknown key '{key}' (known keys: {known})")
        self.where = where
        self.values: dict[str, Any] = {}
        for p in self.params:
            raw = values.get(p.name, p.default)
            self.values[p.name] = p.validate(raw, where)
            setattr(self, p.name, self.values[p.name])
        self.running = False

    @classmethod
    def param(cls, name: str) -> Param:
        for p in cls.params:
            if p.name == name:
                return p
        raise ConfigError(f"{cls.role} '{cls.kind}': unknown key '{name}'")

    def set_param(self, name: str, value: Any) -> None:
        """Change a parameter; while running only `live` parameters may change."""
        p = self.param(name)
        if self.running and not p.live:
            raise ConfigError(f"{self.where}: key '{name}' cannot change while running")
        self.values[name] = p.validate(value, self.where)
        setattr(self, name, self.values[name])
        self.on_param_change(name)

    def on_param_change(self, name: str) -> None:
        """Hook: recompute derived state after `set_param` (called on the worker thread)."""

    def non_default_values(self) -> dict[str, Any]:
        return {p.name: self.values[p.name] for p in self.params if self.values[p.name] != p.default}
