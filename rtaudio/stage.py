"""The stage contract: prepare(fmt) -> fmt, process(block) -> block, reset(), latency.

Audio is float32 `(frames, channels)`. A stage accepts any block length (0 included) and is
streaming-exact: any partition of a signal gives the same output as the whole signal at once.
Analysis stages pass audio through and publish messages on the bus, stamped with the index of
the sample they describe (in the stage's input sample rate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .bus import Bus, Message
from .component import Component


@dataclass(frozen=True)
class AudioFormat:
    rate: int
    channels: int
    max_block: int = 4096


class Stage(Component):
    role: ClassVar[str] = "stage"

    def __init__(self, where: str | None = None, **values: Any) -> None:
        super().__init__(where, **values)
        self.bus: Bus | None = None
        self.name = self.kind
        self.fmt: AudioFormat | None = None
        self.position = 0  # input samples consumed before the current block

    # -- the contract ---------------------------------------------------------------------------
    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        """Allocate buffers for this format; return the output format. Raise AudioFormatError
        when this format cannot be taken."""
        return fmt

    def process(self, block: np.ndarray) -> np.ndarray:
        return block

    def reset(self) -> None:
        """Back to the state right after `prepare`."""

    @property
    def latency(self) -> int:
        """Samples of delay this stage adds (at its input rate)."""
        return 0

    # -- used by the engine -------------------------------------------------------------------
    def setup(self, fmt: AudioFormat, bus: Bus | None = None, name: str | None = None) -> AudioFormat:
        self.bus = bus
        if name:
            self.name = name
        self.fmt = fmt
        self.position = 0
        out = self.prepare(fmt)
        self.out_fmt = out
        return out

    def run(self, block: np.ndarray) -> np.ndarray:
        out = self.process(block)
        self.position += block.shape[0]
        return out

    def restart(self) -> None:
        self.position = 0
        self.reset()

    def emit(self, topic: str, sample: int, data: Any) -> None:
        """Publish an analysis result for the audio at input sample index `sample`."""
        if self.bus is not None:
            rate = self.fmt.rate if self.fmt else 0
            self.bus.publish(Message(topic, int(sample), rate, self.name, data))
