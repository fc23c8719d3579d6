"""The HMM recipe's model fitting: the filler recovers the density it is trained on."""

import numpy as np
import pytest

from rtaudio.hmm.decoder import StreamingForward
from rtaudio.hmm.train import train_filler


def _two_blobs(rng, n):
    centre = np.where(rng.random(n) < 0.3, -2.0, 2.0)[:, None]
    return centre + rng.normal(0, 0.5, (n, 3))


def _true_loglik(X):
    def comp(mu, w):
        return np.log(w) - 0.5 * (((X - mu) / 0.5) ** 2).sum(1) - 3 * np.log(0.5 * np.sqrt(2 * np.pi))

    return np.logaddexp(comp(-2.0, 0.3), comp(2.0, 0.7))


@pytest.mark.parametrize("n_states", [1, 2])
def test_filler_learns_the_density_of_its_frames(n_states):
    rng = np.random.default_rng(0)
    model = train_filler(_two_blobs(rng, 20_000), n_states=n_states, n_mix=2, n_iter=30, seed=0)
    test = _two_blobs(rng, 5_000)
    fwd = StreamingForward(model)
    got = fwd.push(test).mean()
    # within 0.05 nats per frame of the true density (one Gaussian instead of two: 3.4 nats worse)
    assert abs(got - _true_loglik(test).mean()) < 0.05
    assert model.name == "filler" and model.n_states == n_states


def _tone_corpus():
    from rtaudio.kws.data import Corpus

    t = np.arange(8000) / 16000
    tone = lambda hz: (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)  # noqa: E731
    return Corpus(["a"], [[tone(300)]], [tone(500)], [np.tile(tone(700), 4)])


def _gaps(y, spans):
    """The samples of `y` outside its words (a word cut by the chunk's end has no span)."""
    gaps = np.ones(len(y), bool)
    for s in spans:
        gaps[s.start : s.end] = False
    gaps[spans[-1].end :] = False
    return y[gaps]


def test_clean_calibration_streams_have_no_noise():
    """The clean calibration set: held-out speech at a random level, silences left silent (thresholds
    must hold on clean input too, where speech scores higher against the filler)."""
    from rtaudio.hmm.train import make_streams

    corpus = _tone_corpus()
    aug = make_streams(corpus, 7, 60.0, chunk=10.0, p_kw=0.0)
    clean = make_streams(corpus, 7, 60.0, chunk=10.0, p_kw=0.0, clean=True)
    assert len(clean) == len(aug) == 6
    for yc, spans_c in clean:
        assert len(yc) == 160_000
        peak_db = 20 * np.log10(np.max(np.abs(yc)))
        assert -35.01 <= peak_db <= -0.99
        assert np.all(_gaps(yc, spans_c) == 0)  # no noise added
    for ya, spans_a in aug:
        gaps = np.ones(len(ya), bool)
        for s in spans_a:
            gaps[s.start : s.end] = False
        assert np.any(ya[gaps] != 0)  # the augmented streams do have noise or reverberation there


def test_training_streams_leave_their_clean_fraction_clean():
    """A quarter of the training speech is clean (silences left silent), the rest augmented."""
    from rtaudio.hmm.train import training_streams

    streams = training_streams(_tone_corpus(), 3, 80.0, 0.25, chunk=10.0)
    assert len(streams) == 8

    assert [bool(np.all(_gaps(y, spans) == 0)) for y, spans in streams] == [False] * 6 + [True] * 2


def test_split_corpus_keeps_each_other_word_with_its_labels():
    """Train and held-out parts partition every list, and an other word's text and near-miss word
    stay those of its clip (they were once left unsplit, out of step with the clips)."""
    from rtaudio.hmm.train import split_corpus
    from rtaudio.kws.data import Corpus

    clip = lambda n: np.zeros(n, np.float32)  # noqa: E731  (told apart by length)
    neg = [clip(100 + i) for i in range(20)]
    words = [f"w{100 + i}" for i in range(20)]
    near = [w if i % 3 == 0 else "" for i, w in enumerate(words)]
    corpus = Corpus(["a"], [[clip(50 + i) for i in range(8)]], neg, [clip(9000)] * 4, {}, near, words)
    train, held = split_corpus(corpus, 0.25, seed=3)
    assert len(held.neg) == 5 and len(train.neg) == 15 and len(held.kw[0]) == 2
    assert sorted(len(c) for c in train.neg + held.neg) == [len(c) for c in neg]
    for part in (train, held):
        assert part.neg_words == [f"w{len(c)}" for c in part.neg]
        assert part.neg_near_words == [near[len(c) - 100] for c in part.neg]
