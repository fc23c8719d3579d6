"""The `tap` stage: a side chain analyses a copy; the audio passes untouched with zero latency."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from hypothesis import given, settings

from rtaudio.errors import ConfigError
from rtaudio.kws.voices import Voice, synthesize
from rtaudio.registry import lookup
from rtaudio.stages.basic import Gain
from rtaudio.stages.level import LevelMeter as Level
from rtaudio.stages.tap import Tap

from .streaming import partitions, run_blocks, signals


def _same(a, b) -> None:
    assert [(m.topic, m.sample) for m in a] == [(m.topic, m.sample) for m in b]
    for ma, mb in zip(a, b, strict=True):
        assert ma.data.keys() == mb.data.keys()
        for k, v in ma.data.items():
            if isinstance(v, (list, float, np.ndarray)):
                np.testing.assert_allclose(v, mb.data[k], rtol=1e-9, atol=1e-9)
            else:
                assert v == mb.data[k]


@settings(max_examples=30, deadline=None)
@given(x=signals(max_len=5000), sizes=partitions())
def test_passes_audio_and_streams_like_the_side_chain_alone(x, sizes):
    out, msgs = run_blocks(Tap(chain="gain db=-6 ! level"), x, sizes, 48000)
    np.testing.assert_array_equal(out, x)
    assert Tap(chain="gain db=-6 ! level").latency == 0
    # the side chain's messages: as if the chain ran by itself on the whole signal
    g, lv = Gain(db=-6), Level()
    ref_in, _ = run_blocks(g, x, [], 48000)
    _, ref = run_blocks(lv, ref_in, [], 48000)
    _same(msgs, ref)


def test_bad_chains_are_clear_errors():
    assert lookup("tap", "stage") is Tap
    bad = [("", "stages only"), ("tone ! gain", "stages only"), ("gain ! wav path=x.wav", "stages only"),
           ("nope", "nope"), ("gain db=1000", "db")]
    for chain, what in bad:
        with pytest.raises(ConfigError, match=what):
            Tap(chain=chain)


def test_keyword_chain_on_a_tap_hears_a_spoken_word(tmp_path, monkeypatch):
    """48 kHz audio passes unchanged while `resample rate=16000 ! kws` spots the word on a copy."""
    monkeypatch.setenv("RTAUDIO_CACHE", str(tmp_path))
    word = synthesize([(Voice("espeak", "en-gb"), "yes")])[0]
    y = np.zeros(3 * 16000, np.float32)
    y[16000 : 16000 + len(word)] = word * 0.5
    x = soxr.resample(y, 16000, 48000).astype(np.float32)[:, None]
    out, msgs = run_blocks(Tap(chain="resample rate=16000 ! kws threshold=0.7 posteriors=false"), x,
                           [480] * 400, 48000)
    np.testing.assert_array_equal(out, x)
    kws = [m for m in msgs if m.topic == "keyword"]
    assert [m.data["label"] for m in kws] == ["yes"] and kws[0].rate == 16000
    assert 16000 <= kws[0].sample <= 16000 + len(word) + 8000
