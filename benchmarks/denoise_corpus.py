"""Test audio for the denoise benchmark: TTS speech (espeak-ng, flite, festival; only the voices that
training may use, never the held-out flite awb/rms/kal), the spoken phrases that Debian's alsa-utils
ships, and noises (white, pink, brown, babble made from other TTS voices).

Everything is made locally at run time from a seed; nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

RATE = 16000
ALSA_DIR = Path("/usr/share/sounds/alsa")

CLEAN_SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
]
BABBLE_SENTENCES = [
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
]
# (engine, voice) pairs, only from the voices that training and tuning may use (see rtaudio.kws.voices):
# every espeak-ng voice/variant, flite kal16 and slt, festival kal_diphone, ked_diphone and
# cmu_us_slt_arctic_hts. flite awb, rms and kal are held out for independent evaluation and are not
# used here. Babble uses different voices from the clean speech where possible.
CLEAN_VOICES = [("espeak-ng", "en-us"), ("flite", "slt"), ("festival", "kal_diphone"),
                ("espeak-ng", "en-gb+f3"), ("festival", "ked_diphone"), ("espeak-ng", "en-us+m3")]
BABBLE_VOICES = [("festival", "cmu_us_slt_arctic_hts"), ("espeak-ng", "en-gb-scotland"), ("flite", "kal16"),
                 ("espeak-ng", "en-us+f2"), ("espeak-ng", "en-gb-x-rp"), ("espeak-ng", "en-029+m2")]


def available_engines() -> list[str]:
    exe = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}
    return [e for e, x in exe.items() if shutil.which(x)]


def tts(engine: str, voice: str, text: str, workdir: Path, rate: int = RATE) -> np.ndarray:
    """Speak `text` to a float64 mono array at `rate`."""
    out = workdir / f"tts_{abs(hash((engine, voice, text)))}.wav"
    if engine == "espeak-ng":
        cmd = ["espeak-ng", "-v", voice, "-s", "150", "-w", str(out), text]
        subprocess.run(cmd, check=True, capture_output=True)
    elif engine == "flite":
        cmd = ["flite", "-voice", voice, "-t", text, "-o", str(out)]
        subprocess.run(cmd, check=True, capture_output=True)
    elif engine == "festival":
        cmd = ["text2wave", "-eval", f"(voice_{voice})", "-o", str(out)]  # an explicit voice
        subprocess.run(cmd, input=text.encode(), check=True, capture_output=True)
    else:
        raise ValueError(engine)
    x, sr = sf.read(out, dtype="float64", always_2d=True)
    return soxr.resample(x[:, 0], sr, rate)


def alsa_phrases(rate: int = RATE) -> list[tuple[str, np.ndarray]]:
    """The real recorded phrases of alsa-utils ("Front center", ...), if installed."""
    if not ALSA_DIR.is_dir():
        return []
    out = []
    for name in ("Front_Center", "Front_Left", "Rear_Right", "Side_Left"):
        p = ALSA_DIR / f"{name}.wav"
        if p.exists():
            x, sr = sf.read(p, dtype="float64", always_2d=True)
            out.append((f"alsa:{name}", soxr.resample(x.mean(axis=1), sr, rate)))
    return out


def colored_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    spec *= f ** (-exponent / 2)
    x = np.fft.irfft(spec, n)
    x -= x.mean()
    return x / np.sqrt(np.mean(x**2))


def babble_source(workdir: Path, rate: int = RATE) -> np.ndarray:
    """Six overlapping TTS talkers (voices and sentences not in the clean set), unit RMS."""
    engines = set(available_engines())
    talkers = []
    for i, (engine, voice) in enumerate(BABBLE_VOICES):
        if engine not in engines:
            continue
        parts = [tts(engine, voice, BABBLE_SENTENCES[(i + k) % len(BABBLE_SENTENCES)], workdir, rate)
                 for k in range(4)]
        talkers.append(np.concatenate(parts))
    n = min(len(t) for t in talkers)
    x = sum(np.roll(t[:n], 2000 * i) / np.sqrt(np.mean(t[:n] ** 2)) for i, t in enumerate(talkers))
    return x / np.sqrt(np.mean(x**2))


def make_noise(kind: str, n: int, rng: np.random.Generator, babble: np.ndarray) -> np.ndarray:
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        return colored_noise(n, 1.0, rng)
    if kind == "brown":
        return colored_noise(n, 2.0, rng)
    if kind == "babble":
        start = int(rng.integers(0, len(babble)))
        x = np.tile(babble, n // len(babble) + 2)[start : start + n]
        return x / np.sqrt(np.mean(x**2))
    raise ValueError(kind)


def clean_utterances(count: int, workdir: Path, rate: int = RATE) -> list[tuple[str, np.ndarray]]:
    """`count` clean clips, each 0.5 s silence + two sentences + 0.3 s silence, peak -3 dBFS."""
    engines = set(available_engines())
    voices = [v for v in CLEAN_VOICES if v[0] in engines]
    clips = []
    alsa = alsa_phrases(rate)
    spoken = 0
    for i in range(count):
        if alsa and i % 4 == 3:  # every fourth clip: real recorded speech
            name, a = alsa[(i // 4) % len(alsa)]
            b = alsa[(i // 4 + 1) % len(alsa)][1]
            speech = np.concatenate([a, np.zeros(rate // 5), b])
        else:
            engine, voice = voices[spoken % len(voices)]
            name = f"{engine}:{voice}"
            s1 = tts(engine, voice, CLEAN_SENTENCES[(2 * spoken) % len(CLEAN_SENTENCES)], workdir, rate)
            s2 = tts(engine, voice, CLEAN_SENTENCES[(2 * spoken + 1) % len(CLEAN_SENTENCES)], workdir, rate)
            spoken += 1
            speech = np.concatenate([s1, np.zeros(rate // 5), s2])
        x = np.concatenate([np.zeros(rate // 2), speech, np.zeros(int(0.3 * rate))])
        clips.append((name, x * (10 ** (-3 / 20) / np.max(np.abs(x)))))
    return clips


def mix(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """clean + noise scaled so that the clip's speech-to-noise power ratio is `snr_db`
    (speech power over the frames where speech is active, -40 dB gate)."""
    frame = 160
    e = np.convolve(clean**2, np.ones(frame) / frame, mode="same")
    active = e > np.max(e) * 1e-4
    p_speech = np.mean(clean[active] ** 2)
    scale = np.sqrt(p_speech / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return clean + scale * noise


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="rtaudio-denoise-bench-"))
