"""Log-mel / MFCC features: streaming equals offline for any partition; the stages publish them."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rtaudio.kws.features import (
    FeatureConfig,
    FeatureStream,
    RunningMeanNorm,
    compute,
    dct_matrix,
    hz_to_mel,
    n_frames,
)
from rtaudio.stages.features import MFCC, LogMel

from .streaming import partitions, run_blocks, signals

CFG = FeatureConfig()


@settings(max_examples=40, deadline=None)
@given(x=signals(0, 5000, channels=(1,)), sizes=partitions(900), kind=st.sampled_from(["logmel", "mfcc"]))
def test_feature_stream_equals_offline(x, sizes, kind):
    cfg = FeatureConfig(kind=kind)
    stream = FeatureStream(cfg)
    outs, i = [], 0
    for n in sizes:
        outs.append(stream.push(x[i : i + n, 0]))
        i += n
    outs.append(stream.push(x[i:, 0]))
    got = np.concatenate(outs)
    want = compute(x[:, 0], cfg)
    assert got.shape == want.shape == (n_frames(len(x), cfg), cfg.dim)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(x=signals(0, 4000), sizes=partitions(700), stage_cls=st.sampled_from([LogMel, MFCC]))
def test_feature_stages_stream_exactly(x, sizes, stage_cls):
    out, msgs = run_blocks(stage_cls(), x, sizes, 16000)
    np.testing.assert_array_equal(out, x)  # audio passes through
    msgs = [m for m in msgs if m.topic == stage_cls.kind]
    frames = np.concatenate([m.data["frames"] for m in msgs]) if msgs else np.zeros((0, 1))
    want = compute(x.mean(axis=1), FeatureConfig(kind=stage_cls.kind))
    assert frames.shape[0] == want.shape[0]
    if want.shape[0]:
        np.testing.assert_allclose(frames, want, atol=1e-5, rtol=1e-6)
    # each message is stamped with the start sample of its first frame
    expect, k = [], 0
    for m in msgs:
        expect.append(k * 160)
        k += m.data["frames"].shape[0]
    assert [m.sample for m in msgs] == expect


def test_tone_peaks_in_its_mel_band():
    t = np.arange(16000) / 16000
    f = compute(0.5 * np.sin(2 * np.pi * 1000 * t), CFG)
    centres = np.linspace(hz_to_mel(CFG.fmin), hz_to_mel(CFG.fmax), CFG.n_mels + 2)[1:-1]
    expected = int(np.argmin(np.abs(centres - hz_to_mel(1000.0))))
    assert abs(int(np.argmax(f.mean(axis=0))) - expected) <= 1


def test_mfcc_is_dct_of_logmel():
    x = np.random.default_rng(1).standard_normal(4000) * 0.1
    mel = compute(x, CFG)
    mfcc = compute(x, FeatureConfig(kind="mfcc"))
    np.testing.assert_allclose(mfcc, mel.astype(np.float64) @ dct_matrix(40, 13), rtol=1e-4, atol=1e-3)
    d = dct_matrix(40, 40)
    np.testing.assert_allclose(d.T @ d, np.eye(40), atol=1e-12)  # orthonormal


def test_fingerprint_changes_with_config():
    assert FeatureConfig().fingerprint() == FeatureConfig().fingerprint()
    assert FeatureConfig(n_mels=64).fingerprint() != FeatureConfig().fingerprint()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), sizes=st.lists(st.integers(0, 50), max_size=20))
def test_running_mean_norm_is_streaming_exact(seed, sizes):
    x = np.random.default_rng(seed).standard_normal((300, 8)).astype(np.float32) + 5
    whole = RunningMeanNorm(0.5, 0.01).push(x)
    norm, parts, i = RunningMeanNorm(0.5, 0.01), [], 0
    for n in [*sizes, 300]:
        parts.append(norm.push(x[i : i + n]))
        i += n
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)
    # a constant input is removed entirely; a step decays with the time constant
    np.testing.assert_allclose(RunningMeanNorm(0.5, 0.01).push(np.full((10, 2), 3.0)), 0, atol=1e-6)
    step = RunningMeanNorm(0.5, 0.01).push(np.concatenate([np.zeros((1, 1)), np.ones((50, 1))]))
    assert abs(step[50, 0] - np.exp(-1.0)) < 0.01  # 0.5 s after the step, tau = 0.5 s
