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


def test_near_misses_are_assigned_to_the_keyword_they_sound_like():
    kws = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    got = D.near_miss_keywords(["downtown", "town", "often", "office", "shop", "stopped", "nobody"], kws)
    assert {w: kws[i] for w, i in got.items()} == {
        "downtown": "down", "town": "down", "often": "off", "office": "off", "shop": "stop",
        "stopped": "stop", "nobody": "no",
    }  # fmt: skip


def test_near_misses_of_phrases_go_by_the_words_that_tell_the_phrases_apart():
    kws = ["lights on", "lights off"]
    got = D.near_miss_keywords(["often", "office", "only", "onto"], kws)
    assert {w: kws[i] for w, i in got.items()} == {
        "often": "lights off", "office": "lights off", "only": "lights on", "onto": "lights on",
    }  # fmt: skip


def test_frame_labels_of_near_miss_classes():
    """With near classes, a near miss of keyword k is labelled near:k on exactly the frames keyword k
    would be labelled; without them (the default) it is ordinary speech."""
    cfg = FeatureConfig()
    n_kw = 10
    near = [D.Span("neg", -1, 1600, 8000, near=3), D.Span("neg", -1, 12000, 14000)]
    as_kw = [D.Span("kw", 3, 1600, 8000), D.Span("neg", -1, 12000, 14000)]
    plain = D.frame_labels(near, 300, cfg)
    lab = D.frame_labels(near, 300, cfg, near_offset=2 + n_kw)
    kw = D.frame_labels(as_kw, 300, cfg)
    assert not (plain >= 2).any()
    np.testing.assert_array_equal(lab == 2 + n_kw + 3, kw == 2 + 3)
    changed = lab != plain
    assert changed.any() and (lab[changed] == 2 + n_kw + 3).all()
    names = D.class_names(["a", "b"], near_classes=True)
    assert names == ["_silence_", "_unknown_", "a", "b", "near:a", "near:b"]


def test_paired_near_misses_are_said_by_the_keywords_voices():
    voices = [Voice("espeak", f"en-us+v{i}") for i in range(6)]
    reqs = [(v, k) for k, vs in (("down", voices[:3]), ("no", voices[3:])) for v in vs]
    near = ["town", "dawn", "now", "note", "stopped"]
    pairs = D._paired_near_requests(reqs, ["down", "no"], 3, near, 2, seed=1)
    assert [v for v, _ in pairs] == [voices[0], voices[1], voices[3], voices[4]]
    index = D.near_miss_keywords(near, ["down", "no"])
    assert [index[w] for _, w in pairs] == [0, 0, 1, 1]
    assert D._paired_near_requests(reqs, ["down", "no"], 3, near, 0, seed=1) == []


def test_paired_near_misses_leave_the_rest_of_the_corpus_unchanged():
    a = D.build_corpus(["down", "no"], seed=5, n_per_keyword=3, n_neg=4, n_sent=2)
    b = D.build_corpus(["down", "no"], seed=5, n_per_keyword=3, n_neg=4, n_sent=2, paired_near=2)
    same_a = a.kw[0] + a.kw[1] + a.neg + a.sent
    same_b = b.kw[0] + b.kw[1] + b.neg[: len(a.neg)] + b.sent
    for x, y in zip(same_a, same_b, strict=True):
        np.testing.assert_array_equal(x, y)
    extra = b.neg_near_words[len(a.neg) :]
    assert len(extra) == len(b.neg) - len(a.neg) == 4
    index = D.near_miss_keywords(extra, ["down", "no"])
    assert [index[w] for w in extra] == [0, 0, 1, 1]


def test_phone_sets_tell_minimal_pairs_apart():
    assert D.phone_set("light") == {"l", "aI", "t"} and D.phone_set("right") == {"r", "aI", "t"}
    assert D.phone_set("downtown") > D.phone_set("down")  # "t2" counts as "t"
    inv = D.phone_inventory(["light", "right"])
    assert list(inv) == sorted(inv) and set(inv) == {"l", "r", "aI", "t"}


def test_phone_targets_lie_where_a_keyword_label_would():
    cfg = FeatureConfig()
    spans = [D.Span("neg", -1, 1600, 8000, text="light"), D.Span("sent", -1, 9000, 12000),
             D.Span("kw", 0, 16000, 24000, text="right")]  # fmt: skip
    inv = D.phone_inventory(["light", "right"])
    ph = D.phone_targets(spans, 400, cfg, inv)
    lab = D.frame_labels(spans, 400, cfg)
    has = ph[:, 0] >= 0
    np.testing.assert_array_equal(has & (np.arange(400) > 100), lab == 2)  # the keyword's frames
    ends = np.arange(400) * cfg.hop + cfg.win
    light = ph[has & (ends < 12000)]
    assert len(light) and (light[:, inv["l"]] == 1).all() and (light[:, inv["r"]] == 0).all()
    assert (ph[has & (ends > 16000)][:, inv["r"]] == 1).all()
    assert (ph[~has] == -1).all()  # silence, the sentence and word bodies: no target


def test_phone_sequences_keep_the_order_a_bag_drops():
    assert D.phone_set("stop") == D.phone_set("spot")
    assert D.phone_sequence("stop") == ("s", "t", "0", "p")
    assert D.phone_sequence("spot") == ("s", "p", "0", "t")


def test_phone_segments_mark_each_word_on_its_first_frame():
    cfg = FeatureConfig()
    spans = [D.Span("neg", -1, 1600, 8000, text="spot"), D.Span("sent", -1, 9000, 12000),
             D.Span("kw", 0, 20000, 26000, text="stop"),
             D.Span("neg", -1, 60000, 62000, text="stop")]  # fmt: skip
    inv = D.phone_inventory(["stop"])
    seg = D.phone_segments(spans, 300, cfg, inv)
    rows = np.flatnonzero(seg[:, 0] >= 0)
    ends = np.arange(300) * cfg.hop + cfg.win
    assert list(rows) == [8, 123]  # the first frame that has heard each word's start; none past the end
    assert ends[8] >= 1600 > ends[7]
    after = int(D.SEQ_AFTER_END * cfg.rate)
    assert ends[8 + seg[8, 0]] >= 8000 + after > ends[8 + seg[8, 0] - 1]  # to just past the word's end
    ids = {p: i + 1 for p, i in inv.items()}  # 0 is the CTC blank
    assert list(seg[8, 1:5]) == [ids[p] for p in "sp0t"] and list(seg[123, 1:5]) == [ids[p] for p in "st0p"]
    assert (seg[8, 5:] == -1).all() and (np.delete(seg, rows, 0) == -1).all()


def test_corpus_knows_the_words_its_other_clips_say():
    c = D.build_corpus(["down", "no"], seed=5, n_per_keyword=3, n_neg=4, n_sent=2, paired_near=2)
    assert len(c.neg_words) == len(c.neg) and all(c.neg_words)
    assert c.neg_words[-4:] == c.neg_near_words[-4:]
    rng = np.random.default_rng(0)
    _, spans = D.make_stream(c, rng, 20.0, p_kw=0.5)
    assert {s.text for s in spans if s.kind == "kw"} <= {"down", "no"}
    assert all(s.text in c.neg_words for s in spans if s.kind == "neg")
