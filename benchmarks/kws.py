"""Keyword spotting benchmark: the classifier (`kws`), the HMM spotter (`hmm_kws`), their fusion
(`fuse`) and PocketSphinx keyword spotting, on the same continuous 16 kHz streams.

Streams: keywords among filler sentences, near misses, distractor words and silences; clean and with
white/pink/babble noise at 20 and 10 dB SNR; plus keyword-free streams for false accepts per hour
(`--long-neg-minutes 60` adds a one-hour clean keyword-free stream). They are spoken by the training
voices (espeak-ng, flite kal16/slt, festival kal/ked/slt-hts, random speed and pitch) with seed 777
and sentences written for this benchmark only, i.e. utterances held out from training. The voices the
brief reserves for independent evaluation (flite awb, rms, kal) are deliberately not used here.

Each detector runs through its real stage, in 30 ms blocks. Reported per operating point: recall
(per keyword too), false accepts per hour (events grouped; a detection is a hit when it falls inside
the keyword or within 0.5 s after it), delay after the word's end (median, p90) and the real-time
factor on one core (process CPU time / audio time). A second table gives, per condition and detector,
the best recall among its operating points whose false accepts stay within 10 / 30 / 100 / 300 per hour.

    python benchmarks/kws.py                      # ~15-25 min on 2 cores
    python benchmarks/kws.py --minutes 10 --neg-minutes 60 --long-neg-minutes 60
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

from rtaudio.bus import Bus, Message  # noqa: E402
from rtaudio.hmm.stage import HmmKeywordStage  # noqa: E402
from rtaudio.kws import data as D  # noqa: E402
from rtaudio.kws import models  # noqa: E402
from rtaudio.kws.decision import Decider, DecisionConfig  # noqa: E402
from rtaudio.kws.stage import KeywordSpotter  # noqa: E402
from rtaudio.kws.voices import RATE, random_training_voice, synthesize, trim  # noqa: E402
from rtaudio.kws.words import CONFUSABLES  # noqa: E402
from rtaudio.stage import AudioFormat  # noqa: E402
from rtaudio.stages.fusion import Fuse  # noqa: E402

SEED = 777  # training uses seeds 0, 1-3 and 11 (HMM) and 10000 (calibration)
BLOCK = 480  # 30 ms
BUDGETS = (10, 30, 100, 300)  # false accepts per hour
OTHERS_PER_MINUTE = 32  # non-keyword utterances per minute of stream (measured ~28 keyword-free)
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


@dataclass
class Event:
    block: int  # the block during which the detector published it
    sample: int
    label: int
    data: dict


def build_clips(keywords: list[str], rng: np.random.Generator, n_kw: int, n_other: int):
    """Keyword clips, other utterances (sentences / near misses / distractors) and the sentences."""
    kwset = set(keywords)
    sentences = [s for s in SENTENCES if not any(f" {k} " in f" {s} " for k in keywords)]
    # exact homophones of a keyword ("know" for "no") are left out: no acoustic detector can tell them
    near = D.without_homophones([w for w in NEAR if w not in kwset], keywords)
    distract = D.without_homophones([w for w in CONFUSABLES if w not in kwset], keywords)
    reqs = [(random_training_voice(rng), k) for k in keywords for _ in range(n_kw)]
    others = [("sent", sentences), ("near", near), ("distract", distract)]
    kinds = []
    for i in range(n_other):
        kind, pool = others[i % 3]
        reqs.append((random_training_voice(rng), pool[rng.integers(len(pool))]))
        kinds.append(kind)
    ys = [trim(y) for y in synthesize(reqs)]
    kw = [[y for y in ys[i * n_kw : (i + 1) * n_kw] if len(y) > 0.08 * RATE] for i in range(len(keywords))]
    other = [y for y in ys[len(keywords) * n_kw :] if len(y) > 0.05 * RATE]
    sents = [y for y, k in zip(ys[len(keywords) * n_kw :], kinds, strict=True) if k == "sent" and len(y)]
    return kw, other, sents


class Deck:
    """Indices into a list of clips, dealt without replacement (reshuffled, with a warning, when
    spent): a clip that fools a detector counts once, not once per repetition (looping 180 clips
    through 25 minutes, one "town" made 10 FA/h on its own)."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n, self.rng, self.left, self.rounds = n, rng, [], 0

    def deal(self) -> int:
        if not self.left:
            if self.rounds:
                print(f"kws benchmark: all {self.n} other clips used, reusing them", file=sys.stderr)
            self.rounds += 1
            self.left = self.rng.permutation(self.n).tolist()
        return self.left.pop()


def make_stream(
    kw, other, rng, seconds: float, p_kw: float, deck: Deck | None = None
) -> tuple[np.ndarray, list[Truth]]:
    """Words and sentences with 0.3-2 s of silence between them; the other utterances are dealt
    from `deck` (share one between the streams of a set so that none hears a clip twice)."""
    parts, truth, pos = [], [], 0
    deck = deck or Deck(len(other), rng)
    while pos < seconds * RATE:
        gap = int(rng.uniform(0.3, 2.0) * RATE)
        parts.append(np.zeros(gap, np.float32))
        pos += gap
        if rng.random() < p_kw:
            k = int(rng.integers(len(kw)))
            y = kw[k][rng.integers(len(kw[k]))]
            truth.append(Truth(k, pos, pos + len(y)))
        else:
            y = other[deck.deal()]
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


@dataclass
class Streams:
    """The clean streams of one seed: keywords among other speech (with its truth), keyword-free,
    and the sentences the babble noise is made of."""

    babble: list
    keywords: np.ndarray
    negatives: np.ndarray
    truth: list[Truth]


def n_others(minutes: float) -> int:
    """Other utterances to synthesise so that `minutes` of stream never repeat one."""
    return int(OTHERS_PER_MINUTE * minutes) + 20


def make_streams(keywords: list[str], seed: int, minutes: float, neg_minutes: float) -> Streams:
    rng = np.random.default_rng(seed)
    kw, other, _ = build_clips(keywords, rng, 25, n_others(minutes + neg_minutes))
    _, _, babble = build_clips(keywords, np.random.default_rng(seed + 1), 1, 90)
    deck = Deck(len(other), rng)
    clean_kw, truth = make_stream(kw, other, rng, minutes * 60, 0.35, deck)
    clean_neg, _ = make_stream(kw, other, rng, neg_minutes * 60, 0.0, deck)
    return Streams(babble, clean_kw, clean_neg, truth)


def long_negative_stream(keywords: list[str], seed: int, minutes: float) -> np.ndarray:
    """A keyword-free stream of its own utterances (none of the condition streams' clips)."""
    rng = np.random.default_rng(seed + 2)
    _, other, _ = build_clips(keywords, rng, 0, n_others(minutes))
    y, _ = make_stream([], other, rng, minutes * 60, 0.0)
    return y


def conditions(streams: Streams, seed: int, wanted: set[str] | None = None):
    """(condition name, (keyword stream, keyword-free stream)) with that condition's noise."""
    for ci, (name, kind, snr) in enumerate(CONDITIONS):
        cond = f"{name} {snr} dB" if snr else name
        if wanted and cond not in wanted:
            continue
        nrng = np.random.default_rng([seed, ci])
        ys = (streams.keywords, streams.negatives)
        yield cond, tuple(with_noise(y, kind, snr, nrng, streams.babble) for y in ys)


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
def run_stage(stage, y: np.ndarray, topics: set[str], keywords: list[str]):
    """Feed `y` through a stage in BLOCK-sample blocks. Returns the events (with the block that
    published them), the posteriors if any, and the CPU seconds."""
    bus = Bus()
    sub = bus.subscribe(topics | {"posteriors"}, maxlen=10**8)
    stage.setup(AudioFormat(RATE, 1, BLOCK), bus)
    x = y[:, None]
    events: list[Event] = []
    post: list[np.ndarray] = []
    t = time.process_time()
    for b, i in enumerate(range(0, len(x), BLOCK)):
        stage.run(x[i : i + BLOCK])
        for m in sub.drain():
            if m.topic == "posteriors":
                post.append(m.data["probs"])
            else:
                events.append(Event(b, m.sample, keywords.index(m.data["label"]), m.data))
    cpu = time.process_time() - t
    return events, (np.stack(post) if post else None), cpu


def redecide(post: np.ndarray, cfg: dict, thr: float | None) -> list[Event]:
    """The classifier's events at one global threshold (None: the calibrated ones), from its posteriors."""
    d = dict(cfg["decision"])
    if thr is not None:
        d["thresholds"] = [thr] * len(cfg["keywords"])
    k = int(cfg.get("stride", 1))
    _, ev = Decider(DecisionConfig(**d), 0.01 * k).step(post)
    out = []
    for e in ev:
        samp = (e.frame * k + k - 1) * 160 + 400
        data = {
            "label": cfg["keywords"][e.keyword],
            "score": e.score,
            "threshold": d["thresholds"][e.keyword],
        }
        out.append(Event(samp // BLOCK, samp, e.keyword, data))
    return out


def fuse(a: list[Event], b: list[Event], n_samples: int, keywords: list[str], mode: str) -> list[Event]:
    """Replay two detectors' events through the real `fuse` stage, block by block, as live."""
    st = Fuse(mode=mode, inputs="cls,hmm")
    bus = Bus()
    sub = bus.subscribe({"keyword"}, maxlen=10**8)
    st.setup(AudioFormat(RATE, 1, BLOCK), bus)
    queue = sorted(
        [(e.block, 0, e, "cls") for e in a] + [(e.block, 1, e, "hmm") for e in b],
        key=lambda q: (q[0], q[1], q[2].sample),
    )
    zeros = np.zeros((BLOCK, 1), np.float32)
    out, j = [], 0
    for blk in range(n_samples // BLOCK + 1):
        while j < len(queue) and queue[j][0] <= blk:
            e, topic = queue[j][2], queue[j][3]
            bus.publish(Message(topic, e.sample, RATE, topic, e.data))
            j += 1
        st.run(zeros)
        out += [Event(blk, m.sample, keywords.index(m.data["label"]), m.data) for m in sub.drain()]
    return out


def run_sphinx(keywords: list[str], y: np.ndarray, thr: float, chunk: int = BLOCK):
    from pocketsphinx import Decoder

    kwfile = Path("/tmp") / f"rtaudio_bench_kws_{thr:g}.list"
    kwfile.write_text("".join(f"{k} /{thr:g}/\n" for k in keywords))
    dec = Decoder(kws=str(kwfile), lm=None, loglevel="FATAL")
    pcm = np.clip(np.round(y * 32767), -32768, 32767).astype(np.int16)
    dets: list[Event] = []
    last: dict[int, int] = {}
    t = time.process_time()
    dec.start_utt()
    for b, i in enumerate(range(0, len(pcm), chunk)):
        dec.process_raw(pcm[i : i + chunk].tobytes(), False, False)
        h = dec.hyp()
        if h is not None:
            word = h.hypstr.strip()
            k = keywords.index(word) if word in keywords else -1
            samp = min(len(pcm), i + chunk)
            if k >= 0 and samp - last.get(k, -(10**9)) > 0.5 * RATE:  # group repeats
                dets.append(Event(b, samp, k, {"label": word, "score": 1.0, "threshold": 1.0}))
                last[k] = samp
            dec.end_utt()
            dec.start_utt()
    dec.end_utt()
    return dets, time.process_time() - t


# -- the run --------------------------------------------------------------------------------------
def summarise(cond, det, dkw, dneg, truth, keywords, hours, rtf):
    per, fa1, delays = score([(e.sample, e.label) for e in dkw], truth, len(keywords))
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


def family(det: str) -> str:
    return det.split(" ")[0]


def budget_table(rows: list[dict]) -> list[dict]:
    """Per condition and detector family: the best recall among operating points within each budget."""
    out = []
    for cond in dict.fromkeys(r["condition"] for r in rows):
        for fam in dict.fromkeys(family(r["detector"]) for r in rows if r["condition"] == cond):
            mine = [r for r in rows if r["condition"] == cond and family(r["detector"]) == fam]
            best = {}
            for b in BUDGETS:
                ok = [r for r in mine if r["fa_per_hour"] <= b]
                best[b] = max((r["recall"] for r in ok), default=0.0)
            out.append({"condition": cond, "detector": fam, "best_recall": best})
    return out


def print_rows(rows, header: bool) -> None:
    if header:
        cols = f"{'recall':>6} {'FA/h':>7} {'d.med':>6} {'d.p90':>6} {'RTF':>7}"
        print(f"{'condition':<14} {'detector':<34} {cols}  per keyword")
    for r in rows:
        f = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
        pk = (
            " ".join(f"{k}:{v:.2f}" for k, v in r["recall_per_keyword"].items())
            if r["recall_per_keyword"] and any(r["recall_per_keyword"].values())
            else ""
        )
        dm, dp, rtf = f(r["delay_median"]), f(r["delay_p90"]), f(r["rtf"], 4)
        head = f"{r['condition']:<14} {r['detector']:<34} {r['recall']:6.2f} {r['fa_per_hour']:7.1f}"
        print(f"{head} {dm:>6} {dp:>6} {rtf:>7}  {pk}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="classifier model dir (default: the shipped one)")
    ap.add_argument("--hmm-model", default="", help="HMM model dir (default: the shipped one)")
    ap.add_argument("--minutes", type=float, default=3.0, help="keyword stream length per condition")
    ap.add_argument("--neg-minutes", type=float, default=10.0, help="keyword-free stream per condition")
    ap.add_argument(
        "--long-neg-minutes", type=float, default=0.0, help="extra clean keyword-free stream (60 = one hour)"
    )
    ap.add_argument("--thresholds", default="0.5,0.7,0.9", help="classifier: extra global thresholds")
    ap.add_argument("--sensitivity", default="0,1.5,3", help="HMM: sensitivities (threshold offsets)")
    ap.add_argument("--sphinx", default="1e-20,1e-10,1,1e10,1e20", help="PocketSphinx thresholds ('' = skip)")
    ap.add_argument("--fusion", default="both,weighted", help="fusion modes ('' = skip)")
    ap.add_argument("--fusion-cls", default="cal,0.5,0.7,0.8", help="classifier thresholds fused")
    ap.add_argument("--conditions", default="", help="only these conditions (e.g. 'clean,babble 10 dB')")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, cfg = models.load(args.model)
    keywords = cfg["keywords"]
    floats = lambda s: [float(v) for v in s.split(",") if v.strip()]  # noqa: E731
    thresholds: list[float | None] = [None, *floats(args.thresholds)]
    sens, sph = floats(args.sensitivity), floats(args.sphinx)
    modes = [m.strip() for m in args.fusion.split(",") if m.strip()]
    fuse_cls = {v.strip() for v in args.fusion_cls.split(",")}
    streams = make_streams(keywords, args.seed, args.minutes, args.neg_minutes)
    truth = streams.truth
    wanted = {c.strip() for c in args.conditions.split(",") if c.strip()}
    rows: list[dict] = []
    for cond, ys in conditions(streams, args.seed, wanted):
        seconds = sum(len(y) for y in ys) / RATE
        hours = seconds / 3600
        new: list[dict] = []
        # the classifier: one pass through the stage, other thresholds re-decided from its posteriors
        res = [run_stage(KeywordSpotter(model=args.model), y, {"keyword"}, keywords) for y in ys]
        posts = [r[1] for r in res]
        cls_rtf = sum(r[2] for r in res) / seconds
        cls_ev: dict = {}
        for thr in thresholds:
            ev = [r[0] for r in res] if thr is None else [redecide(p, cfg, thr) for p in posts]
            cls_ev[thr] = ev
            label = "classifier calibrated" if thr is None else f"classifier thr={thr:g}"
            new.append(
                summarise(cond, label, ev[0], ev[1], truth, keywords, hours, cls_rtf if thr is None else None)
            )
        # the HMM: one pass per sensitivity
        hmm_ev: dict = {}
        for s in sens:
            res = [
                run_stage(HmmKeywordStage(model=args.hmm_model, sensitivity=s), y, {"keyword"}, keywords)
                for y in ys
            ]
            hmm_ev[s] = [r[0] for r in res]
            label = "hmm calibrated" if s == 0 else f"hmm sensitivity={s:g}"
            new.append(
                summarise(cond, label, *hmm_ev[s], truth, keywords, hours, sum(r[2] for r in res) / seconds)
            )
        # fusion: the two detectors' events replayed through the fuse stage
        for mode in modes:
            for thr, ce in cls_ev.items():
                if ("cal" if thr is None else f"{thr:g}") not in fuse_cls:
                    continue
                for s, he in hmm_ev.items():
                    ev = [fuse(ce[i], he[i], len(ys[i]), keywords, mode) for i in range(2)]
                    t = "cal" if thr is None else f"{thr:g}"
                    new.append(
                        summarise(
                            cond,
                            f"fusion-{mode} cls={t} hmm={s:g}",
                            ev[0],
                            ev[1],
                            truth,
                            keywords,
                            hours,
                            None,
                        )
                    )
        for thr in sph:
            res = [run_sphinx(keywords, y, thr) for y in ys]
            new.append(
                summarise(
                    cond,
                    f"pocketsphinx kws={thr:g}",
                    res[0][0],
                    res[1][0],
                    truth,
                    keywords,
                    hours,
                    sum(r[1] for r in res) / seconds,
                )
            )
        print_rows(new, header=not rows)
        rows += new
    if args.long_neg_minutes > 0:
        yl = long_negative_stream(keywords, args.seed, args.long_neg_minutes)
        yl = with_noise(yl, None, None, None, streams.babble)  # clean: only normalised
        hours = len(yl) / RATE / 3600
        ev, _, cpu = run_stage(KeywordSpotter(model=args.model), yl, {"keyword"}, keywords)
        extra = [
            summarise("kw-free 1h", "classifier calibrated", [], ev, [], keywords, hours, cpu / hours / 3600)
        ]
        ev, _, cpu = run_stage(HmmKeywordStage(model=args.hmm_model), yl, {"keyword"}, keywords)
        extra.append(
            summarise("kw-free 1h", "hmm calibrated", [], ev, [], keywords, hours, cpu / hours / 3600)
        )
        print_rows(extra, header=False)
        rows += extra
    print("\nbest recall within a false-accept budget (over each detector's operating points above)")
    print(f"{'condition':<14} {'detector':<14} " + " ".join(f"{'<=' + str(b) + '/h':>8}" for b in BUDGETS))
    table = budget_table([r for r in rows if not r["condition"].startswith("kw-free")])
    for t in table:
        cells = " ".join(f"{t['best_recall'][b]:8.2f}" for b in BUDGETS)
        print(f"{t['condition']:<14} {t['detector']:<14} {cells}")
    print(
        f"\nkeyword stream {args.minutes} min ({len(truth)} keywords) + keyword-free "
        f"{args.neg_minutes} min per "
        f"condition; training voices, held-out utterances (seed {args.seed}, benchmark-only sentences)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "budgets": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
