"""Log-frequency display helpers: map a spectrum's bins onto log-spaced points, and tick labels."""

from __future__ import annotations

import math

import numpy as np


class LogFreqMap:
    """Maps dB values on linear FFT bins onto `n` log-spaced frequency cells in [fmin, fmax].

    A cell that contains bins shows their maximum (a tone never disappears between pixels); a
    cell narrower than a bin interpolates between bins in dB.
    """

    def __init__(self, freqs: np.ndarray, fmin: float, fmax: float, n: int) -> None:
        self.edges = np.geomspace(fmin, fmax, n + 1)
        self.centers = np.sqrt(self.edges[:-1] * self.edges[1:])
        self.log_centers = np.log10(self.centers)
        self.freqs = np.asarray(freqs, dtype=np.float64)
        lo = np.searchsorted(self.freqs, self.edges[:-1], side="left")
        hi = np.searchsorted(self.freqs, self.edges[1:], side="left")
        self.many = hi > lo
        self.idx = np.empty(2 * int(self.many.sum()), dtype=np.intp)
        self.idx[0::2] = lo[self.many]
        self.idx[1::2] = hi[self.many]
        self.interp = ~self.many
        self.n = n

    def __call__(self, db: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """`db`: values per bin (1-D); returns float32 values per cell."""
        if out is None:
            out = np.empty(self.n, dtype=np.float32)
        padded = np.append(db, db[-1])  # reduceat may index one past the last bin
        if self.idx.size:
            out[self.many] = np.maximum.reduceat(padded, self.idx)[0::2]
        if self.interp.any():
            out[self.interp] = np.interp(self.centers[self.interp], self.freqs, db)
        return out


def format_hz(f: float) -> str:
    """20 -> '20', 1500 -> '1.5k', 10000 -> '10k'."""
    if f >= 1000:
        k = f / 1000
        return f"{k:g}k"
    return f"{f:g}"


def log_ticks(fmin: float, fmax: float) -> list[list[tuple[float, str]]]:
    """pyqtgraph ticks for an axis in log10(Hz): majors 1-2-5 per decade, minors at the rest."""
    major, minor = [], []
    for e in range(math.floor(math.log10(fmin)), math.ceil(math.log10(fmax)) + 1):
        for m in range(1, 10):
            f = m * 10.0**e
            if fmin <= f <= fmax:
                if m in (1, 2, 5):
                    major.append((math.log10(f), format_hz(f)))
                else:
                    minor.append((math.log10(f), ""))
    return [major, minor]


def readout(f: float, db: float, unit: str) -> str:
    hz = f"{f / 1000:.3f} kHz" if f >= 999.95 else f"{f:.1f} Hz"
    return f"{hz}  {db:+.1f} {unit}"
