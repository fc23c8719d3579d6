"""The `window` sink: the live monitor window's link to the pipeline.

The sink itself does no GUI work on the worker thread: it only holds a bus subscription
("spectrum", "level", "keyword"). The Qt main loop (`rtaudio.display.run_gui`) drains it on a timer,
so a slow GUI drops old messages (counted by the bus) and never blocks the worker.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..bus import Bus, Message
from ..params import Param
from ..registry import register
from ..sinks import Sink
from ..stage import AudioFormat


@register
class WindowSink(Sink):
    kind = "window"
    summary = "Live monitor window: spectrum, spectrogram, level meters, keyword events, xruns."
    wants_audio: ClassVar[bool] = False
    topics: ClassVar[set[str] | None] = {"spectrum", "level", "keyword"}
    params = (
        Param("fps", float, 60.0, min=1.0, max=240.0, unit="Hz", help="display refresh rate"),
        Param("db_min", float, -120.0, min=-300.0, max=100.0, unit="dB", help="bottom of the scale"),
        Param("db_max", float, 0.0, min=-300.0, max=100.0, unit="dB", help="top of the scale"),
        Param("fmin", float, 20.0, min=0.1, unit="Hz"),
        Param("fmax", float, 0.0, min=0.0, unit="Hz", help="0 = half the sample rate"),
        Param("history", float, 10.0, min=0.5, max=600.0, unit="s", help="spectrogram length"),
        Param("colormap", str, "inferno", help="a pyqtgraph colour map name"),
        Param("meter_min", float, -60.0, min=-200.0, max=-1.0, unit="dBFS"),
        Param("width", int, 1280, min=320, max=8192, unit="px"),
        Param("height", int, 800, min=240, max=8192, unit="px"),
    )
    queue_length = 1024  # messages kept for the GUI (~9 s of spectra at 94/s; 64 kB each at most)

    def open(self, fmt: AudioFormat, bus: Bus) -> None:
        self.fmt = fmt
        self.sub = bus.subscribe(self.topics, maxlen=self.queue_length)
        self.attached = False  # True while a GUI drains the subscription
        self.drawn = 0

    def poll(self) -> None:
        """Worker side: nothing to do while a GUI is attached; otherwise discard the messages."""
        if not self.attached and self.sub is not None:
            self.sub.queue.clear()

    def drain(self) -> list[Message]:
        """GUI side: the messages published since the last call (oldest first)."""
        return self.sub.drain() if self.sub is not None else []

    def counters(self) -> dict[str, Any]:
        return {"frames drawn": getattr(self, "drawn", 0)}
