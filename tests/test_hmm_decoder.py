"""The HMM decoder: forward scores equal hmmlearn's, streaming equals offline, keywords are found."""

import numpy as np
from hmmlearn import hmm
from hypothesis import given, settings
from hypothesis import strategies as st

from rtaudio.hmm.decoder import KeywordSpotter, StreamingForward, forward_score
from rtaudio.hmm.params import GaussianMixtureHMM


def _gaussian_hmm(seed: int, states: int = 4, dim: int = 3) -> hmm.GaussianHMM:
    rng = np.random.default_rng(seed)
    m = hmm.GaussianHMM(states, covariance_type="diag")
    m.n_features = dim
    m.startprob_ = rng.dirichlet(np.ones(states))
    m.transmat_ = rng.dirichlet(np.ones(states), size=states)
    m.means_ = rng.normal(0, 2, (states, dim))
    m.covars_ = rng.uniform(0.5, 2.0, (states, dim))
    return m


def _gmm_hmm(seed: int, states: int = 3, mix: int = 2, dim: int = 3) -> hmm.GMMHMM:
    rng = np.random.default_rng(seed)
    m = hmm.GMMHMM(states, n_mix=mix, covariance_type="diag")
    m.n_features = dim
    m.startprob_ = rng.dirichlet(np.ones(states))
    m.transmat_ = rng.dirichlet(np.ones(states), size=states)
    m.weights_ = rng.dirichlet(np.ones(mix), size=states)
    m.means_ = rng.normal(0, 2, (states, mix, dim))
    m.covars_ = rng.uniform(0.5, 2.0, (states, mix, dim))
    return m


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 200), gmm=st.booleans())
def test_forward_equals_hmmlearn_score(seed, n, gmm):
    ref = _gmm_hmm(seed) if gmm else _gaussian_hmm(seed)
    X = np.random.default_rng(seed + 1).normal(0, 2, (n, 3))
    ours = forward_score(GaussianMixtureHMM.from_hmmlearn(ref), X)
    assert abs(ours - ref.score(X)) < 1e-6 * max(1.0, abs(ours))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), cuts=st.lists(st.integers(0, 40), max_size=12))
def test_streaming_forward_equals_offline(seed, cuts):
    m = GaussianMixtureHMM.from_hmmlearn(_gaussian_hmm(seed))
    X = np.random.default_rng(seed).normal(0, 2, (150, 3))
    f = StreamingForward(m)
    i = 0
    for c in cuts:
        f.push(X[i : i + c])
        i += c
    f.push(X[i:])
    assert abs(f.total - forward_score(m, X)) < 1e-8 * abs(f.total)


def _left_to_right(means: np.ndarray, var: float = 0.3, stay: float = 0.8) -> GaussianMixtureHMM:
    s, d = means.shape
    trans = np.zeros((s, s))
    for i in range(s):
        trans[i, i] = stay if i < s - 1 else 1.0
        if i < s - 1:
            trans[i, i + 1] = 1 - stay
    start = np.eye(s)[0]
    return GaussianMixtureHMM(start, trans, np.ones((s, 1)), means[:, None, :], np.full((s, 1, d), var))


def _toy_world(seed: int = 0):
    """Two 'words' as sequences of distinct feature targets, a filler that covers everything."""
    rng = np.random.default_rng(seed)
    d = 4
    word_a = rng.normal(0, 3, (5, d))
    word_b = rng.normal(0, 3, (4, d))
    filler = GaussianMixtureHMM(np.ones(1), np.ones((1, 1)), np.ones((1, 1)), np.zeros((1, 1, d)),
                                np.full((1, 1, d), 9.0))
    return {"a": _left_to_right(word_a), "b": _left_to_right(word_b)}, filler, word_a, word_b, rng


def _say(word: np.ndarray, rng, frames_per_state: int = 4) -> np.ndarray:
    return np.concatenate([t + rng.normal(0, 0.5, (frames_per_state, len(t))) for t in word])


def _stream(seed: int = 0):
    kws, filler, a, b, rng = _toy_world(seed)
    parts, truth, t = [], [], 0
    for word, name in [(a, "a"), (b, "b"), (a, "a")]:
        gap = rng.normal(0, 3, (30, a.shape[1]))
        parts.append(gap)
        t += len(gap)
        w = _say(word, rng)
        parts.append(w)
        truth.append((name, t, t + len(w)))
        t += len(w)
    parts.append(rng.normal(0, 3, (30, a.shape[1])))
    return kws, filler, np.concatenate(parts), truth


def test_spotter_finds_the_words_where_they_are():
    kws, filler, X, truth = _stream()
    spot = KeywordSpotter(kws, filler, thresholds={"a": 1.0, "b": 1.0}, min_frames=8)
    _, dets = spot.push(X)
    assert [d.keyword for d in dets] == [name for name, _, _ in truth]
    for d, (_, s, e) in zip(dets, truth, strict=True):
        assert s - 3 <= d.start <= s + 3 and s + 8 <= d.frame <= e + 2


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 50), max_size=15))
def test_streaming_spotter_equals_offline(cuts):
    kws, filler, X, _ = _stream(1)
    whole = KeywordSpotter(kws, filler, thresholds={"a": 1.0, "b": 1.0})
    s_whole, d_whole = whole.push(X)
    parts = KeywordSpotter(kws, filler, thresholds={"a": 1.0, "b": 1.0})
    outs, dets, i = [], [], 0
    for c in [*cuts, len(X)]:
        s, d = parts.push(X[i : i + c])
        outs.append(s)
        dets += d
        i += c
    np.testing.assert_allclose(np.concatenate(outs), s_whole, atol=1e-9)
    # the same detections; scores to float tolerance (the emissions are matrix products, whose
    # rounding depends on how many frames a push holds)
    assert [(d.keyword, d.frame, d.start) for d in dets] == [(d.keyword, d.frame, d.start) for d in d_whole]
    np.testing.assert_allclose([d.score for d in dets], [d.score for d in d_whole], rtol=1e-12, atol=1e-12)
