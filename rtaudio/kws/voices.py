"""Text-to-speech voices from Debian packages, with an on-disk cache.

Training voices (the only ones training and tuning may use): every espeak-ng voice and variant,
flite `kal16` and `slt`, festival `kal_diphone`, `ked_diphone`, `cmu_us_slt_arctic_hts`.
`EVAL_VOICES` (flite `awb`, `rms`, `kal`) are held out for independent evaluation only.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import RtAudioError

RATE = 16000
FESTIVAL_TRAIN = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
FLITE_TRAIN = ("kal16", "slt")
FLITE_EVAL = ("awb", "rms", "kal")
ESPEAK_ENGLISH = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
ESPEAK_FOREIGN = ("de", "fr", "es", "it", "nl", "sv", "pl", "pt", "da", "fi", "hi", "ru")


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak", "flite" or "festival"
    name: str  # espeak: "lang+variant"; flite / festival: voice name
    speed: float = 1.0  # >1 speaks faster
    pitch: int = 50  # espeak pitch 0..99 (others ignore it)

    def key(self, text: str) -> str:
        return hashlib.sha1(
            f"{self.engine}|{self.name}|{self.speed:.3f}|{self.pitch}|{text}".encode()
        ).hexdigest()


def cache_dir() -> Path:
    root = os.environ.get("RTAUDIO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rtaudio")
    return Path(root) / "tts"


@lru_cache(maxsize=1)
def espeak_variants() -> tuple[str, ...]:
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True)
    names = [ln.split()[4].split("/", 1)[1] for ln in out.stdout.splitlines()[1:] if "!v/" in ln]
    return tuple(sorted(set(names)))


def available_engines() -> dict[str, bool]:
    return {
        e: shutil.which(b) is not None
        for e, b in (("espeak", "espeak-ng"), ("flite", "flite"), ("festival", "festival"))
    }


def random_training_voice(rng: np.random.Generator) -> Voice:
    """A training voice with random speed/pitch: espeak-ng (English and foreign voices with all
    variants), flite kal16/slt, festival kal/ked/slt-hts."""
    u = rng.random()
    speed = float(rng.uniform(0.8, 1.25))
    if u < 0.5:
        lang = (
            ESPEAK_ENGLISH[rng.integers(len(ESPEAK_ENGLISH))]
            if u < 0.42
            else ESPEAK_FOREIGN[rng.integers(len(ESPEAK_FOREIGN))]
        )
        variants = espeak_variants()
        variant = variants[rng.integers(len(variants))] if rng.random() < 0.85 else ""
        name = f"{lang}+{variant}" if variant else lang
        return Voice("espeak", name, round(speed, 2), int(rng.integers(20, 80)))
    if u < 0.7:
        return Voice("flite", FLITE_TRAIN[rng.integers(2)], round(speed, 2))
    # festival synthesises one batch per (voice, speed): a few speeds keep the batches large
    return Voice(
        "festival", FESTIVAL_TRAIN[rng.integers(3)], float(rng.choice([0.85, 0.95, 1.05, 1.15, 1.25]))
    )


_SAYABLE = re.compile(r"^[A-Za-z][A-Za-z' -]*$")


def check_sayable(text: str, what: str = "keyword") -> str:
    """Normalise a text for TTS or raise: only letters, spaces, apostrophes and hyphens."""
    t = " ".join(text.strip().split())
    if not t:
        raise RtAudioError(f"{what} is empty")
    if not _SAYABLE.match(t) or not re.search(r"[A-Za-z]{1}", t):
        raise RtAudioError(
            f"{what} {text!r}: the TTS voices cannot say it (use English words spelled with letters a-z;"
            " write numbers as words)"
        )
    return t.lower()


def _to_rate(y: np.ndarray, rate: int) -> np.ndarray:
    if y.ndim > 1:
        y = y.mean(axis=1)
    y = y.astype(np.float32)
    return soxr.resample(y, rate, RATE).astype(np.float32) if rate != RATE else y


def _run_espeak(v: Voice, text: str) -> np.ndarray:
    wpm = int(round(170 * v.speed))
    out = subprocess.run(
        ["espeak-ng", "-v", v.name, "-s", str(wpm), "-p", str(v.pitch), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=60,
    )
    y, rate = sf.read(io.BytesIO(out.stdout), dtype="float32")
    return _to_rate(y, rate)


def _run_flite(v: Voice, text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "o.wav")
        subprocess.run(
            ["flite", "-voice", v.name, "--setf", f"duration_stretch={1 / v.speed:.3f}"]
            + ["-t", text, "-o", path],
            capture_output=True,
            check=True,
            timeout=60,
        )
        y, rate = sf.read(path, dtype="float32")
    return _to_rate(y, rate)


def _run_festival(voice: str, speed: float, texts: list[str]) -> list[np.ndarray]:
    """One festival process synthesises many texts with one voice."""
    with tempfile.TemporaryDirectory() as d:
        lines = [f"(voice_{voice})", f"(Parameter.set 'Duration_Stretch {1 / speed:.3f})"]
        for i, t in enumerate(texts):
            safe = t.replace("\\", " ").replace('"', " ")
            lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{safe}")) "{d}/{i}.wav" \'riff)')
        script = os.path.join(d, "s.scm")
        Path(script).write_text("\n".join(lines) + "\n")
        subprocess.run(["festival", "-b", script], capture_output=True, check=True, timeout=600)
        outs = []
        for i in range(len(texts)):
            y, rate = sf.read(f"{d}/{i}.wav", dtype="float32")
            outs.append(_to_rate(y, rate))
    return outs


def synthesize(
    requests: list[tuple[Voice, str]], workers: int = 2, cache: Path | None = None
) -> list[np.ndarray]:
    """Audio (float32, 16 kHz, mono) for each (voice, text); cached on disk as int16 .npy."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    results: list[np.ndarray | None] = [None] * len(requests)
    todo: list[int] = []
    for i, (v, t) in enumerate(requests):
        p = cache / f"{v.key(t)}.npy"
        if p.exists():
            results[i] = np.load(p).astype(np.float32) / 32767.0
        else:
            todo.append(i)

    def store(i: int, y: np.ndarray) -> None:
        v, t = requests[i]
        q = np.clip(np.round(y * 32767.0), -32767, 32767).astype(np.int16)
        tmp = cache / f"{v.key(t)}.{os.getpid()}.tmp.npy"
        np.save(tmp, q)
        os.replace(tmp, cache / f"{v.key(t)}.npy")
        results[i] = q.astype(np.float32) / 32767.0

    fest: dict[tuple[str, float], list[int]] = {}
    single = []
    for i in todo:
        v = requests[i][0]
        (fest.setdefault((v.name, v.speed), []) if v.engine == "festival" else single).append(i)

    def one(i: int) -> None:
        v, t = requests[i]
        try:
            y = _run_espeak(v, t) if v.engine == "espeak" else _run_flite(v, t)
        except (subprocess.SubprocessError, OSError) as e:
            raise RtAudioError(f"TTS {v.engine} voice {v.name!r} failed on {t!r}: {e}") from None
        store(i, y)

    def group(item: tuple[tuple[str, float], list[int]]) -> None:
        (name, speed), idx = item
        try:
            ys = _run_festival(name, speed, [requests[i][1] for i in idx])
        except (subprocess.SubprocessError, OSError) as e:
            raise RtAudioError(f"TTS festival voice {name!r} failed: {e}") from None
        for i, y in zip(idx, ys, strict=True):
            store(i, y)

    with ThreadPoolExecutor(max(1, workers)) as ex:
        list(ex.map(group, fest.items()))
        list(ex.map(one, single))
    return results  # type: ignore[return-value]


def trim(y: np.ndarray, rel_db: float = -35.0, pad: int = 160) -> np.ndarray:
    """Cut leading/trailing silence: keep from the first to the last 10 ms frame whose energy is
    within `rel_db` of the loudest frame."""
    n = len(y) // 160
    if n == 0:
        return y
    e = (y[: n * 160].reshape(n, 160).astype(np.float64) ** 2).mean(axis=1)
    if e.max() <= 0:
        return y[:0]
    on = np.flatnonzero(e >= e.max() * 10 ** (rel_db / 10))
    a = max(0, on[0] * 160 - pad)
    b = min(len(y), (on[-1] + 1) * 160 + pad)
    return y[a:b]
