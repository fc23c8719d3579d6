"""A user's own stage, in their own module: the README's worked example."""

import numpy as np

from rtaudio.params import Param
from rtaudio.stage import AudioFormat, Stage


class Invert(Stage):
    kind = "invert"
    summary = "Flips the polarity, optionally only every other channel."
    params = (Param("odd_only", bool, False, help="invert only channels 1, 3, ..."),)

    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        self.sign = np.ones(fmt.channels, np.float32)
        self.sign[1 if self.odd_only else 0 :: 2 if self.odd_only else 1] = -1.0
        return fmt

    def process(self, block: np.ndarray) -> np.ndarray:
        return block * self.sign
