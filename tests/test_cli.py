"""The command line: offline processing, bad input (one line, non-zero exit, nothing left behind)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def rtaudio(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rtaudio", *args],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
    )


@pytest.fixture
def noise_wav(tmp_path):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (16000 * 3, 2)).astype(np.float32)
    p = tmp_path / "in.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    return p, x


def test_version_and_stages():
    r = rtaudio("--version")
    assert r.returncode == 0 and r.stdout.startswith("rtaudio ")
    r = rtaudio("stages")
    assert r.returncode == 0
    for kind in ("gain", "highpass", "lowpass", "level", "resample", "file", "tone", "wav"):
        assert kind in r.stdout


def test_process_chain_gain(noise_wav, tmp_path):
    src, x = noise_wav
    out = tmp_path / "out.wav"
    r = rtaudio("process", "gain db=-6 ! highpass hz=20 order=1", str(src), str(out))
    assert r.returncode == 0, r.stderr
    y, rate = sf.read(out, dtype="float32")
    assert rate == 16000 and y.shape == x.shape
    from scipy.signal import butter, sosfilt

    ref = sosfilt(butter(1, 20, "highpass", fs=16000, output="sos"), x * 10 ** (-6 / 20), axis=0)
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_process_resample_keeps_length_and_alignment(tmp_path):
    rate = 48000
    t = np.arange(rate * 2) / rate
    x = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    src, out = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(src, x, rate, subtype="FLOAT")
    r = rtaudio("process", "resample rate=16000", str(src), str(out))
    assert r.returncode == 0, r.stderr
    y, r16 = sf.read(out, dtype="float32")
    assert r16 == 16000 and len(y) == len(x) // 3
    ref = 0.5 * np.sin(2 * np.pi * 300 * np.arange(len(y)) / 16000)
    assert np.max(np.abs(y[1000:-1000] - ref[1000:-1000])) < 1e-3, "latency compensated"


def _bad(args, tmp_path, expect: str):
    r = rtaudio(*args)
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr
    assert len(err.splitlines()) == 1, err
    assert expect in err, err
    return err


def test_bad_inputs_give_one_clear_line_and_leave_nothing(tmp_path, noise_wav):
    src, _ = noise_wav
    out = tmp_path / "out.wav"
    _bad(["process", "gain", str(tmp_path / "missing.wav"), str(out)], tmp_path, "missing.wav: no such file")
    text = tmp_path / "text.wav"
    text.write_text("this is not audio\n" * 10)
    _bad(["process", "gain", str(text), str(out)], tmp_path, "text.wav: cannot read audio")
    trunc = tmp_path / "trunc.wav"
    trunc.write_bytes(src.read_bytes()[:30])
    _bad(["process", "gain", str(trunc), str(out)], tmp_path, "trunc.wav")
    odd = tmp_path / "mp3.wav"  # a WAV header announcing MPEG data: a sample format we can't decode
    header = bytearray(src.read_bytes())
    header[20:22] = (0x55).to_bytes(2, "little")
    odd.write_bytes(header)
    _bad(["process", "gain", str(odd), str(out)], tmp_path, "mp3.wav: cannot read audio")
    nan = tmp_path / "nan.wav"
    y = np.zeros((16000, 1), np.float32)
    y[12345] = np.nan
    sf.write(nan, y, 16000, subtype="FLOAT")
    _bad(["process", "gain", str(nan), str(out)], tmp_path, "nan.wav: NaN or Inf sample at frame 12345")
    _bad(["process", "reverb", str(src), str(out)], tmp_path, "'reverb' is neither a pipeline nor a stage")
    _bad(["process", "gain ! reverb", str(src), str(out)], tmp_path, "unknown component kind 'reverb'")
    _bad(["process", "gain db=99", str(src), str(out)], tmp_path, "key 'db' = 99.0 is out of range")
    _bad(["process", "highpass hz=9000", str(src), str(out)], tmp_path, "below half the sample rate")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('[[stages]]\nkind = "gain"\ndb = \n')
    _bad(["process", str(bad_toml), str(src), str(out)], tmp_path, "bad.toml: TOML syntax error")
    _bad(["process", "gain", str(src), str(tmp_path / "nodir" / "o.wav")], tmp_path, "does not exist")
    model = tmp_path / "model"
    _bad(["train", "--mels", "4", "--out", str(model)], tmp_path, "--mels must be 8 to 128, got 4")
    _bad(["train", "--fmax", "9000", "--out", str(model)], tmp_path, "--fmax must be above 20 Hz")
    assert not model.exists()
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name or p.name == "out.wav"] == []


def test_truncated_wav_data_is_processed_or_reported(tmp_path, noise_wav):
    """A WAV cut mid-data: libsndfile reads the frames that are there; the output holds exactly those."""
    src, x = noise_wav
    cut = tmp_path / "cut.wav"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o.wav"
    r = rtaudio("process", "gain", str(cut), str(out))
    if r.returncode == 0:
        y, _ = sf.read(out, dtype="float32")
        assert 0 < len(y) < len(x)
        np.testing.assert_array_equal(y, x[: len(y)])
    else:
        assert "cut.wav" in r.stderr and "Traceback" not in r.stderr and not out.exists()


def test_run_stops_cleanly_on_ctrl_c(tmp_path):
    out = tmp_path / "live.wav"
    p = subprocess.Popen(
        [sys.executable, "-m", "rtaudio", "run", f"tone seconds=0 ! gain db=-6 ! wav path={out}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    first = p.stderr.readline()  # the start line: the engine is running (imports can be slow here)
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    err = first + err
    assert p.returncode == 0, err
    assert "stopped by Ctrl-C" in err and "Traceback" not in err
    y, rate = sf.read(out, dtype="float32")
    assert rate == 48000 and len(y) > 0.5 * rate
    assert abs(np.abs(y).max() - 10 ** (-26 / 20)) < 1e-3


def test_run_seconds_limit_and_summary(tmp_path):
    r = rtaudio("run", "tone seconds=0 ! level ! null", "--seconds", "1")
    assert r.returncode == 0, r.stderr
    assert "stopped after 1 s" in r.stderr and "ring overflow=0" in r.stderr


def test_demo_without_sound_card(tmp_path):
    # no sound card even after another test started an audio server for this session: with one
    # in the environment, `demo` would open the live monitor instead
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "JACK_"))}
    env.update(PULSE_SERVER="unix:/nonexistent/rtaudio-test", JACK_NO_START_SERVER="1")
    # run where a directory is named like the pipeline, and with the snapshot left to follow
    # --outdir (both once failed: "demo: cannot read", "--snapshot out/demo.png: directory out does
    # not exist")
    out = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "rtaudio", "demo", "--outdir", str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    y, rate = sf.read(out / "demo_out.wav")
    assert rate == 16000 and len(y) > 10 * rate
    assert (out / "demo_events.jsonl").stat().st_size > 0
    assert (out / "demo.png").stat().st_size > 0
