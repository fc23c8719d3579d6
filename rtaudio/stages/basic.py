"""Gain and biquad filters: the simplest stages, and the models for writing your own."""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt

from ..errors import AudioFormatError
from ..params import Param
from ..registry import register
from ..stage import AudioFormat, Stage


@register
class Gain(Stage):
    kind = "gain"
    summary = "Multiplies the signal by a gain in dB."
    params = (Param("db", float, 0.0, min=-120.0, max=60.0, unit="dB", live=True),)

    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        self.on_param_change("db")
        return fmt

    def on_param_change(self, name: str) -> None:
        self.factor = np.float32(10 ** (self.db / 20))

    def process(self, block: np.ndarray) -> np.ndarray:
        return block * self.factor


class _Butterworth(Stage):
    btype = ""
    params = (
        Param("hz", float, 100.0, min=1.0, max=192000.0, unit="Hz", live=True),
        Param("order", int, 2, min=1, max=8, help="2 = one biquad (12 dB/octave)"),
    )

    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        self._design(fmt.rate)
        self.zi = np.zeros((self.sos.shape[0], 2, fmt.channels))
        return fmt

    def _design(self, rate: int) -> None:
        if self.hz >= rate / 2:
            raise AudioFormatError(
                f"{self.where}: hz={self.hz} must be below half the sample rate ({rate / 2:g} Hz)"
            )
        self.sos = butter(self.order, self.hz, btype=self.btype, fs=rate, output="sos")

    def on_param_change(self, name: str) -> None:
        if self.fmt is not None:
            self._design(self.fmt.rate)  # filter state carries over: no click on a live change

    def reset(self) -> None:
        self.zi[:] = 0.0

    def process(self, block: np.ndarray) -> np.ndarray:
        if block.shape[0] == 0:
            return block
        y, self.zi = sosfilt(self.sos, block, axis=0, zi=self.zi)
        return y.astype(np.float32)


@register
class HighPass(_Butterworth):
    kind = "highpass"
    summary = "Butterworth high-pass (scipy sos, filter state carried across blocks)."
    btype = "highpass"


@register
class LowPass(_Butterworth):
    kind = "lowpass"
    summary = "Butterworth low-pass (scipy sos, filter state carried across blocks)."
    btype = "lowpass"
