"""Level meter: RMS and peak in dBFS over fixed windows, published as `level` messages."""

from __future__ import annotations

import numpy as np

from ..params import Param
from ..registry import register
from ..stage import AudioFormat, Stage

FLOOR_DB = -200.0


def to_db(x: np.ndarray | float) -> np.ndarray:
    return 20 * np.log10(np.maximum(np.asarray(x, dtype=np.float64), 10 ** (FLOOR_DB / 20)))


@register
class LevelMeter(Stage):
    kind = "level"
    summary = "RMS and peak per channel in dBFS every `window` ms; flags clipping."
    params = (
        Param("window", float, 50.0, min=1.0, max=10000.0, unit="ms"),
        Param("clip", float, -0.1, min=-60.0, max=0.0, unit="dBFS", help="peak counted as clip"),
    )

    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        self.n = max(1, int(round(self.window * fmt.rate / 1000)))
        self.clip_lin = 10 ** (self.clip / 20)
        self.reset_state(fmt.channels)
        return fmt

    def reset_state(self, channels: int) -> None:
        self.sumsq = np.zeros(channels)
        self.peak = np.zeros(channels)
        self.filled = 0

    def reset(self) -> None:
        self.reset_state(self.fmt.channels)

    def process(self, block: np.ndarray) -> np.ndarray:
        i = 0
        total = block.shape[0]
        while i < total:
            k = min(self.n - self.filled, total - i)
            part = block[i : i + k].astype(np.float64)
            self.sumsq += np.einsum("ij,ij->j", part, part)
            if k:
                np.maximum(self.peak, np.abs(part).max(axis=0), out=self.peak)
            self.filled += k
            i += k
            if self.filled == self.n:
                start = self.position + i - self.n
                rms = np.sqrt(self.sumsq / self.n)
                self.emit(
                    "level",
                    start,
                    {
                        "rms_db": to_db(rms).tolist(),
                        "peak_db": to_db(self.peak).tolist(),
                        "clip": bool((self.peak >= self.clip_lin).any()),
                        "window": self.n,
                    },
                )
                self.reset_state(block.shape[1])
        return block
