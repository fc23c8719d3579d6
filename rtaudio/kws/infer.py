"""Running a keyword model over audio, streaming (block by block) or offline; both give the same
posteriors. Used by the `kws` stage, threshold calibration and the benchmark."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .features import FeatureStream, RunningMeanNorm
from .models import STATEFUL_ARCHS, feature_layout, for_inference


class Streamer:
    """Audio in (mono, model rate), posteriors out: (frame indices, (n, classes) probabilities).
    Both are evaluated every `stride` frames (reported at the last frame of each group): the GRU on
    each group of `stride` stacked frames, the DS-CNN over its window of the latest frames."""

    def __init__(self, model: nn.Module, config: dict[str, Any]) -> None:
        self.model, self.config = for_inference(model), config  # a snapshot of the weights
        # an ensemble whose members have their own front ends reads all of them side by side
        sets = feature_layout(config)[0]
        self.cfg = sets[0]  # rate, window and hop: the same for all; the config's own front end
        self.dim = sum(f.dim for f in sets)
        self.arch = config["arch"]
        self.stride = getattr(model, "stack", None) or int(config.get("stride", 1))
        self.features = [FeatureStream(f) for f in sets]
        tau = float(config.get("mean_norm_s", 0.0))
        self.norm = RunningMeanNorm(tau, self.cfg.hop / self.cfg.rate) if tau > 0 else None
        self.reset()

    def reset(self) -> None:
        for f in self.features:
            f.reset()
        if self.norm is not None:
            self.norm.reset()
        self.frame = 0
        if self.arch in STATEFUL_ARCHS:
            self.state = self.model.init_state(1)
            self.pending = np.zeros((0, self.dim), np.float32)  # frames of an incomplete group
        else:
            w = self.model.window
            self.ring = np.tile(self.model.mean.numpy().astype(np.float32), (2 * w, 1))
            self.filled = w  # ring rows [filled-w, filled) are the current window

    @torch.inference_mode()
    def push(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = [f.push(x) for f in self.features]
        feats = parts[0] if len(parts) == 1 else np.concatenate(parts, 1)
        if self.norm is not None:
            feats = self.norm.push(feats)
        n = feats.shape[0]
        first = self.frame
        self.frame += n
        if n == 0:
            return np.zeros(0, np.int64), np.zeros((0, len(self.config["classes"])), np.float32)
        if self.arch in STATEFUL_ARCHS:
            return self._push_gru(feats, first)
        return self._push_cnn(feats, first)

    def _push_gru(self, feats: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
        k = self.stride
        start = first - self.pending.shape[0]  # frame index of the first pending frame
        allf = np.concatenate([self.pending, feats]) if self.pending.shape[0] else feats
        n = (allf.shape[0] // k) * k
        self.pending = allf[n:].copy()
        if n == 0:
            return np.zeros(0, np.int64), np.zeros((0, len(self.config["classes"])), np.float32)
        logits, self.state = self.model(torch.from_numpy(np.ascontiguousarray(allf[:n]))[None], self.state)
        return np.arange(start + k - 1, start + n, k), torch.softmax(logits[0], -1).numpy()

    def _push_cnn(self, feats: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
        w = self.model.window
        idx, wins = [], []
        for i in range(feats.shape[0]):
            if self.filled == self.ring.shape[0]:
                self.ring[:w] = self.ring[-w:]
                self.filled = w
            self.ring[self.filled] = feats[i]
            self.filled += 1
            t = first + i
            if (t + 1) % self.stride == 0:
                idx.append(t)
                wins.append(self.ring[self.filled - w : self.filled].copy())
        if not idx:
            return np.zeros(0, np.int64), np.zeros((0, len(self.config["classes"])), np.float32)
        logits = self.model(torch.from_numpy(np.stack(wins)))
        return np.asarray(idx), torch.softmax(logits, -1).numpy()


def posteriors_offline(model: nn.Module, config: dict[str, Any], y: np.ndarray) -> np.ndarray:
    """Posteriors of the frames the streamer evaluates (whole signal at once)."""
    return Streamer(model, config).push(y)[1]
