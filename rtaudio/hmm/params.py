"""HMM parameters as plain arrays, stored as npz + JSON (never a pickle), and converted from hmmlearn.

Emissions are diagonal-covariance Gaussian mixtures per state (a GaussianHMM is the 1-mixture case).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RtAudioError

LOG_2PI = float(np.log(2 * np.pi))


@dataclass
class GaussianMixtureHMM:
    """startprob (S,), transmat (S, S), weights (S, M), means (S, M, D), variances (S, M, D)."""

    startprob: np.ndarray
    transmat: np.ndarray
    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prepare()

    def prepare(self) -> None:
        """Precompute the log-domain constants used per frame."""
        with np.errstate(divide="ignore"):
            self.log_start = np.log(self.startprob)
            self.log_trans = np.log(self.transmat)
            self.log_weights = np.log(self.weights)
        self.inv_var = 1.0 / self.variances
        d = self.means.shape[-1]
        self.log_norm = -0.5 * (d * LOG_2PI + np.log(self.variances).sum(-1))  # (S, M)
        # The quadratic form sum_d (x_d - mu_d)^2 / v_d expanded into two matrix products (BLAS)
        # instead of a (T, S, M, D) difference array: x^2 . (1/v) - 2 x . (mu/v) + mu^2 . (1/v).
        self._quad_x2 = np.ascontiguousarray(self.inv_var.reshape(-1, d).T)  # (D, S*M)
        self._quad_x = np.ascontiguousarray((-2.0 * self.means * self.inv_var).reshape(-1, d).T)
        self._quad_c = (self.means * self.means * self.inv_var).sum(-1).reshape(-1)  # (S*M,)

    @property
    def n_states(self) -> int:
        return self.startprob.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[-1]

    def log_emission(self, X: np.ndarray) -> np.ndarray:
        """log p(x_t | state s) for frames X (T, D) -> (T, S)."""
        s, m = self.log_norm.shape
        quad = (X * X) @ self._quad_x2 + X @ self._quad_x + self._quad_c  # (T, S*M)
        comp = (self.log_norm + self.log_weights)[None] - 0.5 * quad.reshape(len(X), s, m)
        if m == 1:
            return comp[:, :, 0]
        top = comp.max(axis=2)
        return top + np.log(np.exp(comp - top[:, :, None]).sum(axis=2))

    # -- conversion and storage -----------------------------------------------------------------
    @classmethod
    def from_hmmlearn(cls, model, name: str = "") -> GaussianMixtureHMM:
        covars = np.asarray(model.covars_)
        if hasattr(model, "weights_"):  # GMMHMM
            weights, means = np.asarray(model.weights_), np.asarray(model.means_)
            if covars.ndim == 4:
                covars = np.diagonal(covars, axis1=2, axis2=3)
        else:  # GaussianHMM: covars_ is (S, D, D) for diag, return its diagonal
            means = np.asarray(model.means_)[:, None, :]
            weights = np.ones((means.shape[0], 1))
            if covars.ndim == 3:
                covars = np.diagonal(covars, axis1=1, axis2=2)
            covars = covars[:, None, :]
        return cls(np.asarray(model.startprob_, float), np.asarray(model.transmat_, float),
                   weights.astype(float), means.astype(float), covars.astype(float), name)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.{k}": getattr(self, k)
                for k in ("startprob", "transmat", "weights", "means", "variances")}

    @classmethod
    def from_arrays(cls, data, prefix: str, name: str) -> GaussianMixtureHMM:
        return cls(*(np.asarray(data[f"{prefix}.{k}"], float)
                     for k in ("startprob", "transmat", "weights", "means", "variances")), name=name)


def save_models(path: Path, models: dict[str, GaussianMixtureHMM], config: dict[str, Any]) -> None:
    """Write `path/hmm.npz` (arrays) and `path/hmm.json` (config and names); no pickles."""
    path.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for i, m in enumerate(models.values()):
        arrays.update(m.arrays(f"m{i}"))
    tmp = path / "hmm.npz.partial"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.replace(path / "hmm.npz")
    meta = {**config, "models": list(models)}
    (path / "hmm.json").write_text(json.dumps(meta, indent=2))


def load_models(path: Path) -> tuple[dict[str, GaussianMixtureHMM], dict[str, Any]]:
    try:
        config = json.loads((path / "hmm.json").read_text())
        with np.load(path / "hmm.npz", allow_pickle=False) as data:
            models = {name: GaussianMixtureHMM.from_arrays(data, f"m{i}", name)
                      for i, name in enumerate(config["models"])}
    except FileNotFoundError as e:
        raise RtAudioError(f"{path}: not an HMM model directory ({e.filename} missing)") from None
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as e:
        raise RtAudioError(f"{path}: corrupt HMM model ({type(e).__name__}: {e})") from None
    return models, config
