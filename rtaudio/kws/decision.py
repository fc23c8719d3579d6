"""From per-frame posteriors to keyword events: smoothing, per-keyword thresholds, patience,
re-arming and a refractory time (openWakeWord-style debouncing). Streaming: feed frames in any
grouping, get the same events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DecisionConfig:
    thresholds: list[float]  # per keyword, on the smoothed posterior
    smooth: int = 5  # frames in the moving average
    # consecutive frames above threshold before firing: one for all keywords, or one per keyword
    # (calibration picks it per keyword: a longer wait rejects words that only begin like it)
    patience: int | list[int] = 2
    refractory: float = 0.8  # s after an event during which nothing fires
    rearm: float = 0.5  # a keyword fires again only after its score fell below rearm*threshold

    def to_dict(self) -> dict:
        return {
            "thresholds": [float(t) for t in self.thresholds],
            "smooth": self.smooth,
            "patience": self.patience if isinstance(self.patience, int) else [int(x) for x in self.patience],
            "refractory": self.refractory,
            "rearm": self.rearm,
        }


@dataclass
class Event:
    frame: int  # frame index at which it fired
    keyword: int  # keyword index (class - 2)
    score: float  # smoothed posterior at the firing frame
    onset_frame: int  # first frame of the run of raw posterior >= 0.5 (the word's end is near it)


@dataclass
class Decider:
    cfg: DecisionConfig
    hop_s: float  # seconds per frame
    first_kw_class: int = 2

    def __post_init__(self) -> None:
        self.k = len(self.cfg.thresholds)
        self.thr = np.asarray(self.cfg.thresholds, np.float64)
        self.refr_frames = int(round(self.cfg.refractory / self.hop_s))
        self.patience = np.broadcast_to(np.asarray(self.cfg.patience, np.int64), (self.k,)).copy()
        self.reset()

    def reset(self) -> None:
        self.hist = np.zeros((max(1, self.cfg.smooth), self.k))
        self.hsum = np.zeros(self.k)
        self.t = 0  # frames seen
        self.above = np.zeros(self.k, np.int64)
        self.armed = np.ones(self.k, bool)
        self.block_until = -1
        self.onset = np.full(self.k, -1, np.int64)

    def step(self, post: np.ndarray) -> tuple[np.ndarray, list[Event]]:
        """post: (n, classes) posteriors. Returns the smoothed keyword scores (n, k) and events."""
        n = post.shape[0]
        kw = np.asarray(post[:, self.first_kw_class : self.first_kw_class + self.k], np.float64)
        smooth = np.zeros((n, self.k))
        events: list[Event] = []
        m = self.hist.shape[0]
        for i in range(n):
            row = kw[i]
            slot = self.t % m
            self.hsum += row - self.hist[slot]
            self.hist[slot] = row
            s = self.hsum / m  # as if preceded by zeros
            smooth[i] = s
            raw_on = row >= 0.5
            self.onset = np.where(
                raw_on & (self.onset < 0),
                self.t,
                np.where(raw_on | (s >= self.thr), self.onset, -1),
            )
            hot = s >= self.thr
            self.above = np.where(hot, self.above + 1, 0)
            self.armed |= s < self.cfg.rearm * self.thr
            if self.t > self.block_until:
                ready = hot & self.armed & (self.above >= self.patience)
                if ready.any():  # the ready keyword furthest over its threshold
                    j = int(np.argmax(np.where(ready, s - self.thr, -np.inf)))
                    onset = int(self.onset[j]) if self.onset[j] >= 0 else self.t
                    events.append(Event(self.t, j, float(s[j]), onset))
                    self.armed[:] = False
                    self.block_until = self.t + self.refr_frames
            self.t += 1
        return smooth, events


def smoothed(post_kw: np.ndarray, m: int) -> np.ndarray:
    """The Decider's moving average (as if preceded by zeros), vectorised: (n, k) -> (n, k)."""
    c = np.concatenate([np.zeros((1, post_kw.shape[1])), np.cumsum(post_kw, axis=0, dtype=np.float64)])
    n = post_kw.shape[0]
    lo = np.maximum(np.arange(1, n + 1) - m, 0)
    return (c[1:] - c[lo]) / m


def single_keyword_events(
    s: np.ndarray,
    thr: float,
    cfg: DecisionConfig,
    refr_frames: int,
    patience: int | None = None,
) -> list[int]:
    """Firing frames of the Decider for one keyword alone (others disabled), from its smoothed score
    `s` (1-D), with `patience` (default: cfg.patience, which must then be one number). Exact and
    fast: only runs of frames above threshold are visited (for calibration)."""
    if patience is None:
        patience = int(cfg.patience)  # type: ignore[arg-type]
    hot = s >= thr
    if not hot.any():
        return []
    d = np.diff(np.concatenate([[0], hot.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)  # runs [start, end)
    low = np.flatnonzero(s < cfg.rearm * thr)  # frames that re-arm
    fires: list[int] = []
    block_until = -1
    for a, b in zip(starts, ends, strict=True):
        f = max(a + patience - 1, block_until + 1)
        if f >= b:
            continue
        if fires:  # re-armed only by a low frame after the last firing, at or before f
            i = np.searchsorted(low, fires[-1] + 1)
            if i >= len(low) or low[i] > f:
                continue
        fires.append(int(f))
        block_until = f + refr_frames
    return fires


def step_end_sample(step: int, stride: int, hop: int, win: int) -> int:
    """The sample at which the audio of model step `step` ends (step j is feature frame
    j*stride + stride-1, and feature frame t ends at t*hop + win)."""
    return (step * stride + stride - 1) * hop + win
