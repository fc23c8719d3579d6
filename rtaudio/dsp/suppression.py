"""Per-band suppression gain: decision-directed a-priori SNR (Ephraim & Malah), the log-spectral
amplitude gain, and a speech-presence-weighted floor (Cohen's OM-LSA).

The decision-directed estimate mixes last frame's cleaned power with this frame's instantaneous SNR;
it is what keeps the gain from flickering in noise-only bands (the "musical noise" of plain spectral
subtraction). Where speech is probably absent, the gain slides smoothly to the floor instead.
"""

from __future__ import annotations

import numpy as np
from scipy.special import exp1


def lsa_gain(xi: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Ephraim-Malah log-spectral amplitude gain for a-priori SNR `xi`, a-posteriori SNR `gamma`."""
    v = np.maximum(xi * gamma / (1 + xi), 1e-10)
    return xi / (1 + xi) * np.exp(0.5 * exp1(v))


class DecisionDirectedGain:
    """One gain per band per frame, with the decision-directed recursion as its state."""

    def __init__(
        self,
        shape: tuple[int, ...],
        alpha: float = 0.85,
        xi_min_db: float = -25.0,
        q_absent: float = 0.2,
    ) -> None:
        self.shape = shape
        self.alpha = alpha
        self.xi_min = 10 ** (xi_min_db / 10)
        self.absent_odds = q_absent / (1 - q_absent)
        self.reset()

    def reset(self) -> None:
        self.prev_clean = np.zeros(self.shape)  # G^2 * gamma of the last frame
        self.started = False

    def update(self, power: np.ndarray, noise: np.ndarray, floor: float) -> np.ndarray:
        """The gain for one frame of band powers given their noise powers; `floor` is the linear
        gain where speech is absent."""
        gamma = np.minimum(power / np.maximum(noise, 1e-20), 1e4)
        ml = np.maximum(gamma - 1.0, 0.0)
        xi = self.alpha * self.prev_clean + (1 - self.alpha) * ml if self.started else ml
        self.started = True
        xi = np.maximum(xi, self.xi_min)
        g = np.minimum(lsa_gain(xi, gamma), 1.0)
        self.prev_clean = g * g * gamma
        v = np.minimum(xi * gamma / (1 + xi), 50.0)
        presence = 1 / (1 + self.absent_odds * (1 + xi) * np.exp(-v))
        return np.maximum(g, floor) ** presence * floor ** (1 - presence)
