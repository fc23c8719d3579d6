"""Frame-by-frame HMM decoding in the log domain (hmmlearn has no incremental decoding, and its
`predict_proba` looks ahead: hmmlearn #144, #540).

* `StreamingForward`: the forward recursion carried across calls; its total equals hmmlearn's `score`.
* `KeywordSpotter`: a keyword-filler loop. Each keyword is a left-to-right HMM whose emissions are
  scored *relative to the filler model* on the same frame (log b_s(x) - log p_filler(x)), so a noise
  level that lowers both cancels out. A token-passing Viterbi keeps, per keyword state, the best
  relative score of any path that entered the keyword at some frame, and that entry frame; the score
  of a keyword ending now is its relative log-likelihood divided by its duration (frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import GaussianMixtureHMM

NEG = -1e30


class StreamingForward:
    """log p(x_1..x_t) of one HMM, updated as frames arrive."""

    def __init__(self, model: GaussianMixtureHMM) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.log_alpha: np.ndarray | None = None
        self.total = 0.0  # log-likelihood of all frames so far

    def push(self, X: np.ndarray) -> np.ndarray:
        """Feed frames (T, D); returns the per-frame log-likelihood increments (T,)."""
        m = self.model
        E = m.log_emission(X)
        inc = np.empty(X.shape[0])
        for t in range(X.shape[0]):
            if self.log_alpha is None:
                a = m.log_start + E[t]
            else:
                a = np.logaddexp.reduce(self.log_alpha[:, None] + m.log_trans, axis=0) + E[t]
            c = np.logaddexp.reduce(a)
            self.log_alpha = a - c  # normalised: keeps the numbers in range
            inc[t] = c
            self.total += c
        return inc


def forward_score(model: GaussianMixtureHMM, X: np.ndarray) -> float:
    f = StreamingForward(model)
    f.push(X)
    return f.total


@dataclass
class Detection:
    keyword: str
    frame: int  # frame at which the keyword ended (the detection frame)
    start: int  # frame at which it began
    score: float  # duration-normalised log-likelihood ratio, per frame


class KeywordSpotter:
    """Keyword-filler decoding of several keyword HMMs against one filler HMM, frame by frame."""

    def __init__(
        self,
        keywords: dict[str, GaussianMixtureHMM],
        filler: GaussianMixtureHMM,
        thresholds: dict[str, float] | None = None,
        min_frames: int | str = 10,
        max_frames: int | str = 150,
        refractory: int = 50,
        normalize: bool = True,
    ) -> None:
        self.names = list(keywords)
        self.filler = filler
        k = len(self.names)
        s_max = max(m.n_states for m in keywords.values())
        self.n_states = np.array([m.n_states for m in keywords.values()])
        # All keyword states stacked into one emission model (one einsum per batch of frames).
        self.offsets = np.concatenate([[0], np.cumsum(self.n_states)])
        self.stack = GaussianMixtureHMM(
            np.ones(self.offsets[-1]) / self.offsets[-1],
            np.eye(self.offsets[-1]),
            _pad_mix([m.weights for m in keywords.values()], fill=1.0),
            _pad_mix([m.means for m in keywords.values()], fill=0.0),
            _pad_mix([m.variances for m in keywords.values()], fill=1.0),
        )
        self.stack.log_weights = _pad_mix([m.log_weights for m in keywords.values()], fill=-np.inf)
        # Transitions padded to (K, S, S); missing states are unreachable.
        self.log_trans = np.full((k, s_max, s_max), NEG)
        self.valid = np.zeros((k, s_max), bool)
        for i, m in enumerate(keywords.values()):
            s = m.n_states
            self.log_trans[i, :s, :s] = np.maximum(m.log_trans, NEG)
            self.valid[i, :s] = True
        self.last = self.n_states - 1
        self.thresholds = np.array([(thresholds or {}).get(n, 0.0) for n in self.names])
        self.refractory = refractory
        # Duration limits: one number for all keywords, or per keyword in proportion to its states.
        self.min_frames = self._per_keyword(min_frames)
        self.max_frames = self._per_keyword(max_frames)
        self.normalize = normalize
        self.reset()

    def _per_keyword(self, v) -> np.ndarray:
        if isinstance(v, str) and v.startswith("x"):  # "x2.4": that many frames per state
            return np.round(float(v[1:]) * self.n_states).astype(np.int64)
        return np.full(len(self.names), int(v), np.int64)

    def reset(self) -> None:
        k, s = self.valid.shape
        self.D = np.full((k, s), NEG)
        self.B = np.zeros((k, s), np.int64)
        self.frame = 0
        self.quiet_until = np.zeros(k, np.int64)
        self.filler_fwd = StreamingForward(self.filler)

    def push(self, X: np.ndarray) -> tuple[np.ndarray, list[Detection]]:
        """Feed frames (T, D). Returns each keyword's score per frame (T, K) and the detections."""
        T = X.shape[0]
        k, s = self.valid.shape
        scores = np.full((T, k), NEG)
        if T == 0:
            return scores, []
        f = self.filler_fwd.push(X)  # (T,)
        E = self.stack.log_emission(X) - f[:, None]  # relative emissions, (T, sum S)
        Ek = np.full((T, k, s), NEG)
        for i in range(k):
            Ek[:, i, : self.n_states[i]] = E[:, self.offsets[i] : self.offsets[i + 1]]
        rows, cols = np.arange(k), np.arange(s)[None, :]
        found: list[Detection] = []
        for t in range(T):
            cand = self.D[:, :, None] + self.log_trans  # (K, from, to)
            j = np.argmax(cand, axis=1)  # best predecessor per (K, to)
            best = cand[rows[:, None], j, cols]
            start = self.B[rows[:, None], j]
            # A new token may enter the first state at this frame with relative score 0.
            enter = best[:, 0] < 0.0
            best[:, 0] = np.where(enter, 0.0, best[:, 0])
            start[:, 0] = np.where(enter, self.frame, start[:, 0])
            self.D = np.where(self.valid, best + Ek[t], NEG)
            self.B = start
            end_score = self.D[rows, self.last]
            dur = self.frame - self.B[rows, self.last] + 1
            value = end_score / dur if self.normalize else end_score
            norm = np.where((dur >= self.min_frames) & (dur <= self.max_frames), value, NEG)
            scores[t] = norm
            fire = (norm > self.thresholds) & (self.frame >= self.quiet_until)
            for i in np.flatnonzero(fire):
                begin = int(self.B[i, self.last[i]])
                found.append(Detection(self.names[i], self.frame, begin, float(norm[i])))
                self.quiet_until[i] = self.frame + self.refractory
                self.D[i] = NEG  # the word is consumed: start afresh
            self.frame += 1
        return scores, found


def _pad_mix(arrays: list[np.ndarray], fill: float) -> np.ndarray:
    """Stack per-state mixture arrays of keywords with different mixture counts."""
    m = max(a.shape[1] for a in arrays)
    out = []
    for a in arrays:
        pad = [(0, 0), (0, m - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
        out.append(np.pad(a, pad, constant_values=fill))
    return np.concatenate(out, axis=0)
