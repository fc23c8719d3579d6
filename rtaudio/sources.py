"""Sources: audio files (soundfile) and signal generators (tone, noise, chirp).

A pull source answers `read(n)` with up to n frames (None at the end). `realtime` tells the engine
to pace it at the sample rate (playing a file "live"); otherwise it runs as fast as the CPU allows.
Device input is a push source (see `rtaudio.devices`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile as sf

from .component import Component
from .errors import AudioFormatError, RtAudioError
from .params import Param
from .registry import register
from .stage import AudioFormat


class Source(Component):
    role: ClassVar[str] = "source"
    push: ClassVar[bool] = False  # True: delivers audio itself (a device callback) into a ring

    def open(self) -> AudioFormat:
        raise NotImplementedError

    def read(self, n: int) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    realtime: bool = False  # overridden by a `realtime` param where the source has one

    @property
    def total_frames(self) -> int | None:
        return None

    def counters(self) -> dict[str, Any]:
        return {}


def _check_finite(block: np.ndarray, where: str, start: int, rate: int) -> None:
    if not np.isfinite(block).all():
        bad = int(np.argmax(~np.isfinite(block).all(axis=1)))
        t = (start + bad) / rate
        raise AudioFormatError(f"{where}: NaN or Inf sample at frame {start + bad} ({t:.3f} s)")


@register
class FileSource(Source):
    kind = "file"
    summary = "Reads a WAV/FLAC/OGG file with soundfile."
    params = (
        Param("path", str, None, help="audio file to read"),
        Param("realtime", bool, False, help="pace at the sample rate, as if live"),
        Param("loop", bool, False, help="start again at the end"),
    )

    def open(self) -> AudioFormat:
        p = Path(self.path)
        if not p.exists():
            raise RtAudioError(f"{self.path}: no such file")
        if p.is_dir():
            raise RtAudioError(f"{self.path}: is a directory, not an audio file")
        try:
            self.file = sf.SoundFile(str(p))
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:
            msg = str(e).split("\n")[0]
            raise AudioFormatError(f"{self.path}: cannot read audio ({msg})") from None
        if self.file.frames == 0:
            self.file.close()
            raise AudioFormatError(f"{self.path}: contains no audio frames")
        self.pos = 0
        return AudioFormat(self.file.samplerate, self.file.channels)

    @property
    def total_frames(self) -> int | None:
        return None if self.loop else self.file.frames

    def read(self, n: int) -> np.ndarray | None:
        try:
            block = self.file.read(n, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioFormatError(f"{self.path}: read failed at frame {self.pos} ({e})") from None
        if block.shape[0] == 0:
            if self.loop and self.pos > 0:
                self.file.seek(0)
                return self.read(n)
            return None
        _check_finite(block, self.path, self.pos, self.file.samplerate)
        self.pos += block.shape[0]
        return block

    def close(self) -> None:
        f = getattr(self, "file", None)
        if f is not None and not f.closed:
            f.close()


class _Generator(Source):
    """A generated signal of `seconds` (0 = endless), paced in real time by default."""

    common = (
        Param("rate", int, 48000, min=1000, max=384000, unit="Hz"),
        Param("channels", int, 1, min=1, max=64),
        Param("seconds", float, 10.0, min=0.0, unit="s", help="0 = endless"),
        Param("level", float, -20.0, min=-200.0, max=0.0, unit="dBFS", live=True),
        Param("realtime", bool, True, help="pace at the sample rate"),
        Param("seed", int, 0, min=0),
    )

    def open(self) -> AudioFormat:
        self.pos = 0
        self.end = int(round(self.seconds * self.rate)) if self.seconds > 0 else None
        self.rng = np.random.default_rng(self.seed)
        return AudioFormat(self.rate, self.channels)

    @property
    def total_frames(self) -> int | None:
        return self.end

    def read(self, n: int) -> np.ndarray | None:
        if self.end is not None:
            n = min(n, self.end - self.pos)
            if n <= 0:
                return None
        t = (self.pos + np.arange(n)) / self.rate
        x = self.signal(t, n) * 10 ** (self.level / 20)
        self.pos += n
        return np.repeat(x.astype(np.float32)[:, None], self.channels, axis=1)

    def signal(self, t: np.ndarray, n: int) -> np.ndarray:
        raise NotImplementedError


@register
class ToneSource(_Generator):
    kind = "tone"
    summary = "A sine tone; level is its peak in dBFS."
    params = (*_Generator.common, Param("hz", float, 1000.0, min=0.0, unit="Hz", live=True))

    def signal(self, t: np.ndarray, n: int) -> np.ndarray:
        return np.sin(2 * np.pi * self.hz * t)


@register
class NoiseSource(_Generator):
    kind = "noise"
    summary = "White or pink noise; level is its RMS in dBFS."
    params = (*_Generator.common, Param("color", str, "white", choices=("white", "pink")))

    def open(self) -> AudioFormat:
        fmt = super().open()
        self.zi = np.zeros(3)  # pink filter state, carried across reads
        return fmt

    def signal(self, t: np.ndarray, n: int) -> np.ndarray:
        w = self.rng.standard_normal(n)
        if self.color == "white":
            return w
        from scipy.signal import lfilter

        # Pink noise by a 3-pole/3-zero approximation of 1/f (Kellet's economy filter).
        b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
        a = [1, -2.494956002, 2.017265875, -0.522189400]
        y, self.zi = lfilter(b, a, w, zi=self.zi)
        return y / 0.0861  # unit RMS (measured over 10^7 samples of this filter)


@register
class ChirpSource(_Generator):
    kind = "chirp"
    summary = "A logarithmic sine sweep from f0 to f1 over `sweep` seconds, repeated."
    params = (
        *_Generator.common,
        Param("f0", float, 20.0, min=0.1, unit="Hz"),
        Param("f1", float, 20000.0, min=0.1, unit="Hz"),
        Param("sweep", float, 5.0, min=0.01, unit="s"),
    )

    def signal(self, t: np.ndarray, n: int) -> np.ndarray:
        tt = np.mod(t, self.sweep)
        k = np.log(self.f1 / self.f0)
        phase = 2 * np.pi * self.f0 * self.sweep / k * (np.exp(tt / self.sweep * k) - 1)
        return np.sin(phase)
