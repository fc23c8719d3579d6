"""Causal noise-power tracking per band: speech-presence-probability MMSE tracking plus a
minimum-statistics floor.

The main estimator is Gerkmann & Hendriks' (2012) "unbiased MMSE-based noise power estimation with
low complexity": each frame, the a-posteriori probability that speech is present in a band (from a
likelihood ratio with a fixed a-priori SNR under speech presence) weights the update, so the estimate
follows the noise between and under speech without the bias of a minimum. A band power here is a
mean over `dof` wavelet-packet coefficients, so its likelihood is that of a chi-square with `dof`
degrees of freedom rather than the exponential of one STFT bin. A stagnation guard keeps the
probability below 0.99 when it has stayed high for long, so a rising noise is still learned.

The minimum of the smoothed band power over the last ~1.5 s (Martin's minimum statistics, kept in
sub-windows) is a floor under the estimate: after a noise change (white -> babble, say), the estimate
is lifted at least to that minimum within the window length, whatever the speech-presence logic says.
"""

from __future__ import annotations

import math

import numpy as np


def per_frame(tau: float, hop: float) -> float:
    """The one-pole smoothing factor for time constant `tau` seconds at `hop` seconds per frame."""
    return math.exp(-hop / tau) if tau > 0 else 0.0


class NoiseTracker:
    """Tracks the noise power of `shape`-shaped band powers, one frame at a time."""

    def __init__(
        self,
        shape: tuple[int, ...],
        hop_s: float,
        dof: int,
        xi_h1_db: float = 12.0,
        tau_noise: float = 0.08,
        tau_spp: float = 0.15,
        tau_smooth: float = 0.03,
        min_window_s: float = 1.5,
        init_s: float = 0.1,
    ) -> None:
        self.shape = shape
        self.hop_s = hop_s
        self.dof = dof
        xi = 10 ** (xi_h1_db / 10)
        self.lr_offset = -0.5 * dof * math.log1p(xi)
        self.lr_scale = 0.5 * dof * xi / (1 + xi)
        self.taus = (tau_noise, tau_spp, tau_smooth)
        self.subwindows = 8
        self.sub_len = max(1, round(min_window_s / hop_s / self.subwindows))
        self.init_frames = max(1, round(init_s / hop_s))
        self.set_speed(1.0)
        self.reset()

    def set_speed(self, speed: float) -> None:
        """Scale how fast the estimate adapts (2 = time constants halved); a live parameter."""
        tn, tp, ts = (t / speed for t in self.taus)
        self.a_noise = per_frame(tn, self.hop_s)
        self.a_spp = per_frame(tp, self.hop_s)
        self.a_smooth = per_frame(ts, self.hop_s)

    def reset(self) -> None:
        self.noise = np.zeros(self.shape)
        self.pbar = np.zeros(self.shape)
        self.smooth = np.zeros(self.shape)
        self.sub_min = np.full(self.shape, np.inf)
        self.past_mins = np.full((self.subwindows, *self.shape), np.inf)
        self.frames = 0
        self.speech_prob = np.zeros(self.shape)

    def update(self, power: np.ndarray) -> np.ndarray:
        """Take one frame of band powers; return the noise power estimate for this frame."""
        self.frames += 1
        if self.frames <= self.init_frames:  # the first ~100 ms: assume noise, average it
            self.noise += (power - self.noise) / self.frames
            self.smooth[...] = self.noise
        else:
            self.smooth = self.a_smooth * self.smooth + (1 - self.a_smooth) * power
            gamma = power / np.maximum(self.noise, 1e-20)
            log_lr = np.clip(self.lr_offset + self.lr_scale * gamma, -50.0, 50.0)
            p = 1.0 / (1.0 + np.exp(-log_lr))
            self.pbar = self.a_spp * self.pbar + (1 - self.a_spp) * p
            p = np.where(self.pbar > 0.99, np.minimum(p, 0.99), p)
            self.speech_prob = p
            expected = (1 - p) * power + p * self.noise
            self.noise = self.a_noise * self.noise + (1 - self.a_noise) * expected
        np.minimum(self.sub_min, self.smooth, out=self.sub_min)
        if self.frames % self.sub_len == 0:
            self.past_mins = np.roll(self.past_mins, 1, axis=0)
            self.past_mins[0] = self.sub_min
            self.sub_min = np.full(self.shape, np.inf)
        floor = np.minimum(self.past_mins.min(axis=0), self.sub_min)
        if self.frames > self.sub_len * self.subwindows:
            np.maximum(self.noise, floor, out=self.noise)
        return self.noise
