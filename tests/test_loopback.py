"""Loopback through real audio servers: what is played comes back bit-exact (float32 sinks), and
the measured round trip is printed beside the reported one."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from rtaudio.devices import DeviceInput, DeviceOutput
from rtaudio.engine import Engine
from rtaudio.latency_test import measure_loopback
from rtaudio.sinks import WavSink
from rtaudio.sources import NoiseSource

from .loopback_tools import align, jack_ports, jack_wire, port_of

pytestmark = pytest.mark.audio


def test_duplex_round_trip_measured_vs_reported(audio_server):
    """`rtaudio latency-test`'s measurement: a chirp train through one duplex stream. A run in
    which the server xrunned (flags, or the lag changed) measures nothing: up to 3 tries, the first
    clean one is checked (PulseAudio through ALSA xruns now and then even on an idle machine: CI saw
    3 input-underflow flags and the lag step from 515 to 2048 samples in the last period)."""
    for _ in range(3):
        res = measure_loopback(audio_server.device, seconds=5.0, skip=3.0,
                               jack_loopback=audio_server.kind == "jack")
        assert res.measured is not None, "nothing came back"
        ms = 1000 / res.rate
        print(f"\n{audio_server.kind}: measured round trip {res.measured * ms:.2f} ms "
              f"({res.measured} samples); reported: callback time info DAC-ADC "
              f"{1000 * res.time_info:.2f} ms, stream.latency {1000 * res.stream_latency[0]:.2f} + "
              f"{1000 * res.stream_latency[1]:.2f} ms; lag per period {res.lags}; "
              f"clock slips {res.clock_slips}; flags {res.flags}")
        if not any(res.flags.values()) and res.slips == 0:
            break
    assert not any(res.flags.values()) and res.slips == 0, "the server xrunned in every try"
    assert res.settled_periods >= 2
    assert res.correlation >= 0.999
    assert res.exact  # float32 sinks / JACK: sample for sample
    if audio_server.kind == "jack":
        # JACK's dummy driver: whole periods (one with blocksize 0), exactly what PortAudio
        # reports in stream.latency
        assert res.measured == round(sum(res.stream_latency) * res.rate)
        assert res.measured % 512 == 0
    else:
        # PulseAudio: the callback's own time info predicts the round trip (stream.latency
        # does not). It over-reports by ~5 ms here (11 runs on an idle machine: -5.3 .. -0.1 ms,
        # once 10.4 ms on a loaded one), compared over the same trailing periods
        assert abs(res.measured / res.rate - res.time_info) < 0.012


def _wait(cond, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_output_sink_to_input_source_bit_exact(audio_server, tmp_path):
    """Two rtaudio engines on separate streams: a noise source played by the `output` sink is
    recorded by the `input` source (PulseAudio: through the null sink's monitor; JACK: by
    connecting the ports) and comes back sample for sample after start-up; a slip must be a
    counted loss."""
    rate, seconds = 48000, 8.0
    out = tmp_path / "rec.wav"
    before = jack_ports() if audio_server.kind == "jack" else set()
    rec = Engine(DeviceInput(device=audio_server.device), [], [WavSink(path=str(out))],
                 block=256)
    rec.prepare()
    rec_ports = (jack_ports() - before) if audio_server.kind == "jack" else set()
    src = dict(rate=rate, channels=1, seconds=seconds, level=-20.0, seed=3)
    sink = DeviceOutput(device=audio_server.device)
    play = Engine(NoiseSource(**src), [], [sink], block=256)
    play.prepare()
    rec.start()
    _wait(lambda: rec.summary.samples_in > 0, 10, "the input delivered nothing")
    play.start()
    if audio_server.kind == "jack":
        _wait(lambda: sink.stream is not None, 10, "the output stream never opened")
        play_ports = jack_ports() - before - rec_ports
        jack_wire([(port_of(play_ports, "out"), port_of(rec_ports, "in"))])
    assert play.wait(seconds + 20), "playback did not finish"
    time.sleep(0.5)
    rec.stop()
    rec.wait(10)
    got, r = sf.read(str(out), dtype="float32")
    ref = NoiseSource(**{**src, "realtime": False})
    ref.open()
    want = ref.read(int(rate * seconds))[:, 0]
    a = align(want, got, rate, skip=3.0, max_lag=10.0)
    print(f"\n{audio_server.kind}: {a.describe()}; play {play.summary.counters}; "
          f"record {rec.summary.counters}")
    lat_in = rec.source.reported_latency()["input"]  # kept after close, for the summary
    lat_out = sink.reported_latency()["output queue"]
    print(f"reported input latency {1000 * lat_in:.2f} ms, output queue {1000 * lat_out:.2f} ms")
    assert 0.0 <= lat_in < 1.0 and lat_out > 0.0
    assert r == rate and len(a.lags) >= 6
    # On a loaded machine the player's worker can miss a deadline once (seen in CI: 597 frames of
    # output ring underflow, one slip of 597). That is allowed if it is counted where it happened:
    # every slipped frame is a counted loss, and only the windows holding a slip are not exact.
    # When the device itself ran dry or over (seen with two trainings beside the tests: ALSA
    # "underrun occurred", one output-underflow flag, a slip of 3832 frames), PortAudio flags that it
    # happened, not how many frames: then each slip must have a counted flag.
    lost = play.summary.counters["output ring underflow"] + rec.summary.counters["input slip frames"]
    xruns = play.summary.counters["output underflow flags"] + rec.summary.counters["input overflow flags"]
    assert a.slipped_frames <= lost or a.slips <= xruns
    assert sum(a.exact) >= len(a.exact) - a.slips
    assert min(sorted(a.corr)[a.slips:]) >= 0.999
    assert play.summary.counters["output ring overflow"] == 0
    assert rec.summary.counters["ring overflow"] == 0
    assert np.isfinite(got).all()
