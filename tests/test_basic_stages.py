"""Streaming exactness and behaviour of the first stages: gain, biquads, level meter, resampler."""

import numpy as np
import pytest
from hypothesis import given, settings

from rtaudio.errors import AudioFormatError, ConfigError
from rtaudio.stage import AudioFormat
from rtaudio.stages.basic import Gain, HighPass, LowPass
from rtaudio.stages.level import LevelMeter
from rtaudio.stages.resample import Resample

from .streaming import partitions, run_blocks, signals

FACTORIES = {
    "gain": lambda: Gain(db=-6.0),
    "highpass": lambda: HighPass(hz=80.0, order=4),
    "lowpass": lambda: LowPass(hz=3000.0),
    "level": lambda: LevelMeter(window=5.0),
}


@pytest.mark.parametrize("kind", list(FACTORIES))
@settings(max_examples=40, deadline=None)
@given(x=signals(), sizes=partitions())
def test_streaming_exact(kind, x, sizes):
    whole, whole_msgs = run_blocks(FACTORIES[kind](), x, [], 16000)
    parts, part_msgs = run_blocks(FACTORIES[kind](), x, sizes, 16000)
    assert parts.shape == whole.shape == x.shape
    np.testing.assert_allclose(parts, whole, atol=1e-6)
    assert [m.sample for m in part_msgs] == [m.sample for m in whole_msgs]
    for a, b in zip(part_msgs, whole_msgs, strict=True):
        np.testing.assert_allclose(a.data["rms_db"], b.data["rms_db"], atol=1e-6)
        np.testing.assert_allclose(a.data["peak_db"], b.data["peak_db"], atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(x=signals(max_len=6000), sizes=partitions(1500))
def test_resample_streaming_exact(x, sizes):
    whole, _ = run_blocks(Resample(rate=16000), x, [], 48000)
    parts, _ = run_blocks(Resample(rate=16000), x, sizes, 48000)
    n = min(len(whole), len(parts))
    assert abs(len(whole) - len(parts)) <= 2
    np.testing.assert_allclose(parts[:n], whole[:n], atol=1e-6)


def test_resample_declares_its_delay():
    st = Resample(rate=16000)
    rate = 48000
    t = np.arange(rate) / rate
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)[:, None]
    y, _ = run_blocks(st, np.concatenate([x, np.zeros((rate, 1), np.float32)]), [256] * 400, rate)
    d = st.latency * 16000 // rate  # declared delay in output samples
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    seg = y[d + 2000 : d + 14000, 0]
    err = np.max(np.abs(seg - ref[2000:14000]))
    assert err < 1e-3, f"output is the input delayed by the declared latency (max err {err})"


def test_gain_is_exact_and_live():
    st = Gain(db=-6.0)
    st.setup(AudioFormat(48000, 1))
    x = np.ones((4, 1), np.float32)
    assert np.allclose(st.run(x), 10 ** (-6 / 20))
    st.running = True
    st.set_param("db", 0.0)
    assert np.allclose(st.run(x), 1.0)


def test_highpass_removes_dc_and_passes_high_frequencies():
    rate = 16000
    t = np.arange(rate) / rate
    x = (0.5 + 0.5 * np.sin(2 * np.pi * 2000 * t)).astype(np.float32)[:, None]
    y, _ = run_blocks(HighPass(hz=80.0, order=2), x, [], rate)
    tail = y[rate // 2 :, 0]
    assert abs(tail.mean()) < 1e-3
    assert abs(np.sqrt(np.mean(tail**2)) - 0.5 / np.sqrt(2)) < 0.01


def test_filter_cutoff_above_nyquist_is_a_clear_error():
    with pytest.raises(AudioFormatError, match="half the sample rate"):
        HighPass(hz=10000.0).setup(AudioFormat(16000, 1))


def test_non_live_param_cannot_change_while_running():
    st = HighPass(hz=80.0)
    st.setup(AudioFormat(16000, 1))
    st.running = True
    with pytest.raises(ConfigError, match="order"):
        st.set_param("order", 4)


def test_level_meter_reads_a_sine():
    rate = 48000
    t = np.arange(rate) / rate
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[:, None]
    _, msgs = run_blocks(LevelMeter(window=100.0), x, [333] * 200, rate)
    assert len(msgs) == 10
    assert [m.sample for m in msgs] == list(range(0, rate, 4800))
    for m in msgs:
        assert abs(m.data["rms_db"][0] - 20 * np.log10(0.5 / np.sqrt(2))) < 0.01
        assert abs(m.data["peak_db"][0] - 20 * np.log10(0.5)) < 0.01
        assert m.data["clip"] is False
