"""Sinks: where audio and messages go (WAV file, JSON-lines event log, console, null).

Sinks run on the worker thread, after the chain. A file sink writes to a temporary file beside the
target and renames it on a clean finish, so no half-written file is ever left under the real name.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile as sf

from .bus import Bus, Subscription
from .component import Component
from .errors import RtAudioError
from .params import Param
from .registry import register
from .stage import AudioFormat


class Sink(Component):
    role: ClassVar[str] = "sink"
    wants_audio: ClassVar[bool] = True
    topics: ClassVar[set[str] | None] = set()  # bus topics to receive; None = all

    def open(self, fmt: AudioFormat, bus: Bus) -> None:
        self.fmt = fmt
        self.sub: Subscription | None = (
            bus.subscribe(self.topics, maxlen=65536) if self.topics != set() else None
        )

    def write(self, block: np.ndarray, sample: int) -> None:
        """Audio leaving the chain; `sample` is the index of its first frame."""

    def poll(self) -> None:
        """Consume messages published since the last call."""
        if self.sub is not None:
            for msg in self.sub.drain():
                self.on_message(msg)

    def on_message(self, msg) -> None:
        pass

    def close(self, keep: bool = True) -> None:
        """Finish. `keep=False` after a failure that makes the output worthless."""

    def counters(self) -> dict[str, Any]:
        return {}


class _AtomicFile:
    """A path written under a temporary name and moved into place on success."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise RtAudioError(f"{path}: is a directory")
        if not self.path.parent.exists():
            raise RtAudioError(f"{path}: directory {self.path.parent} does not exist")
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")

    def finish(self, keep: bool) -> None:
        if keep:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


@register
class WavSink(Sink):
    kind = "wav"
    summary = "Writes the chain's audio to a WAV/FLAC file (format from the extension)."
    params = (
        Param("path", str, None),
        Param("subtype", str, "FLOAT", choices=("FLOAT", "PCM_16", "PCM_24", "PCM_32")),
    )

    def open(self, fmt: AudioFormat, bus: Bus) -> None:
        super().open(fmt, bus)
        self.file = _AtomicFile(self.path)
        fmt_name = "FLAC" if self.file.path.suffix.lower() == ".flac" else "WAV"
        subtype = "PCM_24" if fmt_name == "FLAC" and self.subtype in ("FLOAT", "PCM_32") else self.subtype
        try:
            self.sf = sf.SoundFile(
                str(self.file.tmp), "w", fmt.rate, fmt.channels, subtype=subtype, format=fmt_name
            )
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise RtAudioError(f"{self.path}: cannot write ({e})") from None
        self.frames = 0

    def write(self, block: np.ndarray, sample: int) -> None:
        if block.shape[0]:
            self.sf.write(block)
            self.frames += block.shape[0]

    def close(self, keep: bool = True) -> None:
        if hasattr(self, "sf") and not self.sf.closed:
            self.sf.close()
            self.file.finish(keep)

    def counters(self) -> dict[str, Any]:
        return {"frames written": getattr(self, "frames", 0)}


def message_to_json(msg) -> dict[str, Any]:
    data = msg.data
    if isinstance(data, np.ndarray):
        data = data.tolist()
    elif isinstance(data, dict):
        data = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in data.items()}
    return {
        "topic": msg.topic,
        "sample": msg.sample,
        "time": round(msg.time, 6),
        "stage": msg.stage,
        "data": data,
    }


@register
class EventLogSink(Sink):
    kind = "eventlog"
    summary = "Writes bus messages of the chosen topics as JSON lines."
    wants_audio = False
    params = (
        Param("path", str, None),
        Param("topics", str, "keyword,level", help="comma-separated topics, or '*' for all"),
    )

    def open(self, fmt: AudioFormat, bus: Bus) -> None:
        self.topics = None if self.values["topics"] == "*" else {
            t.strip() for t in self.values["topics"].split(",") if t.strip()
        }
        super().open(fmt, bus)
        self.file = _AtomicFile(self.path)
        self.fh = open(self.file.tmp, "w", encoding="utf-8")
        self.lines = 0

    def on_message(self, msg) -> None:
        self.fh.write(json.dumps(message_to_json(msg)) + "\n")
        self.lines += 1

    def close(self, keep: bool = True) -> None:
        if hasattr(self, "fh") and not self.fh.closed:
            self.poll()
            self.fh.close()
            self.file.finish(keep)

    def counters(self) -> dict[str, Any]:
        return {"events logged": getattr(self, "lines", 0)}


@register
class ConsoleSink(Sink):
    kind = "console"
    summary = "Prints keyword events (and other chosen topics) as they happen."
    wants_audio = False
    params = (Param("topics", str, "keyword", help="comma-separated topics"),)

    def open(self, fmt: AudioFormat, bus: Bus) -> None:
        self.topics = {t.strip() for t in self.values["topics"].split(",") if t.strip()}
        super().open(fmt, bus)

    def on_message(self, msg) -> None:
        data = msg.data
        if isinstance(data, dict) and "label" in data:
            text = f"{data['label']}  score={data.get('score', 0):.2f}"
        elif msg.topic == "level":
            rms = " ".join(f"{v:6.1f}" for v in data["rms_db"])
            peak = " ".join(f"{v:6.1f}" for v in data["peak_db"])
            text = f"rms {rms} dBFS  peak {peak} dBFS{'  CLIP' if data['clip'] else ''}"
        else:
            text = json.dumps(message_to_json(msg)["data"])[:120]
        print(f"[{msg.time:9.3f} s] {msg.topic}: {text}", file=sys.stdout, flush=True)


@register
class NullSink(Sink):
    kind = "null"
    summary = "Discards the audio."
