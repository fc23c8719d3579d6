"""A second-stage keyword verifier: the streaming GRU proposes, a DS-CNN over the last second confirms.

The GRU decides from what it has heard so far, 30 ms at a time; most of its false accepts are words
that begin or sound like a keyword ("stopping", "goes", "upset"). The verifier looks at the whole
last second of features at once, and only when the GRU's smoothed score for a keyword is over its
first-stage threshold: its cost is per candidate frame, not per frame (a DS-CNN every 30 ms costs
RTF 0.2-0.3). It is trained on the GRU's own candidates in training-voice streams (hard negatives
mined from the first stage, plus the keywords), and its per-keyword thresholds are calibrated together
with the GRU's on held-out streams, to the same false-accept target.

On disk: a DS-CNN model (`models.save` format) whose JSON also holds `cascade` (the decision settings
of both stages) and `first_stage_sha256` (the GRU it was trained and calibrated with).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from . import models
from .calibration import PATIENCES, calibration_report, pareto_front, spend_budget
from .data import class_names
from .decision import DecisionConfig, single_keyword_events, smoothed, step_end_sample

MINE_GATE = 0.2  # smoothed GRU score over which a frame is a candidate (the lowest first-stage threshold)
# model steps (30 ms) the verifier waits after the GRU's candidate: the GRU fires ~0.15 s after a
# word's end, and "down" is told from "downtown" only once "town" has begun
VERIFY_DELAY = 4
DEFAULT_VERIFIER = models.DEFAULT_MODEL.with_name("kws_verifier.pt")  # + kws_verifier.json


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class FeatureHistory:
    """The latest feature frames by absolute frame index, for windows ending at any frame of the
    latest push (frames before the stream's start are `pad`)."""

    def __init__(self, window: int, pad: np.ndarray) -> None:
        self.window, self.pad = window, np.asarray(pad, np.float32)
        self.reset()

    def reset(self) -> None:
        self.buf = np.tile(self.pad, (self.window - 1, 1))  # rows are frames [base, base + len)
        self.base = -(self.window - 1)

    def push(self, feats: np.ndarray) -> None:
        keep = self.buf[-(self.window - 1) :] if self.window > 1 else self.buf[:0]
        self.base += self.buf.shape[0] - keep.shape[0]
        self.buf = np.concatenate([keep, np.asarray(feats, np.float32)])

    def window_at(self, end: int) -> np.ndarray:
        """Frames [end - window + 1, end] (end must be one of the frames of the latest push)."""
        a = end - self.window + 1 - self.base
        if a < 0 or end - self.base >= self.buf.shape[0]:
            raise IndexError(f"frame {end} is not in the feature history")
        return self.buf[a : a + self.window]


def windows(feats: np.ndarray, ends: np.ndarray, window: int, pad: np.ndarray) -> np.ndarray:
    """(n, window, dim) windows of `feats` (frames, dim) ending at frames `ends`, padded before 0."""
    padded = np.concatenate([np.tile(np.asarray(pad, np.float32), (window - 1, 1)), feats])
    return (
        np.stack([padded[e : e + window] for e in ends])
        if len(ends)
        else np.zeros((0, window, feats.shape[1]), np.float32)
    )


@torch.inference_mode()
def verify_probs(net: nn.Module, wins: np.ndarray, batch: int = 256) -> np.ndarray:
    """Class posteriors of the verifier for windows (n, window, dim)."""
    out = [
        torch.softmax(net(torch.from_numpy(np.ascontiguousarray(wins[a : a + batch]))), -1).numpy()
        for a in range(0, len(wins), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, net.out.out_features), np.float32)


class Verifier:
    """A loaded verifier: `probs(history, frame)` for the stage, `cascade` decision settings."""

    def __init__(self, path: str | Path | None, first_stage_pt: Path | None, where: str = "kws") -> None:
        p = Path(path) if path not in (None, "", "default") else DEFAULT_VERIFIER
        self.net, self.config = models.load(p, where=where)
        if self.config.get("role") != "verifier" or "cascade" not in self.config:
            raise ConfigError(f"{where}: {p} is a keyword model, not a verifier (no 'cascade' settings)")
        want = self.config.get("first_stage_sha256")
        if first_stage_pt is not None and want and file_sha256(first_stage_pt) != want:
            raise ConfigError(
                f"{where}: verifier {p} was trained and calibrated for another first-stage model "
                f"than {first_stage_pt}"
            )
        self.window = int(self.net.window)
        self.pad = self.net.mean.numpy().astype(np.float32)

    def decision(self, base: dict[str, Any]) -> DecisionConfig:
        """The cascade's decision settings over the first stage's smoothing/refractory settings."""
        return DecisionConfig(**{**base, **self.config["cascade"]})

    @torch.inference_mode()
    def probs(self, history: FeatureHistory, frame: int) -> np.ndarray:
        w = torch.from_numpy(np.ascontiguousarray(history.window_at(frame)))[None]
        return torch.softmax(self.net(w), -1)[0].numpy()


# -- calibration of the cascade ------------------------------------------------------------------
def keyword_step_ranges(spans, n_kw: int, n_steps: int, stride: int, hop: int, win: int,
                        after_s: float = 0.5, rate: int = 16000) -> list[list[tuple[int, int]]]:  # fmt: skip
    """Per keyword, the [first, last] model steps whose detection would count as a hit of each of
    its spans (the step's end sample inside the word or up to `after_s` after it)."""
    ends = step_end_sample(np.arange(n_steps), stride, hop, win)
    out: list[list[tuple[int, int]]] = [[] for _ in range(n_kw)]
    for s in spans:
        if s.kind == "kw":
            a = int(np.searchsorted(ends, s.start))
            b = int(np.searchsorted(ends, s.end + after_s * rate, side="right")) - 1
            out[s.label].append((a, b))
    return out


def count_fires(fires: np.ndarray, ranges: np.ndarray) -> tuple[int, int]:
    """(hits, false accepts) of one keyword's firing steps against its hit ranges (k, 2): a range
    is hit by its first fire; every other fire is a false accept (as `calibration.count_detections`)."""
    if len(ranges) == 0:
        return 0, int(len(fires))
    lo = np.searchsorted(fires, ranges[:, 0])
    hi = np.searchsorted(fires, ranges[:, 1], side="right")
    hits = int(np.count_nonzero(hi > lo))
    return hits, int(len(fires)) - hits


def cascade_options(
    s: np.ndarray, v: np.ndarray, ranges: np.ndarray, base: DecisionConfig, refr: int,
    gates: np.ndarray, patiences: tuple[int, ...], vgrid: np.ndarray, budget: float, delay: int = 0,
) -> list[tuple[int, int, float, int, float]]:  # fmt: skip
    """One keyword's (false accepts, hits, gate, patience, verifier threshold) options that no
    other beats on both counts, most false accepts first. `s`: smoothed GRU score per step,
    `v`: the verifier's probability for the candidate of each step, taken `delay` steps later
    (meaningful where s >= MINE_GATE); a candidate of step t fires at t + delay."""
    opts = []
    for pat in patiences:
        for g in gates:
            for vt in vgrid[::-1]:
                fires = np.asarray(single_keyword_events(s, g, base, refr, pat, accept=v >= vt), np.int64)
                hits, fa = count_fires(fires + delay, ranges)
                if fa > budget:
                    break
                opts.append((fa, hits, float(g), pat, float(vt)))
    opts.sort(key=lambda o: (o[0], -o[1], o[3], -o[2], -o[4]))
    return pareto_front(opts)


def stack_streams(posts, vprobs, spans_list, n_kw, smooth, stride, hop, win):
    """Concatenate held-out streams' smoothed scores, verifier probabilities and hit ranges (steps
    offset per stream) so that each calibration option is one vectorised pass."""
    ss, vs, ranges, off = [], [], [[] for _ in range(n_kw)], 0
    for p, v, spans in zip(posts, vprobs, spans_list, strict=True):
        ss.append(smoothed(p[:, 2 : 2 + n_kw], smooth))
        vs.append(v[:, 2 : 2 + n_kw])
        for k, rr in enumerate(keyword_step_ranges(spans, n_kw, len(p), stride, hop, win)):
            ranges[k] += [(a + off, b + off) for a, b in rr]
        off += len(p)
    return (
        np.concatenate(ss),
        np.concatenate(vs),
        [np.asarray(r, np.int64).reshape(-1, 2) for r in ranges],
    )


def calibrate_cascade(
    gru: nn.Module, gru_config: dict[str, Any], net: nn.Module, streams, target_fa_per_hour: float,
    rate: int, delay: int = VERIFY_DELAY, log=print,
) -> dict[str, Any]:  # fmt: skip
    """Per keyword (gate, patience, verifier threshold) on held-out streams [(audio, spans)], the
    false-accept budget spent where it buys the most hits (as `calibration.calibrate` does for the GRU)."""
    from .features import FeatureConfig
    from .infer import Streamer

    cfg = FeatureConfig.from_dict(gru_config["features"])
    n_kw, stride = len(gru_config["keywords"]), int(gru_config["stride"])
    base = DecisionConfig(**{**gru_config["decision"], "thresholds": [0.5] * n_kw})
    posts, vprobs = [], []
    for y, _ in streams:
        st = Streamer(gru, gru_config)
        post = st.push(y)[1]
        feats = st.last_own_feats
        s = smoothed(post[:, 2 : 2 + n_kw], base.smooth)
        cand = np.flatnonzero(s.max(axis=1) >= MINE_GATE)
        cand = cand[cand + delay < len(post)]
        at = (cand + delay) * stride + stride - 1  # the frame the verifier's window ends at
        v = np.zeros_like(post)  # row t: the verifier on the candidate of step t (at t + delay)
        v[cand] = verify_probs(net, windows(feats, at, net.window, net.mean.numpy()))
        posts.append(post)
        vprobs.append(v)
    hours = sum(len(y) for y, _ in streams) / rate / 3600
    budget = target_fa_per_hour * hours
    s_all, v_all, ranges = stack_streams(
        posts, vprobs, [sp for _, sp in streams], n_kw, base.smooth, stride, cfg.hop, cfg.win
    )
    refr = int(round(base.refractory * rate / (cfg.hop * stride)))
    gates = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    vgrid = np.round(
        np.concatenate([np.arange(0.05, 0.9, 0.05), np.arange(0.9, 0.99, 0.01), [0.995, 0.998]]), 3
    )
    options = [
        cascade_options(
            s_all[:, k], v_all[:, k], ranges[k], base, refr, gates, PATIENCES[:3], vgrid, budget, delay
        )
        or [(0, 0, 0.99, max(PATIENCES), 0.999)]
        for k in range(n_kw)
    ]
    chosen = spend_budget(options, budget)
    cascade = {
        "thresholds": [o[2] for o in chosen],
        "patience": [int(o[3]) for o in chosen],
        "verify": [o[4] for o in chosen],
        "verify_delay": delay,
    }
    log(f"cascade calibration on {hours * 60:.0f} min: {cascade}")
    dec = DecisionConfig(**{**base.to_dict(), **cascade})
    verifiers = [lambda t, v=v: v[t - delay] for v in vprobs]
    report = calibration_report(dec, streams, posts, gru_config, target_fa_per_hour, verifiers, log=log)
    return {"cascade": cascade, "calibration": report}


# -- training --------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(corpus, feats, gru_path: str, stream_opts: dict[str, Any]) -> None:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    gru, gcfg = models.load(gru_path)
    _WORKER.update(corpus=corpus, feats=feats, gru=gru, gcfg=gcfg, stream_opts=stream_opts)


def extend_keyword_labels(y: np.ndarray, frames: int) -> np.ndarray:
    """Keyword labels run on for `frames` more frames over the silence/unknown after them: a
    detection up to 0.5 s after a keyword's end is a hit, so the verifier must accept there too
    (the training labels stop 0.35 s after the end)."""
    out = y.copy()
    for b in range(y.shape[0]):
        row = y[b]
        last = np.flatnonzero((row[:-1] >= 2) & (row[1:] < 2))  # last frame of each keyword run
        for e in last:
            seg = out[b, e + 1 : e + 1 + frames]
            stop = np.flatnonzero((seg >= 2) | (seg < 0))
            seg[: stop[0] if stop.size else len(seg)] = row[e]
    return out


def _make_pool(seed: int, key: int, n_streams: int, seconds: float, delay: int = VERIFY_DELAY):
    """Training streams and the frames the verifier is asked about in them: (x, y, cands (n, 2) =
    stream, frame), the frame `delay` steps after each of the GRU's candidate steps."""
    from .train import MEAN_NORM_S, make_streams

    w = _WORKER
    rng = np.random.default_rng([seed, key])
    x, y = make_streams(
        w["corpus"], rng, w["feats"], n_streams, seconds, mean_norm_s=MEAN_NORM_S, **w["stream_opts"]
    )
    stride, n_kw = int(w["gcfg"]["stride"]), len(w["gcfg"]["keywords"])
    y = extend_keyword_labels(y, int(round(0.15 / (w["feats"].hop / w["feats"].rate))))
    n = x.shape[1] // stride * stride
    with torch.inference_mode():
        logits, _ = w["gru"](torch.from_numpy(x[:, :n]))
    post = torch.softmax(logits, -1).numpy()
    cands = []
    for b in range(n_streams):
        s = smoothed(post[b, :, 2 : 2 + n_kw], int(w["gcfg"]["decision"]["smooth"]))
        steps = np.flatnonzero(s.max(axis=1) >= MINE_GATE) + delay
        steps = steps[steps < s.shape[0]]
        cands.append(np.stack([np.full(len(steps), b), steps * stride + stride - 1], axis=1))
    return x, y, np.concatenate(cands).astype(np.int64)


def train_verifier(
    out_dir: Path,
    gru_path: str | Path | None = None,
    seed: int = 0,
    minutes: float = 20.0,
    channels: int = 48,
    window: int = 100,
    target_fa_per_hour: float = 10.0,
    scale: float = 1.0,
    delay: int = VERIFY_DELAY,
    near_share: float = 0.7,
    log=print,
) -> dict[str, Any]:
    """Train a verifier for the GRU at `gru_path` (default: the shipped one) on its candidates in
    fresh training-voice streams, calibrate the cascade, save it to `out_dir`. `scale` shrinks the
    corpora and the calibration set (for smoke tests)."""
    import multiprocessing as mp
    import time
    from concurrent.futures import ProcessPoolExecutor

    from .calibration import held_out_streams
    from .data import IGNORE, build_corpus, calibration_corpus
    from .features import FeatureConfig
    from .train import Bar, _lr

    torch.manual_seed(seed)
    t0 = time.monotonic()
    gru_pt, _ = models.resolve(gru_path)
    gru, gcfg = models.load(gru_path)
    keywords = list(gcfg["keywords"])
    feats = FeatureConfig.from_dict(gcfg["features"])
    # a corpus of its own (same training voices, other utterances and sentences than the GRU's)
    n = lambda base, least: max(least, int(base * scale))  # noqa: E731
    # many near misses: the first stage's false accepts are mostly words that begin or sound like a
    # keyword ("downtown", "often"), and a verifier has to hear many of each to reject them
    corpus = build_corpus(
        keywords, seed + 20_000, n(100, 4), n(3000, 20), n(300, 8), progress=log, p_near=near_share
    )
    # the classifier's calibration set: dense in near misses, where a user's false accepts come from
    held = calibration_corpus(keywords, seed, scale, log)
    config: dict[str, Any] = {
        "arch": "cnn",
        "role": "verifier",
        "arch_params": {"channels": channels, "blocks": 4, "window": window},
        "features": gcfg["features"],
        "keywords": keywords,
        "classes": class_names(keywords),  # a near-class GRU's extra outputs are not the verifier's
        "stride": gcfg["stride"],
        "mean_norm_s": gcfg.get("mean_norm_s", 0.0),
        "first_stage_sha256": file_sha256(gru_pt),
        "training": {
            "seed": seed,
            "minutes": minutes,
            "mine_gate": MINE_GATE,
            "verify_delay": delay,
            "near_share": near_share,
        },
    }
    net = models.build(config)
    maker = ProcessPoolExecutor(
        1, mp_context=mp.get_context("spawn"), initializer=_init_worker,
        initargs=(corpus, feats, str(gru_pt), {"p_abut": float(gcfg["training"].get("p_abut", 0.15))}),
    )  # fmt: skip
    n_streams, seconds = (16, 128.0) if scale >= 0.5 else (2, 16.0)
    nxt = maker.submit(_make_pool, seed + 20_000, 0, n_streams, seconds, delay)
    reserve = 150 if scale >= 0.5 else 5  # calibration: ~2 min
    budget = max(5.0, minutes * 60 - (time.monotonic() - t0) - reserve)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    lossf = nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    bar = Bar("training verifier", budget)
    t_train, key, seen = time.monotonic(), 0, 0
    try:
        while time.monotonic() - t_train < budget:
            x, y, cands = nxt.result()
            key += 1
            nxt = maker.submit(_make_pool, seed + 20_000, key, n_streams, seconds, delay)
            if key == 1:
                flat = x.reshape(-1, x.shape[-1])
                net.mean.copy_(torch.from_numpy(flat.mean(0)))
                net.std.copy_(torch.from_numpy(flat.std(0) + 1e-3))
            cands = cands[(cands[:, 1] >= window - 1) & (y[cands[:, 0], cands[:, 1]] != IGNORE)]
            c_kw = y[cands[:, 0], cands[:, 1]] >= 2
            c_pos, c_neg = cands[c_kw], cands[~c_kw]
            ok = np.argwhere((y != IGNORE) & (np.arange(y.shape[1]) >= window - 1)[None, :])
            kw = ok[y[ok[:, 0], ok[:, 1]] >= 2]
            net.train()
            for _ in range(100):  # ~a minute of training per pool, while the next one is made
                frac = (time.monotonic() - t_train) / budget
                if frac >= 1:
                    break
                for g in opt.param_groups:
                    g["lr"] = _lr(2e-3, frac)
                # the GRU's candidates, its false ones and true ones alike, plus any keyword and
                # any frame (so that the verifier stays sane on what the GRU rarely proposes)
                pick = np.concatenate([
                    c_neg[rng.integers(len(c_neg), size=40)] if len(c_neg) else ok[:0],
                    c_pos[rng.integers(len(c_pos), size=40)] if len(c_pos) else ok[:0],
                    kw[rng.integers(len(kw), size=24)],
                    ok[rng.integers(len(ok), size=24)],
                ])  # fmt: skip
                xb = torch.from_numpy(np.stack([x[i, t - window + 1 : t + 1] for i, t in pick]))
                loss = lossf(net(xb), torch.from_numpy(y[pick[:, 0], pick[:, 1]]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                seen += len(pick)
                bar.update(time.monotonic() - t_train, f"pool {key} loss {loss.item():.3f}")
    finally:
        maker.shutdown(wait=False, cancel_futures=True)
    bar.update(budget, f"{key} pools, {seen} windows")
    net.eval()
    rng = np.random.default_rng(seed + 1)
    streams = held_out_streams(held, rng, 20.0 * scale, 180.0 * scale)
    config.update(calibrate_cascade(gru, gcfg, net, streams, target_fa_per_hour, feats.rate, delay, log=log))
    config["training"]["windows_seen"] = seen
    models.save(net, config, out_dir)
    log(f"verifier written to {out_dir} ({time.monotonic() - t0:.0f} s total)")
    return config


def cmd_train_verifier(args) -> int:
    """CLI entry: args.model (first-stage dir or None), args.out, args.seed, args.minutes."""
    import json
    import sys

    from ..errors import RtAudioError

    if args.minutes <= 0:
        raise RtAudioError(f"--minutes must be positive, got {args.minutes}")
    models.load(args.model, where="train-verifier")  # a clear error before any work
    config = train_verifier(
        Path(args.out),
        args.model,
        int(args.seed),
        float(args.minutes),
        log=lambda m: print(m, file=sys.stderr),
    )
    print(
        json.dumps(
            {"verifier": str(args.out), "cascade": config["cascade"], "calibration": config["calibration"]}
        )
    )
    return 0
