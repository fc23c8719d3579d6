"""Make the built-in demo clip: espeak-ng speech plus pink noise at 10 dB SNR, 16 kHz mono FLAC.

Run once by a developer (`python scripts/make_demo_clip.py`); the result ships in rtaudio/data/.
Needs espeak-ng (Debian package). Deterministic: fixed text, voice and noise seed.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import lfilter

TEXT = (
    "Welcome to rtaudio. This is the built in demo clip. "
    "Say yes, no, up, down, left, right, on, off, stop, or go. "
    "The noise behind this voice is pink, ten decibels below the speech."
)
RATE = 16000
OUT = Path(__file__).resolve().parent.parent / "rtaudio" / "data" / "demo.flac"


def speech() -> np.ndarray:
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", TEXT], check=True, capture_output=True
    ).stdout
    x, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(x, rate, RATE).astype(np.float32)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1, -2.494956002, 2.017265875, -0.522189400]
    y = lfilter(b, a, rng.standard_normal(n + RATE))[RATE:]
    return (y / np.sqrt(np.mean(y**2))).astype(np.float32)


def main() -> None:
    s = speech()
    s = np.concatenate([np.zeros(RATE // 2, np.float32), s, np.zeros(RATE // 2, np.float32)])
    s *= 10 ** (-6 / 20) / np.abs(s).max()
    active = np.abs(s) > 1e-3
    p_speech = np.mean(s[active] ** 2)
    noise = pink(len(s), np.random.default_rng(7)) * np.sqrt(p_speech / 10)
    x = s + noise
    OUT.parent.mkdir(parents=True, exist_ok=True)
    sf.write(OUT, x, RATE, subtype="PCM_16")
    print(f"wrote {OUT} ({len(x) / RATE:.1f} s)")


if __name__ == "__main__":
    main()
