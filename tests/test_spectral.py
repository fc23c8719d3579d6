"""stft / istft: frames equal scipy's ShortTimeFFT, streaming exactness, calibration, options."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.signal import ShortTimeFFT

from rtaudio.bus import Bus
from rtaudio.errors import AudioFormatError, ConfigError
from rtaudio.stage import AudioFormat
from rtaudio.stages.spectral import (
    Istft,
    OverlapAdd,
    Stft,
    StreamingSTFT,
    make_window,
    weighting_db,
)

from .streaming import partitions, run_blocks

RATE = 48000


def run_stage(stage, x: np.ndarray, cuts: list[int], rate: int = RATE):
    """Run `stage` over `x` split at `cuts`; return (concatenated output, messages)."""
    bus = Bus()
    sub = bus.subscribe()
    stage.setup(AudioFormat(rate, x.shape[1], 4096), bus)
    edges = [0, *sorted(cuts), len(x)]
    out = [stage.run(x[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return np.concatenate(out), sub.drain()


def noise(n: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal((n, channels))).astype(np.float32)


@pytest.mark.parametrize(
    "window,n_fft,hop,pad",
    [("hann", 256, 64, 1), ("flattop", 300, 77, 2), ("kaiser", 128, 128, 1),
     ("blackman-harris", 64, 5, 4), ("hamming", 200, 250, 1)],
)
def test_frames_equal_scipy_shorttimefft(window, n_fft, hop, pad):
    x = noise(5000).astype(np.float64)
    w = make_window(window, n_fft)
    sft = ShortTimeFFT(w, hop, RATE, mfft=n_fft * pad, phase_shift=None)
    n = (len(x) - n_fft) // hop + 1
    ref = sft.stft(x.T, p0=0, p1=n, k_offset=n_fft // 2).transpose(2, 0, 1)  # frames, ch, bins
    ana = StreamingSTFT(w, hop, 2, n_fft=n_fft * pad)
    got = np.concatenate([ana.push(x[a : a + 333]) for a in range(0, len(x), 333)])
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-9)


def test_stft_messages_are_calibrated_scipy_frames():
    x = noise(8000, 1)
    out, msgs = run_stage(Stft(n_fft=512, hop=128, peak_hold=False), x, [1000, 1001, 5000])
    np.testing.assert_array_equal(out, x)  # audio passes through
    w = make_window("hann", 512)
    ref = ShortTimeFFT(w, 128, RATE, phase_shift=None).stft(
        x[:, 0].astype(np.float64), p0=0, p1=len(msgs), k_offset=256)
    amp = np.abs(ref) * 2 / w.sum()
    amp[0] /= 2
    amp[-1] /= 2
    assert [m.sample for m in msgs] == [128 * i for i in range(len(msgs))]
    assert len(msgs) == (8000 - 512) // 128 + 1
    got = np.stack([m.data["db"][0] for m in msgs], axis=1)
    np.testing.assert_allclose(got, 20 * np.log10(amp), atol=1e-4)
    d = msgs[0].data
    assert d["db"].dtype == np.float32 and (d["n_fft"], d["rate"], d["hop"]) == (512, RATE, 128)


@settings(max_examples=25, deadline=None)
@given(sizes=partitions(700), hop=st.sampled_from([0, 1, 50, 100, 150]),
       average=st.sampled_from([0.0, 0.05]), unit=st.sampled_from(["dBFS", "dBFS/Hz"]))
def test_stft_messages_streaming_exact(sizes, hop, average, unit):
    x = noise(3000, 2, seed=len(sizes))
    kw = dict(n_fft=100, hop=hop, average=average, unit=unit, weighting="A")
    _, whole = run_blocks(Stft(**kw), x, [], RATE)
    out, parts = run_blocks(Stft(**kw), x, sizes, RATE)
    np.testing.assert_array_equal(out, x)
    assert [m.sample for m in parts] == [m.sample for m in whole]
    for a, b in zip(parts, whole, strict=True):
        np.testing.assert_allclose(a.data["db"], b.data["db"], atol=1e-6)
        np.testing.assert_allclose(a.data["peak"], b.data["peak"], atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(sizes=partitions(500), window=st.sampled_from(["hann", "hamming", "flattop", "kaiser",
                                                      "blackman-harris"]),
       n_fft=st.sampled_from([16, 60, 128]), hop_div=st.sampled_from([1, 2, 3, 4, 7]))
def test_stft_then_istft_reconstructs_after_latency(sizes, window, n_fft, hop_div):
    assume(not (window == "hann" and hop_div == 1))  # hann is 0 at its edge: not invertible
    x = noise(2000, 2, seed=n_fft)
    hop = max(1, n_fft // hop_div)
    bus = Bus()
    fmt = AudioFormat(RATE, 2, 4096)
    stft, istft = Stft(n_fft=n_fft, hop=hop, window=window), Istft(n_fft=n_fft, hop=hop,
                                                                  window=window)
    stft.setup(fmt, bus)
    istft.setup(fmt, bus)
    edges = np.minimum(np.cumsum([0, *sizes]), len(x)).tolist() + [len(x)]
    y = np.concatenate([istft.run(stft.run(x[a:b])) for a, b in zip(edges[:-1], edges[1:],
                                                                     strict=True)])
    assert y.shape == x.shape and y.dtype == np.float32
    lat = istft.latency
    assert lat == n_fft - 1
    np.testing.assert_allclose(y[lat:], x[: len(x) - lat], atol=1e-6)
    np.testing.assert_allclose(y[:lat], 0.0, atol=1e-6)


def test_istft_reset_and_modify_hook():
    class Mute(Istft):
        def modify(self, spec, start):
            return spec * 0.5

    x = noise(3000, 1)
    y, _ = run_stage(Mute(n_fft=256, hop=64), x, [700])
    np.testing.assert_allclose(y[255:], 0.5 * x[:-255], atol=1e-6)
    ist = Istft(n_fft=64, hop=16)
    a, _ = run_stage(ist, x, [])
    ist.reset()
    b = np.concatenate([ist.run(x[:1000]), ist.run(x[1000:])])
    np.testing.assert_array_equal(a, b)


def test_bad_framing_is_a_clear_error():
    with pytest.raises(AudioFormatError, match="hop=300 must be <= n_fft=256"):
        Istft(n_fft=256, hop=300).setup(AudioFormat(RATE, 1))
    with pytest.raises(ConfigError, match="window"):
        Stft(window="rectangular")
    with pytest.raises(ValueError, match="cannot be inverted"):
        OverlapAdd(np.r_[np.zeros(8), np.ones(8)], 16, 1)
    with pytest.raises(ConfigError, match="istft.*cannot be inverted"):
        Istft(n_fft=256, hop=256, window="hann").setup(AudioFormat(RATE, 1))


def peak_db(window: str, hz: float, amplitude: float = 1.0, n_fft: int = 4096) -> float:
    t = np.arange(4 * n_fft) / RATE
    x = (amplitude * np.sin(2 * np.pi * hz * t + 0.3))[:, None].astype(np.float32)
    _, msgs = run_stage(Stft(n_fft=n_fft, window=window, peak_hold=False), x, [])
    return float(max(m.data["db"].max() for m in msgs))


def test_flattop_full_scale_sine_reads_0_dbfs_at_any_frequency():
    rng = np.random.default_rng(1)
    for hz in [1000.0, 997.0, *rng.uniform(100, 20000, 6)]:
        assert peak_db("flattop", hz) == pytest.approx(0.0, abs=0.02), hz


@pytest.mark.parametrize("window,worst", [("hann", -1.42), ("hamming", -1.75),
                                          ("blackman-harris", -0.83), ("kaiser", -1.11),
                                          ("flattop", -0.01)])
def test_other_windows_read_the_documented_amplitude_error(window, worst):
    bin_hz = RATE / 4096
    assert peak_db(window, 100 * bin_hz) == pytest.approx(0.0, abs=0.01)  # on a bin
    assert peak_db(window, 100.5 * bin_hz) == pytest.approx(worst, abs=0.02)  # half-way


def test_white_noise_density_in_dbfs_per_hz():
    rms = 0.1
    x = (rms * np.random.default_rng(5).standard_normal((RATE * 4, 1))).astype(np.float32)
    for window in ("hann", "flattop", "blackman-harris"):
        _, msgs = run_stage(Stft(n_fft=1024, window=window, unit="dBFS/Hz"), x, [])
        power = np.mean([10 ** (m.data["db"][0, 1:-1].astype(np.float64) / 10) for m in msgs])
        expected = 10 * np.log10(rms**2 / (RATE / 2))  # -63.8 dBFS/Hz
        assert 10 * np.log10(power) == pytest.approx(expected, abs=0.1), window


def test_exponential_averaging_and_peak_hold_decay():
    n_fft, hop = 256, 256
    t = np.arange(20 * hop) / RATE
    tone = np.sin(2 * np.pi * 50 * RATE / n_fft * t)
    x = np.concatenate([tone, np.zeros(20 * hop)])[:, None].astype(np.float32)
    tau = 0.02
    _, msgs = run_stage(Stft(n_fft=n_fft, hop=hop, average=tau, peak_decay=100.0), x, [])
    alpha = np.exp(-hop / (tau * RATE))
    on = 10 ** (msgs[0].data["db"][0, 50] / 10)  # first frame: the average starts there
    after = 10 ** (msgs[24].data["db"][0, 50] / 10)  # 4 frames into the silence
    assert after == pytest.approx(on * alpha**5, rel=1e-3)  # frames 20..24 are silent
    held = [m.data["peak"][0, 50] for m in msgs[19:26]]
    step = 100.0 * hop / RATE
    for a, b in zip(held[1:], held[2:], strict=False):
        assert a - b == pytest.approx(step, abs=1e-3)  # falls at 100 dB/s once the tone stops


def test_live_parameter_changes_apply():
    x = noise(4096, 1)
    stft = Stft(n_fft=512)
    stft.setup(AudioFormat(RATE, 1), Bus())
    stft.running = True
    stft.set_param("weighting", "A")
    with pytest.raises(ConfigError, match="cannot change while running"):
        stft.set_param("n_fft", 1024)
    stft.run(x)
    assert stft.offset_db[0] < -200.0  # A weighting removes DC
    assert stft.weighting == "A" and stft.values["weighting"] == "A"


def test_iec_weighting_curves_match_the_standard_table():
    # IEC 61672-1 Table 3 at the exact base-10 frequencies of 31.5 Hz, 100 Hz, 1, 4, 10 kHz
    f = 10 ** (np.array([15, 20, 30, 36, 40]) / 10)
    np.testing.assert_allclose(weighting_db(f, "A"), [-39.4, -19.1, 0.0, 1.0, -2.5], atol=0.1)
    np.testing.assert_allclose(weighting_db(f, "C"), [-3.0, -0.3, 0.0, -0.8, -4.4], atol=0.1)
    assert not weighting_db(f, "Z").any()


def test_stft_istft_pipeline_through_the_engine_reconstructs_the_file(tmp_path):
    import soundfile as sf

    from rtaudio.engine import Engine
    from rtaudio.sinks import WavSink
    from rtaudio.sources import FileSource

    x = noise(30000, 2, seed=7)
    sf.write(tmp_path / "in.wav", x, RATE, subtype="FLOAT")
    eng = Engine(FileSource(path=str(tmp_path / "in.wav")),
                 [Stft(n_fft=1024, hop=256), Istft(n_fft=1024, hop=256)],
                 [WavSink(path=str(tmp_path / "out.wav"))], block=700, compensate_latency=True)
    eng.run()
    assert eng.latency_seconds == pytest.approx(1023 / RATE)
    y, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == RATE and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-6)
