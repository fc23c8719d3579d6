"""A small recurrent network that predicts the per-band gains of the wavelet-packet denoiser
(RNNoise's idea, in the wavelet-packet domain).

Input per frame and band: log10 of the band power and of its a-posteriori SNR against the causal
noise tracker's estimate; a dense layer, one GRU, a dense sigmoid layer give one gain per band.
A model may cover only the lowest `net_bands` bands of the stage's layout (the 48 kHz model stops
at 8 kHz, where its 16 kHz-band-limited TTS training speech ends); the stage gives the bands above
the classical gains. Training uses torch (`scripts/train_denoise_gru.py`); the stage runs the GRU one
frame at a time in numpy from the shipped state dict (loaded with `torch.load(weights_only=True)`),
carrying the hidden state across blocks, so streaming is exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.special import expit

from ..errors import ConfigError

MODEL_DIR = Path(__file__).resolve().parent.parent / "models"
SHIPPED_RATES = (16000, 48000)
KEYS = ("inp.weight", "inp.bias", "gru.weight_ih_l0", "gru.bias_ih_l0", "gru.weight_hh_l0",
        "gru.bias_hh_l0", "out.weight", "out.bias")


def model_name(rate: int) -> str:
    """The shipped model's file stem for a sample rate: `denoise_gru16k`, `denoise_gru48k`."""
    return f"denoise_gru{rate // 1000}k" if rate % 1000 == 0 else f"denoise_gru{rate}"


def has_model(rate: int, model_dir: Path | None = None) -> bool:
    d = MODEL_DIR if model_dir is None else Path(model_dir)
    return (d / f"{model_name(rate)}.json").exists() or (d / f"{model_name(rate)}.pt").exists()


def features(power: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """(..., bands) band powers and noise estimates -> (..., 2 * bands) network input."""
    lp = np.log10(np.maximum(power, 1e-10))
    snr = lp - np.log10(np.maximum(noise, 1e-10))
    return np.concatenate([0.25 * (lp + 4.0), 0.5 * np.clip(snr, -3.0, 4.0)], axis=-1)


_sigmoid = expit


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
        self.bands = self.w_out.shape[1]  # bands the network covers (the lowest ones)
        n = self.hidden
        shapes = {"inp": (self.w_in.shape[0] == 2 * self.bands, self.b_in.shape == (n,),
                          self.w_in.shape[1] == n),
                  "gru": (self.w_ih.shape == (n, 3 * n), self.w_hh.shape == (n, 3 * n),
                          self.b_ih.shape == (3 * n,), self.b_hh.shape == (3 * n,)),
                  "out": (self.w_out.shape[0] == n, self.b_out.shape == (self.bands,))}
        bad = [k for k, ok in shapes.items() if not all(ok)]
        if bad:
            raise ValueError(f"inconsistent weight shapes in layer(s) {', '.join(bad)}")
        # the features' affine scaling folded into the input layer (one frame is a few C calls)
        half = self.bands
        self.w_lp = 0.25 * self.w_in[:half]
        self.w_snr = 0.5 * self.w_in[half:]
        self.b_x = self.b_in + 1.0 * self.w_in[:half].sum(axis=0)
        # the network's gains are raised to this power (from the model's JSON; chosen on the training
        # script's own validation set): above 1 they lean to more suppression, which PESQ rewards
        self.exponent = float(config.get("gain_exponent", 1.0))
        self.channels = channels
        self.reset()

    def reset(self) -> None:
        self.h = np.zeros((self.channels, self.hidden))

    def step(self, power: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """(channels, bands) -> gains (channels, bands), advancing the GRU by one frame."""
        lp = np.log10(np.maximum(power, 1e-10))
        snr = np.clip(lp - np.log10(np.maximum(noise, 1e-10)), -3.0, 4.0)
        x = np.tanh(lp @ self.w_lp + snr @ self.w_snr + self.b_x)  # == tanh(features @ w_in + b_in)
        gi = x @ self.w_ih + self.b_ih
        gh = self.h @ self.w_hh + self.b_hh
        n = self.hidden
        rz = _sigmoid(gi[:, : 2 * n] + gh[:, : 2 * n])
        z = rz[:, n:]
        cand = np.tanh(gi[:, 2 * n :] + rz[:, :n] * gh[:, 2 * n :])
        self.h = cand + z * (self.h - cand)  # (1 - z) * cand + z * h
        g = _sigmoid(self.h @ self.w_out + self.b_out)
        return g if self.exponent == 1.0 else g**self.exponent


def load(channels: int, rate: int = 16000, model_dir: Path | None = None,
         name: str | None = None) -> GainNetRunner:
    """The shipped model for `rate`: `<name>.pt` (a state dict) and `<name>.json` (its configuration).
    Any problem is a one-line `ConfigError`."""
    model_dir = MODEL_DIR if model_dir is None else Path(model_dir)
    name = name or model_name(rate)
    where = model_dir / name
    if not (model_dir / f"{name}.json").exists() and not (model_dir / f"{name}.pt").exists():
        have = ", ".join(f"{r} Hz" for r in SHIPPED_RATES)
        raise ConfigError(f"no gain network for {rate} Hz ({where}.pt/.json not found; shipped: {have})")
    try:
        import torch

        config = json.loads((model_dir / f"{name}.json").read_text())
        if not isinstance(config, dict):
            raise ValueError("the .json is not an object")
        state = torch.load(model_dir / f"{name}.pt", map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError("the .pt is not a state dict")
        missing = [k for k in KEYS if k not in state]
        if missing:
            raise ValueError(f"the state dict lacks {', '.join(missing)}")
        return GainNetRunner({k: state[k].detach().numpy() for k in KEYS}, config, channels)
    except Exception as e:  # noqa: BLE001  (json, pickle, torch and shape errors alike: one line)
        msg = " ".join(str(e).split())[:200] or type(e).__name__
        raise ConfigError(f"cannot load the gain network {where}.pt/.json: {msg}") from None
