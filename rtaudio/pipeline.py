"""Pipeline specs: TOML files in `pipelines/`, and the one-line chain syntax.

A pipeline names a source, an ordered list of stages and the sinks, each as a `kind` plus the
values of its declared parameters. Loading validates every value (errors name the file, the stage
and the key); `dumps(load(f))` gives back the same pipeline.
"""

from __future__ import annotations

import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from .component import Component
from .errors import ConfigError, RtAudioError
from .params import parse_scalar
from .registry import lookup

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
PIPELINE_DIRS = (Path.cwd() / "pipelines", PACKAGE_DIR.parent / "pipelines")
TOP_KEYS = {"pipeline", "source", "stages", "sinks"}
PIPELINE_KEYS = {"description": str, "block": int}


@dataclass
class ComponentSpec:
    kind: str
    values: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    def build(self, role: str) -> Component:
        cls = lookup(self.kind, role, self.where)
        return cls(where=self.where, **self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.values}


@dataclass
class PipelineSpec:
    source: ComponentSpec | None = None
    stages: list[ComponentSpec] = field(default_factory=list)
    sinks: list[ComponentSpec] = field(default_factory=list)
    description: str = ""
    block: int = 1024
    origin: str = "<chain>"

    def validate(self) -> None:
        """Build every component once, so bad kinds and values fail before anything runs."""
        if self.source is not None:
            self.source.build("source")
        for st in self.stages:
            st.build("stage")
        for sk in self.sinks:
            sk.build("sink")

    def build(self):
        if self.source is None:
            raise ConfigError(f"{self.origin}: the pipeline has no [source]")
        source = self.source.build("source")
        stages = [s.build("stage") for s in self.stages]
        sinks = [s.build("sink") for s in self.sinks]
        return source, stages, sinks

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        head: dict[str, Any] = {}
        if self.description:
            head["description"] = self.description
        head["block"] = self.block
        d["pipeline"] = head
        if self.source is not None:
            d["source"] = self.source.to_dict()
        if self.stages:
            d["stages"] = [s.to_dict() for s in self.stages]
        if self.sinks:
            d["sinks"] = [s.to_dict() for s in self.sinks]
        return d

    def override(self, key: str, value: Any) -> int:
        """Set `key` on every source/sink that declares it (e.g. device, latency, blocksize)."""
        hits = 0
        for spec, role in [(self.source, "source")] + [(s, "sink") for s in self.sinks]:
            if spec is None:
                continue
            cls = lookup(spec.kind, role, spec.where)
            if any(p.name == key for p in cls.params):
                spec.values[key] = value
                hits += 1
        return hits


def resolve(name: str) -> Path:
    """A pipeline path, or a name of a file in `pipelines/`. A directory of that name in the
    current directory (say `demo/`, where `rtaudio demo` writes) does not hide the pipeline."""
    p = Path(name)
    if p.suffix == ".toml" or p.is_file() or "/" in name:
        if not p.is_file():
            raise RtAudioError(f"{name}: no such pipeline file")
        return p
    for d in PIPELINE_DIRS:
        cand = d / f"{name}.toml"
        if cand.exists():
            return cand
    known = sorted({f.stem for d in PIPELINE_DIRS if d.is_dir() for f in d.glob("*.toml")})
    raise RtAudioError(f"unknown pipeline '{name}' (known: {', '.join(known) or 'none'})")


def load(name: str) -> PipelineSpec:
    path = resolve(name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RtAudioError(f"{path}: cannot read ({e})") from None
    return loads(text, str(path))


def _expand(value: Any, base: Path | None) -> Any:
    if isinstance(value, str) and "{data}" in value:
        return value.replace("{data}", str(DATA_DIR))
    return value


def _component(raw: Any, where: str, base: Path | None) -> ComponentSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table with a 'kind' key")
    if "kind" not in raw:
        raise ConfigError(f"{where}: key 'kind' is missing")
    kind = raw["kind"]
    if not isinstance(kind, str):
        raise ConfigError(f"{where}: key 'kind' must be a string")
    values = {k: _expand(v, base) for k, v in raw.items() if k != "kind"}
    return ComponentSpec(kind, values, f"{where} '{kind}'")


def loads(text: str, origin: str = "<string>") -> PipelineSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{origin}: TOML syntax error: {e}") from None
    base = Path(origin).parent if origin and not origin.startswith("<") else None
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(f"{origin}: unknown table '{key}' (expected {', '.join(sorted(TOP_KEYS))})")
    spec = PipelineSpec(origin=origin)
    head = data.get("pipeline", {})
    for key, value in head.items():
        if key not in PIPELINE_KEYS:
            raise ConfigError(f"{origin}: [pipeline] unknown key '{key}' (known: description, block)")
        if not isinstance(value, PIPELINE_KEYS[key]) or isinstance(value, bool):
            raise ConfigError(f"{origin}: [pipeline] key '{key}' must be a {PIPELINE_KEYS[key].__name__}")
    spec.description = head.get("description", "")
    spec.block = head.get("block", 1024)
    if not 1 <= spec.block <= 1 << 20:
        raise ConfigError(f"{origin}: [pipeline] key 'block' = {spec.block} is out of range [1, 1048576]")
    if "source" in data:
        spec.source = _component(data["source"], f"{origin}: [source]", base)
    for name in ("stages", "sinks"):
        items = data.get(name, [])
        if not isinstance(items, list):
            raise ConfigError(f"{origin}: '{name}' must be an array of tables ([[{name}]])")
        for i, raw in enumerate(items, 1):
            getattr(spec, name).append(_component(raw, f"{origin}: {name[:-1]} {i}", base))
    spec.validate()
    return spec


def dumps(spec: PipelineSpec) -> str:
    return tomli_w.dumps(spec.to_dict())


def parse_chain(text: str, origin: str = "<chain>") -> PipelineSpec:
    """`"tone hz=440 ! gain db=-6 ! highpass hz=80 ! wav path=out.wav"` -> a PipelineSpec.

    The first element may be a source and the last ones sinks; the rest are stages."""
    spec = PipelineSpec(origin=origin)
    parts = [p.strip() for p in text.split("!")]
    if not parts or any(not p for p in parts):
        raise ConfigError(f"{origin}: empty element in chain '{text}'")
    for i, part in enumerate(parts, 1):
        try:
            words = shlex.split(part)
        except ValueError as e:
            raise ConfigError(f"{origin}: element {i} '{part}': {e}") from None
        kind, values = words[0], {}
        for w in words[1:]:
            key, eq, val = w.partition("=")
            if not eq or not key:
                raise ConfigError(f"{origin}: element {i} '{kind}': expected key=value, got '{w}'")
            values[key] = _expand(parse_scalar(val), None)
        cls = lookup(kind, None, f"{origin}: element {i}")
        where = f"{origin}: {cls.role} {i} '{kind}'"
        cs = ComponentSpec(kind, values, where)
        if cls.role == "source":
            if i != 1:
                raise ConfigError(f"{where}: a source must come first")
            spec.source = cs
        elif cls.role == "sink":
            spec.sinks.append(cs)
        else:
            if spec.sinks:
                raise ConfigError(f"{where}: a stage cannot follow a sink")
            spec.stages.append(cs)
    spec.validate()
    return spec


def load_any(text: str) -> PipelineSpec:
    """A chain if it contains '!' or '=', else a pipeline name or file, else a one-stage chain."""
    if "!" in text or ("=" in text and not text.endswith(".toml")):
        return parse_chain(text)
    try:
        return load(text)
    except RtAudioError as e:
        if "unknown pipeline" not in str(e):
            raise
        try:
            return parse_chain(text)
        except ConfigError as chain_error:
            if "unknown" not in str(chain_error):
                raise
            raise RtAudioError(f"'{text}' is neither a pipeline nor a stage kind: {e}; "
                               f"run 'rtaudio stages' for the stage kinds") from None
