"""Sources, the engine's pull and paced paths, live parameter changes and error propagation."""

import time

import numpy as np
import pytest
import soundfile as sf

from rtaudio.bus import Bus
from rtaudio.engine import Engine
from rtaudio.errors import AudioFormatError
from rtaudio.sinks import NullSink, WavSink
from rtaudio.sources import ChirpSource, FileSource, NoiseSource, ToneSource
from rtaudio.stages.basic import Gain
from rtaudio.stages.level import LevelMeter


def _read_all(src, sizes=(1, 7, 1000, 333)):
    src.open()
    out, i = [], 0
    while (b := src.read(sizes[i % len(sizes)])) is not None:
        out.append(b)
        i += 1
    return np.concatenate(out)


@pytest.mark.parametrize("cls,kw", [(ToneSource, {"hz": 440.0}), (NoiseSource, {"color": "pink"}),
                                    (NoiseSource, {}), (ChirpSource, {})])
def test_generators_do_not_depend_on_read_sizes(cls, kw):
    a = _read_all(cls(seconds=0.5, realtime=False, **kw), (4096,))
    b = _read_all(cls(seconds=0.5, realtime=False, **kw))
    assert a.shape == b.shape == (24000, 1)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_generator_levels():
    tone = _read_all(ToneSource(seconds=1, level=-6.0, realtime=False))
    assert abs(20 * np.log10(np.abs(tone).max()) + 6.0) < 0.01
    for color in ("white", "pink"):
        n = _read_all(NoiseSource(seconds=4, level=-20.0, color=color, realtime=False))
        assert abs(10 * np.log10(np.mean(n**2)) + 20.0) < 0.3


def test_paced_source_runs_in_real_time_and_counts_nothing_lost():
    eng = Engine(ToneSource(seconds=1.0, realtime=True), [Gain(db=-6)], [NullSink()], block=480)
    t = time.monotonic()
    sm = eng.run()
    wall = time.monotonic() - t
    assert sm.samples_in == sm.samples_out == 48000
    assert wall > 0.9, "paced at the sample rate"
    assert sm.counters["ring overflow"] == 0


def test_live_param_change_applies_between_blocks(tmp_path):
    out = tmp_path / "o.wav"
    eng = Engine(ToneSource(seconds=0.0, realtime=True, level=0.0), [Gain(db=0.0)],
                 [WavSink(path=str(out))], block=480)
    eng.start()
    time.sleep(0.3)
    eng.set_param(0, "db", -20.0)
    time.sleep(0.3)
    eng.stop()
    eng.wait(5)
    y, _ = sf.read(out)
    peaks = [np.abs(y[i : i + 480]).max() for i in range(0, len(y) - 480, 480)]
    assert max(peaks) > 0.99 and min(peaks) < 0.11, "both gains were heard"
    first_low = next(i for i, p in enumerate(peaks) if p < 0.5)
    assert all(p < 0.11 for p in peaks[first_low:]), "the change is clean, block-aligned"


def test_messages_carry_the_sample_index_of_their_audio():
    bus = Bus()
    sub = bus.subscribe({"level"})
    eng = Engine(ToneSource(seconds=1.0, realtime=False), [LevelMeter(window=100.0)], [NullSink()],
                 block=777, bus=bus)
    eng.run()
    assert [m.sample for m in sub.drain()] == list(range(0, 48000, 4800))


def test_worker_error_reaches_the_caller_and_output_is_removed(tmp_path):
    src = tmp_path / "nan.wav"
    x = np.zeros((48000, 1), np.float32)
    x[40000] = np.inf
    sf.write(src, x, 48000, subtype="FLOAT")
    out = tmp_path / "o.wav"
    eng = Engine(FileSource(path=str(src)), [], [WavSink(path=str(out))], block=1024)
    with pytest.raises(AudioFormatError, match="frame 40000"):
        eng.run()
    assert not out.exists() and list(tmp_path.iterdir()) == [src]
