"""Feature stages: log-mel (`logmel`) and MFCC (`mfcc`) frames published on the bus.

Audio passes through unchanged (channels averaged for analysis). Each block's new frames go out
as one message: `sample` = start of the first new frame, data `{"frames": (n, dim) float32,
"hop": hop, "win": win}`. The maths is `rtaudio.kws.features`, the code keyword models train on.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..kws.features import FeatureConfig, FeatureStream
from ..params import Param
from ..registry import register
from ..stage import AudioFormat, Stage


class _FeatureStage(Stage):
    params = (
        Param("win_ms", float, 25.0, min=1.0, max=1000.0, unit="ms"),
        Param("hop_ms", float, 10.0, min=0.5, max=1000.0, unit="ms"),
        Param("n_mels", int, 40, min=1, max=256),
        Param("fmin", float, 20.0, min=0.0, max=96000.0, unit="Hz"),
        Param("fmax", float, 7600.0, min=1.0, max=192000.0, unit="Hz", help="clipped to rate/2"),
    )

    def feature_config(self, rate: int) -> FeatureConfig:
        win = max(1, int(round(self.win_ms * rate / 1000)))
        hop = max(1, int(round(self.hop_ms * rate / 1000)))
        n_fft = 1 << max(0, (win - 1).bit_length())
        try:
            return FeatureConfig(
                kind=self.kind,
                rate=rate,
                win=win,
                hop=hop,
                n_fft=n_fft,
                n_mels=self.n_mels,
                fmin=self.fmin,
                fmax=min(self.fmax, rate / 2),
                n_mfcc=getattr(self, "n_mfcc", 13),
            )
        except ConfigError as e:
            raise ConfigError(f"{self.where}: {e}") from None

    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        self.cfg = self.feature_config(fmt.rate)
        self.stream = FeatureStream(self.cfg)
        return fmt

    def reset(self) -> None:
        self.stream.reset()

    def process(self, block: np.ndarray) -> np.ndarray:
        mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
        first = self.stream.frames_done
        frames = self.stream.push(mono)
        if frames.shape[0]:
            self.emit(
                self.kind, first * self.cfg.hop, {"frames": frames, "hop": self.cfg.hop, "win": self.cfg.win}
            )
        return block


@register
class LogMel(_FeatureStage):
    kind = "logmel"
    summary = "Log-mel frames (25 ms / 10 ms by default) published as 'logmel' messages."


@register
class MFCC(_FeatureStage):
    kind = "mfcc"
    summary = "MFCC frames (DCT of log-mel) published as 'mfcc' messages."
    params = (*_FeatureStage.params, Param("n_mfcc", int, 13, min=1, max=256))
