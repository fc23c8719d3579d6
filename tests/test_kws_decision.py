"""The decision layer: streaming-exact, thresholds, patience, refractory time, re-arming."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rtaudio.kws.decision import Decider, DecisionConfig, single_keyword_events, smoothed


def posts(kw_track: np.ndarray, k: int = 2, which: int = 0) -> np.ndarray:
    """Posteriors (silence, unknown, k keywords) with `kw_track` on keyword `which`."""
    p = np.zeros((len(kw_track), 2 + k))
    p[:, 2 + which] = kw_track
    p[:, 0] = 1 - kw_track
    return p


def test_fires_once_after_patience_with_score():
    track = np.zeros(100)
    track[20:40] = 0.9
    dec = Decider(DecisionConfig([0.6, 0.6], smooth=1, patience=3, refractory=0.1), 0.01)
    _, ev = dec.step(posts(track))
    assert len(ev) == 1 and ev[0].frame == 22 and ev[0].keyword == 0 and ev[0].onset_frame == 20
    assert abs(ev[0].score - 0.9) < 1e-12


def test_refractory_and_rearm():
    track = np.zeros(300)
    track[10:20] = 0.9
    track[25:35] = 0.9  # dips below rearm, but inside the refractory time: no second event
    track[150:160] = 0.9  # after the refractory time: fires again
    cfg = DecisionConfig([0.5, 0.5], smooth=1, patience=1, refractory=0.5)
    _, ev = Decider(cfg, 0.01).step(posts(track))
    assert [e.frame for e in ev] == [10, 150]
    steady = np.full(300, 0.9)  # one long word: never re-armed, a single event
    _, ev = Decider(cfg, 0.01).step(posts(steady))
    assert len(ev) == 1


def test_smoothing_rejects_single_frame_spikes():
    track = np.zeros(100)
    track[::10] = 1.0
    _, ev = Decider(DecisionConfig([0.5, 0.5], smooth=5, patience=1), 0.01).step(posts(track))
    assert ev == []


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), sizes=st.lists(st.integers(0, 40), max_size=20))
def test_decider_is_streaming_exact(seed, sizes):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(5) * 0.3, size=300)
    cfg = DecisionConfig([0.4, 0.5, 0.6], smooth=4, patience=2, refractory=0.2)
    whole_s, whole_e = Decider(cfg, 0.01).step(p)
    dec, parts, evs, i = Decider(cfg, 0.01), [], [], 0
    for n in [*sizes, 300]:
        s, e = dec.step(p[i : i + n])
        parts.append(s)
        evs += e
        i += n
    np.testing.assert_allclose(np.concatenate(parts), whole_s, atol=1e-12)
    assert evs == whole_e


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), thr=st.floats(0.2, 0.9), patience=st.integers(1, 4))
def test_fast_single_keyword_events_equal_the_decider(seed, thr, patience):
    rng = np.random.default_rng(seed)
    track = np.clip(np.repeat(rng.uniform(0, 1, 60), rng.integers(1, 12, 60)), 0, 1)
    cfg = DecisionConfig([thr, 2.0], smooth=3, patience=patience, refractory=0.05)
    _, ev = Decider(cfg, 0.01).step(posts(track))
    s = smoothed(posts(track)[:, 2:4], 3)
    assert single_keyword_events(s[:, 0], thr, cfg, 5) == [e.frame for e in ev]


def test_patience_per_keyword():
    """Calibration may give each keyword its own patience: a keyword with patience 4 fires only
    after 4 frames above its threshold, one with patience 1 on its first."""
    p = np.zeros((60, 4))
    p[:, 0] = 1.0
    p[10:20, 2] = 0.9
    p[10:20, 0] = 0.1
    p[40:50, 3] = 0.9
    p[40:50, 0] = 0.1
    cfg = DecisionConfig([0.5, 0.5], smooth=1, patience=[1, 4], refractory=0.05)
    _, ev = Decider(cfg, 0.01).step(p)
    assert [(e.keyword, e.frame) for e in ev] == [(0, 10), (1, 43)]
    assert DecisionConfig(**cfg.to_dict()) == cfg
    s = smoothed(p[:, 2:4], 1)
    assert single_keyword_events(s[:, 1], 0.5, cfg, 5, patience=4) == [43]
