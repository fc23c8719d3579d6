"""The HMM front end: MFCC (shared with the classifier) + deltas + streaming CMVN.

Everything is causal except the delta window, which looks `DELTA_N` frames ahead (declared latency).
CMVN is a running estimate (exponential forgetting, started from the training set's statistics), never
a whole-file one, so a level or channel change is followed within `cmvn_seconds`. Training runs the
very same `FrontEnd` over each utterance, so features match what the live decoder sees.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..kws.features import FeatureConfig, FeatureStream

DELTA_N = 2
_DELTA_NORM = 2 * sum(n * n for n in range(1, DELTA_N + 1))
_DELTA_W = np.arange(-DELTA_N, DELTA_N + 1, dtype=np.float64) / _DELTA_NORM


@dataclass(frozen=True)
class FrontEndConfig:
    n_mfcc: int = 13
    cmvn_seconds: float = 3.0  # time constant of the running mean/variance
    rate: int = 16000
    hop: int = 160

    def features(self) -> FeatureConfig:
        return FeatureConfig(kind="mfcc", rate=self.rate, hop=self.hop, n_mfcc=self.n_mfcc)

    @property
    def dim(self) -> int:
        return 3 * self.n_mfcc

    @property
    def latency_frames(self) -> int:
        return 2 * DELTA_N  # deltas of deltas look DELTA_N frames ahead twice

    def to_dict(self) -> dict:
        return asdict(self)


class _Deltas:
    """Streaming regression deltas: frame t is output once frame t + DELTA_N has arrived.
    The first frame is repeated before the start (the same online and offline)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.reset()

    def reset(self) -> None:
        self.hist: np.ndarray | None = None  # the last 2*DELTA_N frames

    def push(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (centre frames, their deltas), both (T_out, dim)."""
        if X.shape[0] == 0:
            return np.zeros((0, self.dim)), np.zeros((0, self.dim))
        if self.hist is None:
            self.hist = np.repeat(X[:1], DELTA_N, axis=0)
        buf = np.concatenate([self.hist, X])
        n_out = buf.shape[0] - 2 * DELTA_N
        if n_out <= 0:
            self.hist = buf
            return np.zeros((0, self.dim)), np.zeros((0, self.dim))
        win = np.lib.stride_tricks.sliding_window_view(buf, 2 * DELTA_N + 1, axis=0)  # (T, dim, 5)
        deltas = win[:n_out] @ _DELTA_W
        centre = buf[DELTA_N : DELTA_N + n_out]
        self.hist = buf[-2 * DELTA_N :]
        return centre, deltas


class StreamingCMVN:
    """Running mean and variance with exponential forgetting, one frame at a time."""

    def __init__(self, mean: np.ndarray, var: np.ndarray, frames: float) -> None:
        self.mean0, self.var0 = np.asarray(mean, float), np.asarray(var, float)
        self.alpha = 1.0 / max(frames, 1.0)
        self.reset()

    def reset(self) -> None:
        self.mean, self.var = self.mean0.copy(), self.var0.copy()

    def push(self, X: np.ndarray) -> np.ndarray:
        out = np.empty_like(X)
        a = self.alpha
        m, v = self.mean, self.var
        for t in range(X.shape[0]):
            x = X[t]
            m += a * (x - m)
            v += a * ((x - m) ** 2 - v)
            out[t] = (x - m) / np.sqrt(v + 1e-8)
        return out


class FrontEnd:
    """Audio (mono, 16 kHz) -> normalised MFCC + delta + delta-delta frames, streaming."""

    def __init__(self, cfg: FrontEndConfig, mean: np.ndarray | None = None, var: np.ndarray | None = None):
        self.cfg = cfg
        self.mfcc = FeatureStream(cfg.features())
        self.d1 = _Deltas(cfg.n_mfcc)
        self.d2 = _Deltas(2 * cfg.n_mfcc)
        mean = np.zeros(cfg.dim) if mean is None else mean
        var = np.ones(cfg.dim) if var is None else var
        self.cmvn = StreamingCMVN(mean, var, cfg.cmvn_seconds * cfg.rate / cfg.hop)

    def reset(self) -> None:
        self.mfcc.reset()
        self.d1.reset()
        self.d2.reset()
        self.cmvn.reset()

    def raw(self, x: np.ndarray) -> np.ndarray:
        """MFCC + deltas before normalisation (used to collect the training set's statistics)."""
        c = self.mfcc.push(x).astype(np.float64)
        c, d = self.d1.push(c)
        cd, dd = self.d2.push(np.concatenate([c, d], axis=1))
        return np.concatenate([cd, dd[:, self.cfg.n_mfcc :]], axis=1)  # c, delta, delta-delta

    def push(self, x: np.ndarray) -> np.ndarray:
        return self.cmvn.push(self.raw(x))
