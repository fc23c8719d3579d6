"""The clock-based slip detector on synthetic callback timestamps (jitter, drift, real slips)."""

from __future__ import annotations

import numpy as np

from rtaudio.clock import SlipDetector

RATE = 48000
BLOCK = 256


def _stamps(seconds: float, jitter: float = 40.0, drift_ppm: float = 0.0, seed: int = 0):
    """Callback times for `seconds` of 256-frame blocks, with timestamp jitter (in samples) and
    a clock-rate drift; positions are the frames delivered before each callback."""
    rng = np.random.default_rng(seed)
    k = int(seconds * RATE / BLOCK)
    pos = np.arange(k, dtype=np.int64) * BLOCK
    t = 100.0 + pos / RATE * (1 + drift_ppm * 1e-6) + rng.uniform(-jitter, jitter, k) / RATE
    return t, pos


def _feed_in_pieces(det: SlipDetector, t, pos, piece: int = 37) -> None:
    for a in range(0, t.shape[0], piece):
        det.feed(t[a:a + piece], pos[a:a + piece], a + piece)


def test_jitter_and_drift_are_not_slips():
    t, pos = _stamps(30.0, jitter=40.0, drift_ppm=200.0)  # PulseAudio-like jitter, a bad crystal
    det = SlipDetector(RATE)
    _feed_in_pieces(det, t, pos)
    assert det.slipped == 0 and det.events == 0
    assert len(det.trace) > 40


def test_dropped_and_inserted_samples_are_counted():
    t, pos = _stamps(30.0, jitter=40.0)
    # 10 s in: the device dropped 300 frames (the clock runs on, the counter does not);
    # 20 s in: 120 frames were inserted (the counter runs ahead of the clock)
    t[t > 110.0] += 300 / RATE
    t[t > 120.0] -= 120 / RATE
    det = SlipDetector(RATE)
    _feed_in_pieces(det, t, pos)
    assert det.events == 2
    assert abs(det.slipped - 420) <= 20


def test_steps_during_settling_are_not_counted():
    t, pos = _stamps(20.0)
    t[t > 101.0] += 2000 / RATE  # a start-up step, 1 s in
    det = SlipDetector(RATE, settle=3.0)
    _feed_in_pieces(det, t, pos)
    assert det.slipped == 0


def test_a_gap_in_the_clock_is_one_slip():
    t, pos = _stamps(20.0, jitter=0.0)
    t[t > 110.0] += 5.0  # the stream stalled for 5 s (an xrun on JACK): 240000 frames lost
    det = SlipDetector(RATE)
    _feed_in_pieces(det, t, pos)
    assert det.events == 1
    assert abs(det.slipped - 5 * RATE) <= 50
