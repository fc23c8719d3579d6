"""A small recurrent network that predicts the per-band gains of the wavelet-packet denoiser
(RNNoise's idea, in the wavelet-packet domain).

Input per frame and band: log10 of the band power and of its a-posteriori SNR against the causal
noise tracker's estimate; a dense layer, one GRU, a dense sigmoid layer give one gain per band.
Training uses torch (`rtaudio.dsp.gain_net_train`); the stage runs the GRU one frame at a time in
numpy from the shipped state dict (loaded with `torch.load(weights_only=True)`), carrying the
hidden state across blocks, so streaming is exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MODEL_DIR = Path(__file__).resolve().parent.parent / "models"
MODEL_NAME = "denoise_gru16k"


def features(power: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """(..., bands) band powers and noise estimates -> (..., 2 * bands) network input."""
    lp = np.log10(np.maximum(power, 1e-10))
    snr = np.log10(np.maximum(power, 1e-10) / np.maximum(noise, 1e-10))
    return np.concatenate([0.25 * (lp + 4.0), 0.5 * np.clip(snr, -3.0, 4.0)], axis=-1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class GainNetRunner:
    """Numpy inference of the gain network, one frame at a time, hidden state per channel."""

    def __init__(self, weights: dict[str, np.ndarray], config: dict, channels: int) -> None:
        self.config = config
        w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        self.w_in, self.b_in = w["inp.weight"].T, w["inp.bias"]
        self.w_ih, self.b_ih = w["gru.weight_ih_l0"].T, w["gru.bias_ih_l0"]
        self.w_hh, self.b_hh = w["gru.weight_hh_l0"].T, w["gru.bias_hh_l0"]
        self.w_out, self.b_out = w["out.weight"].T, w["out.bias"]
        self.hidden = self.w_hh.shape[0]
        self.channels = channels
        self.reset()

    def reset(self) -> None:
        self.h = np.zeros((self.channels, self.hidden))

    def step(self, power: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """(channels, bands) -> gains (channels, bands), advancing the GRU by one frame."""
        x = np.tanh(features(power, noise) @ self.w_in + self.b_in)
        gi = x @ self.w_ih + self.b_ih
        gh = self.h @ self.w_hh + self.b_hh
        n = self.hidden
        r = _sigmoid(gi[:, :n] + gh[:, :n])
        z = _sigmoid(gi[:, n : 2 * n] + gh[:, n : 2 * n])
        cand = np.tanh(gi[:, 2 * n :] + r * gh[:, 2 * n :])
        self.h = (1 - z) * cand + z * self.h
        return _sigmoid(self.h @ self.w_out + self.b_out)


def load(channels: int, name: str = MODEL_NAME, model_dir: Path = MODEL_DIR) -> GainNetRunner:
    """The shipped model: `<name>.pt` (a state dict) and `<name>.json` (its configuration)."""
    import torch

    config = json.loads((model_dir / f"{name}.json").read_text())
    state = torch.load(model_dir / f"{name}.pt", map_location="cpu", weights_only=True)
    return GainNetRunner({k: v.numpy() for k, v in state.items()}, config, channels)
