"""Sample-rate conversion with soxr's streaming resampler.

soxr holds back part of its output (its filter delay plus internal chunking; HQ 48k->16k: up to
~586 output samples, measured in `_worst_holdback`). This stage turns the worst hold-back into a
plain, declared delay (it emits that many zeros first), so downstream sees a constant latency.
"""

from __future__ import annotations

import numpy as np
import soxr

from ..params import Param
from ..registry import register
from ..stage import AudioFormat, Stage


@register
class Resample(Stage):
    kind = "resample"
    summary = "Converts the sample rate (soxr, streaming); latency declared."
    params = (
        Param("rate", int, 16000, min=1000, max=384000, unit="Hz"),
        Param("quality", str, "HQ", choices=("QQ", "LQ", "MQ", "HQ", "VHQ")),
    )

    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        self.channels = fmt.channels
        self.delay_out = self._worst_holdback(fmt)
        self.reset()
        ratio = self.rate / fmt.rate
        return AudioFormat(self.rate, fmt.channels, int(np.ceil(fmt.max_block * ratio)) + 64)

    def _worst_holdback(self, fmt: AudioFormat) -> int:
        """The most output soxr keeps pending, measured on one second of small blocks."""
        probe = self._new_stream(fmt)
        ratio = self.rate / fmt.rate
        zeros = np.zeros((64, fmt.channels), np.float32)
        fed = out = worst = 0
        for _ in range(max(1, fmt.rate // 64)):
            out += probe.resample_chunk(zeros).shape[0]
            fed += 64
            worst = max(worst, fed * ratio - out)
        return int(np.ceil(worst))

    def _new_stream(self, fmt: AudioFormat) -> soxr.ResampleStream:
        return soxr.ResampleStream(
            fmt.rate, self.rate, fmt.channels, dtype="float32", quality=self.quality
        )

    def reset(self) -> None:
        self.stream = self._new_stream(self.fmt)
        self.pad = self.delay_out

    @property
    def latency(self) -> int:
        return int(round(self.delay_out * self.fmt.rate / self.rate)) if self.fmt else 0

    def process(self, block: np.ndarray) -> np.ndarray:
        if block.shape[0] == 0:
            return np.zeros((0, self.channels), np.float32)
        y = self.stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32))
        y = y.reshape(-1, self.channels)
        if self.pad:
            y = np.concatenate([np.zeros((self.pad, self.channels), np.float32), y])
            self.pad = 0
        return y
