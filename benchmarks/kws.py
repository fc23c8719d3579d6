"""Keyword spotting benchmark: our streaming classifier vs PocketSphinx keyword spotting.

Continuous 16 kHz streams with keywords among filler sentences, near misses, distractor words and
silences, spoken by voices held out from training (flite awb, rms, kal) with a seed and sentences
never used in training; clean and with white/pink/babble noise at 20 and 10 dB SNR; plus keyword-free
streams for false accepts per hour. Reports per-keyword recall, FA/h (events grouped; a detection is
a hit when it falls inside the keyword or within 0.5 s after it), delay after the word's end (median,
p90) and the real-time factor on one core (process CPU time / audio time).

    python benchmarks/kws.py                      # short run (a few minutes)
    python benchmarks/kws.py --minutes 10 --neg-minutes 60
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtaudio.bus import Bus  # noqa: E402
from rtaudio.kws import data as D  # noqa: E402
from rtaudio.kws import models  # noqa: E402
from rtaudio.kws.decision import Decider, DecisionConfig  # noqa: E402
from rtaudio.kws.stage import KeywordSpotter  # noqa: E402
from rtaudio.kws.voices import FLITE_EVAL, RATE, Voice, synthesize, trim  # noqa: E402
from rtaudio.kws.words import CONFUSABLES  # noqa: E402
from rtaudio.stage import AudioFormat  # noqa: E402

SEED = 777  # training uses seeds 0 and 10000
CONDITIONS = [
    ("clean", None, None),
    ("white", "white", 20),
    ("white", "white", 10),
    ("pink", "pink", 20),
    ("pink", "pink", 10),
    ("babble", "babble", 20),
    ("babble", "babble", 10),
]
# Natural sentences written for the benchmark only (the training sentences come from a grammar).
SENTENCES = (
    "the children were playing in the garden all afternoon",
    "she bought a loaf of bread and some fresh milk",
    "my brother works at the hospital near the station",
    "we should paint the kitchen walls a lighter colour",
    "the train to the city was late again this morning",
    "he forgot his umbrella at the restaurant",
    "please send me the report before the meeting",
    "the museum opens at nine every day except monday",
    "there is a small cafe at the corner of the street",
    "our neighbours have a very friendly black cat",
    "it rained heavily for most of the weekend",
    "the teacher asked the students to read the first chapter",
    "they travelled across the country by bus",
    "i would like a cup of tea with lemon",
    "the new library has thousands of books",
    "her grandmother makes the best apple pie",
    "the football match was cancelled because of the storm",
    "we watched a documentary about whales last night",
    "the baker wakes early to prepare the bread",
    "this computer is much faster than the old one",
    "a strong wind blew the leaves across the yard",
    "the doctor said he needs to rest for a week",
    "my sister is learning to play the violin",
    "the shop sells vegetables from local farms",
    "he was reading the newspaper in the living room",
    "the river was calm and the water was clear",
    "we are planning a trip to the mountains in spring",
    "the concert tickets were sold within an hour",
    "she painted a picture of the old harbour",
    "the engineer explained how the bridge was built",
)
NEAR = (
    "going",
    "stopped",
    "nobody",
    "upper",
    "yesterday",
    "goes",
    "gone",
    "know",
    "now",
    "note",
    "town",
    "lift",
    "light",
    "bright",
    "often",
    "only",
    "office",
    "yet",
    "yellow",
    "top",
    "shop",
    "stopping",
    "upset",
    "downtown",
    "rightly",
    "leftover",
    "ago",
    "golden",
    "dawn",
    "soft",
)


@dataclass
class Truth:
    label: int
    start: int
    end: int


def eval_voice(rng: np.random.Generator) -> Voice:
    return Voice("flite", FLITE_EVAL[rng.integers(len(FLITE_EVAL))], round(float(rng.uniform(0.9, 1.1)), 2))


def build_clips(keywords: list[str], rng: np.random.Generator, n_kw: int, n_other: int):
    kwset = {t for k in keywords for t in [k]}
    sentences = [s for s in SENTENCES if not any(f" {k} " in f" {s} " for k in keywords)]
    near = [w for w in NEAR if w not in kwset]
    distract = [w for w in CONFUSABLES if w not in kwset]
    reqs = [(eval_voice(rng), k) for k in keywords for _ in range(n_kw)]
    others = [("sent", sentences), ("near", near), ("distract", distract)]
    kinds = []
    for i in range(n_other):
        kind, pool = others[i % 3]
        reqs.append((eval_voice(rng), pool[rng.integers(len(pool))]))
        kinds.append(kind)
    ys = [trim(y) for y in synthesize(reqs)]
    kw = [ys[i * n_kw : (i + 1) * n_kw] for i in range(len(keywords))]
    other = ys[len(keywords) * n_kw :]
    return kw, other, [y for y, k in zip(other, kinds, strict=True) if k == "sent"]


def make_stream(kw, other, rng, seconds: float, p_kw: float) -> tuple[np.ndarray, list[Truth]]:
    parts, truth, pos = [], [], 0
    while pos < seconds * RATE:
        gap = int(rng.uniform(0.3, 2.0) * RATE)
        parts.append(np.zeros(gap, np.float32))
        pos += gap
        if rng.random() < p_kw:
            k = int(rng.integers(len(kw)))
            y = kw[k][rng.integers(len(kw[k]))]
            truth.append(Truth(k, pos, pos + len(y)))
        else:
            y = other[rng.integers(len(other))]
        y = y * np.float32(10 ** (rng.uniform(-4, 4) / 20))
        parts.append(y)
        pos += len(y)
    parts.append(np.zeros(RATE, np.float32))
    return np.concatenate(parts), truth


def with_noise(y: np.ndarray, kind: str | None, snr: float | None, rng, babble_src) -> np.ndarray:
    y = y / max(1e-9, float(np.max(np.abs(y)))) * np.float32(0.3)
    if kind is None:
        return y.astype(np.float32)
    speech = y[np.abs(y) > 1e-4]
    noise = D.make_noise(rng, len(y), kind, babble_src)
    p = float(np.mean(speech.astype(np.float64) ** 2))
    return np.clip(y + noise * np.float32(np.sqrt(p / 10 ** (snr / 10))), -1, 1).astype(np.float32)


def score(dets: list[tuple[int, int]], truth: list[Truth], n_kw: int, after: float = 0.5):
    """dets: (sample, keyword). Returns hits (n_kw, 2), false accepts, delays (s)."""
    hit = [False] * len(truth)
    fa, delays = 0, []
    per = np.zeros((n_kw, 2), np.int64)
    for samp, k in dets:
        match = [i for i, t in enumerate(truth) if t.label == k and t.start <= samp <= t.end + after * RATE]
        if not match:
            fa += 1
        elif not hit[match[0]]:
            hit[match[0]] = True
            delays.append((samp - truth[match[0]].end) / RATE)
    for h, t in zip(hit, truth, strict=True):
        per[t.label] += (h, 1)
    return per, fa, delays


# -- detectors ----------------------------------------------------------------------------------
def run_ours(model_dir, y: np.ndarray, block: int = 480) -> tuple[list[tuple[int, int]], float, np.ndarray]:
    """Through the real stage, 30 ms blocks. Returns detections, CPU seconds, posteriors."""
    st = KeywordSpotter(model=model_dir)
    bus = Bus()
    sub = bus.subscribe({"keyword", "posteriors"}, maxlen=10**8)
    st.setup(AudioFormat(RATE, 1, block), bus)
    x = y[:, None]
    t = time.process_time()
    for i in range(0, len(x), block):
        st.run(x[i : i + block])
    cpu = time.process_time() - t
    msgs = sub.drain()
    dets = [(m.sample, st.keywords.index(m.data["label"])) for m in msgs if m.topic == "keyword"]
    post = np.stack([m.data["probs"] for m in msgs if m.topic == "posteriors"])
    return dets, cpu, post


def redecide(post: np.ndarray, cfg: dict, scale: float | None) -> list[tuple[int, int]]:
    d = dict(cfg["decision"])
    if scale is not None:
        d["thresholds"] = [scale] * len(cfg["keywords"])
    k = int(cfg.get("stride", 1))
    dec = Decider(DecisionConfig(**d), 0.01 * k)
    _, ev = dec.step(post)
    return [((e.frame * k + k - 1) * 160 + 400, e.keyword) for e in ev]


def run_sphinx(
    keywords: list[str], y: np.ndarray, thr: float, chunk: int = 320
) -> tuple[list[tuple[int, int]], float]:
    from pocketsphinx import Decoder

    kwfile = Path("/tmp") / f"rtaudio_bench_kws_{thr:g}.list"
    kwfile.write_text("".join(f"{k} /{thr:g}/\n" for k in keywords))
    dec = Decoder(kws=str(kwfile), lm=None, loglevel="FATAL")
    pcm = np.clip(np.round(y * 32767), -32768, 32767).astype(np.int16)
    dets: list[tuple[int, int]] = []
    last: dict[int, int] = {}
    t = time.process_time()
    dec.start_utt()
    for i in range(0, len(pcm), chunk):
        dec.process_raw(pcm[i : i + chunk].tobytes(), False, False)
        h = dec.hyp()
        if h is not None:
            word = h.hypstr.strip()
            k = keywords.index(word) if word in keywords else -1
            samp = min(len(pcm), i + chunk)
            if k >= 0 and samp - last.get(k, -(10**9)) > 0.5 * RATE:  # group repeats
                dets.append((samp, k))
                last[k] = samp
            dec.end_utt()
            dec.start_utt()
    dec.end_utt()
    return dets, time.process_time() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model dir (default: the shipped one)")
    ap.add_argument("--minutes", type=float, default=3.0, help="keyword stream length per condition")
    ap.add_argument("--neg-minutes", type=float, default=10.0, help="keyword-free stream per condition")
    ap.add_argument(
        "--long-neg-minutes", type=float, default=0.0, help="extra clean keyword-free stream (60 = one hour)"
    )
    ap.add_argument("--sphinx", default="1e20,1e10,1,1e-5", help="PocketSphinx thresholds ('' = skip)")
    ap.add_argument("--scales", default="0.5,0.7,0.9", help="our extra global thresholds")
    ap.add_argument("--long-sphinx", default="1", help="PocketSphinx thresholds on the long stream")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, cfg = models.load(args.model)
    keywords = cfg["keywords"]
    rng = np.random.default_rng(args.seed)
    kw, other, sents = build_clips(keywords, rng, 25, 180)
    babble_clips, _, babble_sents = build_clips(keywords, np.random.default_rng(args.seed + 1), 1, 60)
    clean_kw, truth = make_stream(kw, other, rng, args.minutes * 60, 0.35)
    clean_neg, _ = make_stream(kw, other, rng, args.neg_minutes * 60, 0.0)
    conds = list(CONDITIONS)
    rows = []
    sph = [float(s) for s in args.sphinx.split(",") if s.strip()]
    scales = [None] + [float(s) for s in args.scales.split(",") if s.strip()]
    for name, kind, snr in conds:
        nrng = np.random.default_rng([args.seed, len(rows)])
        ykw = with_noise(clean_kw, kind, snr, nrng, babble_sents)
        yneg = with_noise(clean_neg, kind, snr, nrng, babble_sents)
        hours = (len(ykw) + len(yneg)) / RATE / 3600
        cond = f"{name} {snr} dB" if snr else name
        d1, cpu1, p1 = run_ours(args.model, ykw)
        d2, cpu2, p2 = run_ours(args.model, yneg)
        rtf = (cpu1 + cpu2) / ((len(ykw) + len(yneg)) / RATE)
        for sc in scales:
            a = redecide(p1, cfg, sc) if sc is not None else d1
            b = redecide(p2, cfg, sc) if sc is not None else d2
            rows.append(
                summarise(
                    cond,
                    "ours" + (f" thr={sc}" if sc else " (calibrated)"),
                    a,
                    b,
                    truth,
                    keywords,
                    hours,
                    rtf if sc is None else None,
                )
            )
        for thr in sph:
            a, c1 = run_sphinx(keywords, ykw, thr)
            b, c2 = run_sphinx(keywords, yneg, thr)
            rows.append(
                summarise(
                    cond,
                    f"pocketsphinx kws {thr:g}",
                    a,
                    b,
                    truth,
                    keywords,
                    hours,
                    (c1 + c2) / ((len(ykw) + len(yneg)) / RATE),
                )
            )
        print_rows(rows[-(len(scales) + len(sph)) :], header=len(rows) == len(scales) + len(sph))
    if args.long_neg_minutes > 0:
        yl, _ = make_stream(kw, other, np.random.default_rng(args.seed + 2), args.long_neg_minutes * 60, 0.0)
        yl = with_noise(yl, None, None, rng, babble_sents)
        hours = len(yl) / RATE / 3600
        d, cpu, _ = run_ours(args.model, yl)
        extra = [
            summarise(
                "keyword-free clean", "ours (calibrated)", [], d, [], keywords, hours, cpu / (len(yl) / RATE)
            )
        ]
        for thr in [float(v) for v in args.long_sphinx.split(",") if v.strip()]:
            d, cpu = run_sphinx(keywords, yl, thr)
            extra.append(
                summarise(
                    "keyword-free clean",
                    f"pocketsphinx kws {thr:g}",
                    [],
                    d,
                    [],
                    keywords,
                    hours,
                    cpu / (len(yl) / RATE),
                )
            )
        print_rows(extra, header=False)
        rows += extra
    print(
        f"\nkeyword stream {args.minutes} min ({len(truth)} keywords) + keyword-free "
        f"{args.neg_minutes} min per condition; "
        f"voices {', '.join('flite ' + v for v in FLITE_EVAL)} (held out from training); seed {args.seed}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def summarise(cond, det, dkw, dneg, truth, keywords, hours, rtf):
    per, fa1, delays = score(dkw, truth, len(keywords))
    fa = fa1 + len(dneg)
    return {
        "condition": cond,
        "detector": det,
        "recall": float(per[:, 0].sum() / max(1, per[:, 1].sum())),
        "recall_per_keyword": {
            k: round(float(per[i, 0] / max(1, per[i, 1])), 2) for i, k in enumerate(keywords)
        },
        "fa_per_hour": fa / hours,
        "hours": hours,
        "delay_median": float(np.median(delays)) if delays else None,
        "delay_p90": float(np.percentile(delays, 90)) if delays else None,
        "rtf": rtf,
    }


def print_rows(rows, header: bool) -> None:
    if header:
        cols = f"{'recall':>6} {'FA/h':>7} {'d.med':>6} {'d.p90':>6} {'RTF':>7}"
        print(f"{'condition':<16} {'detector':<26} {cols}  per keyword")
    for r in rows:
        f = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
        pk = (
            " ".join(f"{k}:{v:.2f}" for k, v in r["recall_per_keyword"].items())
            if r["recall_per_keyword"] and any(r["recall_per_keyword"].values())
            else ""
        )
        dm, dp, rtf = f(r["delay_median"]), f(r["delay_p90"]), f(r["rtf"], 4)
        head = f"{r['condition']:<16} {r['detector']:<26} {r['recall']:6.2f} {r['fa_per_hour']:7.1f}"
        print(f"{head} {dm:>6} {dp:>6} {rtf:>7}  {pk}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
