"""Log-mel and MFCC features, the same code offline (training) and streaming (live).

Frame `t` covers input samples `[t*hop, t*hop + win)`. `FeatureStream.push` keeps its own overlap
buffer, so any partition of a signal yields exactly the frames of `compute(x)` on the whole signal.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from ..errors import ConfigError

LOG_FLOOR = 1e-6  # power floor (about -80 dBFS white noise): keeps digital silence finite


@dataclass(frozen=True)
class FeatureConfig:
    kind: str = "logmel"  # "logmel" or "mfcc"
    rate: int = 16000
    win: int = 400  # samples (25 ms at 16 kHz)
    hop: int = 160  # samples (10 ms)
    n_fft: int = 512
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 7600.0
    n_mfcc: int = 13

    def __post_init__(self) -> None:
        if self.kind not in ("logmel", "mfcc"):
            raise ConfigError(f"features: kind must be 'logmel' or 'mfcc', got {self.kind!r}")
        if not (0 < self.hop <= self.win <= self.n_fft):
            raise ConfigError(
                f"features: need 0 < hop <= win <= n_fft, got {self.hop}, {self.win}, {self.n_fft}"
            )
        if not (0 <= self.fmin < self.fmax <= self.rate / 2):
            raise ConfigError(f"features: need 0 <= fmin < fmax <= rate/2, got {self.fmin}, {self.fmax}")
        if self.n_mels < 1 or (self.kind == "mfcc" and not 1 <= self.n_mfcc <= self.n_mels):
            raise ConfigError(f"features: bad n_mels={self.n_mels} / n_mfcc={self.n_mfcc}")

    @property
    def dim(self) -> int:
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "features") -> FeatureConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"{where}: unknown feature keys {sorted(unknown)}")
        return cls(**d)

    def fingerprint(self) -> str:
        """A short hash identifying this feature configuration (stored with trained models)."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(cfg: FeatureConfig, warp: float = 1.0) -> np.ndarray:
    """Triangular HTK-style filters, shape (n_fft//2+1, n_mels). `warp` != 1 scales the filter
    centre frequencies (vocal-tract-length perturbation, training augmentation only)."""
    n_bins = cfg.n_fft // 2 + 1
    freqs = np.arange(n_bins) * cfg.rate / cfg.n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2))
    if warp != 1.0:
        edges = np.clip(edges * warp, 0.0, cfg.rate / 2)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - freqs[:, None]) / np.maximum(hi - mid, 1e-9)
    return np.maximum(0.0, np.minimum(up, down))


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II, shape (n_in, n_out)."""
    k = np.arange(n_out)[None, :]
    n = np.arange(n_in)[:, None]
    m = np.cos(np.pi / n_in * (n + 0.5) * k) * np.sqrt(2.0 / n_in)
    m[:, 0] /= np.sqrt(2.0)
    return m


class FeatureExtractor:
    """Turns whole frames of samples into feature rows (no state)."""

    def __init__(self, cfg: FeatureConfig, warp: float = 1.0) -> None:
        self.cfg = cfg
        self.window = np.hanning(cfg.win + 1)[:-1]  # periodic Hann
        self.fbank = mel_filterbank(cfg, warp)
        self.dct = dct_matrix(cfg.n_mels, cfg.n_mfcc) if cfg.kind == "mfcc" else None

    def frames_to_features(self, frames: np.ndarray) -> np.ndarray:
        """frames: (n, win) float64 -> (n, dim) float32."""
        if frames.shape[0] == 0:
            return np.zeros((0, self.cfg.dim), np.float32)
        spec = np.fft.rfft(frames * self.window, n=self.cfg.n_fft, axis=1)
        power = spec.real**2 + spec.imag**2
        feats = np.log(power @ self.fbank + LOG_FLOOR)
        if self.dct is not None:
            feats = feats @ self.dct
        return feats.astype(np.float32)

    def compute(self, x: np.ndarray) -> np.ndarray:
        """Features of a whole mono signal (1-D): frames [t*hop, t*hop+win) that fit entirely."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape[0] < self.cfg.win:
            return np.zeros((0, self.cfg.dim), np.float32)
        frames = sliding_window_view(x, self.cfg.win)[:: self.cfg.hop]
        return self.frames_to_features(frames)


def compute(x: np.ndarray, cfg: FeatureConfig, warp: float = 1.0) -> np.ndarray:
    return FeatureExtractor(cfg, warp).compute(x)


def n_frames(n_samples: int, cfg: FeatureConfig) -> int:
    return 0 if n_samples < cfg.win else (n_samples - cfg.win) // cfg.hop + 1


class FeatureStream:
    """Streaming features: push mono samples, get the frames completed by them."""

    def __init__(self, cfg: FeatureConfig) -> None:
        self.cfg = cfg
        self.extractor = FeatureExtractor(cfg)
        self.reset()

    def reset(self) -> None:
        self.buf = np.zeros(0, np.float64)
        self.frames_done = 0  # frames produced so far; the next one starts at frames_done*hop

    def push(self, x: np.ndarray) -> np.ndarray:
        """x: 1-D samples. Returns (n_new_frames, dim) float32."""
        buf = np.concatenate([self.buf, np.asarray(x, dtype=np.float64).reshape(-1)])
        win, hop = self.cfg.win, self.cfg.hop
        n = 0 if buf.shape[0] < win else (buf.shape[0] - win) // hop + 1
        if n == 0:
            self.buf = buf
            return np.zeros((0, self.cfg.dim), np.float32)
        frames = sliding_window_view(buf, win)[: n * hop : hop]
        out = self.extractor.frames_to_features(frames)
        self.buf = buf[n * hop :].copy()
        self.frames_done += n
        return out


class RunningMeanNorm:
    """Subtracts a running (exponential, time constant `tau_s`) mean from each feature: a streaming
    cepstral/log-mel mean normalisation that removes the channel, gain and voice colouring. The
    mean starts at the first frame. Streaming-exact: the recursion's state carries across calls."""

    def __init__(self, tau_s: float, hop_s: float) -> None:
        self.a = float(np.exp(-hop_s / tau_s))
        self.reset()

    def reset(self) -> None:
        self.mean: np.ndarray | None = None

    def push(self, feats: np.ndarray) -> np.ndarray:
        if feats.shape[0] == 0:
            return feats
        x = feats.astype(np.float64)
        if self.mean is None:
            self.mean = x[0].copy()
        m = signal.lfilter([1.0 - self.a], [1.0, -self.a], x, axis=0, zi=(self.a * self.mean)[None, :])[0]
        self.mean = m[-1].copy()
        return (x - m).astype(np.float32)
