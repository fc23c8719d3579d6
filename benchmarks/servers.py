"""Private audio servers for the benchmarks (scripts/audio-server) and jackd's xrun log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts" / "audio-server"


def start_server(kind: str, audio_dir: str, period: int, realtime: bool = True) -> dict[str, str]:
    """Start a private `kind` server ("jack" or "pulse") in `audio_dir`; returns its client
    environment (JACK_DEFAULT_SERVER, PULSE_SERVER, ...), not yet applied to os.environ."""
    rt = "1" if realtime else "0"
    env = {**os.environ, "RTAUDIO_AUDIO_DIR": audio_dir, "PYTHON": sys.executable,
           "RTAUDIO_JACK_PERIOD": str(period), "RTAUDIO_JACK_RT": rt, "RTAUDIO_PULSE_RT": rt}
    subprocess.run([str(SCRIPTS / "start-audio-server.sh"), kind], env=env, check=True,
                   capture_output=True, timeout=60)
    out = {}
    for word in Path(audio_dir, f"{kind}-env.sh").read_text().split():
        k, eq, v = word.partition("=")
        if eq:
            out[k] = v.strip('"')
    return out


def stop_server(kind: str, audio_dir: str) -> None:
    subprocess.run([str(SCRIPTS / "stop-audio-server.sh"), kind],
                   env={**os.environ, "RTAUDIO_AUDIO_DIR": audio_dir}, timeout=60)


def jack_xruns(log_text: str) -> dict[str, int]:
    """Xruns in jackd's log by cause: a client name (it overran its cycle: `state = Running`),
    "(NAME waiting)" (signalled, but its thread was not woken in time: `state = Triggered`) and
    "(driver late)" (the dummy driver's own timer woke late)."""
    counts: dict[str, int] = {}
    for line in log_text.splitlines():
        if "JackEngine::XRun: client = " in line:
            name = line.split("client = ", 1)[1].split(" was not", 1)[0]
            key = name if "state = Running" in line else f"({name} waiting)"
        elif "JackTimedDriver::Process XRun" in line:
            key = "(driver late)"
        else:
            continue
        counts[key] = counts.get(key, 0) + 1
    return counts


def read_from(path: str | Path, offset: int) -> str:
    """The text of `path` after byte `offset` ("" if it does not exist)."""
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return ""
