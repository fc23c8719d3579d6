"""Side-by-side denoising benchmark: rtaudio's streaming wavelet-packet denoiser against RNNoise
(pyrnnoise), WebRTC NS (webrtc-noise-gain, levels 1-4), noisereduce and an offline VisuShrink.

Clean speech: TTS (espeak-ng, flite, festival; training voices only, with sentences that training never
uses) and the alsa-utils spoken phrases; noises white, pink,
brown and TTS babble; SNR 0/5/10/20 dB (active-speech power). Scored at 16 kHz: SI-SDR improvement,
PESQ (wideband), STOI; CPU real-time factor on one core (process time, BLAS/OpenMP threads = 1);
algorithmic latency. Prints one table of means over noises per SNR; `--markdown FILE` writes it too.

    nice -n 10 python benchmarks/denoise.py --quick            # ~5 minutes
    nice -n 10 python benchmarks/denoise.py --clips 8 --markdown out/denoise.md
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pywt  # noqa: E402
import soxr  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from denoise_corpus import RATE, babble_source, clean_utterances, make_noise, mix, workdir  # noqa: E402

from rtaudio.stage import AudioFormat  # noqa: E402
from rtaudio.stages.denoise import Denoise  # noqa: E402

NOISES = ("white", "pink", "brown", "babble")
SNRS = (0, 5, 10, 20)


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    a = np.dot(est, ref) / np.dot(ref, ref)
    t = a * ref
    return float(10 * np.log10(np.sum(t**2) / max(np.sum((est - t) ** 2), 1e-20)))


# -- methods: each maps a 16 kHz noisy signal (and its noise-only clip) to a 16 kHz output --------
class Method:
    def __init__(self, name: str, fn: Callable, latency_ms: float | None, lag: int | None = None):
        self.name, self.fn, self.latency_ms, self.lag = name, fn, latency_ms, lag
        self.cpu = 0.0
        self.audio_s = 0.0

    def __call__(self, noisy: np.ndarray, noise_clip: np.ndarray) -> np.ndarray:
        t0 = time.process_time()
        y = self.fn(noisy, noise_clip)
        self.cpu += time.process_time() - t0
        self.audio_s += len(noisy) / RATE
        lag = self.lag or 0
        y = np.concatenate([y[lag:], np.zeros(lag)])[: len(noisy)]
        return np.pad(y, (0, len(noisy) - len(y)))


def ours(rate: int, method: str = "classical", block_ms: float = 10.0) -> Callable:
    def run(x: np.ndarray, _noise: np.ndarray) -> np.ndarray:
        xin = x if rate == RATE else soxr.resample(x, RATE, rate)
        st = Denoise(method=method)
        st.setup(AudioFormat(rate, 1))
        lat = st.latency
        xin = np.concatenate([xin, np.zeros(lat)]).astype(np.float32)[:, None]
        b = round(block_ms * rate / 1000)  # fed in device-sized blocks, as when live
        y = np.concatenate([st.run(xin[i : i + b]) for i in range(0, len(xin), b)])[lat:, 0]
        return y.astype(np.float64) if rate == RATE else soxr.resample(y.astype(np.float64), rate, RATE)

    return run


def rnnoise(x: np.ndarray, _noise: np.ndarray) -> np.ndarray:
    from pyrnnoise.rnnoise import FRAME_SIZE, create, destroy, process_mono_frame

    x48 = np.clip(soxr.resample(x, RATE, 48000), -1, 1)
    state = create()
    try:
        frames = [process_mono_frame(state, x48[i : i + FRAME_SIZE].astype(np.float32))[0]
                  for i in range(0, len(x48), FRAME_SIZE)]
    finally:
        destroy(state)
    y = np.concatenate(frames).astype(np.float64) / 32767
    return soxr.resample(y, 48000, RATE)


def webrtc(level: int) -> Callable:
    def run(x: np.ndarray, _noise: np.ndarray) -> np.ndarray:
        from webrtc_noise_gain import AudioProcessor

        proc = AudioProcessor(0, level)
        pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
        pcm = np.pad(pcm, (0, -len(pcm) % 160))
        out = [np.frombuffer(proc.Process10ms(pcm[i : i + 160].tobytes()).audio, np.int16)
               for i in range(0, len(pcm), 160)]
        return np.concatenate(out).astype(np.float64) / 32767

    return run


def noisereduce(stationary: bool, with_clip: bool) -> Callable:
    def run(x: np.ndarray, noise: np.ndarray) -> np.ndarray:
        import noisereduce as nr

        kw = {"y_noise": noise} if with_clip else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return nr.reduce_noise(y=x, sr=RATE, stationary=stationary, **kw)

    return run


def visushrink(x: np.ndarray, _noise: np.ndarray) -> np.ndarray:
    """Whole-file DWT, noise from the finest level's MAD, universal soft threshold (Donoho)."""
    coeffs = pywt.wavedec(x, "db8", level=5, mode="periodization")
    sigma = np.median(np.abs(coeffs[-1])) / 0.6745
    thr = sigma * np.sqrt(2 * np.log(len(x)))
    coeffs[1:] = [pywt.threshold(c, thr, "soft") for c in coeffs[1:]]
    return pywt.waverec(coeffs, "db8", mode="periodization")[: len(x)]


def measure_lag(fn: Callable, clean: np.ndarray, rng: np.random.Generator) -> int:
    """A peer's signal delay in samples at 16 kHz, from the cross-correlation peak on lightly
    noisy speech (searched 0-100 ms)."""
    x = mix(clean, rng.standard_normal(len(clean)), 30.0)
    y = fn(x, rng.standard_normal(RATE))
    y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
    lags = np.arange(0, RATE // 10)
    c = [np.dot(y[k:], x[: len(x) - k]) for k in lags]
    return int(lags[int(np.argmax(c))])


def methods(clean0: np.ndarray, rng: np.random.Generator, rate48: bool, only: list[str] | None = None
            ) -> list[Method]:
    st16, st48 = Denoise(), Denoise()
    st16.setup(AudioFormat(RATE, 1))
    st48.setup(AudioFormat(48000, 1))
    out = [Method("input (noisy)", lambda x, n: x, 0.0),
           Method("rtaudio denoise 16k", ours(RATE), 1000 * st16.latency / RATE),
           Method("rtaudio denoise method=gru 16k", ours(RATE, "gru"), 1000 * st16.latency / RATE)]
    if rate48:
        out.append(Method("rtaudio denoise 48k", ours(48000), 1000 * st48.latency / 48000))
        out.append(Method("rtaudio denoise method=gru 48k", ours(48000, "gru"), 1000 * st48.latency / 48000))
    peers = [("RNNoise (pyrnnoise, 48k)", rnnoise, 480)]
    peers += [(f"WebRTC NS level {lv}", webrtc(lv), 160) for lv in (1, 2, 3, 4)]
    if only:
        keep = lambda name: name.startswith("input") or any(k.lower() in name.lower() for k in only)  # noqa: E731
        out = [m for m in out if keep(m.name)]
        peers = [p for p in peers if keep(p[0])]
    for name, fn, frame in peers:
        lag = measure_lag(fn, clean0, rng)
        # algorithmic latency: the signal delay plus the wait to fill one frame (frame - 1 samples)
        out.append(Method(name, fn, 1000 * (lag + frame * RATE / (48000 if frame == 480 else RATE) - 1)
                          / RATE, lag))
    out += [Method("noisereduce stationary", noisereduce(True, False), None),
            Method("noisereduce stationary + noise clip", noisereduce(True, True), None),
            Method("noisereduce non-stationary", noisereduce(False, False), None),
            Method("VisuShrink (whole file)", visushrink, None)]
    return [m for m in out if not only or keep(m.name)]


def score(clean: np.ndarray, noisy: np.ndarray, out: np.ndarray) -> tuple[float, float, float]:
    from pesq import pesq
    from pystoi import stoi

    out = np.nan_to_num(out)
    try:
        p = float(pesq(RATE, clean, out, "wb"))
    except Exception:  # pesq raises on outputs with no utterance left
        p = float("nan")
    return si_sdr(clean, out) - si_sdr(clean, noisy), p, float(stoi(clean, out, RATE))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 clips instead of --clips")
    ap.add_argument("--clips", type=int, default=8, help="clean clips (every 4th is an alsa phrase)")
    ap.add_argument("--no-48k", action="store_true", help="skip the 48 kHz runs of rtaudio denoise")
    ap.add_argument("--markdown", type=Path, help="also write the table as markdown here")
    ap.add_argument("--snrs", type=lambda s: tuple(int(v) for v in s.split(",")), default=SNRS,
                    help="comma-separated SNRs in dB (default 0,5,10,20)")
    ap.add_argument("--methods", nargs="+", metavar="TEXT",
                    help="only the methods whose name contains one of these (the input is always scored)")
    ap.add_argument("--decimals", type=int, default=2, help="PESQ and STOI decimals in the table")
    args = ap.parse_args(argv)
    n_clips = 2 if args.quick else args.clips
    rng = np.random.default_rng(2026)
    wd = workdir()
    babble = babble_source(wd)
    clips = clean_utterances(max(n_clips, 4), wd)
    if n_clips < 4:  # keep one alsa phrase in the quick set when there is one
        clips = [clips[0], clips[3]][:n_clips]
    ms = methods(clips[0][1], rng, not args.no_48k, args.methods)
    results: dict[tuple[str, int, str], list[tuple[float, float, float]]] = {}
    t0 = time.time()
    for snr in args.snrs:
        for kind in NOISES:
            for ci, (_name, clean) in enumerate(clips):
                nrng = np.random.default_rng(1000 * ci + 10 * snr + NOISES.index(kind))
                noise = make_noise(kind, len(clean) + 2 * RATE, nrng, babble)
                noisy = mix(clean, noise[: len(clean)], snr)
                clip = noise[len(clean) :] * (noisy - clean).std() / noise[: len(clean)].std()
                for m in ms:
                    results.setdefault((m.name, snr, kind), []).append(score(clean, noisy, m(noisy, clip)))
        print(f"  {snr} dB done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    table = render(ms, results, clips, args.snrs, args.decimals)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    return 0


def render(ms: list[Method], results: dict, clips: list, snrs: tuple[int, ...] = SNRS,
           decimals: int = 2) -> str:
    head = "| method | " + " | ".join(f"{s} dB SI-SDRi / PESQ / STOI" for s in snrs)
    head += f" | babble SI-SDRi ({'/'.join(map(str, snrs))}) | latency ms | RTF |"
    lines = [head, "|" + "---|" * (len(snrs) + 4)]
    d = decimals
    for m in ms:
        cells = []
        for snr in snrs:
            per_noise = [np.nanmean(np.array(results[(m.name, snr, k)]), axis=0) for k in NOISES]
            si, pq, so = np.nanmean(np.array(per_noise), axis=0)
            cells.append(f"{si:+.1f} / {pq:.{d}f} / {so:.{d}f}")
        bab = "/".join(f"{np.mean([r[0] for r in results[(m.name, s, 'babble')]]):+.1f}" for s in snrs)
        lat = "offline" if m.latency_ms is None else f"{m.latency_ms:.1f}"
        rtf = m.cpu / m.audio_s if m.audio_s else float("nan")
        lines.append(f"| {m.name} | " + " | ".join(cells) + f" | {bab} | {lat} | {rtf:.3f} |")
    names = ", ".join(n for n, _ in clips)
    lines.append("")
    lines.append(f"Means over {len(NOISES)} noises ({', '.join(NOISES)}) x {len(clips)} clips ({names}); "
                 "SI-SDRi in dB; RTF = CPU seconds per audio second, one thread.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
