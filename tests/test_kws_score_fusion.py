"""The arithmetic of benchmarks/kws_score_fusion.py: which HMM frames a classifier step may see, and
the fused posteriors."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

_bench = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(_bench))  # the script imports its siblings kws, kws_compare, kws_detectors
_spec = importlib.util.spec_from_file_location("kws_score_fusion", _bench / "kws_score_fusion.py")
sf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sf)


@settings(max_examples=50, deadline=None)
@given(
    frames=st.integers(1, 60),
    window=st.integers(1, 12),
    stride=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_hmm_at_steps_is_the_max_over_the_frames_available_then(frames, window, stride, seed):
    scores = np.random.default_rng(seed).normal(size=(frames, 3))
    n_steps = frames // stride + 2  # some steps before the HMM has anything, some past its end
    got = sf.hmm_at_steps(scores, n_steps, stride, window)
    for j in range(n_steps):
        last = min(j * stride + stride - 1 - sf.HMM_LAG, frames - 1)
        seen = scores[max(0, last - window + 1) : last + 1] if last >= 0 else scores[:0]
        want = seen.max(axis=0) if len(seen) else np.full(3, sf.FLOOR)
        if len(seen) < window:  # the window reaches before the stream: floor-padded
            want = np.maximum(want, sf.FLOOR)
        np.testing.assert_array_equal(got[j], want)


def test_the_hmm_front_end_lags_by_hmm_lag_frames():
    """What hmm_at_steps assumes: after N samples the HMM has frames up to the classifier's
    frame count minus HMM_LAG (same hop and window)."""
    from rtaudio.hmm.stage import DEFAULT_MODEL, load_spotter

    _, frontend, _ = load_spotter(DEFAULT_MODEL)
    y = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    for n in (400, 2000, 2003, 16000):
        frontend.reset()
        full_frames = (n - 400) // 160 + 1  # frames whose 400-sample window is in
        assert frontend.push(y[:n]).shape[0] == max(0, full_frames - sf.HMM_LAG)


def test_weight_zero_is_the_classifier_alone_and_the_hmm_margin_moves_the_logit():
    rng = np.random.default_rng(0)
    post = rng.dirichlet(np.ones(5), size=20).astype(np.float32)  # silence, unknown, 3 keywords
    hmm = rng.normal(size=(20, 3)) * 5
    thr = np.array([0.0, 1.0, -1.0])
    np.testing.assert_allclose(sf.fuse_scores(post, hmm, thr, 0.0, 10.0), post, rtol=1e-6)
    fused = sf.fuse_scores(post, hmm, thr, 0.5, 2.0)
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    margin = np.clip(hmm - thr, -2.0, 2.0)
    moved = logit(fused[:, 2:]) - logit(post[:, 2:].astype(np.float64))
    np.testing.assert_allclose(moved, 0.5 * margin, atol=1e-6)
    np.testing.assert_array_equal(fused[:, :2], post[:, :2])  # silence and unknown untouched
