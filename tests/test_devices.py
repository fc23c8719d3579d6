"""Device listing and selection, parameter errors, and failures on real audio servers: a callback
that raises, a server that dies or hangs mid-stream, and one hung before the start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtaudio.devices import DeviceInput, DeviceOutput, cmd_devices, find_device
from rtaudio.engine import Engine
from rtaudio.errors import ConfigError, RtAudioError
from rtaudio.sinks import WavSink

pytestmark = pytest.mark.audio
ROOT = Path(__file__).resolve().parent.parent


def test_devices_table_lists_server_devices(pulse_server, jack_server, capsys):
    assert cmd_devices(None) == 0
    out = capsys.readouterr().out
    assert "pulse" in out and "system" in out and "JACK" in out
    assert "default input" in out


def test_find_device_by_index_name_and_default(pulse_server):
    import sounddevice as sd

    i = find_device("pulse", "input")
    assert sd.query_devices(i)["name"] == "pulse"
    assert find_device(str(i), "output") == i
    assert find_device(i, "input") == i
    assert find_device("PULS", "input") == i  # case-insensitive substring
    assert find_device("default", "input") is None


def test_wrong_device_name_lists_candidates(pulse_server, jack_server):
    with pytest.raises(RtAudioError) as e:
        find_device("no-such-card", "input")
    msg = str(e.value)
    assert "no input device matches 'no-such-card'" in msg
    assert "pulse" in msg and "system" in msg  # the candidates are listed
    with pytest.raises(RtAudioError, match="does not exist"):
        find_device("999", "output")


def test_ambiguous_device_name_is_an_error(pulse_server, jack_server):
    # "a" is in every device's name or host API: ambiguous, and the matches are listed
    with pytest.raises(RtAudioError, match="ambiguous.*pulse"):
        find_device("a", "input")


def test_wrong_device_fails_at_prepare_naming_candidates(pulse_server, tmp_path):
    out = tmp_path / "x.wav"
    eng = Engine(DeviceInput(device="nonexistent"), [], [WavSink(path=str(out))], block=256)
    with pytest.raises(RtAudioError, match="no input device matches 'nonexistent'.*pulse"):
        eng.prepare()
    assert not out.exists() and not list(tmp_path.iterdir())


def test_bad_latency_and_rate_are_config_errors(pulse_server):
    with pytest.raises(ConfigError, match="latency"):
        DeviceInput(latency="fast")
    with pytest.raises(ConfigError, match="latency"):
        DeviceOutput(latency="-1")
    assert DeviceInput(latency="0.05").latency_setting == 0.05


def test_callback_error_reaches_the_main_thread(pulse_server, tmp_path):
    """A failure inside the PortAudio callback stops the run with a clear error in the caller's
    thread, and the file written so far is complete and valid."""
    out = tmp_path / "rec.wav"
    eng = Engine(DeviceInput(device=pulse_server.device), [], [WavSink(path=str(out))], block=256)
    eng.prepare()
    eng.start()
    deadline = time.monotonic() + 10
    while eng.summary.samples_in < 24000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert eng.summary.samples_in >= 24000, "no audio arrived"
    eng.ring.buf.flags.writeable = False  # the callback's next copy into the ring raises
    with pytest.raises(RtAudioError, match="audio callback failed: ValueError"):
        deadline = time.monotonic() + 10
        while not eng.wait(0.1):
            assert time.monotonic() < deadline, "the callback error never reached the caller"
    assert eng.summary.stopped_by == "error"
    info = sf.info(str(out))
    assert info.frames == eng.summary.samples_out >= 24000


PIPELINE = """
[pipeline]
block = 256

[source]
kind = "input"
device = "pulse"

[[stages]]
kind = "gain"
db = -6.0

[[sinks]]
kind = "wav"
path = "{out}"
"""


def _wait_recording(proc, folder, seconds: float, timeout: float = 60.0) -> None:
    """Wait until the run's WAV (still under its temporary name) holds `seconds` of 48 kHz mono float:
    PulseAudio's first callback may come seconds after start on a loaded machine."""
    want = 44 + int(seconds * 48000) * 4
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if any(p.stat().st_size >= want for p in folder.glob(".rec.wav.*.partial")):
            return
        time.sleep(0.1)
    pytest.fail(f"no {seconds} s of recording after {timeout} s")


@contextmanager
def _private_pulse(tmp_path):
    """A PulseAudio server of the test's own (not the session's), so breaking it harms no other
    test: yields the environment that points a child process at it, and the server's PID."""
    audio_dir = tmp_path / "audio"
    env = {**os.environ, "RTAUDIO_AUDIO_DIR": str(audio_dir), "PYTHON": sys.executable}
    for k in ("PULSE_SERVER", "PULSE_RUNTIME_PATH", "PULSE_STATE_PATH"):
        env.pop(k, None)
    start = subprocess.run([str(ROOT / "scripts/audio-server/start-audio-server.sh"), "pulse"],
                           env=env, capture_output=True, text=True, timeout=60)
    if start.returncode != 0:
        pytest.fail(f"could not start PulseAudio: {start.stderr}", pytrace=False)
    pid = int((audio_dir / "pulse.pid").read_text())
    try:
        for line in (audio_dir / "pulse-env.sh").read_text().split():
            k, eq, v = line.partition("=")
            if eq:
                env[k] = v.strip('"')
        yield env, pid
    finally:
        try:
            os.kill(pid, signal.SIGCONT)  # a frozen server cannot be stopped
        except ProcessLookupError:
            pass
        subprocess.run([str(ROOT / "scripts/audio-server/stop-audio-server.sh"), "all"], env=env,
                       timeout=30)


def _break_server(fault: str, env: dict, pid: int) -> None:
    if fault == "killed":
        subprocess.run([str(ROOT / "scripts/audio-server/stop-audio-server.sh"), "pulse"],
                       env=env, timeout=30)
    else:  # a hung server: its socket stays open, nothing moves
        os.kill(pid, signal.SIGSTOP)


def _finish_within(proc, seconds: float, what: str) -> str:
    """The child's stderr once it exits; if it does not within `seconds`, SIGABRT makes it print
    every thread's stack (-X faulthandler) into the failure message."""
    try:
        return proc.communicate(timeout=seconds)[1]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            _, stacks = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stacks = proc.communicate()
        pytest.fail(f"rtaudio kept running after its audio server was {what}; its threads:\n"
                    f"{stacks}", pytrace=False)


def _rtaudio(env: dict, *args: str) -> subprocess.Popen:
    """`rtaudio ARGS` in a child process (-X faulthandler: see `_finish_within`)."""
    return subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "rtaudio.cli", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_playing(proc, env: dict, timeout: float = 60.0) -> None:
    """Wait until the server has the run's playback stream (frozen earlier, it is the stream's
    opening that never returns: another failure than this test's)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        inputs = subprocess.run(["pactl", "list", "short", "sink-inputs"], env=env,
                                capture_output=True, text=True, timeout=10).stdout
        if inputs.strip():
            return
        time.sleep(0.1)
    pytest.fail(f"no playback stream on the server after {timeout} s")


@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_server_dying_mid_stream_ends_run_with_clear_error(tmp_path, fault):
    """`rtaudio run` recording from a PulseAudio server that is killed (or frozen with SIGSTOP: a
    hung server) after ~1.5 s: non-zero exit within 30 s, a one-line message naming the device,
    and a valid WAV with what was recorded. Frozen, PortAudio's stop and abort each blocked for a
    minute before `devices._halt` bounded them."""
    out = tmp_path / "rec.wav"
    pipe = tmp_path / "rec.toml"
    pipe.write_text(PIPELINE.format(out=out))
    with _private_pulse(tmp_path) as (env, pid):
        proc = _rtaudio(env, "run", str(pipe), "--seconds", "60", "--quiet")
        _wait_recording(proc, tmp_path, 1.5)
        _break_server(fault, env, pid)
        stderr = _finish_within(proc, 30, fault)
    print(stderr)
    assert proc.returncode != 0
    assert "device 'pulse'" in stderr
    assert any(w in stderr for w in ("failed", "stopped", "no audio"))
    assert "Traceback" not in stderr
    data, rate = sf.read(str(out), dtype="float32")
    assert rate == 48000 and data.shape[0] >= rate  # at least a second before the server broke
    assert np.isfinite(data).all()


def test_playback_to_a_frozen_server_ends_with_clear_error(tmp_path):
    """Playing a 60 s tone to a server that freezes after ~2 s: the output's queue stops draining,
    and the run ends within 30 s (not after the tone) with a one-line error naming the device."""
    pipe = tmp_path / "play.toml"
    pipe.write_text('[source]\nkind = "tone"\nseconds = 60.0\n\n'
                    '[[sinks]]\nkind = "output"\ndevice = "pulse"\n')
    with _private_pulse(tmp_path) as (env, pid):
        proc = _rtaudio(env, "run", str(pipe), "--quiet")
        _wait_playing(proc, env)
        time.sleep(1.0)
        _break_server("frozen", env, pid)
        stderr = _finish_within(proc, 30, "frozen")
    print(stderr)
    assert proc.returncode != 0
    assert "device 'pulse'" in stderr and "took no audio" in stderr
    assert "Traceback" not in stderr


def test_a_server_hung_before_start_is_a_clear_error(tmp_path):
    """PortAudio's start-up (device enumeration through ALSA's pulse plugin) never returns on a
    hung server: `rtaudio devices` says so after INIT_SECONDS instead of hanging."""
    with _private_pulse(tmp_path) as (env, pid):
        _break_server("frozen", env, pid)
        proc = _rtaudio(env, "devices")
        stderr = _finish_within(proc, 40, "frozen before start")
    assert proc.returncode == 1
    assert "PortAudio did not start" in stderr and "Traceback" not in stderr


def test_ctrl_c_stops_cleanly_and_keeps_the_recording(pulse_server, tmp_path):
    """SIGINT to `rtaudio run` on a live input: a clean stop (exit 0), a valid WAV."""
    out = tmp_path / "rec.wav"
    pipe = tmp_path / "rec.toml"
    pipe.write_text(PIPELINE.format(out=out))
    proc = _rtaudio(dict(os.environ), "run", str(pipe), "--seconds", "60", "--quiet")
    _wait_recording(proc, tmp_path, 1.5)
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("rtaudio did not stop on Ctrl-C")
    print(stderr)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    data, rate = sf.read(str(out), dtype="float32")
    assert rate == 48000 and data.shape[0] >= rate


def test_duplex_output_plays_a_fixed_delay_behind_the_input():
    """Duplex: output frame m plays exactly `prefill` frames after input frame m was recorded,
    whatever the chain emitted at start-up (a resampler's leading zeros, a slow first block):
    frames already due when playback starts are dropped unplayed and counted apart, not as a loss."""
    from rtaudio.devices import _OutputQueue

    prefill, period = 300, 128
    q = _OutputQueue(channels=1, device_channels=1, prefill=prefill, capacity=8192)
    out = np.zeros((period, 1), np.float32)
    # the chain produced nothing yet during the first callbacks: silence, not an underflow
    for k in range(3):
        q.fill(out, period, now=k * period)
        assert not out.any() and not q.playing
    # then a burst: 2000 output frames (frame m carries the value m) arrive at once
    q.ring.write(np.arange(2000, dtype=np.float32)[:, None])
    now = 3 * period
    q.fill(out, period, now=now)
    assert q.playing and q.trimmed == now - prefill
    np.testing.assert_array_equal(out[:, 0], np.arange(now - prefill, now - prefill + period))
    for k in range(4, 10):  # from then on: frame now - prefill in every callback
        q.fill(out, period, now=k * period)
        assert out[0, 0] == k * period - prefill
    assert q.underflow == 0


def test_duplex_output_keeps_its_delay_after_an_underflow():
    """An underflow plays silence (counted); the frames it replaced are dropped when they arrive
    (counted) so that the round trip stays fixed instead of growing with every underflow."""
    from rtaudio.devices import _OutputQueue

    prefill, period = 256, 128
    q = _OutputQueue(channels=1, device_channels=1, prefill=prefill, capacity=8192)
    out = np.zeros((period, 1), np.float32)
    ramp = np.arange(4000, dtype=np.float32)[:, None]  # output frame m carries the value m
    q.ring.write(ramp[: 2 * period + 50])
    q.fill(out, period, now=prefill)  # playing: frame 0 is due now
    q.fill(out, period, now=prefill + period)
    assert out[0, 0] == period and q.underflow == 0
    q.fill(out, period, now=prefill + 2 * period)  # the worker stalls: 50 of 128 frames there
    np.testing.assert_array_equal(out[:50, 0], ramp[2 * period: 2 * period + 50, 0])
    assert not out[50:].any() and q.underflow == period - 50
    q.ring.write(ramp[2 * period + 50:])  # the stall ends: the rest arrives
    for k in range(3, 10):  # frame k * period is due in callback k, as before the stall
        q.fill(out, period, now=prefill + k * period)
        np.testing.assert_array_equal(out[:, 0], ramp[k * period:(k + 1) * period, 0])
    assert q.late_dropped == q.underflow > 0


def test_output_underflow_during_start_up_is_counted_apart():
    """An underflow in the first `settle` frames (PulseAudio's start-up burst of callbacks) is
    start-up silence, counted apart like start-up flags; one after it is a loss. The frames a
    start-up underflow replaced are dropped on arrival without counting them a second time."""
    from rtaudio.devices import _OutputQueue

    prefill, period, settle = 256, 128, 1024
    q = _OutputQueue(channels=1, device_channels=1, prefill=prefill, capacity=8192, settle=settle)
    out = np.zeros((period, 1), np.float32)
    ramp = np.arange(8000, dtype=np.float32)[:, None]  # output frame m carries the value m
    q.ring.write(ramp[:period])
    for k in range(3):  # playing from frame 0; nothing more arrives: 2 start-up underflows
        q.fill(out, period, now=prefill + k * period)
    assert q.startup_underflow == 2 * period and q.underflow == 0
    q.ring.write(ramp[period:10 * period])
    for k in range(3, 8):  # caught up: the replaced frames are skipped, the delay holds
        q.fill(out, period, now=prefill + k * period)
        np.testing.assert_array_equal(out[:, 0], ramp[k * period:(k + 1) * period, 0])
    assert q.late_dropped == 0 and q.startup_debt == 0
    assert q.position >= settle
    for k in range(8, 11):  # after the start-up: 10 * period frames queued, then a stall
        q.fill(out, period, now=prefill + k * period)
    assert q.underflow == period and q.startup_underflow == 2 * period
