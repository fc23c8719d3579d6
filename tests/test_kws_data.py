"""The TTS data builder: keyword validation, determinism, cache, augmentation, labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from rtaudio.errors import RtAudioError
from rtaudio.kws import data as D
from rtaudio.kws.features import FeatureConfig
from rtaudio.kws.voices import Voice, synthesize


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RTAUDIO_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("text", ["", " , ,", "日本語", "42", "stop!", "?"])
def test_unsayable_or_empty_keywords_are_clear_errors(text):
    with pytest.raises(RtAudioError, match="keyword"):
        D.parse_keywords(text)


def test_keyword_parsing():
    assert D.parse_keywords(" Lights  On, lights off ") == ["lights on", "lights off"]
    with pytest.raises(RtAudioError, match="duplicates"):
        D.parse_keywords("go,Go")


def test_near_misses_and_sentences_never_contain_a_keyword():
    kws = ["stop", "lights on"]
    nm = D.near_misses(kws)
    assert "stopped" in nm and "stopping" in nm and "lights" in nm and "on lights" in nm
    assert not set(kws) & set(nm)
    rng = np.random.default_rng(0)
    vocab = D.filler_vocab(["on", "go"])
    for _ in range(200):
        words = D.random_sentence(rng, vocab, ["on", "go"]).split()
        assert "on" not in words and "go" not in words


def test_corpus_is_deterministic_and_cached(tmp_path):
    a = D.build_corpus(["yes", "no"], seed=5, n_per_keyword=3, n_neg=4, n_sent=2)
    cached = sorted((tmp_path / "cache" / "tts").glob("*.npy"))
    assert len(cached) >= 9
    b = D.build_corpus(["yes", "no"], seed=5, n_per_keyword=3, n_neg=4, n_sent=2)
    for x, y in zip(a.kw[0] + a.neg, b.kw[0] + b.neg, strict=True):
        np.testing.assert_array_equal(x, y)
    assert sum(a.voices.values()) == 12
    rng1, rng2 = np.random.default_rng(9), np.random.default_rng(9)
    y1, s1 = D.make_stream(a, rng1, 6.0)
    y2, s2 = D.make_stream(a, rng2, 6.0)
    np.testing.assert_array_equal(D.augment(y1, s1, rng1, a.sent), D.augment(y2, s2, rng2, a.sent))
    assert len(y1) == 6 * 16000 and s1 == s2
    # p_abut=1: every word follows the previous one directly (no silence between spans)
    _, s3 = D.make_stream(a, np.random.default_rng(3), 6.0, p_abut=1.0)
    assert s3[0].start == 0 and all(b.start == e.end for e, b in zip(s3[:-1], s3[1:], strict=True))


def test_every_training_engine_speaks():
    voices = [
        Voice("espeak", "en-us+Alex"),
        Voice("flite", "kal16"),
        Voice("flite", "slt"),
        Voice("festival", "kal_diphone"),
        Voice("festival", "ked_diphone"),
        Voice("festival", "cmu_us_slt_arctic_hts"),
    ]
    ys = synthesize([(v, "stop") for v in voices])
    for v, y in zip(voices, ys, strict=True):
        assert 0.2 * 16000 < len(y) < 3 * 16000 and np.abs(y).max() > 0.05, v


def test_add_noise_hits_the_requested_snr():
    rng = np.random.default_rng(0)
    speech = np.zeros(32000, np.float32)
    speech[8000:24000] = rng.standard_normal(16000).astype(np.float32) * 0.1
    spans = [D.Span("sent", -1, 8000, 24000)]
    for kind in ("white", "pink", "brown"):
        noise = D.colored_noise(rng, len(speech), kind)
        mixed = D.add_noise(speech, noise, 10.0, spans)
        n = mixed - speech
        snr = 10 * np.log10(
            np.mean(speech[8000:24000].astype(np.float64) ** 2) / np.mean(n.astype(np.float64) ** 2)
        )
        assert abs(snr - 10.0) < 0.05


def test_noise_colours_have_their_slopes():
    rng = np.random.default_rng(1)
    for kind, slope in (("white", 0.0), ("pink", -10.0), ("brown", -20.0)):
        f, p = signal.welch(D.colored_noise(rng, 160000, kind), fs=16000, nperseg=2048)
        band = (f > 100) & (f < 4000)
        fit = np.polyfit(np.log10(f[band]), 10 * np.log10(p[band]), 1)[0]
        assert abs(fit - slope) < 1.5, (kind, fit)


def test_homophones_of_keywords_are_never_negatives():
    """ "know" sounds exactly like "no" and "write"/"rite" like "right": as negatives they would teach
    the model to doubt the keyword itself (espeak-ng's phonemes decide)."""
    kws = ["no", "right"]
    assert D.phonemes("know") == D.phonemes("no") and D.phonemes("write") == D.phonemes("right")
    vocab = [w for ws in D.filler_vocab(kws).values() for w in ws]
    pools = D.near_misses(kws) + D.negative_words(kws) + vocab
    assert not {"know", "write", "rite"} & set(pools)
    assert "now" in D.near_misses(kws) and "light" in D.near_misses(kws)  # close, but not the same


def test_frame_labels():
    cfg = FeatureConfig()
    spans = [D.Span("neg", -1, 1600, 8000), D.Span("kw", 3, 16000, 24000)]
    lab = D.frame_labels(spans, 400, cfg)
    ends = np.arange(400) * cfg.hop + cfg.win
    assert (lab[ends < 1600] == D.SILENCE).all()
    assert lab[40] == D.UNKNOWN  # frame 40 (6400..6800) lies inside the other word
    on = np.flatnonzero(lab == 3 + 2)
    before, after = int(D.LABEL_BEFORE_END * 16000), int(D.LABEL_AFTER_END * 16000)
    assert ends[on[0]] >= 24000 - before and ends[on[-1]] <= 24000 + after
    assert len(on) >= (before + after) // cfg.hop
    assert (lab[(ends > 16000) & (ends < 24000 - before)] == D.IGNORE).all()
    # a later label start (0.15 s after the end) ignores the frames up to it
    late = D.frame_labels(spans, 400, cfg, before_end=-0.15)
    on_late = np.flatnonzero(late == 3 + 2)
    assert ends[on_late[0]] >= 24000 + 2400 and on_late[-1] == on[-1]
    assert (late[(ends > 16000) & (ends < 24000 + 2400)] == D.IGNORE).all()


def test_corpus_knows_the_words_its_other_clips_say():
    c = D.build_corpus(["down", "no"], seed=5, n_per_keyword=3, n_neg=8, n_sent=2, p_near=0.5)
    assert len(c.neg_words) == len(c.neg) == len(c.neg_near_words) and all(c.neg_words)
    near = [w for w in c.neg_near_words if w]
    assert near and all(w in c.neg_words for w in near)
    rng = np.random.default_rng(0)
    _, spans = D.make_stream(c, rng, 20.0, p_kw=0.5)
    assert {s.text for s in spans if s.kind == "kw"} <= {"down", "no"}
    assert all(s.text in c.neg_words for s in spans if s.kind == "neg")
