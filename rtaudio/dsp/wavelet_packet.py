"""A full wavelet-packet tree as a batched, orthogonal frame transform (PyWavelets, periodization).

`analysis` maps frames of `n` samples to `2**depth` bands of `n / 2**depth` coefficients each, bands
in frequency order (band k covers about [k, k+1] * rate / 2**(depth+1) Hz). The first levels are one
`pywt.dwt` call each over every node of every frame at once; once the nodes are short (<= 256
samples), the whole remaining subtree is one precomputed orthogonal matrix, the same for every node:
a few C calls per frame instead of `2**depth` Python-level node visits. With an orthogonal wavelet
the transform is orthonormal: `synthesis(analysis(x)) == x` to float precision, and band energies
add up to the frame energy.
"""

from __future__ import annotations

import numpy as np
import pywt


def frequency_order(depth: int) -> np.ndarray:
    """For each frequency-ordered band, its index in the natural (filter-path) order.

    Along a path of low (0) / high (1) branches, every high branch flips the spectrum of what
    follows, so the frequency index is the inverse Gray code of the path: bit k of the frequency
    index is the XOR of path bits 1..k.
    """
    nat_of_freq = np.empty(2**depth, dtype=np.intp)
    for nat in range(2**depth):
        freq, acc = 0, 0
        for k in range(depth - 1, -1, -1):
            acc ^= (nat >> k) & 1
            freq = (freq << 1) | acc
        nat_of_freq[freq] = nat
    return nat_of_freq


MATRIX_MAX = 256  # node length from which the rest of the tree is one matrix


class WaveletPacketBank:
    """Full wavelet-packet decomposition of frames `(..., n)` to bands `(..., 2**depth, n // 2**depth)`."""

    def __init__(self, wavelet: str, depth: int, n: int) -> None:
        if n % (2**depth):
            raise ValueError(f"frame length {n} is not a multiple of 2**depth = {2**depth}")
        self.wavelet = pywt.Wavelet(wavelet)
        if not self.wavelet.orthogonal:
            raise ValueError(f"wavelet '{wavelet}' is not orthogonal")
        self.depth = depth
        self.n = n
        self.bands = 2**depth
        self.width = n // self.bands
        self.nat_of_freq = frequency_order(depth)
        self.freq_of_nat = np.argsort(self.nat_of_freq)
        self.split = 0  # levels done by pywt before the subtree matrix takes over
        while self.split < depth and n >> self.split > MATRIX_MAX:
            self.split += 1
        m = n >> self.split
        self.subtree = self._levels(np.eye(m), depth - self.split).reshape(m, m)  # row i: basis e_i

    def _levels(self, x: np.ndarray, levels: int) -> np.ndarray:
        """`levels` levels of the full tree below each row of `x` (rows, length); natural order."""
        x = x[:, None, :]
        for _ in range(levels):
            lo, hi = pywt.dwt(x, self.wavelet, mode="periodization", axis=-1)
            x = np.stack((lo, hi), axis=-2).reshape(x.shape[0], 2 * x.shape[1], lo.shape[-1])
        return x

    def analysis(self, frames: np.ndarray) -> np.ndarray:
        lead = frames.shape[:-1]
        x = frames.reshape(*lead, 1, self.n)
        for _ in range(self.split):
            lo, hi = pywt.dwt(x, self.wavelet, mode="periodization", axis=-1)
            x = np.stack((lo, hi), axis=-2).reshape(*lead, 2 * x.shape[-2], lo.shape[-1])
        x = (x @ self.subtree).reshape(*lead, self.bands, self.width)  # children follow their node
        return x[..., self.nat_of_freq, :]

    def synthesis(self, bands: np.ndarray) -> np.ndarray:
        lead = bands.shape[:-2]
        nodes = 2**self.split
        x = bands[..., self.freq_of_nat, :].reshape(*lead, nodes, self.n // nodes) @ self.subtree.T
        for _ in range(self.split):
            pairs = x.reshape(*lead, x.shape[-2] // 2, 2, x.shape[-1])
            x = pywt.idwt(pairs[..., 0, :], pairs[..., 1, :], self.wavelet, mode="periodization", axis=-1)
        return x.reshape(*lead, self.n)
