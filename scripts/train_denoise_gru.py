"""Train the denoiser's per-band gain GRU (`denoise method=gru`) on TTS speech and synthetic noise.

Speech: espeak-ng voice variants and sentences that the benchmark (benchmarks/denoise.py) does not
use; flite and festival voices are all in the benchmark (as speech or babble), so they are left out
here to keep the test honest. Noise: coloured noise of random slope, amplitude-modulated noise, and
babble of other espeak-ng voices; SNR -5..25 dB. The features are made by the stage itself (its
wavelet-packet analysis and causal noise tracker); the target is the ideal ratio mask per band,
sqrt(S / (S + N)), from the clean and noise parts through the same analysis. Each training sequence
starts from a zero hidden state at the start of a clip, as the stage does at the start of a stream.

    nice -n 10 python scripts/train_denoise_gru.py            # ~10 minutes on one core
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from denoise_corpus import colored_noise, tts, workdir  # noqa: E402

from rtaudio.dsp.gain_net import MODEL_DIR, MODEL_NAME, features  # noqa: E402
from rtaudio.stage import AudioFormat  # noqa: E402
from rtaudio.stages.denoise import Denoise  # noqa: E402

RATE = 16000
VOICES = ["en-us+m1", "en-us+m2", "en-us+m4", "en-us+f1", "en-us+f4", "en-gb+m5", "en-gb+f5",
          "en-gb-x-gbclan+m6", "en-029", "en-gb-x-gbcwmd", "en-us+m7", "en-gb+f1"]
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
]


def speak(rng: np.random.Generator, wd: Path, voice: str) -> np.ndarray:
    texts = rng.choice(SENTENCES, 2, replace=False)
    parts = [tts("espeak-ng", voice, str(t), wd) for t in texts]
    return np.concatenate([parts[0], np.zeros(int(rng.integers(800, 4000))), parts[1]])


def noise(kind: int, n: int, rng: np.random.Generator, babble: np.ndarray) -> np.ndarray:
    if kind == 0:  # coloured, random slope
        return colored_noise(n, rng.uniform(0.0, 2.2), rng)
    if kind == 1:  # modulated coloured noise (slow level changes)
        t = np.arange(n) / RATE
        mod = 1 + 0.6 * np.sin(2 * np.pi * rng.uniform(0.1, 2) * t + rng.uniform(0, 6))
        x = colored_noise(n, rng.uniform(0.0, 2.0), rng) * mod
        return x / np.sqrt(np.mean(x**2))
    start = int(rng.integers(0, len(babble) - n))
    x = babble[start : start + n]
    return x / np.sqrt(np.mean(x**2))


def analyse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Band powers and tracked noise per frame, exactly as the stage computes them."""
    st = Denoise()
    st.setup(AudioFormat(RATE, 1, len(x)))
    st.hist = np.concatenate([st.hist, x[None]], axis=1)
    count = (st.hist.shape[1] - st.n) // st.hop + 1
    _, power = st.band_powers(count)
    noise_est = np.stack([st.track(power[i]) for i in range(count)])
    return power[:, 0], noise_est[:, 0]


def make_set(n_clips: int, seconds: float, seed: int, wd: Path, babble: np.ndarray):
    rng = np.random.default_rng(seed)
    feats, targets = [], []
    n = int(seconds * RATE)
    for i in range(n_clips):
        voice = VOICES[i % len(VOICES)]
        speech = np.concatenate([np.zeros(int(rng.integers(1600, 9600))), speak(rng, wd, voice),
                                 speak(rng, wd, voice)])
        speech = np.pad(speech, (0, max(0, n - len(speech))))[:n]
        speech *= 10 ** (rng.uniform(-30, -12) / 20) / np.sqrt(np.mean(speech**2) + 1e-12)
        nz = noise(int(rng.integers(0, 3)), n, rng, babble)
        nz *= np.sqrt(np.mean(speech**2)) * 10 ** (-rng.uniform(-5, 25) / 20)
        power, noise_est = analyse(speech + nz)
        s_pow, n_pow = analyse(speech)[0], analyse(nz)[0]
        feats.append(features(power, noise_est))
        targets.append(np.sqrt(s_pow / (s_pow + n_pow + 1e-12)))
    return (torch.tensor(np.array(feats), dtype=torch.float32),
            torch.tensor(np.array(targets), dtype=torch.float32))


class GainNet(torch.nn.Module):
    def __init__(self, n_in: int, bands: int, hidden: int) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(n_in, hidden)
        self.gru = torch.nn.GRU(hidden, hidden, batch_first=True)
        self.out = torch.nn.Linear(hidden, bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(torch.tanh(self.inp(x)))
        return torch.sigmoid(self.out(h))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=240)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--out", type=Path, default=MODEL_DIR)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    wd = workdir()
    t0 = time.time()
    brng = np.random.default_rng(99)
    talkers = []
    for v in ("en-us+m3", "en-gb+f2", "en-us+f5", "en-gb-x-rp+m2", "en-us+m6", "en-gb+f4"):
        t = np.concatenate([speak(brng, wd, v) for _ in range(4)])
        talkers.append(t / np.sqrt(np.mean(t**2)))
    m = min(len(t) for t in talkers)
    babble = sum(np.roll(t[:m], 3000 * i) for i, t in enumerate(talkers))
    babble = np.tile(babble, 3)
    x, y = make_set(args.clips, 6.0, 1, wd, babble)
    xv, yv = make_set(max(8, args.clips // 10), 6.0, 2, wd, babble)
    print(f"data: {tuple(x.shape)} train, {tuple(xv.shape)} validation ({time.time() - t0:.0f} s)")
    net = GainNet(x.shape[-1], y.shape[-1], args.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    best, best_state = float("inf"), None
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(x.shape[0])
        for i in range(0, len(perm), 16):
            idx = perm[i : i + 16]
            loss = torch.mean((net(x[idx]) - y[idx]) ** 2)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
        sched.step()
        net.eval()
        with torch.no_grad():
            val = float(torch.mean((net(xv) - yv) ** 2))
        if val < best:
            best, best_state = val, {k: v.clone() for k, v in net.state_dict().items()}
        print(f"epoch {epoch + 1}: train {loss.item():.4f} validation {val:.4f} ({time.time() - t0:.0f} s)",
              flush=True)
    st = Denoise()
    st.setup(AudioFormat(RATE, 1))
    config = {"rate": RATE, "n": st.n, "hop": st.hop, "overlap": st.overlap, "wavelet": st.wavelet,
              "bands": st.bank.bands, "hidden": args.hidden, "validation_mse": best,
              "trained_on": "espeak-ng voices " + ", ".join(VOICES) + "; coloured, modulated and "
              "espeak-ng babble noise, SNR -5..25 dB", "clips": args.clips, "epochs": args.epochs}
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(best_state, args.out / f"{MODEL_NAME}.pt")
    (args.out / f"{MODEL_NAME}.json").write_text(json.dumps(config, indent=1) + "\n")
    print(f"wrote {args.out / MODEL_NAME}.pt/.json, validation MSE {best:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
