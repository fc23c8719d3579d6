"""Choosing a keyword model's decision settings: per keyword, a threshold and a patience, picked
together on held-out training-voice streams so that all keywords' false accepts stay within a target
rate, spent where they buy the most hits (`calibrate`); and the report of what the chosen settings
do on those streams (`calibration_report`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from .data import PIECE_S, Corpus, Span, augment, make_stream
from .decision import Decider, DecisionConfig, Event, single_keyword_events, smoothed, step_end_sample
from .features import FeatureConfig
from .infer import posteriors_offline

PATIENCES = (1, 2, 3, 4, 5)  # frames of 30 ms: the patience calibration chooses from, per keyword


def held_out_stream(
    corpus: Corpus, rng: np.random.Generator, pieces: int, p_kw: float, augmented: bool | None = None
) -> tuple[np.ndarray, list[Span]]:
    """`pieces` training-like pieces of PIECE_S joined: augmented as in training, or clean at a
    random level (-30..-1 dBFS peak); `augmented=None`: each piece either way with probability 1/2."""
    ys, sps, off = [], [], 0
    for _ in range(pieces):
        y, spans = make_stream(corpus, rng, PIECE_S, p_kw)
        if (rng.random() < 0.5) if augmented is None else augmented:
            y = augment(y, spans, rng, corpus.sent)
        else:
            y = y * np.float32(10 ** (rng.uniform(-30, -1) / 20) / max(1e-6, np.abs(y).max()))
        ys.append(y)
        sps += [Span(s.kind, s.label, s.start + off, s.end + off) for s in spans]
        off += len(y)
    return np.concatenate(ys), sps


def count_detections(
    events, spans, n_kw: int, hop: int, win: int, stride: int = 1, after_s: float = 0.5, rate: int = 16000
):
    """Hits per keyword (a detection inside the keyword or up to `after_s` after it, right label),
    false accepts (everything else), and delays from the keyword's end (s)."""
    kws = [s for s in spans if s.kind == "kw"]
    hit = [False] * len(kws)
    fa, delays = 0, []
    for e in events:
        samp = step_end_sample(e.frame, stride, hop, win)
        ok = False
        for i, s in enumerate(kws):
            if s.label == e.keyword and s.start <= samp <= s.end + after_s * rate and not hit[i]:
                hit[i] = ok = True
                delays.append((samp - s.end) / rate)
                break
        fa += not ok
    per_kw = np.zeros((n_kw, 2), np.int64)  # hits, total
    for h, s in zip(hit, kws, strict=True):
        per_kw[s.label, 0] += h
        per_kw[s.label, 1] += 1
    return per_kw, fa, delays


def allocate_false_accepts(fa: np.ndarray, hits: np.ndarray, budget: float) -> np.ndarray:
    """Grid indices of per-keyword thresholds: start from each keyword's lowest threshold with no
    false accept, then spend the false-accept budget greedily where it buys the most hits."""
    n_kw, n_g = fa.shape
    idx = np.array(
        [int(np.flatnonzero(fa[k] == 0)[0]) if (fa[k] == 0).any() else n_g - 1 for k in range(n_kw)]
    )
    used = int(fa[np.arange(n_kw), idx].sum())
    while True:
        best = None
        for k in range(n_kw):
            for gi in range(idx[k]):
                extra = int(fa[k, gi] - fa[k, idx[k]])
                gain = int(hits[k, gi] - hits[k, idx[k]])
                if gain > 0 and used + extra <= budget:
                    key = (gain / max(extra, 1e-9), -extra)
                    if best is None or key > best[0]:
                        best = (key, k, gi, extra)
        if best is None:
            return idx
        _, k, gi, extra = best
        idx[k], used = gi, used + extra


def calibrate(
    model: nn.Module,
    config: dict,
    corpus: Corpus,
    rng: np.random.Generator,
    target_fa_per_hour: float,
    minutes_pos: float = 6.0,
    minutes_neg: float = 24.0,
    log=print,
) -> dict[str, Any]:
    """Per-keyword thresholds: the lowest threshold whose false accepts (on held-out keyword-free
    and keyword streams, training voices) stay within the keyword's share of the target rate."""
    cfg = FeatureConfig.from_dict(config["features"])
    n_kw = len(config["keywords"])
    streams = held_out_streams(corpus, rng, minutes_pos, minutes_neg)
    posts = [posteriors_offline(model, config, y) for y, _ in streams]
    hours = sum(len(y) for y, _ in streams) / cfg.rate / 3600
    base = DecisionConfig(**{**config["decision"], "thresholds": [0.5] * n_kw})
    stride = int(config["stride"])
    grid = np.round(np.arange(0.30, 0.991, 0.01), 3)
    refr = int(round(base.refractory * cfg.rate / (cfg.hop * stride)))
    scores = [smoothed(p[:, 2 : 2 + n_kw], base.smooth) for p in posts]
    budget = target_fa_per_hour * hours
    # per keyword: false accepts and hits at every (patience, threshold); the options that no other
    # beats on both counts, most false accepts first, are what the budget is spent on
    options: list[list[tuple[int, int, float, int]]] = []  # (fa, hits, threshold, patience)
    for k in range(n_kw):
        opts = []
        for pat in PATIENCES:
            for g in grid[::-1]:  # from the top: stop once over the whole budget
                fa_k = hits_k = 0
                for (_, spans), s in zip(streams, scores, strict=True):
                    frames = single_keyword_events(s[:, k], g, base, refr, pat)
                    per, fa, _ = count_detections(
                        [Event(f, k, 0.0, f) for f in frames], spans, n_kw, cfg.hop, cfg.win, stride
                    )
                    fa_k += fa
                    hits_k += int(per[k, 0])
                if fa_k > budget:  # lower thresholds cannot be afforded
                    break
                opts.append((fa_k, hits_k, float(g), pat))
        # fewest false accepts first (ties: most hits, shortest patience, highest threshold)
        opts.sort(key=lambda o: (o[0], -o[1], o[3], -o[2]))
        options.append(pareto_front(opts) or [(0, 0, 0.99, max(PATIENCES))])
    chosen = spend_budget(options, budget)
    dec_cfg = DecisionConfig(
        **{
            **base.to_dict(),
            "thresholds": [o[2] for o in chosen],
            "patience": [int(o[3]) for o in chosen],
        }
    )
    log(f"calibration on {hours * 60:.0f} min held-out training-voice streams")
    log(f"  thresholds {dec_cfg.thresholds}  patience {dec_cfg.patience}")
    report = calibration_report(dec_cfg, streams, posts, config, target_fa_per_hour, log=log)
    return {"decision": dec_cfg.to_dict(), "calibration": report}


def held_out_streams(
    corpus: Corpus, rng: np.random.Generator, minutes_pos: float, minutes_neg: float
) -> list[tuple[np.ndarray, list[Span]]]:
    """The calibration set: keyword streams and keyword-free streams of up to 8 pieces each."""
    streams = []
    for minutes, p_kw in ((minutes_pos, 0.35), (minutes_neg, 0.0)):
        pieces = max(1, int(round(minutes * 60 / PIECE_S)))
        for first in range(0, pieces, 8):
            streams.append(held_out_stream(corpus, rng, min(8, pieces - first), p_kw))
    return streams


def pareto_front(opts: list[tuple]) -> list[tuple]:
    """Options (false accepts, hits, ...) sorted by false accepts (ties broken by the caller): those
    worth their extra false accepts, most false accepts first."""
    front: list[tuple] = []
    for o in opts:
        if not front or o[1] > front[-1][1]:
            front.append(o)
    return front[::-1]


def spend_budget(options: list[list[tuple]], budget: float) -> list[tuple]:
    """Per keyword, the option (of its Pareto front) that `allocate_false_accepts` picks."""
    width = max(len(o) for o in options)
    fa_g = np.array([[o[min(i, len(o) - 1)][0] for i in range(width)] for o in options], np.int64)
    hit_g = np.array([[o[min(i, len(o) - 1)][1] for i in range(width)] for o in options], np.int64)
    pick = allocate_false_accepts(fa_g, hit_g, budget)
    return [o[min(int(pick[k]), len(o) - 1)] for k, o in enumerate(options)]


def calibration_report(
    dec_cfg: DecisionConfig, streams, posts, config: dict, target_fa_per_hour: float,
    log=print,
) -> dict[str, Any]:  # fmt: skip
    """Recall per keyword, false accepts per hour and median delay of the real Decider with the
    chosen settings on the calibration streams."""
    cfg = FeatureConfig.from_dict(config["features"])
    n_kw, stride = len(config["keywords"]), int(config["stride"])
    hours = sum(len(y) for y, _ in streams) / cfg.rate / 3600
    per_kw, fa, delays = np.zeros((n_kw, 2), np.int64), 0, []
    for (_, spans), p in zip(streams, posts, strict=True):
        _, ev = Decider(dec_cfg, cfg.hop * stride / cfg.rate).step(p)
        a, b, c = count_detections(ev, spans, n_kw, cfg.hop, cfg.win, stride)
        per_kw, fa, delays = per_kw + a, fa + b, delays + c
    report = {
        "hours": round(hours, 3),
        "target_fa_per_hour": target_fa_per_hour,
        "recall": {
            kw: round(float(per_kw[i, 0] / max(1, per_kw[i, 1])), 3)
            for i, kw in enumerate(config["keywords"])
        },
        "fa_per_hour": round(fa / hours, 2),
        "delay_median": round(float(np.median(delays)), 3) if delays else None,
    }
    log(f"  recall {report['recall']}  FA/h {report['fa_per_hour']}  delay median {report['delay_median']} s")
    return report
