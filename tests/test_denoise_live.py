"""The denoiser through a real PulseAudio server: a noisy file played by `pipelines/denoise_playback.toml`
to the output device and recorded back from the null sink's monitor scores the same SI-SDR improvement
as the offline run, with no xruns."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate

from rtaudio import pipeline
from rtaudio.devices import DeviceInput, DeviceOutput
from rtaudio.engine import Engine
from rtaudio.sinks import WavSink
from rtaudio.sources import FileSource
from rtaudio.stage import AudioFormat
from rtaudio.stages.denoise import Denoise

from .test_denoise import si_sdr, speech_like

pytestmark = pytest.mark.audio
RATE = 48000


def _wait(cond, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_denoise_playback_through_pulseaudio(pulse_server, tmp_path):
    rng = np.random.default_rng(11)
    clean = np.concatenate([np.zeros(RATE // 2), speech_like(5.0, rng, RATE)])
    noisy = (clean + 0.05 * rng.standard_normal(len(clean))).astype(np.float32)
    noisy_path = tmp_path / "noisy.wav"
    sf.write(noisy_path, noisy, RATE, subtype="FLOAT")

    spec = pipeline.load("denoise_playback")  # the shipped pipeline, with our file and the server
    offline = Denoise(**{k: v for k, v in spec.stages[0].values.items()})  # the same settings
    offline.setup(AudioFormat(RATE, 1, len(noisy)))
    lat = offline.latency
    off = offline.run(np.concatenate([noisy, np.zeros(lat, np.float32)])[:, None])[lat:, 0]
    gain_offline = si_sdr(clean, off.astype(float)) - si_sdr(clean, noisy.astype(float))

    rec_path = tmp_path / "rec.wav"
    rec = Engine(DeviceInput(device=pulse_server.device), [], [WavSink(path=str(rec_path))], block=256)
    rec.prepare()
    spec.source.values["path"] = str(noisy_path)
    assert spec.override("device", pulse_server.device) == 1
    source, stages, sinks = spec.build()
    assert isinstance(source, FileSource) and source.realtime
    assert [s.kind for s in stages] == ["denoise"] and isinstance(sinks[0], DeviceOutput)
    play = Engine(source, stages, sinks, block=spec.block)
    play.prepare()
    rec.start()
    _wait(lambda: rec.summary.samples_in > 0, 10, "the input delivered nothing")
    play.start()
    assert play.wait(len(noisy) / RATE + 20), "playback did not finish"
    time.sleep(0.5)
    rec.stop()
    rec.wait(10)
    got, r = sf.read(str(rec_path), dtype="float64")
    got = got if got.ndim == 1 else got[:, 0]
    assert r == RATE
    # where the played stream starts in the recording: cross-correlate with the offline output
    n = len(off)
    corr = correlate(got[: n + 5 * RATE], off[RATE : 2 * RATE].astype(float), mode="valid", method="fft")
    start = int(np.argmax(corr)) - RATE  # recording index of the first output (latency removed)
    live = got[start : start + n]
    assert len(live) == n, "the recording holds the whole clip"
    gain_live = si_sdr(clean, live) - si_sdr(clean, noisy.astype(float))
    counters = play.summary.counters
    print(f"\nSI-SDRi offline {gain_offline:.2f} dB, through PulseAudio {gain_live:.2f} dB; "
          f"play {counters}; record {rec.summary.counters}")
    assert gain_offline > 3.0
    assert abs(gain_live - gain_offline) < 0.5
    for key, value in {**counters, **rec.summary.counters}.items():
        if "underflow" in key or "overflow" in key:
            assert value == 0, f"{key} = {value}"
