"""Train the denoiser's per-band gain GRU (`denoise method=gru`) on TTS speech and synthetic noise,
for one sample rate (16 kHz: every band; 48 kHz: the bands below 8 kHz, the classical gains above).

Speech: only the training voices of `rtaudio.kws.voices` (`random_training_voice`: espeak-ng English
and foreign voices with all variants and random speed/pitch, flite kal16/slt, festival kal_diphone,
ked_diphone, cmu_us_slt_arctic_hts; never the held-out flite awb/rms/kal), synthesised through its
disk cache, saying sentences that the benchmark (benchmarks/denoise_corpus.py) does not use. Noise:
coloured noise of random slope, amplitude-modulated and switching coloured noise, babble of 2-8
talkers from the training voices, mains hum with harmonics; SNR -5..25 dB over active speech.
Everything is made at 16 kHz (the TTS rate) and resampled for the 48 kHz model.

The features are made by the stage itself (its wavelet-packet analysis and causal noise tracker);
the target is the ideal ratio mask per band, sqrt(S / (S + N)), from the clean and noise parts through
the same analysis. The loss is the mask's MSE plus a term on the log band power of the output against
the clean band power (g^2 * |X|^2 vs |S|^2, in bels, floored 30 dB under the clip's mean speech band
power), which weighs speech distortion and residual noise on the level scale that PESQ judges.
Each training sequence starts from a zero hidden state at the start of a clip, as the stage does.

    nice -n 10 python scripts/train_denoise_gru.py --rate 16000 --clips 640 --epochs 24   # ~23 min
    nice -n 10 python scripts/train_denoise_gru.py --rate 48000 --clips 512 --epochs 20   # ~20 min

(times on a shared core; the TTS audio is cached on disk after the first run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soxr
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from denoise_corpus import BABBLE_SENTENCES, CLEAN_SENTENCES, colored_noise  # noqa: E402

from rtaudio.dsp.gain_net import MODEL_DIR, features, model_name  # noqa: E402
from rtaudio.kws.voices import random_training_voice, synthesize, trim  # noqa: E402
from rtaudio.stage import AudioFormat  # noqa: E402
from rtaudio.stages.denoise import Denoise  # noqa: E402

TTS_RATE = 16000
NET_TOP_HZ = 8000.0  # the 48 kHz model covers the bands below this
SENTENCES = [
    "A cramp is no small danger on a swim.", "He said the same phrase thirty times.",
    "Pluck the bright rose without leaves.", "Two plus seven is less than ten.",
    "The wide road shimmered in the hot sun.", "The lazy cow lay in the cool grass.",
    "Lift the square stone over the fence.", "The rope will bind the seven books at once.",
    "Hop over the fence and plunge in.", "The friendly gang left the drug store.",
    "Mesh wire keeps chicks inside.", "The frosty air passed through the coat.",
    "The crooked maze failed to fool the mouse.", "Adding fast leads to wrong sums.",
    "The show was a flop from the very start.", "A saw is a tool used for making boards.",
    "The wagon moved on well oiled wheels.", "March the soldiers past the next hill.",
    "A cup of sugar makes sweet fudge.", "Place a rosebush near the porch steps.",
    "Both lost their lives in the raging storm.", "We talked of the side show in the circus.",
    "Use a pencil to write the first draft.", "He ran half way to the hardware store.",
    "The clock struck to mark the third period.", "A small creek cut across the field.",
    "Cars and busses stalled in snow drifts.", "The set of china hit the floor with a crash.",
    "This is a grand season for hikes on the road.", "The dune rose from the edge of the water.",
    "Those words were the cue for the actor to leave.", "A yacht slid around the point into the bay.",
    "The two met while playing on the sand.", "The ink stain dried on the finished page.",
    "The walled town was seized without a fight.", "The lease ran out in sixteen weeks.",
    "A tame squirrel makes a nice pet.", "The horn of the car woke the sleeping cop.",
    "Sunday is the best part of the week.", "Add the column and put the sum here.",
    "We admire and love a good cook.", "There the flood mark is ten inches.",
    "He carved a head from the round block of marble.", "She has a smart way of wearing clothes.",
    "The fruit peel was cut in thick slices.", "Read verse out loud for pleasure.",
    "Oak is strong and also gives shade.", "Open the crate but do not break the glass.",
    "The kite flew wildly in the high wind.", "A fence cuts through the corner lot.",
    "The pipe began to rust while new.", "Mark the spot with a sign painted red.",
    "Take two shares as a fair profit.", "The hat brim was wide and too droopy.",
    "The lobes of her ears were pierced to hold rings.", "Tea served from the brown jug is tasty.",
    "Write a fond note to the friend you cherish.", "Clothes and lodging are free to new men.",
    "We frown when events take a bad turn.", "The beauty of the view stunned the young boy.",
    "Wipe the grease off his dirty face.", "The heart beat strongly and with firm strokes.",
    "Bring your problems to the wise chief.", "The term ended in late June that year.",
    "Hang tinsel from both branches.", "Pour the stew from the pot into the plate.",
    "Ten pins were set in order.", "The bill was paid every third week.",
    "Paper is scarce so write with much care.", "A shower of dirt fell from the hot pipes.",
    "Steam hissed from the broken valve.", "The child almost hurt the small dog.",
    "Please call me back after lunch tomorrow.", "The train to the north leaves at seven.",
    "Turn the volume down a little, thank you.", "Is anybody there, I can hardly hear you.",
    "My phone number starts with four and nine.", "Let us meet at the station near the bridge.",
]
assert not set(SENTENCES) & set(CLEAN_SENTENCES + BABBLE_SENTENCES), "benchmark sentences leaked"


def speech_pool(n_voices: int, per_voice: int, seed: int) -> list[list[np.ndarray]]:
    """`per_voice` trimmed utterances from each of `n_voices` random training voices (16 kHz)."""
    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(n_voices):
        v = random_training_voice(rng)
        for t in rng.choice(SENTENCES, per_voice, replace=False):
            requests.append((v, str(t)))
    audio = synthesize(requests, workers=2)
    out = [trim(a.astype(np.float64)) for a in audio]
    return [out[i : i + per_voice] for i in range(0, len(out), per_voice)]


def active_power(x: np.ndarray) -> float:
    """Mean power over the frames where speech is active (-40 dB gate), as the benchmark's mix()."""
    e = np.convolve(x**2, np.ones(160) / 160, mode="same")
    return float(np.mean(x[e > np.max(e) * 1e-4] ** 2))


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x**2) + 1e-20)


def make_babble(pool: list[list[np.ndarray]], talkers: int, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    for _ in range(talkers):
        group = pool[rng.integers(len(pool))]
        parts, total = [], 0
        while total < n + TTS_RATE:
            u = group[rng.integers(len(group))]
            parts += [u, np.zeros(int(rng.integers(0, 3000)))]
            total += len(u) + len(parts[-1])
        t = np.concatenate(parts)
        start = int(rng.integers(0, len(t) - n))
        out += unit(t[start : start + n]) * 10 ** (rng.uniform(-4, 4) / 20)
    return unit(out)


def make_noise(n: int, rng: np.random.Generator, babble_pool: list[list[np.ndarray]]) -> np.ndarray:
    kind = rng.choice(6, p=[0.3, 0.15, 0.1, 0.25, 0.1, 0.1])
    t = np.arange(n) / TTS_RATE
    if kind == 0:  # stationary coloured noise, random slope (0 white .. 2.2 beyond brown)
        return colored_noise(n, rng.uniform(0.0, 2.2), rng)
    if kind == 1:  # slowly modulated coloured noise
        mod = 1 + rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * rng.uniform(0.1, 2) * t + rng.uniform(0, 6))
        return unit(colored_noise(n, rng.uniform(0.0, 2.0), rng) * mod)
    if kind == 2:  # a change of noise in the middle of the clip
        k = int(rng.integers(n // 4, 3 * n // 4))
        a = colored_noise(n, rng.uniform(0.0, 2.2), rng)
        b = colored_noise(n, rng.uniform(0.0, 2.2), rng) * 10 ** (rng.uniform(-10, 10) / 20)
        return unit(np.concatenate([a[:k], b[k:]]))
    if kind == 3:  # babble of 2-8 talkers
        return make_babble(babble_pool, int(rng.integers(2, 9)), n, rng)
    if kind == 4:  # mains hum with harmonics over a little coloured noise
        f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)
        hum = sum(rng.uniform(0.1, 1) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6))
                  for k in range(1, 12))
        return unit(unit(hum) + 10 ** (rng.uniform(-20, 0) / 20) * colored_noise(n, rng.uniform(0, 2), rng))
    # babble plus coloured noise
    return unit(make_babble(babble_pool, int(rng.integers(3, 9)), n, rng)
                + 10 ** (rng.uniform(-10, 5) / 20) * colored_noise(n, rng.uniform(0, 2), rng))


class Analyser:
    """Band powers and the tracked noise per frame, exactly as the stage computes them."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        st = Denoise()
        st.setup(AudioFormat(rate, 1))
        self.config = {"rate": rate, "n": st.n, "hop": st.hop, "overlap": st.overlap, "wavelet": st.wavelet,
                       "bands": st.bank.bands}
        self.net_bands = st.bank.bands if rate <= 2 * NET_TOP_HZ else int(
            np.ceil(NET_TOP_HZ / (rate / 2 / st.bank.bands)))

    def __call__(self, x: np.ndarray, track: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if self.rate != TTS_RATE:
            x = soxr.resample(x, TTS_RATE, self.rate)
        st = Denoise()
        st.setup(AudioFormat(self.rate, 1, len(x)))
        st.hist = np.concatenate([st.hist, x[None]], axis=1)
        count = (st.hist.shape[1] - st.n) // st.hop + 1
        _, power = st.band_powers(count)
        k = self.net_bands
        if not track:
            return power[:, 0, :k], None
        noise_est = np.stack([st.track(power[i]) for i in range(count)])
        return power[:, 0, :k], noise_est[:, 0, :k]


def make_set(n_clips: int, seconds: float, seed: int, pool, babble_pool, analyse: Analyser):
    rng = np.random.default_rng(seed)
    feats, targets, extra = [], [], []
    n = int(seconds * TTS_RATE)
    for _ in range(n_clips):
        group = pool[rng.integers(len(pool))]
        parts = [np.zeros(int(rng.integers(1600, 9600)))]
        while sum(len(p) for p in parts) < n:
            parts += [group[rng.integers(len(group))], np.zeros(int(rng.integers(800, 8000)))]
        speech = np.concatenate(parts)[:n]
        speech *= 10 ** (rng.uniform(-32, -12) / 20) / np.sqrt(active_power(speech))
        nz = make_noise(n, rng, babble_pool)
        nz *= np.sqrt(active_power(speech)) * 10 ** (-rng.uniform(-5, 25) / 20)
        power, noise_est = analyse(speech + nz, True)
        s_pow, n_pow = analyse(speech, False)[0], analyse(nz, False)[0]
        feats.append(features(power, noise_est))
        targets.append(np.sqrt(s_pow / (s_pow + n_pow + 1e-20)))
        # for the log-power loss: the noisy and clean band powers, in units of the clip's mean speech power
        ref = np.mean(s_pow) + 1e-20
        extra.append(np.stack([power / ref, s_pow / ref], axis=-1))
    as_t = lambda a: torch.tensor(np.array(a), dtype=torch.float32)  # noqa: E731
    return as_t(feats), as_t(targets), as_t(extra)


class GainNet(torch.nn.Module):
    def __init__(self, n_in: int, bands: int, hidden: int) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(n_in, hidden)
        self.gru = torch.nn.GRU(hidden, hidden, batch_first=True)
        self.out = torch.nn.Linear(hidden, bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(torch.tanh(self.inp(x)))
        return torch.sigmoid(self.out(h))


def loss_fn(g: torch.Tensor, target: torch.Tensor, extra: torch.Tensor, weight: float) -> torch.Tensor:
    mse = torch.mean((g - target) ** 2)
    if weight == 0:
        return mse
    eps = 1e-3  # 30 dB under the clip's mean speech band power
    out = torch.log10(g**2 * extra[..., 0] + eps)
    ref = torch.log10(extra[..., 1] + eps)
    return mse + weight * torch.mean((out - ref) ** 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=16000, choices=(16000, 48000))
    ap.add_argument("--clips", type=int, default=640)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--voices", type=int, default=240, help="random training voices in the speech pool")
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--log-weight", type=float, default=0.05, help="weight of the log band power loss")
    ap.add_argument("--gain-exponent", type=float, default=1.5,
                    help="the stage raises the network's gains to this power (written to the JSON); 1.5 was"
                    " chosen on held-out mixtures of other training-voice draws, not on the benchmark")
    ap.add_argument("--out", type=Path, default=MODEL_DIR)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    t0 = time.time()
    pool = speech_pool(args.voices, 4, seed=1)
    babble_pool = speech_pool(max(8, args.voices // 4), 4, seed=3)
    val_pool = speech_pool(max(8, args.voices // 10), 4, seed=2)  # other voice draws for validation
    print(f"speech: {sum(map(len, pool))} + {sum(map(len, babble_pool))} babble + "
          f"{sum(map(len, val_pool))} validation utterances ({time.time() - t0:.0f} s)", flush=True)
    analyse = Analyser(args.rate)
    x, y, e = make_set(args.clips, args.seconds, 11, pool, babble_pool, analyse)
    xv, yv, ev = make_set(max(16, args.clips // 10), args.seconds, 12, val_pool, babble_pool, analyse)
    print(f"data: {tuple(x.shape)} train, {tuple(xv.shape)} validation ({time.time() - t0:.0f} s)",
          flush=True)
    net = GainNet(x.shape[-1], y.shape[-1], args.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    best, best_state, best_mse = float("inf"), None, float("nan")
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(x.shape[0])
        for i in range(0, len(perm), 16):
            idx = perm[i : i + 16]
            loss = loss_fn(net(x[idx]), y[idx], e[idx], args.log_weight)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
        sched.step()
        net.eval()
        with torch.no_grad():
            gv = net(xv)
            val = float(loss_fn(gv, yv, ev, args.log_weight))
            mse = float(torch.mean((gv - yv) ** 2))
        if val < best:
            best, best_mse = val, mse
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        print(f"epoch {epoch + 1}: train {loss.item():.4f} validation {val:.4f} (mask MSE {mse:.4f})"
              f" ({time.time() - t0:.0f} s)", flush=True)
    config = dict(analyse.config, net_bands=analyse.net_bands, hidden=args.hidden,
                  gain_exponent=args.gain_exponent,
                  validation_loss=best,
                  validation_mse=best_mse, log_weight=args.log_weight, clips=args.clips, epochs=args.epochs,
                  seconds=args.seconds,
                  trained_on=f"{args.voices} random training voices of rtaudio.kws.voices (espeak-ng English"
                  " and foreign voices and variants, flite kal16/slt, festival kal_diphone/ked_diphone/"
                  "cmu_us_slt_arctic_hts; not flite awb/rms/kal), sentences not in the benchmark; coloured,"
                  " modulated, switching, babble (2-8 training voices), hum noise; SNR -5..25 dB")
    args.out.mkdir(parents=True, exist_ok=True)
    name = model_name(args.rate)
    torch.save(best_state, args.out / f"{name}.pt")
    (args.out / f"{name}.json").write_text(json.dumps(config, indent=1) + "\n")
    print(f"wrote {args.out / name}.pt/.json, validation loss {best:.4f}, mask MSE {best_mse:.4f}"
          f" ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
