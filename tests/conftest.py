"""Session fixtures: a private PulseAudio and a private JACK server per test run.

The servers come from `scripts/audio-server/start-audio-server.sh` with a private
RTAUDIO_AUDIO_DIR under pytest's tmp dir; their environment variables are put into os.environ and
PortAudio is re-initialised so it sees them (PortAudio reads the environment only when it
initialises). At the end only the servers started here are stopped (by the PIDs the script saved).
A server that cannot start FAILS the tests that need it: CI installs pulseaudio and jackd2.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts" / "audio-server"


@dataclass
class AudioServer:
    kind: str  # "pulse" or "jack"
    device: str  # the PortAudio device name rtaudio should open
    dir: Path
    env: dict[str, str] = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)  # pactl modules loaded by tests

    def load_null_sink(self, name: str, rate: int = 48000, channels: int = 1) -> str:
        """A float32 null sink (PulseAudio only); its monitor is `name + '.monitor'`."""
        out = subprocess.run(
            ["pactl", "load-module", "module-null-sink", f"sink_name={name}", "format=float32le",
             f"rate={rate}", f"channels={channels}"],
            capture_output=True, text=True, check=True, timeout=20)
        self.modules.append(out.stdout.strip())
        return name

    def unload_modules(self) -> None:
        while self.modules:
            subprocess.run(["pactl", "unload-module", self.modules.pop()], capture_output=True,
                           timeout=20)


def reinit_portaudio() -> None:
    import sounddevice as sd

    sd._terminate()
    sd._initialize()


def _parse_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line)
        if words and words[0] == "export":
            for w in words[1:]:
                k, _, v = w.partition("=")
                env[k] = v
    return env


def _start(kind: str, audio_dir: Path, extra_env: dict[str, str] | None = None) -> AudioServer:
    env = {**os.environ, "RTAUDIO_AUDIO_DIR": str(audio_dir), "PYTHON": sys.executable,
           **(extra_env or {})}
    proc = subprocess.run([str(SCRIPTS / "start-audio-server.sh"), kind], env=env,
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.fail(f"could not start the {kind} audio server (CI must install libportaudio2 "
                    f"pulseaudio pulseaudio-utils libasound2-plugins jackd2):\n{proc.stderr}",
                    pytrace=False)
    server_env = _parse_env(audio_dir / f"{kind}-env.sh")
    os.environ.update(server_env)
    reinit_portaudio()
    device = "pulse" if kind == "pulse" else "system"
    return AudioServer(kind, device, audio_dir, server_env)


def _stop(server: AudioServer) -> None:
    import sounddevice as sd

    server.unload_modules()
    # PortAudio must let go of the server first: its JACK host API aborts the process when it
    # terminates after the JACK server has gone.
    sd._terminate()
    env = {**os.environ, "RTAUDIO_AUDIO_DIR": str(server.dir)}
    subprocess.run([str(SCRIPTS / "stop-audio-server.sh"), server.kind], env=env,
                   capture_output=True, timeout=60)
    for k in server.env:
        if k != "JACK_NO_START_SERVER":  # never let libjack auto-start a server
            os.environ.pop(k, None)
    sd._initialize()


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("audio-server")


@pytest.fixture(scope="session")
def pulse_server(audio_dir):
    """PulseAudio with a float32 stereo null sink `rtsink` whose monitor is the default input:
    what is played on device 'pulse' comes back on its input, bit-exact. Realtime scheduling for
    the daemon when permitted (as an audio server would get from rtkit)."""
    server = _start("pulse", audio_dir, {"RTAUDIO_PULSE_RT": "1"})
    yield server
    _stop(server)


@pytest.fixture(scope="session")
def jack_server(audio_dir):
    """jackd2 with the dummy driver (48 kHz, realtime scheduling when permitted); device 'system'.
    Loopback by connecting ports (see loopback_tools.jack_wire). Period 512 frames (10.7 ms):
    a Python callback can wait for the GIL for up to ~8 ms on a busy machine (measured), which
    a 256-frame period (5.3 ms) does not absorb (benchmarks/xruns.py)."""
    server = _start("jack", audio_dir, {"RTAUDIO_JACK_RT": "1", "RTAUDIO_JACK_PERIOD": "512"})
    yield server
    _stop(server)


@pytest.fixture(params=["pulse", "jack"])
def audio_server(request):
    """Each test using this runs once per server."""
    return request.getfixturevalue(f"{request.param}_server")
