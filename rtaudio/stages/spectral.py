"""Windowed FFT analysis (`stft`) and overlap-add resynthesis (`istft`), streaming.

Framing: frame m covers input samples [m*hop, m*hop + n_fft) (n_fft = window length); the FFT is
`n_fft * zero_pad` long. Frames are those of `scipy.signal.ShortTimeFFT(win, hop, fs,
phase_shift=None).stft(x, k_offset=n_fft // 2)` for p >= 0, for any partition of the input.

Calibration of the `stft` messages (`data["db"]`, float32 `(channels, bins)`, in dB):

* `unit = "dBFS"`: amplitude spectrum, |X| * 2 / sum(w) (DC and Nyquist: 1 / sum(w)). A sine of
  peak amplitude 1 centred on a bin reads 0 dBFS with every window. Between bins it reads lower
  by the window's scalloping loss; worst case (half a bin off) measured at n_fft 4096:

  ==================  ========  ===============
  window              ENBW      worst amplitude
                      (bins)    error (dB)
  ==================  ========  ===============
  hann                1.50      -1.42
  hamming             1.36      -1.75
  blackman-harris     2.00      -0.83
  flattop             3.77      -0.01
  kaiser (beta 8.6)   1.72      -1.11
  ==================  ========  ===============

  So use flattop to read tone levels (0 dBFS within 0.01 dB at any frequency). (The `level`
  stage reads the RMS of the same sine: -3.01 dBFS.)
* `unit = "dBFS/Hz"`: one-sided power spectral density, |X|^2 * 2 / (rate * sum(w^2)), so white
  noise of RMS s reads 10*log10(s^2 / (rate / 2)) in every bin, whatever the window.

Each frame is one bus message, topic "spectrum", `sample` = index of the frame's first sample,
`data` = {"db": float32 (channels, data["n_fft"] // 2 + 1) in `unit`, "peak": the peak-hold trace (same
shape) or None, "n_fft": FFT length (bin k is at k * rate / n_fft Hz), "frame": window length,
"hop", "rate", "window", "unit", "weighting"}. Levels are floored at -200 dB.

Options: exponential averaging in the power domain (time constant `average` seconds), peak hold
with a decay in dB/s (`data["peak"]`), A/C frequency weighting (IEC 61672-1, added in dB).

`istft` is the base of spectral processing stages: it keeps its own `StreamingSTFT` analysis and
an `OverlapAdd` synthesis with the dual window (w / sum of shifted w^2), so reconstruction is
exact for any window and hop <= n_fft; subclasses override `modify(spec, start)`. Alone (or after
`stft`, which passes audio through) it reproduces the input delayed by `n_fft - 1` samples, the
least delay that is the same for every block partition.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import get_window

from ..errors import AudioFormatError, ConfigError
from ..params import Param
from ..registry import register
from ..stage import AudioFormat, Stage
from .level import FLOOR_DB

WINDOWS = ("hann", "hamming", "blackman-harris", "flattop", "kaiser")
_SCIPY_NAMES = {"blackman-harris": "blackmanharris"}
_TINY = 10 ** (FLOOR_DB / 10)


def make_window(name: str, n: int, beta: float = 8.6) -> np.ndarray:
    """A periodic (DFT-even) analysis window of length n, float64."""
    if name not in WINDOWS:
        raise ConfigError(f"window '{name}': expected one of {', '.join(WINDOWS)}")
    spec = ("kaiser", beta) if name == "kaiser" else _SCIPY_NAMES.get(name, name)
    return np.asarray(get_window(spec, n, fftbins=True), dtype=np.float64)


def weighting_db(freqs: np.ndarray, curve: str) -> np.ndarray:
    """IEC 61672-1 A or C weighting in dB at `freqs` (Z: zeros). DC reads the dB floor."""
    f2 = np.asarray(freqs, dtype=np.float64) ** 2
    if curve == "Z":
        return np.zeros_like(f2)
    with np.errstate(divide="ignore"):
        if curve == "A":
            r = 12194.0**2 * f2**2 / (
                (f2 + 20.6**2) * np.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2)
            )
            db = 20 * np.log10(r) + 2.00
        elif curve == "C":
            r = 12194.0**2 * f2 / ((f2 + 20.6**2) * (f2 + 12194.0**2))
            db = 20 * np.log10(r) + 0.06
        else:
            raise ConfigError(f"weighting '{curve}': expected Z, A or C")
    return np.maximum(db, FLOOR_DB)


class StreamingSTFT:
    """Streaming analysis: `push(block)` returns the spectra of the frames it completed.

    Frame m covers stream samples [m*hop - prefill, m*hop - prefill + len(window)): `prefill`
    zeros are assumed before the stream (synthesis uses them so the first samples are covered
    by every overlapping frame). Spectra are complex128 `(frames, channels, n_fft // 2 + 1)`.
    """

    def __init__(
        self, window: np.ndarray, hop: int, channels: int, n_fft: int | None = None,
        prefill: int = 0,
    ) -> None:
        self.window = np.asarray(window, dtype=np.float64)
        self.size = len(self.window)
        self.n_fft = n_fft or self.size
        if hop < 1 or self.n_fft < self.size:
            raise ValueError("hop must be >= 1 and n_fft >= the window length")
        self.hop = hop
        self.channels = channels
        self.prefill = prefill
        self.bins = self.n_fft // 2 + 1
        self.reset()

    def reset(self) -> None:
        self.tail = np.zeros((self.prefill, self.channels))
        self.skip = 0  # samples to drop before the next frame starts (hop > window)
        self.frames_done = 0

    def frame_start(self, m: int) -> int:
        """Stream index of the first sample of frame m."""
        return m * self.hop - self.prefill

    def push(self, block: np.ndarray) -> np.ndarray:
        if self.skip and block.shape[0]:
            k = min(self.skip, block.shape[0])
            block = block[k:]
            self.skip -= k
        buf = np.concatenate([self.tail, np.asarray(block, dtype=np.float64)])
        avail = buf.shape[0]
        if avail < self.size:
            self.tail = buf
            return np.zeros((0, self.channels, self.bins), np.complex128)
        n = (avail - self.size) // self.hop + 1
        frames = sliding_window_view(buf, self.size, axis=0)[: (n - 1) * self.hop + 1 : self.hop]
        spec = np.fft.rfft(frames * self.window, n=self.n_fft, axis=-1)
        used = n * self.hop
        self.tail = buf[used:].copy() if used < avail else buf[:0].copy()
        self.skip = max(0, used - avail)
        self.frames_done += n
        return spec


class OverlapAdd:
    """Streaming weighted overlap-add: `push(spectra)` returns `hop` samples per frame.

    The synthesis window is the dual of the analysis window (w / sum over shifts of w^2), so
    analysis followed by synthesis is the identity for any window with hop <= window length.
    """

    def __init__(
        self, window: np.ndarray, hop: int, channels: int, n_fft: int | None = None
    ) -> None:
        w = np.asarray(window, dtype=np.float64)
        self.size = len(w)
        self.n_fft = n_fft or self.size
        if not 1 <= hop <= self.size:
            raise ValueError("overlap-add needs 1 <= hop <= window length")
        self.hop = hop
        self.channels = channels
        energy = np.zeros(hop)
        np.add.at(energy, np.arange(self.size) % hop, w * w)
        denom = energy[np.arange(self.size) % hop]
        if denom.min() <= 1e-12 * denom.max():
            raise ValueError("this window and hop cannot be inverted (a sample has no weight)")
        self.synth = (w / denom)[:, None]
        self.reset()

    def reset(self) -> None:
        self.acc = np.zeros((self.size, self.channels))

    def push(self, spec: np.ndarray) -> np.ndarray:
        n = spec.shape[0]
        out = np.empty((n * self.hop, self.channels))
        if n == 0:
            return out
        frames = np.fft.irfft(spec, n=self.n_fft, axis=-1)[..., : self.size]
        h, acc = self.hop, self.acc
        for i in range(n):
            acc += frames[i].T * self.synth
            out[i * h : (i + 1) * h] = acc[:h]
            acc[:-h] = acc[h:].copy()
            acc[-h:] = 0.0
        return out


class _Framed(Stage):
    """Shared parameters and set-up of the stft/istft stages."""

    framing = (
        Param("n_fft", int, 4096, min=16, max=65536, unit="samples", help="window length"),
        Param("hop", int, 0, min=0, max=65536, unit="samples", help="0 = n_fft / 4"),
        Param("window", str, "hann", choices=WINDOWS),
        Param("beta", float, 8.6, min=0.0, max=50.0, help="kaiser window shape"),
    )

    def _framing(self) -> tuple[np.ndarray, int]:
        hop = self.hop or max(1, self.n_fft // 4)
        return make_window(self.window, self.n_fft, self.beta), hop


@register
class Stft(_Framed):
    kind = "stft"
    summary = "Windowed FFT: publishes calibrated spectra ('spectrum', dB); audio passes through."
    params = (
        *_Framed.framing,
        Param("zero_pad", int, 1, min=1, max=16, help="FFT length = n_fft * zero_pad"),
        Param("unit", str, "dBFS", choices=("dBFS", "dBFS/Hz"), live=True,
              help="dBFS: sine peak; dBFS/Hz: power density"),
        Param("average", float, 0.0, min=0.0, max=60.0, unit="s", live=True,
              help="exponential averaging time constant (0 = off)"),
        Param("peak_hold", bool, True, live=True),
        Param("peak_decay", float, 20.0, min=0.0, max=1000.0, unit="dB/s", live=True),
        Param("weighting", str, "Z", choices=("Z", "A", "C"), live=True, help="Z = none"),
    )

    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        window, self.hop_n = self._framing()
        self.analysis = StreamingSTFT(window, self.hop_n, fmt.channels, self.n_fft * self.zero_pad)
        n = self.analysis.n_fft
        self.freqs = np.fft.rfftfreq(n, 1.0 / fmt.rate)
        s1, s2 = window.sum(), (window * window).sum()
        edge = np.zeros(self.analysis.bins, bool)
        edge[0] = True
        if n % 2 == 0:
            edge[-1] = True
        self._amp_scale = np.where(edge, 1.0, 4.0) / s1**2
        self._psd_scale = np.where(edge, 1.0, 2.0) / (fmt.rate * s2)
        for name in ("unit", "average", "weighting"):
            self.on_param_change(name)
        self.reset()
        return fmt

    def on_param_change(self, name: str) -> None:
        if self.fmt is None:
            return
        rate = self.fmt.rate
        if name == "average":
            self.alpha = np.exp(-self.hop_n / (self.average * rate)) if self.average > 0 else 0.0
        elif name in ("unit", "weighting"):
            scale = self._amp_scale if self.unit == "dBFS" else self._psd_scale
            self.offset_db = (10 * np.log10(scale) + weighting_db(self.freqs, self.weighting))
            self.held = None  # a new scale: the held trace would be meaningless
        elif name == "peak_hold" and not self.peak_hold:
            self.held = None

    def reset(self) -> None:
        self.analysis.reset()
        self.avg: np.ndarray | None = None
        self.held: np.ndarray | None = None

    @property
    def data_template(self) -> dict:
        return {
            "n_fft": self.analysis.n_fft, "frame": self.n_fft, "hop": self.hop_n,
            "rate": self.fmt.rate, "window": self.window, "unit": self.unit,
            "weighting": self.weighting,
        }

    def process(self, block: np.ndarray) -> np.ndarray:
        spec = self.analysis.push(block)
        if spec.shape[0] == 0:
            return block
        power = spec.real**2 + spec.imag**2
        first = self.analysis.frames_done - spec.shape[0]
        decay = self.peak_decay * self.hop_n / self.fmt.rate
        for i in range(spec.shape[0]):
            p = power[i]
            if self.alpha and self.avg is not None:
                self.avg = self.alpha * self.avg + (1.0 - self.alpha) * p
            else:
                self.avg = p
            db = np.maximum(10 * np.log10(np.maximum(self.avg, _TINY)) + self.offset_db, FLOOR_DB)
            db32 = db.astype(np.float32)
            peak = None
            if self.peak_hold:
                self.held = db if self.held is None else np.maximum(db, self.held - decay)
                peak = self.held.astype(np.float32)
            data = self.data_template
            data["db"] = db32
            data["peak"] = peak
            self.emit("spectrum", self.analysis.frame_start(first + i), data)
        return block


@register
class Istft(_Framed):
    """Analysis + overlap-add resynthesis; the base class of spectral processing stages."""

    kind = "istft"
    summary = "STFT resynthesis (overlap-add, dual window): exact reconstruction, latency n_fft-1."
    params = _Framed.framing

    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        window, hop = self._framing()
        if hop > self.n_fft:
            raise AudioFormatError(f"{self.where}: hop={hop} must be <= n_fft={self.n_fft}")
        size = self.n_fft
        self.prefill = (-(-size // hop) - 1) * hop
        self.analysis = StreamingSTFT(window, hop, fmt.channels, prefill=self.prefill)
        try:
            self.synthesis = OverlapAdd(window, hop, fmt.channels)
        except ValueError as e:
            raise ConfigError(f"{self.where}: {e}") from None
        self.channels = fmt.channels
        self.reset()
        return fmt

    @property
    def latency(self) -> int:
        return self.n_fft - 1

    def reset(self) -> None:
        self.analysis.reset()
        self.synthesis.reset()
        self.pending = np.zeros((self.n_fft - 1 - self.prefill, self.channels))

    def modify(self, spec: np.ndarray, start: int) -> np.ndarray:
        """Spectral processing hook: `spec` (frames, channels, bins); frame 0 begins at stream
        sample `start` (negative for the first frames, which overlap the zeros before the
        stream). Return spectra of the same shape."""
        return spec

    def process(self, block: np.ndarray) -> np.ndarray:
        spec = self.analysis.push(block)
        if spec.shape[0]:
            start = self.analysis.frame_start(self.analysis.frames_done - spec.shape[0])
            spec = self.modify(spec, start)
        y = self.synthesis.push(spec)
        pending = np.concatenate([self.pending, y]) if y.shape[0] else self.pending
        n = block.shape[0]
        out = pending[:n].astype(np.float32)
        self.pending = pending[n:]
        return out
