"""The streaming wavelet-packet denoiser: exactness, silence, tones, tracking, improvement, bypass."""

import numpy as np
import pytest
from hypothesis import given, settings

from rtaudio.errors import AudioFormatError, ConfigError
from rtaudio.stage import AudioFormat
from rtaudio.stages.denoise import Denoise

from .streaming import partitions, run_blocks, signals

RATE = 16000


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    a = np.dot(est, ref) / np.dot(ref, ref)
    target = a * ref
    return float(10 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2)))


def speech_like(seconds: float, rng: np.random.Generator, rate: int = RATE) -> np.ndarray:
    """Harmonic 'syllables': a gliding pitch (90-250 Hz), 20 harmonics under a formant-like tilt,
    4 syllables a second with pauses, peak about -6 dBFS."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0 = rng.uniform(90, 250) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    formant = rng.uniform(400, 900)
    x = sum(np.sin(k * phase) / (1 + (k * f0 / formant) ** 2) for k in range(1, 21))
    syll = np.maximum(0, np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6))) ** 2
    gate = (np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) > -0.5).astype(float)
    x = x * syll * gate
    return 0.5 * x / np.max(np.abs(x))


def babble(seconds: float, rng: np.random.Generator, talkers: int = 6) -> np.ndarray:
    x = sum(speech_like(seconds, rng) for _ in range(talkers))
    return x / np.sqrt(np.mean(x**2))


def denoise(x: np.ndarray, rate: int = RATE, **kw) -> np.ndarray:
    """Run the stage over a mono signal; return the output aligned with the input."""
    st = Denoise(**kw)
    st.setup(AudioFormat(rate, 1, len(x)))
    lat = st.latency
    y = st.run(np.concatenate([x, np.zeros(lat)]).astype(np.float32)[:, None])
    return y[lat:, 0].astype(np.float64)


@settings(max_examples=30, deadline=None)
@given(x=signals(max_len=3000), sizes=partitions(700))
def test_streaming_exact(x, sizes):
    whole, _ = run_blocks(Denoise(), x, [], RATE)
    parts, _ = run_blocks(Denoise(), x, sizes, RATE)
    assert parts.shape == whole.shape == x.shape
    np.testing.assert_allclose(parts, whole, atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(x=signals(min_len=2000, max_len=6000, channels=(1,)), sizes=partitions(2000))
def test_streaming_exact_at_48k_with_another_wavelet(x, sizes):
    make = lambda: Denoise(wavelet="sym4", band_hz=250.0)  # noqa: E731
    whole, _ = run_blocks(make(), x, [], 48000)
    parts, _ = run_blocks(make(), x, sizes, 48000)
    np.testing.assert_allclose(parts, whole, atol=1e-6)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_latency_is_declared_and_at_most_10ms(rate):
    st = Denoise()
    st.setup(AudioFormat(rate, 2))
    assert st.latency <= rate // 100
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (rate, 2)).astype(np.float32)
    st.set_param("strength", 0.0)  # identity gains: the output is the input, delayed
    y = st.run(x)
    np.testing.assert_allclose(y[st.latency :], x[: -st.latency], atol=1e-6)


def test_silence_in_silence_out():
    y = denoise(np.zeros(2 * RATE))
    assert np.max(np.abs(y)) == 0.0
    # near-silence (a -70 dBFS hiss): nothing in the output rises above -60 dBFS
    hiss = 10 ** (-70 / 20) * np.random.default_rng(2).standard_normal(3 * RATE)
    y = denoise(hiss)
    assert 20 * np.log10(np.max(np.abs(y))) < -60


def test_noise_only_is_attenuated_without_bursts():
    x = 0.03 * np.random.default_rng(3).standard_normal(4 * RATE)
    y = denoise(x)
    frames = lambda s: s[RATE:].reshape(-1, 160)  # noqa: E731  (10 ms after the first second)
    rms_in = np.sqrt(np.mean(frames(x) ** 2, axis=1))
    rms_out = np.sqrt(np.mean(frames(y) ** 2, axis=1))
    assert 20 * np.log10(np.mean(rms_out) / np.mean(rms_in)) < -12
    assert np.max(rms_out / rms_in) < 10 ** (-6 / 20), "no 10 ms burst of residual noise"


@pytest.mark.parametrize("rate,hz", [(16000, 440.0), (16000, 3000.0), (48000, 1000.0), (48000, 7000.0)])
def test_pure_tone_passes_within_half_a_db(rate, hz):
    t = np.arange(3 * rate) / rate
    x = 0.25 * np.sin(2 * np.pi * hz * t)
    y = denoise(x, rate)
    ratio_db = 10 * np.log10(np.mean(y[rate:] ** 2) / np.mean(x[rate:] ** 2))
    assert abs(ratio_db) < 0.5


def tracked_noise(x: np.ndarray) -> tuple[np.ndarray, int]:
    """The stage's noise estimate (summed over bands) after each hop, and hops per second."""
    st = Denoise()
    st.setup(AudioFormat(RATE, 1))
    est = []
    for i in range(0, len(x), st.hop):
        st.run(x[i : i + st.hop, None].astype(np.float32))
        est.append(st.tracker.noise.sum())
    return np.array(est), RATE // st.hop


def test_noise_change_white_to_babble_is_tracked_within_2s():
    rng = np.random.default_rng(4)
    white = 0.01 * rng.standard_normal(3 * RATE)
    bab = 0.2 * babble(5.0, rng)
    changed, per_s = tracked_noise(np.concatenate([white, bab]))
    only_babble, _ = tracked_noise(bab)
    level = lambda est, s0, s1: 10 * np.log10(np.median(est[int(s0 * per_s) : int(s1 * per_s)]))  # noqa: E731
    target = level(only_babble, 2, 5)  # where the estimate settles when it has only seen babble
    assert abs(level(changed, 2, 3) - target) > 6, "white and babble estimates differ"
    for s in (2, 3, 4):  # from 2 s after the change on, the estimate is where babble alone puts it
        assert abs(level(changed, 3 + s, 4 + s) - level(only_babble, s, s + 1)) < 2.0


@pytest.mark.parametrize("noise", ["white", "babble"])
def test_si_sdr_improves_on_noisy_speech(noise):
    rng = np.random.default_rng(5)
    clean = np.concatenate([np.zeros(RATE // 2), speech_like(4.0, rng)])
    n = rng.standard_normal(len(clean)) if noise == "white" else babble(len(clean) / RATE, rng)
    n *= np.sqrt(np.mean(clean**2) / np.mean(n**2)) * 10 ** (-5 / 20)  # 5 dB SNR
    noisy = clean + n
    gain = si_sdr(clean, denoise(noisy)) - si_sdr(clean, noisy)
    assert gain > (4.0 if noise == "white" else 0.0), f"SI-SDR improvement {gain:.2f} dB"


def test_streaming_matches_whole_file_within_0_3_db():
    rng = np.random.default_rng(6)
    clean = np.concatenate([np.zeros(RATE // 2), speech_like(3.0, rng)])
    noisy = (clean + 0.05 * rng.standard_normal(len(clean))).astype(np.float32)[:, None]
    st = Denoise()
    whole, _ = run_blocks(st, noisy, [], RATE)
    streamed, _ = run_blocks(Denoise(), noisy, [256] * 400, RATE)
    lat = st.latency
    ref = clean[: len(clean) - lat]
    d = si_sdr(ref, streamed[lat:, 0].astype(float)) - si_sdr(ref, whole[lat:, 0].astype(float))
    assert abs(d) < 0.3


def test_bypass_switch_is_aligned_and_clickless():
    rng = np.random.default_rng(7)
    t = np.arange(2 * RATE) / RATE
    x = (0.4 * np.sin(2 * np.pi * 150 * t) + 0.1 * rng.standard_normal(len(t))).astype(np.float32)[:, None]
    wet, _ = run_blocks(Denoise(), x, [], RATE)  # bypass off all along
    wet = wet[:, 0].astype(np.float64)
    st = Denoise(fade_ms=20.0)
    st.setup(AudioFormat(RATE, 1))
    st.running = True
    k = RATE + 123
    out = [st.run(x[:k])]
    st.set_param("bypass", True)
    out.append(st.run(x[k:]))
    y = np.concatenate(out)[:, 0].astype(np.float64)
    lat = st.latency
    dry = np.concatenate([np.zeros(lat), x[: len(x) - lat, 0]])
    fade = round(0.02 * RATE)
    np.testing.assert_allclose(y[:k], wet[:k], atol=1e-6)  # before: the denoised signal
    np.testing.assert_allclose(y[k + fade :], dry[k + fade :], atol=1e-6)  # after: the input, delayed
    # during the fade: never steeper than the steeper of the two signals plus the ramp's own slope
    seg = slice(k - 1, k + fade + 1)
    slope = np.abs(np.diff(y[seg]))
    bound = np.maximum(np.abs(np.diff(wet[seg])), np.abs(np.diff(dry[seg]))) + np.abs(
        wet[seg] - dry[seg]
    )[1:] / fade + 1e-6
    assert np.all(slope <= bound)
    hard_jump = abs(dry[k] - wet[k - 1])
    assert hard_jump > 5 * slope[1], "the signals differ: a hard switch would click, the fade does not"


def test_adaptation_is_live_and_sets_the_tracking_speed():
    rng = np.random.default_rng(10)
    x = np.concatenate([0.01 * rng.standard_normal(RATE), 0.1 * rng.standard_normal(2 * RATE)])

    def settled_after(adaptation: float) -> float:
        st = Denoise()
        st.setup(AudioFormat(RATE, 1))
        st.running = True
        st.run(x[:RATE, None].astype(np.float32))
        st.set_param("adaptation", adaptation)
        est = []
        for i in range(RATE, len(x), st.hop):
            st.run(x[i : i + st.hop, None].astype(np.float32))
            est.append(st.tracker.noise.sum())
        est = np.array(est)
        return int(np.argmax(est > 0.5 * est[-1]))  # hops until half the final estimate

    assert settled_after(4.0) < settled_after(0.5)


def test_strength_is_live():
    rng = np.random.default_rng(8)
    x = (0.05 * rng.standard_normal((2 * RATE, 1))).astype(np.float32)
    st = Denoise()
    st.setup(AudioFormat(RATE, 1))
    st.running = True
    full = st.run(x[:RATE])
    st.set_param("strength", 0.0)
    none = st.run(x[RATE:])
    assert np.std(full[RATE // 2 :]) < 0.5 * np.std(x[: RATE // 2])
    np.testing.assert_allclose(none[RATE // 4 :], x[RATE + RATE // 4 - st.latency : 2 * RATE - st.latency],
                               atol=1e-6)


@pytest.mark.parametrize("wavelet", ["nope", "bior2.2"])
def test_bad_wavelet_is_a_clear_error(wavelet):
    with pytest.raises(ConfigError, match=f"wavelet '{wavelet}'"):
        Denoise(wavelet=wavelet).setup(AudioFormat(RATE, 1))


# -- method = "gru": the shipped gain network ----------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(x=signals(max_len=3000), sizes=partitions(700))
def test_gru_streaming_exact(x, sizes):
    whole, _ = run_blocks(Denoise(method="gru"), x, [], RATE)
    parts, _ = run_blocks(Denoise(method="gru"), x, sizes, RATE)
    np.testing.assert_allclose(parts, whole, atol=1e-6)


def test_gru_improves_noisy_speech_and_silence_stays_silent():
    rng = np.random.default_rng(9)
    clean = np.concatenate([np.zeros(RATE // 2), speech_like(4.0, rng)])
    n = rng.standard_normal(len(clean))
    noisy = clean + n * np.sqrt(np.mean(clean**2) / np.mean(n**2)) * 10 ** (-5 / 20)
    gain = si_sdr(clean, denoise(noisy, method="gru")) - si_sdr(clean, noisy)
    assert gain > 3.0, f"SI-SDR improvement {gain:.2f} dB"
    assert np.max(np.abs(denoise(np.zeros(RATE), method="gru"))) == 0.0


def test_gru_at_a_rate_without_a_model_is_a_clear_error():
    with pytest.raises(AudioFormatError, match="no model for 44100 Hz"):
        Denoise(method="gru").setup(AudioFormat(44100, 1))


def test_gru_with_another_layout_is_a_clear_error():
    with pytest.raises(AudioFormatError, match="trained for wavelet=db8"):
        Denoise(method="gru", wavelet="sym4").setup(AudioFormat(RATE, 1))


# -- method = "gru" at 48 kHz: a network for the bands below 8 kHz, classical gains above -----------
def test_gru_48k_model_covers_the_bands_below_8khz():
    st = Denoise(method="gru")
    st.setup(AudioFormat(48000, 2))
    assert st.latency <= 480
    band_hz = 24000 / st.bank.bands
    assert st.net_bands < st.bank.bands and abs(st.net_bands * band_hz - 8000) < band_hz
    assert st.gainer.shape == (2, st.bank.bands - st.net_bands)


@settings(max_examples=8, deadline=None)
@given(x=signals(min_len=1000, max_len=6000), sizes=partitions(2000))
def test_gru_streaming_exact_at_48k(x, sizes):
    whole, _ = run_blocks(Denoise(method="gru"), x, [], 48000)
    parts, _ = run_blocks(Denoise(method="gru"), x, sizes, 48000)
    assert parts.shape == whole.shape == x.shape
    np.testing.assert_allclose(parts, whole, atol=1e-6)


@pytest.mark.parametrize("noise", ["white", "babble"])
def test_gru_48k_improves_noisy_speech(noise):
    rate = 48000
    rng = np.random.default_rng(11)
    clean = np.concatenate([np.zeros(rate // 2), speech_like(4.0, rng, rate)])
    if noise == "white":
        n = rng.standard_normal(len(clean))
    else:
        n = sum(speech_like(len(clean) / rate, rng, rate) for _ in range(6))
    noisy = clean + n * np.sqrt(np.mean(clean**2) / np.mean(n**2)) * 10 ** (-5 / 20)  # 5 dB SNR
    gain = si_sdr(clean, denoise(noisy, rate, method="gru")) - si_sdr(clean, noisy)
    assert gain > (3.0 if noise == "white" else 0.0), f"SI-SDR improvement {gain:.2f} dB"
    assert np.max(np.abs(denoise(np.zeros(rate), rate, method="gru"))) == 0.0


# -- broken model files: one-line errors ----------------------------------------------------------
def _write_model(d, rate: int = RATE, state=None, config=None) -> None:
    import json

    import torch

    from rtaudio.dsp import gain_net

    ref = gain_net.MODEL_DIR / gain_net.model_name(rate)
    name = gain_net.model_name(rate)
    cfg = json.loads(ref.with_suffix(".json").read_text()) if config is None else config
    (d / f"{name}.json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    if state is None:
        state = torch.load(ref.with_suffix(".pt"), weights_only=True)
    if isinstance(state, bytes):
        (d / f"{name}.pt").write_bytes(state)
    else:
        torch.save(state, d / f"{name}.pt")


def _broken(kind: str):
    import torch

    from rtaudio.dsp import gain_net

    ref = torch.load((gain_net.MODEL_DIR / gain_net.model_name(RATE)).with_suffix(".pt"), weights_only=True)
    if kind == "garbage pt":
        return {"state": b"not a torch file\n\x00\x01"}
    if kind == "bad json":
        return {"config": "{rate: 16000,\n"}
    if kind == "json not an object":
        return {"config": "[1, 2]"}
    if kind == "missing weights":
        return {"state": {k: v for k, v in ref.items() if k != "out.bias"}}
    if kind == "wrong shapes":
        return {"state": dict(ref, **{"out.bias": torch.zeros(3)})}
    if kind == "not a state dict":
        return {"state": [1, 2, 3]}
    raise ValueError(kind)


@pytest.mark.parametrize(
    "kind",
    ["garbage pt", "bad json", "json not an object", "missing weights", "wrong shapes", "not a state dict"],
)
def test_broken_model_is_a_one_line_error(kind, tmp_path, monkeypatch):
    from rtaudio.dsp import gain_net
    from rtaudio.errors import RtAudioError

    _write_model(tmp_path, **_broken(kind))
    monkeypatch.setattr(gain_net, "MODEL_DIR", tmp_path)
    with pytest.raises(RtAudioError, match="cannot load the gain network") as info:
        Denoise(method="gru").setup(AudioFormat(RATE, 1))
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_missing_model_file_is_a_one_line_error(tmp_path, monkeypatch):
    from rtaudio.dsp import gain_net

    _write_model(tmp_path)
    (tmp_path / f"{gain_net.model_name(RATE)}.pt").unlink()
    monkeypatch.setattr(gain_net, "MODEL_DIR", tmp_path)
    with pytest.raises(ConfigError, match="cannot load the gain network") as info:
        Denoise(method="gru").setup(AudioFormat(RATE, 1))
    assert "\n" not in str(info.value)


def test_numpy_inference_matches_torch():
    import torch

    from rtaudio.dsp import gain_net

    torch.set_num_threads(1)
    for rate in gain_net.SHIPPED_RATES:
        runner = gain_net.load(1, rate)
        path = (gain_net.MODEL_DIR / gain_net.model_name(rate)).with_suffix(".pt")
        state = torch.load(path, weights_only=True)
        hidden, bands = runner.hidden, runner.bands
        inp = torch.nn.Linear(2 * bands, hidden)
        gru = torch.nn.GRU(hidden, hidden, batch_first=True)
        out = torch.nn.Linear(hidden, bands)
        inp.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("inp.")})
        gru.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("gru.")})
        out.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("out.")})
        rng = np.random.default_rng(12)
        p, n = 10 ** rng.uniform(-9, 0, (2, 40, bands))
        with torch.no_grad():
            x = torch.tensor(gain_net.features(p, n)[None], dtype=torch.float32)
            ref = torch.sigmoid(out(gru(torch.tanh(inp(x)))[0]))[0].numpy() ** runner.exponent
        got = np.stack([runner.step(p[i : i + 1], n[i : i + 1])[0] for i in range(40)])
        np.testing.assert_allclose(got, ref, atol=1e-5)
