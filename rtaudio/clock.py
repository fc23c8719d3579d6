"""Silent-slip detection: the sample counter against the stream clock.

PulseAudio can drop or insert samples under CPU starvation without setting any PortAudio flag.
Each callback reports when its first frame met the converter (`inputBufferAdcTime`, or
`outputBufferDacTime`); with `pos` frames delivered before it, `(t - t0) * rate - pos` stays
constant while no sample is lost or inserted. Callback timestamps jitter (PulseAudio delivers in
bursts: ±40 samples at 48 kHz measured), so the detector compares medians over short windows and
counts a persistent step larger than `threshold` as a slip of that many frames. Slow drift between
the device's crystal and the system clock (tens of ppm) moves the reference along without counting.
Steps during the first `settle` seconds (stream start-up) are not counted.
"""

from __future__ import annotations

import numpy as np


class SlipDetector:
    def __init__(self, rate: int, window: float = 0.5, settle: float = 3.0,
                 threshold_seconds: float = 0.001) -> None:
        self.rate = rate
        self.window = window
        self.settle = settle
        self.threshold = max(8.0, threshold_seconds * rate)
        self.seen = 0  # callbacks consumed
        self.slipped = 0  # frames lost or inserted (absolute)
        self.events = 0
        self.t0: float | None = None
        self.p0 = 0
        self.ref: float | None = None
        self._buf: list[np.ndarray] = []
        self._wstart: float | None = None
        self.trace: list[tuple[float, float]] = []  # (seconds, window median), for tests/benchmarks

    def feed(self, times: np.ndarray, positions: np.ndarray, seen: int) -> None:
        """New callbacks' clock times (s) and frames-before counts; `seen` = callbacks so far."""
        self.seen = seen
        ok = times > 0  # a host API may leave a time at 0 (unknown)
        times, positions = times[ok], positions[ok]
        if times.size == 0:
            return
        if self.t0 is None:
            self.t0, self.p0 = float(times[0]), int(positions[0])
            self._wstart = 0.0
        rel = times - self.t0
        err = rel * self.rate - (positions - self.p0)
        # Split at window boundaries.
        while rel.size:
            end = self._wstart + self.window
            cut = int(np.searchsorted(rel, end))
            if cut == 0 and not self._buf:  # a gap in the clock: jump to the window holding rel[0]
                self._wstart = float(rel[0] - (rel[0] - self._wstart) % self.window)
                end = self._wstart + self.window
                cut = int(np.searchsorted(rel, end))
            self._buf.append(err[:cut])
            if cut == rel.size:
                break
            self._close_window(end)
            rel, err = rel[cut:], err[cut:]

    def _close_window(self, end: float) -> None:
        vals = np.concatenate(self._buf) if self._buf else np.zeros(0)
        self._buf = []
        self._wstart = end
        if vals.size < 3 or end < self.settle:
            return
        m = float(np.median(vals))
        self.trace.append((end, m))
        if self.ref is None:
            self.ref = m
            return
        step = m - self.ref
        if abs(step) > self.threshold:
            self.slipped += int(round(abs(step)))
            self.events += 1
            self.ref = m
        elif abs(step) < self.threshold / 2:
            self.ref = m  # follow slow drift
