"""Finds components by kind: built-ins, `rtaudio.stages` entry points, or an import path."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from .component import Component
from .errors import ConfigError

_BUILTIN_MODULES = (
    "rtaudio.sources",
    "rtaudio.sinks",
    "rtaudio.stages.basic",
    "rtaudio.stages.level",
    "rtaudio.stages.resample",
    "rtaudio.stages.spectral",
    "rtaudio.stages.denoise",
    "rtaudio.devices",
    "rtaudio.display.window",
    "rtaudio.stages.features",
    "rtaudio.kws.stage",
    "rtaudio.hmm.stage",
    "rtaudio.stages.fusion",
    "rtaudio.stages.tap",
)
_REGISTRY: dict[str, type[Component]] = {}
_loaded = False


def register(cls: type[Component]) -> type[Component]:
    """Class decorator: make a component available under its `kind`."""
    if not cls.kind:
        raise TypeError(f"{cls.__name__} has no kind")
    _REGISTRY[cls.kind] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if not (e.name and mod.startswith(e.name)):  # a missing dependency: fail loudly
                raise
    for group in ("rtaudio.stages", "rtaudio.sources", "rtaudio.sinks"):
        for ep in entry_points(group=group):
            try:
                cls = ep.load()
            except Exception as e:  # a broken plug-in must not break rtaudio
                _REGISTRY.setdefault(ep.name, _Broken.make(ep.name, f"{ep.value}: {e}"))
                continue
            _REGISTRY.setdefault(ep.name, cls)


class _Broken(Component):
    reason = ""

    @classmethod
    def make(cls, kind: str, reason: str) -> type[Component]:
        return type(f"Broken_{kind}", (cls,), {"kind": kind, "reason": reason})

    def __init__(self, where: str | None = None, **values) -> None:
        raise ConfigError(f"{where or self.kind}: plug-in failed to load ({self.reason})")


def _import_path(path: str) -> type[Component]:
    mod_name, sep, attr = path.partition(":")
    if not sep:
        mod_name, _, attr = path.rpartition(".")
    try:
        mod = importlib.import_module(mod_name)
        cls = getattr(mod, attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"cannot import '{path}': {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        raise ConfigError(f"'{path}' is not an rtaudio Stage, Source or Sink class")
    return cls


def lookup(kind: str, role: str | None = None, where: str = "") -> type[Component]:
    """The class for `kind` (a registered name or `package.module:Class`)."""
    _load()
    prefix = f"{where}: " if where else ""
    if kind in _REGISTRY:
        cls = _REGISTRY[kind]
    elif "." in kind or ":" in kind:
        try:
            cls = _import_path(kind)
        except ConfigError as e:
            raise ConfigError(f"{prefix}{e}") from None
    else:
        candidates = ", ".join(sorted(k for k, c in _REGISTRY.items() if not role or c.role == role))
        what = role or "component"
        raise ConfigError(f"{prefix}unknown {what} kind '{kind}' (known: {candidates})")
    if role and cls.role != role:
        raise ConfigError(f"{prefix}'{kind}' is a {cls.role}, not a {role}")
    return cls


def all_kinds() -> dict[str, type[Component]]:
    _load()
    return dict(sorted(_REGISTRY.items()))
